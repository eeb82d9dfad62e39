//! The tracer and propagator a runtime uses, resolved once at start, and
//! the terminal trace tree for local runs.

pub mod accounting;
pub mod config;
pub mod console_tree;
pub(crate) mod install;
pub mod logging;
pub mod metrics;

use std::sync::Arc;

use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::trace::{Span, SpanBuilder, TraceContextExt as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue, StringValue};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use self::metrics::Metrics;

use crate::propagation::Propagation;
use crate::semconv;

/// The instrumentation scope of every span the runtime creates.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("nats-trace")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(semconv::SCHEMA_URL)
        .build()
}

/// `parent` with `span` as its current span.
///
/// A span that is not recording (the sampler dropped it, telemetry is
/// suppressed, or the tracer is the API's no-op one) records nothing, and
/// ending it does nothing: the SDK calls no processor for it, and the
/// specification asks the same of any tracer. So only its span context is
/// kept, which is all its children and the propagator read; keeping the
/// span itself would box it, lock it and drop it for nothing on every
/// unsampled message. `with_remote_span_context` keeps that span context as
/// it is: local, so a parent-based sampler still sees a local parent.
fn with_started<S: Span + Send + Sync + 'static>(parent: &Context, span: S) -> Context {
    if span.is_recording() {
        parent.with_span(span)
    } else {
        parent.with_remote_span_context(span.span_context().clone())
    }
}

/// Where spans come from.
#[derive(Clone)]
enum SpanTracer {
    /// The SDK tracer of a provider the runtime holds: its spans are not
    /// boxed once more on the way.
    Sdk(SdkTracer),
    /// The global provider's tracer, whatever the application installed.
    Global(Arc<BoxedTracer>),
}

/// Everything the pipeline needs to trace, shared by all handlers of a runtime.
#[derive(Clone)]
pub(crate) struct Telemetry {
    tracer: SpanTracer,
    /// Flushed at shutdown: the provider handed to the builder, or the one
    /// the runtime set up from the environment.
    provider: Option<SdkTracerProvider>,
    pub(crate) propagation: Propagation,
    server: Arc<[KeyValue]>,
    metrics: Metrics,
}

impl Telemetry {
    /// Uses `provider` when given, else the global tracer provider, which
    /// the application may have installed (it is never replaced).
    pub(crate) fn new(
        provider: Option<SdkTracerProvider>,
        meter_provider: Option<&SdkMeterProvider>,
        propagation: Propagation,
    ) -> Self {
        let tracer = match &provider {
            Some(provider) => {
                use opentelemetry::trace::TracerProvider as _;
                SpanTracer::Sdk(provider.tracer_with_scope(scope()))
            }
            None => SpanTracer::Global(Arc::new(global::tracer_with_scope(scope()))),
        };
        let meter = match meter_provider {
            Some(provider) => {
                use opentelemetry::metrics::MeterProvider as _;
                provider.meter_with_scope(scope())
            }
            None => global::meter_with_scope(scope()),
        };
        Telemetry {
            tracer,
            provider,
            propagation,
            server: Arc::from(Vec::new()),
            metrics: Metrics::new(&meter),
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records `server.address` / `server.port` on every span from now on.
    pub(crate) fn with_server(mut self, address: Option<&str>, port: u16) -> Self {
        let mut server = Vec::with_capacity(2);
        if let Some(address) = address.filter(|a| !a.is_empty()) {
            // Shared, so cloning it onto every span costs no allocation.
            server.push(KeyValue::new(
                semconv::SERVER_ADDRESS,
                StringValue::from(Arc::<str>::from(address)),
            ));
        }
        if port != 0 {
            server.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
        }
        self.server = Arc::from(server);
        self
    }

    /// Starts the span `builder` describes as a child of `parent`, and
    /// returns `parent` with it.
    pub(crate) fn start_span(&self, builder: SpanBuilder, parent: &Context) -> Context {
        match &self.tracer {
            SpanTracer::Sdk(tracer) => {
                with_started(parent, builder.start_with_context(tracer, parent))
            }
            SpanTracer::Global(tracer) => {
                with_started(parent, builder.start_with_context(&**tracer, parent))
            }
        }
    }

    pub(crate) fn server_attributes(&self) -> &[KeyValue] {
        &self.server
    }

    /// Exports every finished span of the runtime's provider. Spans of a
    /// global provider the application installed are flushed by the
    /// application.
    pub(crate) async fn flush(&self) {
        let Some(provider) = self.provider.clone() else {
            return;
        };
        // The SDK blocks the calling thread while it exports.
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "flushing spans failed"),
            Err(error) => tracing::warn!(%error, "flushing spans failed"),
        }
    }
}

/// The batch span processor's queue size when `OTEL_BSP_MAX_QUEUE_SIZE` is
/// unset. The SDK's 2,048 fills in milliseconds at a hundred thousand
/// messages a second and then drops spans; 65,536 spans cost a few MB at
/// most and ride out export hiccups.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 65_536;

