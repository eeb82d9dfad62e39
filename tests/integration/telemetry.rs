//! The telemetry around the handlers: metrics, the `tracing` bridge, log
//! lines with trace ids, and connection events.

use std::time::Duration;

use nats_trace_runtime::prelude::*;
use nats_trace_testing::SpanCapture;
use nats_trace_testing::spans::{describe, named};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    Temporality,
};
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::support;

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
}

fn meter() -> (SdkMeterProvider, InMemoryMetricExporter) {
    meter_with(Temporality::Cumulative)
}

fn meter_with(temporality: Temporality) -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(temporality)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    (provider, exporter)
}

/// One data point: sorted attributes, its count or sum, and the unit.
type Point = (Vec<(String, String)>, f64, Option<String>);

/// Every data point of metric `name`.
fn points(metrics: &[ResourceMetrics], name: &str) -> Vec<Point> {
    let mut found = Vec::new();
    for resource in metrics {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                let unit = Some(metric.unit().to_string());
                let attrs = |kvs: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                    let mut v: Vec<_> = kvs
                        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect();
                    v.sort();
                    v
                };
                match metric.data() {
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            found.push((
                                attrs(&mut p.attributes()),
                                p.count() as f64,
                                unit.clone(),
                            ));
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            found.push((
                                attrs(&mut p.attributes()),
                                p.value() as f64,
                                unit.clone(),
                            ));
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            found.push((
                                attrs(&mut p.attributes()),
                                p.count() as f64,
                                unit.clone(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    found
}

/// The sum of the counts of the points whose attributes `keep` accepts.
fn count(points: &[Point], keep: impl Fn(&[(String, String)]) -> bool) -> f64 {
    points
        .iter()
        .filter(|(a, _, _)| keep(a))
        .map(|(_, n, _)| n)
        .sum()
}

fn has(attrs: &[(String, String)], key: &str, value: &str) -> bool {
    attrs.iter().any(|(k, v)| k == key && v == value)
}

mod measured {
    use super::*;

    #[nats_subscriber(subject = "measured.*", queue = "meters")]
    async fn take(order: Order) -> Result<u32, std::io::Error> {
        if order.id == 0 {
            return Err(std::io::Error::other("zero"));
        }
        Ok(order.id)
    }
}

#[tokio::test]
async fn handlers_and_publishers_record_the_semconv_metrics() {
    let server = support::server();
    let capture = SpanCapture::new();
    let (meters, exporter) = meter();
    let running = support::builder(&server, &capture, "integration::telemetry::measured::")
        .meter_provider(meters.clone())
        .start()
        .await
        .expect("runtime starts");
    let publisher = running.publisher();
    for id in [1, 2, 0] {
        let _ = publisher
            .request::<_, u32>(
                &format!("measured.{id}"),
                &Order { id },
                Duration::from_secs(5),
            )
            .await;
    }
    running.stop().await.expect("clean stop");
    meters.force_flush().expect("flush metrics");
    let metrics = exporter.get_finished_metrics().expect("metrics");

    let process = points(&metrics, "messaging.process.duration");
    let total: f64 = process.iter().map(|(_, n, _)| n).sum();
    assert_eq!(total, 3.0, "{process:?}");
    assert!(process.iter().all(|(a, _, unit)| {
        unit.as_deref() == Some("s")
            && has(a, "messaging.destination.template", "measured.*")
            && has(a, "messaging.consumer.group.name", "meters")
            && has(a, "messaging.system", "nats")
            && !a
                .iter()
                .any(|(k, _)| k == "messaging.destination.name" || k == "messaging.message.id")
    }));
    assert!(
        process
            .iter()
            .any(|(a, n, _)| *n == 1.0 && has(a, "error.type", "std::io::error::Error")),
        "the failure is counted with its error.type: {process:?}"
    );
    let consumed = points(&metrics, "messaging.client.consumed.messages");
    assert_eq!(consumed.iter().map(|(_, n, _)| n).sum::<f64>(), 3.0);
    assert_eq!(consumed[0].2.as_deref(), Some("{message}"));

    let operations = points(&metrics, "messaging.client.operation.duration");
    let requests: f64 = operations
        .iter()
        .filter(|(a, _, _)| has(a, "messaging.operation.name", "request"))
        .map(|(_, n, _)| n)
        .sum();
    assert_eq!(requests, 3.0, "{operations:?}");
    let sent = points(&metrics, "messaging.client.sent.messages");
    assert_eq!(sent.iter().map(|(_, n, _)| n).sum::<f64>(), 3.0);
    let sizes = points(&metrics, "nats_trace.message.body.size");
    assert!(
        sizes
            .iter()
            .all(|(_, _, unit)| unit.as_deref() == Some("By"))
    );
    assert!(!sizes.is_empty());
}

mod settled {
    use super::*;
    use nats_trace_runtime::jetstream::StreamSpec;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "SETTLED",
        subjects: &["settled.>"],
        ..StreamSpec::DEFAULT
    };

    #[nats_subscriber(
        stream = "SETTLED",
        consumer = "settler",
        subject = "settled.orders",
        max_deliver = 3,
        backoff = ["50ms"]
    )]
    async fn settle(_order: Order, ctx: MessageContext) -> Result<(), std::io::Error> {
        if ctx.jetstream().map_or(0, |js| js.delivery_count) < 2 {
            return Err(std::io::Error::other("the first delivery fails"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn each_operation_is_measured_under_its_own_attributes_and_outcome() {
    operations_are_measured(Temporality::Cumulative).await;
}

#[tokio::test]
async fn each_operation_is_measured_the_same_with_delta_temporality() {
    operations_are_measured(Temporality::Delta).await;
}

async fn operations_are_measured(temporality: Temporality) {
    let server = support::server();
    let capture = SpanCapture::new();
    let (meters, exporter) = meter_with(temporality);
    let running = support::builder(&server, &capture, "integration::telemetry::settled::")
        .meter_provider(meters.clone())
        .stream(settled::STREAM)
        .start()
        .await
        .expect("runtime starts");
    running
        .publisher()
        .publish_jetstream("settled.orders", &Order { id: 1 })
        .await
        .expect("publish");
    // No stream captures it: the publish fails, and counts as failed.
    let refused = running
        .publisher()
        .publish_jetstream("unstreamed.orders", &Order { id: 2 })
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let spans = capture.wait_for_named("ack settled.orders", 1).await;
    running.stop().await.expect("clean stop");
    meters.force_flush().expect("flush metrics");
    let metrics = exporter.get_finished_metrics().expect("metrics");
    assert_eq!(named(&spans, "nak settled.orders").len(), 1);

    let settled = |name: &'static str| {
        move |a: &[(String, String)]| {
            has(a, "messaging.operation.name", name)
                && has(a, "messaging.operation.type", "settle")
                && has(a, "messaging.consumer.group.name", "settler")
                && has(a, "messaging.destination.template", "settled.orders")
                && !a.iter().any(|(k, _)| k == "error.type")
        }
    };
    let operations = points(&metrics, "messaging.client.operation.duration");
    assert_eq!(count(&operations, settled("nak")), 1.0, "{operations:?}");
    assert_eq!(count(&operations, settled("ack")), 1.0, "{operations:?}");
    let published = |subject: &'static str, failed: bool| {
        move |a: &[(String, String)]| {
            has(a, "messaging.operation.name", "publish")
                && has(a, "messaging.destination.template", subject)
                && a.iter().any(|(k, _)| k == "error.type") == failed
        }
    };
    assert_eq!(
        count(&operations, published("settled.orders", false)),
        1.0,
        "{operations:?}"
    );
    assert_eq!(
        count(&operations, published("unstreamed.orders", true)),
        1.0,
        "{operations:?}"
    );
    assert_eq!(operations.len(), 4, "no other series: {operations:?}");

    // Settles send nothing: the sent messages are the publishes' alone, the
    // refused one under its error.type.
    let sent = points(&metrics, "messaging.client.sent.messages");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(count(&sent, published("settled.orders", false)), 1.0);
    assert_eq!(count(&sent, published("unstreamed.orders", true)), 1.0);

    // The failed run under its error.type, the other without; both
    // deliveries were consumed, whatever the handler made of them.
    let process = points(&metrics, "messaging.process.duration");
    let failed = |a: &[(String, String)]| has(a, "error.type", "std::io::error::Error");
    assert_eq!(count(&process, failed), 1.0, "{process:?}");
    assert_eq!(count(&process, |a| !failed(a)), 1.0, "{process:?}");
    let consumed = points(&metrics, "messaging.client.consumed.messages");
    assert_eq!(consumed.len(), 1, "{consumed:?}");
    assert_eq!(consumed[0].1, 2.0);
    assert!(!consumed[0].0.iter().any(|(k, _)| k == "error.type"));

    // One size per message consumed or published, never under an
    // error.type, and none for settles.
    let sizes = points(&metrics, "nats_trace.message.body.size");
    assert_eq!(
        count(&sizes, |a| has(a, "messaging.operation.name", "process")),
        2.0,
        "{sizes:?}"
    );
    assert_eq!(
        count(&sizes, published("settled.orders", false)),
        1.0,
        "{sizes:?}"
    );
    assert_eq!(
        count(&sizes, published("unstreamed.orders", false)),
        1.0,
        "{sizes:?}"
    );
    assert_eq!(sizes.len(), 3, "{sizes:?}");
}

mod bridged {
    use super::*;

    #[tracing::instrument(name = "charge card")]
    async fn charge(id: u32) {
        tokio::task::yield_now().await;
        tracing::info!(id, "charging");
    }

    #[nats_subscriber(subject = "bridged.orders")]
    async fn take(order: Order) {
        charge(order.id).await;
    }
}

#[tokio::test]
async fn tracing_spans_inside_a_handler_are_children_of_its_process_span() {
    let server = support::server();
    let capture = SpanCapture::new();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(capture.provider().tracer("tracing")));
    // This test's thread only: the runtime below runs on it (current-thread).
    let _guard = tracing::subscriber::set_default(subscriber);

    let running = support::start(&server, &capture, "integration::telemetry::bridged::").await;
    running
        .publisher()
        .publish("bridged.orders", &Order { id: 42 })
        .await
        .expect("publish");
    let spans = capture.wait_for_named("charge card", 1).await;
    running.stop().await.expect("clean stop");

    let process = named(&spans, "process bridged.orders");
    let charge = named(&spans, "charge card");
    assert_eq!(
        (process.len(), charge.len()),
        (1, 1),
        "{}",
        describe(&spans)
    );
    assert_eq!(
        charge[0].span_context.trace_id(),
        process[0].span_context.trace_id()
    );
    assert_eq!(charge[0].parent_span_id, process[0].span_context.span_id());
}

mod logged {
    use super::*;

    #[nats_subscriber(subject = "logged.orders")]
    async fn take(order: Order) {
        tracing::info!(id = order.id, "taking the order");
    }
}

#[tokio::test]
async fn the_default_logging_prints_the_process_spans_trace_id() {
    let server = support::server();
    let capture = SpanCapture::new();
    let (logs, _guard) = support::capture_logs();

    let running = support::start(&server, &capture, "integration::telemetry::logged::").await;
    running
        .publisher()
        .publish("logged.orders", &Order { id: 7 })
        .await
        .expect("publish");
    let spans = capture.wait_for_named("process logged.orders", 1).await;
    running.stop().await.expect("clean stop");

    let process = named(&spans, "process logged.orders")[0];
    support::assert_logged_in_span(&logs, "taking the order", process);
}

mod resilient {
    use super::*;

    #[nats_subscriber(subject = "resilient.echo")]
    async fn echo(body: String) -> String {
        body
    }
}

#[tokio::test]
async fn after_a_server_restart_the_runtime_reconnects_counts_it_and_keeps_serving() {
    let mut server = support::server();
    let capture = SpanCapture::new();
    let (meters, exporter) = meter();
    let running = support::builder(&server, &capture, "integration::telemetry::resilient::")
        .meter_provider(meters.clone())
        .start()
        .await
        .expect("runtime starts");

    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_again().expect("restart on the same port");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while running.connection_stats().reconnects == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = running.connection_stats();
    assert!(stats.disconnects >= 1 && stats.reconnects >= 1, "{stats:?}");

    let client = support::connect(&server).await;
    let mut reply = None;
    for _ in 0..50 {
        // The resubscription may trail the reconnect by a moment.
        if let Ok(message) = client.request("resilient.echo", "still here".into()).await {
            reply = Some(message);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = reply.expect("the handler answers after the restart");
    assert_eq!(reply.payload, bytes::Bytes::from_static(b"still here"));
    running.stop().await.expect("clean stop");

    meters.force_flush().expect("flush metrics");
    let metrics = exporter.get_finished_metrics().expect("metrics");
    let events = points(&metrics, "nats_trace.connection.events");
    assert!(
        events
            .iter()
            .any(|(a, n, _)| has(a, "nats_trace.connection.event", "disconnected") && *n >= 1.0),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(a, _, _)| has(a, "nats_trace.connection.event", "reconnected"))
    );
}
