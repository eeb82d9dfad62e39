//! OTLP export from an application configured only by `OTEL_*` variables,
//! into a test collector built on the `opentelemetry-proto` types, over
//! HTTP/protobuf and gRPC; and the environment variables' effects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nats_trace_testing::NatsServer;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support;

/// What the collector received.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Received>>);

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every span received, with its resource's `service.name`.
    fn spans(&self) -> Vec<(Option<String>, Span)> {
        let received = self.lock();
        let mut spans = Vec::new();
        for request in &received.traces {
            for resource in &request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| string(&r.attributes, "service.name"));
                for scope in &resource.scope_spans {
                    spans.extend(scope.spans.iter().cloned().map(|s| (service.clone(), s)));
                }
            }
        }
        spans
    }

    /// Every metric received by name: (unit, data point attributes).
    fn metrics(&self) -> HashMap<String, (String, Vec<Vec<KeyValue>>)> {
        let received = self.lock();
        let mut metrics: HashMap<String, (String, Vec<Vec<KeyValue>>)> = HashMap::new();
        for request in &received.metrics {
            for resource in &request.resource_metrics {
                for scope in &resource.scope_metrics {
                    for m in &scope.metrics {
                        let points: Vec<Vec<KeyValue>> = match &m.data {
                            Some(metric::Data::Histogram(h)) => {
                                h.data_points.iter().map(|p| p.attributes.clone()).collect()
                            }
                            Some(metric::Data::Sum(s)) => {
                                s.data_points.iter().map(|p| p.attributes.clone()).collect()
                            }
                            _ => Vec::new(),
                        };
                        let entry = metrics
                            .entry(m.name.clone())
                            .or_insert_with(|| (m.unit.clone(), Vec::new()));
                        entry.1.extend(points);
                    }
                }
            }
        }
        metrics
    }
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => Some(s.clone()),
            _ => None,
        })
}

/// An OTLP/HTTP collector: `POST /v1/traces` and `/v1/metrics` with
/// protobuf bodies, on keep-alive connections.
async fn http_collector() -> (String, Collector) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let collector = Collector::default();
    let sink = collector.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    let Some(end) = find(&buffer, b"\r\n\r\n") else {
                        let mut chunk = [0u8; 8192];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buffer.len() < end + 4 + length {
                        let mut chunk = [0u8; 8192];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buffer[end + 4..end + 4 + length].to_vec();
                    buffer.drain(..end + 4 + length);
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    match path.as_str() {
                        "/v1/traces" => {
                            if let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice())
                            {
                                sink.lock().traces.push(request);
                            }
                        }
                        "/v1/metrics" => {
                            if let Ok(request) =
                                ExportMetricsServiceRequest::decode(body.as_slice())
                            {
                                sink.lock().metrics.push(request);
                            }
                        }
                        _ => {}
                    }
                    let response = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{address}"), collector)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.lock().traces.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.lock().metrics.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// An OTLP/gRPC collector.
async fn grpc_collector() -> (String, Collector) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    let collector = Collector::default();
    let service = collector.clone();
    tokio::spawn(async move {
        let incoming = tokio_stream_listener(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(service.clone()))
            .add_service(MetricsServiceServer::new(service))
            .serve_with_incoming(incoming)
            .await;
    });
    (format!("http://{address}"), collector)
}

