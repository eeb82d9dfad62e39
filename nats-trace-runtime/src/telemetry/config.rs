//! The OpenTelemetry environment variables the runtime reads itself.
//!
//! The SDK and the OTLP exporter read the rest on their own:
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (resource),
//! `OTEL_TRACES_SAMPLER(_ARG)` (sampler), `OTEL_BSP_*` (batch span
//! processor), `OTEL_METRIC_EXPORT_INTERVAL`, and `OTEL_EXPORTER_OTLP_*`
//! endpoints, headers and timeouts. Nothing here repeats them.

use std::fmt;

/// Where a signal goes: `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    /// `otlp` (the default): to an OTLP collector.
    Otlp,
    /// `console`: traces as trees on stdout, metrics as text.
    Console,
    /// `none`: not exported. Trace context is still created and propagated.
    None,
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL` (or its `_TRACES_` / `_METRICS_` form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` (the default), with the `otlp-http` feature.
    HttpProtobuf,
    /// `grpc`, with the `otlp-grpc` feature.
    Grpc,
}

/// One entry of `OTEL_PROPAGATORS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagatorKind {
    /// `tracecontext`: W3C `traceparent` / `tracestate`.
    TraceContext,
    /// `baggage`: W3C `baggage`.
    Baggage,
}

/// The OpenTelemetry settings read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelEnv {
    /// `OTEL_SDK_DISABLED=true`: no providers are installed.
    pub sdk_disabled: bool,
    /// `OTEL_TRACES_EXPORTER`.
    pub traces: ExporterKind,
    /// `OTEL_METRICS_EXPORTER`.
    pub metrics: ExporterKind,
    /// The OTLP protocol for traces.
    pub traces_protocol: OtlpProtocol,
    /// The OTLP protocol for metrics.
    pub metrics_protocol: OtlpProtocol,
    /// `OTEL_PROPAGATORS`, default `tracecontext,baggage`; empty for `none`.
    pub propagators: Vec<PropagatorKind>,
    /// Values that were not understood, and what was used instead.
    pub warnings: Vec<String>,
}

impl OtelEnv {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, e.g. a map in tests.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut warnings = Vec::new();
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_ascii_lowercase())
                .filter(|value| !value.is_empty())
        };
        let sdk_disabled = get("OTEL_SDK_DISABLED").as_deref() == Some("true");
        let traces = exporter(
            get("OTEL_TRACES_EXPORTER"),
            "OTEL_TRACES_EXPORTER",
            &mut warnings,
        );
        let metrics = exporter(
            get("OTEL_METRICS_EXPORTER"),
            "OTEL_METRICS_EXPORTER",
            &mut warnings,
        );
        let general = get("OTEL_EXPORTER_OTLP_PROTOCOL");
        let traces_protocol = protocol(
            get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| general.clone()),
            &mut warnings,
        );
        let metrics_protocol = protocol(
            get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL").or(general),
            &mut warnings,
        );
        let propagators = propagators(get("OTEL_PROPAGATORS"), &mut warnings);
        OtelEnv {
            sdk_disabled,
            traces,
            metrics,
            traces_protocol,
            metrics_protocol,
            propagators,
            warnings,
        }
    }
}

fn exporter(value: Option<String>, name: &str, warnings: &mut Vec<String>) -> ExporterKind {
    // A list is allowed by the spec; the first entry we know is used.
    let Some(value) = value else {
        return ExporterKind::Otlp;
    };
    for entry in value.split(',').map(str::trim) {
        match entry {
            "otlp" => return ExporterKind::Otlp,
            "console" => return ExporterKind::Console,
            "none" => return ExporterKind::None,
            other => warnings.push(format!("{name}: unsupported exporter {other:?} ignored")),
        }
    }
    warnings.push(format!(
        "{name}={value:?} names no supported exporter; using none"
    ));
    ExporterKind::None
}

fn protocol(value: Option<String>, warnings: &mut Vec<String>) -> OtlpProtocol {
    match value.as_deref() {
        None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            warnings.push(format!(
                "OTLP protocol {other:?} is not supported; using http/protobuf"
            ));
            OtlpProtocol::HttpProtobuf
        }
    }
}

fn propagators(value: Option<String>, warnings: &mut Vec<String>) -> Vec<PropagatorKind> {
    let Some(value) = value else {
        return vec![PropagatorKind::TraceContext, PropagatorKind::Baggage];
    };
    let mut kinds = Vec::new();
    for entry in value.split(',').map(str::trim) {
        match entry {
            "tracecontext" => kinds.push(PropagatorKind::TraceContext),
            "baggage" => kinds.push(PropagatorKind::Baggage),
            "none" => return Vec::new(),
            other => warnings.push(format!(
                "OTEL_PROPAGATORS: {other:?} is not supported here; install it yourself with \
                 opentelemetry::global::set_text_map_propagator before starting the runtime"
            )),
        }
    }
    kinds.dedup();
    kinds
}

impl fmt::Display for ExporterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExporterKind::Otlp => "otlp",
            ExporterKind::Console => "console",
            ExporterKind::None => "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> OtelEnv {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtelEnv::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let env = read(&[]);
        assert!(!env.sdk_disabled);
        assert_eq!(
            (env.traces, env.metrics),
            (ExporterKind::Otlp, ExporterKind::Otlp)
        );
        assert_eq!(env.traces_protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(
            env.propagators,
            [PropagatorKind::TraceContext, PropagatorKind::Baggage]
        );
        assert!(env.warnings.is_empty());
    }

    #[test]
    fn exporters_protocols_and_propagators_are_read() {
        let env = read(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_PROPAGATORS", "baggage"),
        ]);
        assert!(env.sdk_disabled);
        assert_eq!(
            (env.traces, env.metrics),
            (ExporterKind::Console, ExporterKind::None)
        );
        assert_eq!(env.traces_protocol, OtlpProtocol::Grpc);
        assert_eq!(env.metrics_protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(env.propagators, [PropagatorKind::Baggage]);
    }

    #[test]
    fn unknown_values_warn_and_fall_back() {
        let env = read(&[
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_PROPAGATORS", "b3,tracecontext"),
        ]);
        assert_eq!(env.traces, ExporterKind::None);
        assert_eq!(env.traces_protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(env.propagators, [PropagatorKind::TraceContext]);
        assert_eq!(env.warnings.len(), 5, "{:?}", env.warnings);
        assert_eq!(read(&[("OTEL_PROPAGATORS", "none")]).propagators, []);
        assert!(!read(&[("OTEL_SDK_DISABLED", "false")]).sdk_disabled);
    }
}