/// The batch span processor settings the runtime uses: the `OTEL_BSP_*`
/// variables where set (read by the SDK), else the SDK's defaults, except
/// for the queue size, [`DEFAULT_MAX_QUEUE_SIZE`].
pub fn batch_config() -> opentelemetry_sdk::trace::BatchConfig {
    let builder = opentelemetry_sdk::trace::BatchConfigBuilder::default();
    let queue_set = std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_some_and(|v| !v.is_empty());
    if queue_set {
        builder.build()
    } else {
        builder.with_max_queue_size(DEFAULT_MAX_QUEUE_SIZE).build()
    }
}

/// Whether the application installed a global meter provider. The API
/// offers no way to ask, so this looks at the provider itself: the API's
/// default is its no-op provider, which has no state at all, while the SDK's
/// provider, and any provider that records somewhere, holds some. (A
/// stateless provider of the application's own would be taken for the
/// no-op one.)
pub(crate) fn global_meter_installed() -> bool {
    std::mem::size_of_val(&*global::meter_provider()) != 0
}

/// Whether the application installed a global tracer provider. The API's
/// no-op tracer hands back its parent's span context. The parent's context
/// suppresses telemetry, so an SDK tracer hands back an empty one without
/// asking its sampler: the probe is never recorded, whatever the sampler.
/// (A provider the application installed and then shut down counts as
/// installed: it is used as given.)
pub(crate) fn global_tracer_installed() -> bool {
    use opentelemetry::trace::{
        Span as _, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        Tracer as _,
    };
    let parent = SpanContext::new(
        TraceId::from_bytes([1; 16]),
        SpanId::from_bytes([1; 8]),
        TraceFlags::default(),
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new()
        .with_remote_span_context(parent.clone())
        .with_telemetry_suppressed();
    let probe = global::tracer("nats-trace.probe").start_with_context("nats-trace.probe", &cx);
    probe.span_context().span_id() != parent.span_id()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use opentelemetry::trace::{Link, SpanKind, TraceContextExt as _, TraceId, TraceState};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{
        Sampler, SamplingDecision, SamplingResult, ShouldSample, SpanData, SpanProcessor,
    };

    use super::*;

    /// Records every span it is asked about, and exports none.
    #[derive(Debug, Clone)]
    struct RecordOnly;

    impl ShouldSample for RecordOnly {
        fn should_sample(
            &self,
            _: Option<&Context>,
            _: TraceId,
            _: &str,
            _: &SpanKind,
            _: &[KeyValue],
            _: &[Link],
        ) -> SamplingResult {
            SamplingResult {
                decision: SamplingDecision::RecordOnly,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            }
        }
    }

    /// The names of the spans a processor saw start and end.
    #[derive(Debug, Default)]
    struct Seen {
        started: Mutex<Vec<String>>,
        ended: Mutex<Vec<String>>,
    }

    #[derive(Debug)]
    struct Watching(Arc<Seen>);

    impl SpanProcessor for Watching {
        fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, _: &Context) {
            let name = span.exported_data().map(|data| data.name.to_string());
            self.0
                .started
                .lock()
                .unwrap()
                .push(name.unwrap_or_default());
        }

        fn on_end(&self, span: SpanData) {
            self.0.ended.lock().unwrap().push(span.name.to_string());
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    fn telemetry(sampler: impl ShouldSample + 'static) -> (Telemetry, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_span_processor(Watching(seen.clone()))
            .build();
        (
            Telemetry::new(Some(provider), None, Propagation::Global),
            seen,
        )
    }

    #[test]
    fn a_span_that_records_without_being_sampled_is_kept_and_ended() {
        let (telemetry, seen) = telemetry(RecordOnly);
        let cx = telemetry.start_span(SpanBuilder::from_name("recorded"), &Context::new());
        assert!(cx.span().is_recording());
        assert!(!cx.span().span_context().is_sampled());
        assert!(seen.ended.lock().unwrap().is_empty(), "not ended yet");
        cx.span().end();
        assert_eq!(*seen.started.lock().unwrap(), ["recorded"]);
        assert_eq!(*seen.ended.lock().unwrap(), ["recorded"]);
    }

    #[test]
    fn a_dropped_span_leaves_a_local_span_context_of_its_own() {
        let (telemetry, seen) = telemetry(Sampler::AlwaysOff);
        let parent = telemetry.start_span(SpanBuilder::from_name("parent"), &Context::new());
        let cx = telemetry.start_span(SpanBuilder::from_name("dropped"), &parent);
        let (span, parent) = (cx.span(), parent.span());
        assert!(!span.is_recording());
        let (context, parent) = (span.span_context(), parent.span_context());
        assert!(context.is_valid());
        assert!(!context.is_sampled());
        assert!(!context.is_remote(), "a span of this process");
        assert_eq!(context.trace_id(), parent.trace_id());
        assert_ne!(context.span_id(), parent.span_id());
        span.end();
        assert!(seen.started.lock().unwrap().is_empty());
        assert!(seen.ended.lock().unwrap().is_empty());
    }
}
