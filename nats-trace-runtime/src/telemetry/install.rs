//! Building tracer and meter providers from the OpenTelemetry environment
//! variables, with the SDK's and the OTLP exporter's own builders.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, SimpleSpanProcessor, SpanExporter,
};

use super::accounting::{CountingExporter, CountingProcessor, SpanCounts, SpanReport};
use super::config::{ExporterKind, OtelEnv, OtlpProtocol, PropagatorKind};
use super::console_tree::ConsoleTreeExporter;

/// Providers the runtime built from the environment and installed as the
/// globals. Shut down when the runtime stops.
#[derive(Debug)]
pub(crate) struct Installed {
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    pub(crate) meter_provider: Option<SdkMeterProvider>,
    counts: Arc<SpanCounts>,
}

/// Builds the providers `env` asks for and installs them, and the
/// propagators, as the globals. With `OTEL_SDK_DISABLED=true` no provider is
/// built, so the API's no-op globals stay.
pub(crate) fn from_env(env: &OtelEnv) -> Installed {
    for warning in &env.warnings {
        tracing::warn!("{warning}");
    }
    // An application's own global propagator stays.
    let app_installed =
        global::get_text_map_propagator(|p| !format!("{p:?}").starts_with("NoopTextMapPropagator"));
    if !app_installed {
        install_propagators(&env.propagators);
    }
    let counts = Arc::new(SpanCounts::default());
    if env.sdk_disabled {
        tracing::info!("OTEL_SDK_DISABLED=true: spans and metrics are not recorded");
        return Installed {
            tracer_provider: None,
            meter_provider: None,
            counts,
        };
    }
    let resource = Resource::builder().build();
    let tracer_provider = tracer_provider(env, resource.clone(), &counts);
    global::set_tracer_provider(tracer_provider.clone());
    let meter_provider = meter_provider(env, resource);
    global::set_meter_provider(meter_provider.clone());
    tracing::info!(
        traces = %env.traces,
        metrics = %env.metrics,
        "OpenTelemetry set up from the environment"
    );
    Installed {
        tracer_provider: Some(tracer_provider),
        meter_provider: Some(meter_provider),
        counts,
    }
}

impl Installed {
    /// Flushes and shuts down both providers, waiting at most `timeout` for
    /// each, and reports what happened to the spans.
    pub(crate) async fn shutdown(self, timeout: Duration) -> SpanReport {
        let Installed {
            tracer_provider,
            meter_provider,
            counts,
        } = self;
        // The SDK blocks while it exports.
        let done = tokio::task::spawn_blocking(move || {
            if let Some(provider) = tracer_provider
                && let Err(error) = provider.shutdown_with_timeout(timeout)
            {
                tracing::warn!(%error, "shutting down the tracer provider failed");
            }
            if let Some(provider) = meter_provider
                && let Err(error) = provider.shutdown_with_timeout(timeout)
            {
                tracing::warn!(%error, "shutting down the meter provider failed");
            }
        })
        .await;
        if let Err(error) = done {
            tracing::warn!(%error, "shutting down telemetry failed");
        }
        let report = counts.report();
        if report.dropped > 0 || report.failed > 0 {
            tracing::warn!(
                dropped = report.dropped,
                failed = report.failed,
                exported = report.exported,
                "spans were lost: raise OTEL_BSP_MAX_QUEUE_SIZE for dropped spans, \
                 check the collector for failed ones"
            );
        }
        report
    }
}

fn install_propagators(kinds: &[PropagatorKind]) {
    let propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = kinds
        .iter()
        .map(|kind| match kind {
            PropagatorKind::TraceContext => {
                Box::new(TraceContextPropagator::new()) as Box<dyn TextMapPropagator + Send + Sync>
            }
            PropagatorKind::Baggage => Box::new(BaggagePropagator::new()),
        })
        .collect();
    global::set_text_map_propagator(TextMapCompositePropagator::new(propagators));
    crate::propagation::mark_configured();
}

fn tracer_provider(
    env: &OtelEnv,
    resource: Resource,
    counts: &Arc<SpanCounts>,
) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(resource);
    match env.traces {
        ExporterKind::None => builder.build(),
        // One tree per trace as it finishes, so no batching delay.
        ExporterKind::Console => builder
            .with_span_processor(SimpleSpanProcessor::new(ConsoleTreeExporter::stdout()))
            .build(),
        ExporterKind::Otlp => match otlp_span_exporter(env.traces_protocol) {
            Some(exporter) => builder
                .with_span_processor(batched(exporter, counts))
                .build(),
            None => builder.build(),
        },
    }
}

/// A batch processor reading `OTEL_BSP_*`, with its spans counted.
fn batched(
    exporter: impl SpanExporter + 'static,
    counts: &Arc<SpanCounts>,
) -> CountingProcessor<BatchSpanProcessor> {
    let exporter = CountingExporter::new(exporter, counts.clone());
    CountingProcessor::new(
        BatchSpanProcessor::builder(exporter).build(),
        counts.clone(),
    )
}

fn otlp_span_exporter(protocol: OtlpProtocol) -> Option<impl SpanExporter + 'static> {
    let built = match protocol {
        #[cfg(feature = "otlp-http")]
        OtlpProtocol::HttpProtobuf => {
            use opentelemetry_otlp::WithExportConfig as _;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build()
        }
        #[cfg(feature = "otlp-grpc")]
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build(),
        #[allow(unreachable_patterns)]
        other => {
            tracing::warn!(
                protocol = ?other,
                "OTLP export needs the nats-trace-runtime feature `otlp-http` (http/protobuf) \
                 or `otlp-grpc` (grpc); traces are not exported"
            );
            return None;
        }
    };
    match built {
        Ok(exporter) => Some(exporter),
        Err(error) => {
            tracing::warn!(%error, "building the OTLP span exporter failed; traces are not exported");
            None
        }
    }
}

fn meter_provider(env: &OtelEnv, resource: Resource) -> SdkMeterProvider {
    let builder = SdkMeterProvider::builder().with_resource(resource);
    match env.metrics {
        ExporterKind::None => builder.build(),
        ExporterKind::Console => builder
            .with_reader(
                PeriodicReader::builder(opentelemetry_stdout::MetricExporter::default()).build(),
            )
            .build(),
        ExporterKind::Otlp => match otlp_metric_exporter(env.metrics_protocol) {
            Some(reader) => builder.with_reader(reader).build(),
            None => builder.build(),
        },
    }
}

fn otlp_metric_exporter(
    protocol: OtlpProtocol,
) -> Option<PeriodicReader<impl opentelemetry_sdk::metrics::exporter::PushMetricExporter>> {
    let built = match protocol {
        #[cfg(feature = "otlp-http")]
        OtlpProtocol::HttpProtobuf => {
            use opentelemetry_otlp::WithExportConfig as _;
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build()
        }
        #[cfg(feature = "otlp-grpc")]
        OtlpProtocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build(),
        #[allow(unreachable_patterns)]
        other => {
            tracing::warn!(
                protocol = ?other,
                "OTLP export needs the nats-trace-runtime feature `otlp-http` (http/protobuf) \
                 or `otlp-grpc` (grpc); metrics are not exported"
            );
            return None;
        }
    };
    match built {
        Ok(exporter) => Some(PeriodicReader::builder(exporter).build()),
        Err(error) => {
            tracing::warn!(%error, "building the OTLP metric exporter failed; metrics are not exported");
            None
        }
    }
}
