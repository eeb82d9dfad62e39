//! Reading the spans a test produced, through the SDK's in-memory exporter.

use std::time::{Duration, Instant};

use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

/// A tracer provider that keeps every finished span in memory. Spans are
/// exported as they end (simple processor), so a test sees them at once.
#[derive(Debug, Clone)]
pub struct SpanCapture {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
}

impl Default for SpanCapture {
    fn default() -> Self {
        Self::new()
    }
}

impl SpanCapture {
    /// A fresh provider with an empty exporter, always sampling.
    pub fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        SpanCapture { provider, exporter }
    }

    /// Like [`new`](Self::new), but behind a batch processor that exports
    /// only when flushed (or after an hour): spans become visible only once
    /// someone flushes the provider.
    pub fn batched() -> Self {
        use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};
        let exporter = InMemorySpanExporter::default();
        let processor = BatchSpanProcessor::builder(exporter.clone())
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_secs(3600))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        SpanCapture { provider, exporter }
    }

    /// The provider to hand to the runtime builder or to a test tracer.
    pub fn provider(&self) -> SdkTracerProvider {
        self.provider.clone()
    }

    /// Every span finished so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// Waits up to `timeout` until `done` holds for the finished spans, and
    /// returns them either way, so the test's assertions explain a failure.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[SpanData]) -> bool,
    ) -> Vec<SpanData> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until at least `count` spans named `name` finished.
    pub async fn wait_for_named(&self, name: &str, count: usize) -> Vec<SpanData> {
        self.wait_for(Duration::from_secs(10), |spans| {
            named(spans, name).len() >= count
        })
        .await
    }
}

/// The spans called `name`.
pub fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

/// The value of attribute `key` on `span`.
pub fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// A span's string attribute, for terse assertions.
pub fn string_attribute(span: &SpanData, key: &str) -> Option<String> {
    attribute(span, key).map(|value| value.as_str().into_owned())
}

/// Summarises spans for assertion messages: name, kind, trace and parent.
pub fn describe(spans: &[SpanData]) -> String {
    spans
        .iter()
        .map(|span| {
            format!(
                "{} {:?} trace={} span={} parent={}",
                span.name,
                span.span_kind,
                span.span_context.trace_id(),
                span.span_context.span_id(),
                span.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
