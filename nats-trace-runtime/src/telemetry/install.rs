//! Building tracer and meter providers from the OpenTelemetry environment
//! variables, with the SDK's and the OTLP exporter's own builders.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::BaggagePropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor};

use super::accounting::{SpanCounts, SpanReport};
use super::config::{ExporterKind, OtelEnv, PropagatorKind};
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
/// built, so the API's no-op globals stay. A meter provider is built only
/// when `meters` is set: not when the application has one of its own.
pub(crate) fn from_env(env: &OtelEnv, meters: bool) -> Installed {
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
    let meter_provider = meters.then(|| {
        let provider = meter_provider(env, resource);
        global::set_meter_provider(provider.clone());
        provider
    });
    if meter_provider.is_some() {
        tracing::info!(
            traces = %env.traces,
            metrics = %env.metrics,
            "OpenTelemetry set up from the environment"
        );
    } else {
        tracing::info!(
            traces = %env.traces,
            "OpenTelemetry traces set up from the environment; metrics go to the \
             application's meter provider"
        );
    }
    Installed {
        tracer_provider: Some(tracer_provider),
        meter_provider,
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
        let installed_tracer = tracer_provider.is_some();
        let installed_meter = meter_provider.is_some();
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
        // Shut-down providers must not stay the globals: a runtime started
        // later in this process would take them for the application's own.
        // Only the runtime's own are taken back.
        if installed_tracer {
            global::set_tracer_provider(opentelemetry::trace::noop::NoopTracerProvider::new());
        }
        if installed_meter {
            global::set_meter_provider(opentelemetry::metrics::noop::NoopMeterProvider::new());
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
            PropagatorKind::TraceContext => Box::new(crate::propagation::TraceContext::new())
                as Box<dyn TextMapPropagator + Send + Sync>,
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
        #[cfg(any(feature = "otlp-http", feature = "otlp-grpc"))]
        ExporterKind::Otlp => match otlp::spans(env.traces_protocol) {
            Some(exporter) => builder
                .with_span_processor(batched(exporter, counts))
                .build(),
            None => builder.build(),
        },
        #[cfg(not(any(feature = "otlp-http", feature = "otlp-grpc")))]
        ExporterKind::Otlp => {
            let _ = counts;
            otlp_unavailable("traces");
            builder.build()
        }
    }
}

/// A batch processor reading `OTEL_BSP_*`, with its spans counted.
#[cfg(any(feature = "otlp-http", feature = "otlp-grpc"))]
fn batched(
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    counts: &Arc<SpanCounts>,
) -> super::accounting::CountingProcessor<opentelemetry_sdk::trace::BatchSpanProcessor> {
    use super::accounting::{CountingExporter, CountingProcessor};
    let exporter = CountingExporter::new(exporter, counts.clone());
    CountingProcessor::new(
        opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
            .with_batch_config(super::batch_config())
            .build(),
        counts.clone(),
    )
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
        #[cfg(any(feature = "otlp-http", feature = "otlp-grpc"))]
        ExporterKind::Otlp => match otlp::metrics(env.metrics_protocol) {
            Some(exporter) => builder
                .with_reader(PeriodicReader::builder(exporter).build())
                .build(),
            None => builder.build(),
        },
        #[cfg(not(any(feature = "otlp-http", feature = "otlp-grpc")))]
        ExporterKind::Otlp => {
            otlp_unavailable("metrics");
            builder.build()
        }
    }
}

/// The OTLP exporters, with the transport the protocol and the crate
/// features allow. Without `otlp-http` or `otlp-grpc`, OTLP is unavailable.
#[cfg(any(feature = "otlp-http", feature = "otlp-grpc"))]
mod otlp {
    use crate::telemetry::config::OtlpProtocol;

    /// Builds an `opentelemetry_otlp::$kind` for `$protocol`, or warns why not.
    macro_rules! exporter {
        ($kind:ident, $protocol:expr, $signal:literal) => {{
            let built = match $protocol {
                #[cfg(feature = "otlp-http")]
                OtlpProtocol::HttpProtobuf => {
                    use opentelemetry_otlp::WithExportConfig as _;
                    opentelemetry_otlp::$kind::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .build()
                }
                #[cfg(feature = "otlp-grpc")]
                OtlpProtocol::Grpc => opentelemetry_otlp::$kind::builder().with_tonic().build(),
                #[allow(unreachable_patterns)]
                other => {
                    tracing::warn!(
                        protocol = ?other,
                        concat!(
                            "this OTLP protocol needs the nats-trace-runtime feature `otlp-http` ",
                            "(http/protobuf) or `otlp-grpc` (grpc); ", $signal, " are not exported"
                        )
                    );
                    return None;
                }
            };
            match built {
                Ok(exporter) => Some(exporter),
                Err(error) => {
                    tracing::warn!(%error, concat!("building the OTLP exporter failed; ", $signal, " are not exported"));
                    None
                }
            }
        }};
    }

    pub(super) fn spans(protocol: OtlpProtocol) -> Option<opentelemetry_otlp::SpanExporter> {
        exporter!(SpanExporter, protocol, "traces")
    }

    pub(super) fn metrics(protocol: OtlpProtocol) -> Option<opentelemetry_otlp::MetricExporter> {
        exporter!(MetricExporter, protocol, "metrics")
    }
}

#[cfg(not(any(feature = "otlp-http", feature = "otlp-grpc")))]
fn otlp_unavailable(signal: &str) {
    tracing::warn!(
        "OTLP export needs the nats-trace-runtime feature `otlp-http` or `otlp-grpc`; \
         {signal} are not exported"
    );
}
