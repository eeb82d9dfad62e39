//! Tracing written by hand in the style the project started from, the
//! style the macros replace: per message, the global tracer looked up, span
//! names built with `format!`, the attributes as owned strings, a fresh
//! header map, and the SDK's `TraceContextPropagator` installed as the
//! global propagator. Measured in the same run as the traced pipeline, it
//! shows how the runtime compares with it.

use async_nats::HeaderMap;
use futures_util::StreamExt as _;
use nats_trace_runtime::telemetry::accounting::SpanReport;
use nats_trace_testing::NatsServer;
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Sampler;

use crate::{Measure, Payload, Stalled, arrived, closed_loop, connect, provider};

/// The subject of this variant.
const SUBJECT: &str = "bench.by_hand";

/// Writes a header into an async-nats header map, as a hand-written
/// service defines it.
struct NatsInjector<'a>(&'a mut HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

/// Reads a header from an async-nats header map.
struct NatsExtractor<'a>(&'a HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// The attributes a hand-written span carries: the runtime's, built per
/// message as owned strings.
fn attributes(operation: &str, subject: &str, body_size: usize, port: u16) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "nats".to_string()),
        KeyValue::new("messaging.operation.name", operation.to_string()),
        KeyValue::new("messaging.operation.type", operation.to_string()),
        KeyValue::new("messaging.destination.name", subject.to_string()),
        KeyValue::new("messaging.destination.template", subject.to_string()),
        KeyValue::new("messaging.message.body.size", body_size as i64),
        KeyValue::new("server.address", "127.0.0.1".to_string()),
        KeyValue::new("server.port", i64::from(port)),
    ]
}

/// A hand-traced publisher and subscriber, with `sampler` deciding (a
/// parent-based one with an unsampled root gives propagation only).
/// Returns the measure and the report of the spans it ended.
pub(crate) async fn run(
    server: &NatsServer,
    sampler: Sampler,
    count: u64,
    size: usize,
) -> Result<(Measure, SpanReport), Stalled> {
    let (provider, counts) = provider(sampler);
    global::set_tracer_provider(provider.clone());
    global::set_text_map_propagator(TraceContextPropagator::new());
    let port = server.port();

    let publisher = connect(server).await;
    let subscriber = connect(server).await;
    let mut subscription = subscriber.subscribe(SUBJECT).await.expect("subscribe");
    subscriber.flush().await.expect("flush");
    let consumer = tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let empty = HeaderMap::new();
            let headers = message.headers.as_ref().unwrap_or(&empty);
            let parent = global::get_text_map_propagator(|propagator| {
                propagator.extract(&NatsExtractor(headers))
            });
            let tracer = global::tracer("bench-by-hand");
            let mut span = tracer
                .span_builder(format!("process {}", message.subject))
                .with_kind(SpanKind::Consumer)
                .with_attributes(attributes(
                    "process",
                    &message.subject,
                    message.payload.len(),
                    port,
                ))
                .start_with_context(&tracer, &parent);
            let payload: Payload = serde_json::from_slice(&message.payload).expect("json");
            std::hint::black_box(payload.id);
            span.end();
            arrived();
        }
    });
    let measure = closed_loop(count, size, |payload| {
        let publisher = publisher.clone();
        async move {
            let body = serde_json::to_vec(&payload).expect("json");
            let tracer = global::tracer("bench-by-hand");
            let span = tracer
                .span_builder(format!("publish {SUBJECT}"))
                .with_kind(SpanKind::Producer)
                .with_attributes(attributes("publish", SUBJECT, body.len(), port))
                .start(&tracer);
            let cx = Context::current_with_span(span);
            let mut headers = HeaderMap::new();
            global::get_text_map_propagator(|propagator| {
                propagator.inject_context(&cx, &mut NatsInjector(&mut headers));
            });
            publisher
                .publish_with_headers(SUBJECT, headers, body.into())
                .await
                .expect("publish");
            cx.span().end();
        }
    })
    .await;
    consumer.abort();
    // What the runtime variants find: no provider of this variant's, and the
    // propagator a runtime installs when the application installed none.
    global::set_tracer_provider(opentelemetry::trace::noop::NoopTracerProvider::new());
    global::set_text_map_propagator(nats_trace_runtime::propagation::default_propagator());
    let _ = provider.shutdown();
    Ok((measure?, counts.report()))
}
