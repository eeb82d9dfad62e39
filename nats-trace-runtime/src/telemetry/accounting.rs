//! Counting spans in and out of the batch processor, so that spans it drops
//! (its queue was full) or that fail to export are reported at shutdown,
//! never lost silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// Spans counted on their way to the exporter.
#[derive(Debug, Default)]
pub struct SpanCounts {
    ended: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
}

/// What happened to the spans a runtime recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanReport {
    /// Sampled spans that ended.
    pub ended: u64,
    /// Spans the exporter accepted.
    pub exported: u64,
    /// Spans in batches the exporter failed to send.
    pub failed: u64,
    /// Spans that never reached the exporter: the processor's queue was full
    /// (raise `OTEL_BSP_MAX_QUEUE_SIZE`) or shutdown cut them off.
    pub dropped: u64,
}

impl SpanCounts {
    /// The report so far; exact once the processor was flushed or shut down.
    pub fn report(&self) -> SpanReport {
        let ended = self.ended.load(Ordering::Relaxed);
        let exported = self.exported.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        SpanReport {
            ended,
            exported,
            failed,
            dropped: ended.saturating_sub(exported + failed),
        }
    }
}

/// Wraps a span processor and counts the sampled spans handed to it.
#[derive(Debug)]
pub struct CountingProcessor<P> {
    inner: P,
    counts: Arc<SpanCounts>,
}

impl<P> CountingProcessor<P> {
    /// Counts into `counts` what goes into `inner`.
    pub fn new(inner: P, counts: Arc<SpanCounts>) -> Self {
        CountingProcessor { inner, counts }
    }
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.counts.ended.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Wraps a span exporter and counts what it sends and what fails.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    counts: Arc<SpanCounts>,
}

impl<E> CountingExporter<E> {
    /// Counts into `counts` what `inner` exports.
    pub fn new(inner: E, counts: Arc<SpanCounts>) -> Self {
        CountingExporter { inner, counts }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let size = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() {
            &self.counts.exported
        } else {
            &self.counts.failed
        };
        counter.fetch_add(size, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

    /// Holds every export until the gate opens, so the queue fills up.
    #[derive(Debug, Clone, Default)]
    struct Gated {
        open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    }

    impl Gated {
        fn open(&self) {
            let (lock, signal) = &*self.open;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            signal.notify_all();
        }
    }

    impl SpanExporter for Gated {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let (lock, signal) = &*self.open;
            let mut open = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*open {
                open = signal.wait(open).unwrap_or_else(|e| e.into_inner());
            }
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_is_counted_as_dropped() {
        let counts = Arc::new(SpanCounts::default());
        let gated = Gated::default();
        let exporter = CountingExporter::new(gated.clone(), counts.clone());
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(10)
                    .with_max_export_batch_size(10)
                    .with_scheduled_delay(Duration::from_millis(1))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor::new(batch, counts.clone()))
            .build();
        let tracer = provider.tracer("test");
        for _ in 0..100 {
            tracer.start("span");
        }
        gated.open();
        provider.shutdown().expect("shutdown");
        let report = counts.report();
        assert_eq!(report.ended, 100);
        assert_eq!(report.exported + report.dropped, 100);
        // One batch held by the exporter and one full queue at most got through.
        assert!(report.dropped >= 80, "{report:?}");
        assert_eq!(report.failed, 0);
    }
}