fn tokio_stream_listener(
    listener: TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

/// Runs the example application with `vars` and returns its stdout.
async fn run_app(server: &NatsServer, vars: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otel_app"));
    command
        .env("NATS_URL", server.url())
        .env("OTEL_SERVICE_NAME", "otel-app-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env_remove("OTEL_TRACES_EXPORTER")
        .env_remove("OTEL_METRICS_EXPORTER")
        .env_remove("OTEL_PROPAGATORS")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("OTEL_TRACES_SAMPLER_ARG");
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("spawn")
        .expect("the app runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "the app failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn report_value(stdout: &str, key: &str) -> Option<u64> {
    stdout
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .and_then(|value| value.parse().ok())
}

/// The spans and metrics the app delivers, as every OTLP test expects them.
fn check_delivery(collector: &Collector, stdout: &str) {
    let spans = collector.spans();
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    for expected in [
        "publish app.orders",
        "process app.orders",
        "request app.quote",
        "process app.quote",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        spans
            .iter()
            .all(|(service, _)| service.as_deref() == Some("otel-app-test")),
        "resource service.name on every span"
    );
    let publish = spans
        .iter()
        .find(|(_, s)| s.name == "publish app.orders")
        .map(|(_, s)| s)
        .expect("publish");
    assert!(
        spans
            .iter()
            .any(|(_, s)| s.name == "process app.orders" && s.parent_span_id == publish.span_id),
        "a process span is the child of a publish span"
    );
    assert_eq!(report_value(stdout, "dropped"), Some(0), "{stdout}");

    let metrics = collector.metrics();
    for (name, unit) in [
        ("messaging.process.duration", "s"),
        ("messaging.client.operation.duration", "s"),
        ("messaging.client.sent.messages", "{message}"),
        ("messaging.client.consumed.messages", "{message}"),
    ] {
        let (found_unit, points) = metrics.get(name).unwrap_or_else(|| {
            panic!(
                "{name} missing from {:?}",
                metrics.keys().collect::<Vec<_>>()
            )
        });
        assert_eq!(found_unit, unit, "{name}");
        assert!(!points.is_empty(), "{name} has data points");
        for attributes in points {
            assert_eq!(
                string(attributes, "messaging.system").as_deref(),
                Some("nats"),
                "{name}"
            );
            assert!(
                string(attributes, "messaging.destination.template").is_some(),
                "{name}"
            );
            assert!(
                string(attributes, "messaging.operation.name").is_some(),
                "{name}"
            );
            assert!(
                string(attributes, "messaging.message.id").is_none()
                    && string(attributes, "messaging.destination.name").is_none(),
                "{name} stays low-cardinality"
            );
        }
    }
    let process = &metrics["messaging.process.duration"].1;
    assert!(
        process
            .iter()
            .any(|a| string(a, "messaging.consumer.group.name").as_deref() == Some("app"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_configured_by_otel_variables_exports_over_http() {
    let server = support::server();
    let (endpoint, collector) = http_collector().await;
    let stdout = run_app(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    )
    .await;
    check_delivery(&collector, &stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_configured_by_otel_variables_exports_over_grpc() {
    let server = support::server();
    let (endpoint, collector) = grpc_collector().await;
    let stdout = run_app(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    )
    .await;
    check_delivery(&collector, &stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otel_variables_change_behaviour_as_the_spec_says() {
    let server = support::server();

    // Sampler ratio 0: nothing sampled, so no spans; metrics still flow.
    let (endpoint, collector) = http_collector().await;
    let stdout = run_app(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    )
    .await;
    assert!(collector.spans().is_empty(), "ratio 0 samples nothing");
    assert_eq!(report_value(&stdout, "ended"), Some(0));
    assert!(
        collector
            .metrics()
            .contains_key("messaging.process.duration")
    );
    assert_eq!(
        report_value(&stdout, "processed"),
        Some(3),
        "handlers still run"
    );

    // The `none` traces exporter: no trace export at all.
    let (endpoint, collector) = http_collector().await;
    run_app(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_TRACES_EXPORTER", "none"),
        ],
    )
    .await;
    assert!(collector.lock().traces.is_empty());
    assert!(!collector.lock().metrics.is_empty());

    // The console exporter: one tree per trace on stdout, nothing sent.
    let (endpoint, collector) = http_collector().await;
    let stdout = run_app(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_TRACES_EXPORTER", "console"),
            ("NO_COLOR", "1"),
        ],
    )
    .await;
    assert!(collector.lock().traces.is_empty());
    let tree = stdout
        .split("\n\n")
        .find(|block| block.contains("request app.quote"))
        .unwrap_or_else(|| panic!("no trace tree for the request in:\n{stdout}"));
    assert!(
        tree.starts_with("trace ") || tree.trim_start().starts_with("trace "),
        "{tree}"
    );
    assert!(
        tree.contains("└─ request app.quote") && tree.contains("CLIENT"),
        "{tree}"
    );
    assert!(
        tree.contains("process app.quote") && tree.contains("CONSUMER"),
        "{tree}"
    );
    assert!(
        tree.lines().all(|line| line.chars().count() <= 80),
        "fits 80 columns:\n{tree}"
    );

    // The SDK disabled: nothing exported, the service still works.
    let (endpoint, collector) = http_collector().await;
    let stdout = run_app(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    )
    .await;
    assert!(collector.lock().traces.is_empty() && collector.lock().metrics.is_empty());
    assert_eq!(report_value(&stdout, "processed"), Some(3));

    // No propagators: each process span starts its own trace.
    let (endpoint, collector) = http_collector().await;
    run_app(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_PROPAGATORS", "none"),
        ],
    )
    .await;
    let spans = collector.spans();
    let publish_traces: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.name == "publish app.orders")
        .map(|(_, s)| s.trace_id.clone())
        .collect();
    let process: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.name == "process app.orders")
        .collect();
    assert_eq!(
        process.len(),
        3,
        "{:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    assert!(
        process
            .iter()
            .all(|(_, s)| s.parent_span_id.is_empty() && !publish_traces.contains(&s.trace_id)),
        "without propagation no process span joins a publish trace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_installed_global_provider_and_propagator_are_used_not_replaced() {
    let server = support::server();
    let (endpoint, collector) = http_collector().await;
    let stdout = run_app(
        &server,
        &[
            ("APP_MODE", "global"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ],
    )
    .await;
    let in_memory = report_value(&stdout, "in_memory").unwrap_or_default();
    assert!(
        in_memory >= 6,
        "the runtime traced into the app's provider: {stdout}"
    );
    assert_eq!(
        report_value(&stdout, "custom_header"),
        Some(3),
        "the app's propagator wrote every message's headers: {stdout}"
    );
    assert_eq!(
        report_value(&stdout, "foreign"),
        Some(0),
        "finding the app's provider left no span in it: {stdout}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        collector.lock().traces.is_empty(),
        "no provider of the runtime's own exported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_installed_global_meter_provider_is_kept_when_traces_come_from_the_environment() {
    let server = support::server();
    let (endpoint, collector) = http_collector().await;
    let stdout = run_app(
        &server,
        &[
            ("APP_MODE", "meter"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ],
    )
    .await;
    // The three orders and the quote request.
    assert_eq!(
        report_value(&stdout, "metered"),
        Some(4),
        "the runtime's metrics went to the app's meter provider: {stdout}"
    );
    assert_eq!(
        report_value(&stdout, "after_stop"),
        Some(1),
        "the app's meter provider is still the global one after the stop: {stdout}"
    );
    let names: Vec<String> = collector.spans().into_iter().map(|(_, s)| s.name).collect();
    assert!(
        names.iter().any(|name| name == "process app.orders"),
        "the traces were still set up from the environment: {names:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        collector.lock().metrics.is_empty(),
        "no meter provider of the runtime's own exported: {:?}",
        collector.metrics().keys().collect::<Vec<_>>()
    );
}
