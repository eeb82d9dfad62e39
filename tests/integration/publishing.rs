//! `#[nats_publisher]`, the `Publisher` API and request-reply, end to end.

use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt as _;

use nats_trace_runtime::RequestError;
use nats_trace_runtime::prelude::*;
use nats_trace_testing::SpanCapture;
use nats_trace_testing::spans::{attribute, describe, named, string_attribute};
use opentelemetry::Value;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_semantic_conventions::attribute as semconv;
use serde::{Deserialize, Serialize};

use crate::support;

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
struct Order {
    id: u32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Invoice {
    order: u32,
    cents: u64,
}

mod chain {
    use super::*;

    pub static SHIPPED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    #[nats_publisher(subject = "chain.created")]
    pub async fn create_order(id: u32) -> Result<Order, PublishError> {
        Ok(Order { id })
    }

    #[nats_subscriber(subject = "chain.created", queue = "billing")]
    #[nats_publisher(subject = "chain.billed")]
    async fn bill(order: Order) -> Result<Invoice, PublishError> {
        Ok(Invoice {
            order: order.id,
            cents: 100,
        })
    }

    #[nats_subscriber(subject = "chain.billed")]
    async fn ship(invoice: Invoice) {
        SHIPPED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(invoice.order);
    }
}

#[tokio::test]
async fn a_publisher_chain_is_one_trace_with_an_exact_parent_chain() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::publishing::chain::").await;

    let order = running
        .scope(chain::create_order(42))
        .await
        .expect("published");
    assert_eq!(order, Order { id: 42 });
    let spans = capture.wait_for_named("process chain.billed", 1).await;
    running.stop().await.expect("clean stop");
    assert_eq!(
        *chain::SHIPPED.lock().unwrap_or_else(|e| e.into_inner()),
        [42]
    );

    let one = |name: &str| {
        let found = named(&spans, name);
        assert_eq!(found.len(), 1, "one `{name}` in:\n{}", describe(&spans));
        found[0]
    };
    let created = one("publish chain.created");
    let billed = one("process chain.created");
    let forwarded = one("publish chain.billed");
    let shipped = one("process chain.billed");

    let trace = created.span_context.trace_id();
    for span in [created, billed, forwarded, shipped] {
        assert_eq!(span.span_context.trace_id(), trace, "{}", describe(&spans));
    }
    assert_eq!(created.parent_span_id, SpanId::INVALID);
    assert_eq!(billed.parent_span_id, created.span_context.span_id());
    assert_eq!(forwarded.parent_span_id, billed.span_context.span_id());
    assert_eq!(shipped.parent_span_id, forwarded.span_context.span_id());
    let kinds: Vec<_> = [created, billed, forwarded, shipped]
        .iter()
        .map(|s| s.span_kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            SpanKind::Producer,
            SpanKind::Consumer,
            SpanKind::Producer,
            SpanKind::Consumer
        ]
    );
    assert_eq!(
        string_attribute(forwarded, semconv::MESSAGING_OPERATION_NAME).as_deref(),
        Some("publish")
    );
    assert_eq!(
        string_attribute(forwarded, semconv::MESSAGING_DESTINATION_NAME).as_deref(),
        Some("chain.billed")
    );
}

mod pricing {
    use super::*;

    #[nats_subscriber(subject = "pricing.quote")]
    async fn quote(order: Order) -> Result<Invoice, std::io::Error> {
        match order.id {
            0 => Err(std::io::Error::other("order 0 has no price")),
            99 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(Invoice {
                    order: 99,
                    cents: 0,
                })
            }
            id => Ok(Invoice {
                order: id,
                cents: u64::from(id) * 10,
            }),
        }
    }
}

#[tokio::test]
async fn request_reply_is_traced_from_client_to_handler_with_typed_errors() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::publishing::pricing::").await;
    let publisher = running.publisher();
    let timeout = Duration::from_secs(5);

    let invoice: Invoice = publisher
        .request("pricing.quote", &Order { id: 4 }, timeout)
        .await
        .expect("a reply");
    assert_eq!(
        invoice,
        Invoice {
            order: 4,
            cents: 40
        }
    );

    let failed = publisher
        .request::<_, Invoice>("pricing.quote", &Order { id: 0 }, timeout)
        .await
        .expect_err("the handler failed");
    let RequestError::Service { code, message, .. } = &failed else {
        panic!("expected a service error, got {failed:?}");
    };
    assert_eq!((*code, message.as_str()), (500, "order 0 has no price"));

    let slow = publisher
        .request::<_, Invoice>(
            "pricing.quote",
            &Order { id: 99 },
            Duration::from_millis(100),
        )
        .await
        .expect_err("the handler is slower than the timeout");
    assert!(matches!(slow, RequestError::Timeout { .. }), "{slow:?}");

    let nobody = publisher
        .request::<_, Invoice>("pricing.nobody", &Order { id: 1 }, timeout)
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(nobody, RequestError::NoResponders { .. }),
        "{nobody:?}"
    );

    let spans = capture.wait_for_named("process pricing.quote", 3).await;
    running.stop().await.expect("clean stop");

    let requests = named(&spans, "request pricing.quote");
    assert_eq!(requests.len(), 3, "{}", describe(&spans));
    for request in &requests {
        assert_eq!(request.span_kind, SpanKind::Client);
        let process: Vec<_> = named(&spans, "process pricing.quote")
            .into_iter()
            .filter(|p| p.parent_span_id == request.span_context.span_id())
            .collect();
        assert_eq!(process.len(), 1, "the client span parents one process span");
        assert_eq!(
            process[0].span_context.trace_id(),
            request.span_context.trace_id()
        );
    }
    let error_types: Vec<_> = requests
        .iter()
        .map(|r| string_attribute(r, semconv::ERROR_TYPE))
        .collect();
    assert!(
        error_types.contains(&None),
        "the good request has no error.type"
    );
    assert!(error_types.contains(&Some("500".into())));
    assert!(error_types.contains(&Some("timeout".into())));
    let timed_out = requests
        .iter()
        .find(|r| string_attribute(r, semconv::ERROR_TYPE).as_deref() == Some("timeout"))
        .expect("the timed-out request span");
    assert!(matches!(timed_out.status, Status::Error { .. }));
    let nobody = named(&spans, "request pricing.nobody");
    assert_eq!(
        nobody
            .first()
            .and_then(|s| string_attribute(s, semconv::ERROR_TYPE))
            .as_deref(),
        Some("no_responders")
    );
}

mod batched {
    use super::*;

    /// (order id, span id of the traceparent the message carried)
    pub static SEEN: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

    #[nats_subscriber(subject = "batch.orders")]
    async fn take(order: Order, ctx: MessageContext) {
        let parent = ctx.header("traceparent").unwrap_or_default().to_string();
        let span_id = parent.split('-').nth(2).unwrap_or_default().to_string();
        SEEN.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((order.id, span_id));
    }
}

#[tokio::test]
async fn a_batch_has_a_create_span_per_message_and_one_linked_publish_span() {
    const COUNT: u32 = 100;
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::publishing::batched::").await;

    let orders: Vec<Order> = (0..COUNT).map(|id| Order { id }).collect();
    let report = running
        .publisher()
        .publish_batch("batch.orders", &orders)
        .await;
    assert_eq!(report.sent, COUNT as usize);
    assert!(report.is_complete(), "{:?}", report.failed);

    let spans = capture
        .wait_for_named("process batch.orders", COUNT as usize)
        .await;
    running.stop().await.expect("clean stop");

    let creates = named(&spans, "create batch.orders");
    assert_eq!(creates.len(), COUNT as usize, "{}", describe(&spans));
    assert!(creates.iter().all(|s| s.span_kind == SpanKind::Producer));
    let publish = named(&spans, "publish batch.orders");
    assert_eq!(publish.len(), 1);
    let publish = publish[0];
    assert_eq!(publish.span_kind, SpanKind::Client);
    assert_eq!(
        attribute(publish, semconv::MESSAGING_BATCH_MESSAGE_COUNT),
        Some(&Value::I64(100))
    );
    assert_eq!(
        attribute(publish, "nats_trace.batch.succeeded"),
        Some(&Value::I64(100))
    );
    assert_eq!(
        attribute(publish, "nats_trace.batch.failed"),
        Some(&Value::I64(0))
    );
    let linked: Vec<SpanId> = publish
        .links
        .iter()
        .map(|l| l.span_context.span_id())
        .collect();
    assert_eq!(linked.len(), COUNT as usize);
    for create in &creates {
        assert!(
            linked.contains(&create.span_context.span_id()),
            "every create span is linked"
        );
    }

    // Create spans end in item order: the i-th is order i's.
    let seen = batched::SEEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(seen.len(), COUNT as usize);
    let process = named(&spans, "process batch.orders");
    for (id, carried) in seen {
        let create = creates[id as usize];
        assert_eq!(
            carried,
            create.span_context.span_id().to_string(),
            "order {id}"
        );
        let children: Vec<_> = process
            .iter()
            .filter(|p| p.parent_span_id == create.span_context.span_id())
            .collect();
        assert_eq!(
            children.len(),
            1,
            "order {id}'s process span parents to its create span"
        );
    }
}

mod retried {
    use super::*;

    pub static RECEIVED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    #[nats_publisher(subject = "retried.orders", retries = 30)]
    pub async fn send(id: u32) -> Result<Order, PublishError> {
        Ok(Order { id })
    }

    #[nats_subscriber(subject = "retried.orders")]
    async fn take(order: Order) {
        RECEIVED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(order.id);
    }
}

#[tokio::test]
async fn a_publish_with_retries_outlasts_a_server_restart() {
    let mut server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::publishing::retried::").await;

    server.kill();
    let restart = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1500));
        server.start_again().expect("restart on the same port");
        server
    });
    let sent = running.scope(retried::send(7)).await;
    let _server = restart.await.expect("restart task");
    sent.expect("the publish succeeds after the restart");

    let spans = capture.wait_for_named("process retried.orders", 1).await;
    running.stop().await.expect("clean stop");
    let publish = named(&spans, "publish retried.orders");
    assert_eq!(publish.len(), 1, "{}", describe(&spans));
    let attempts = match attribute(publish[0], "nats_trace.publish.attempts") {
        Some(Value::I64(n)) => *n,
        other => panic!("attempts recorded on the span, got {other:?}"),
    };
    assert!(
        attempts >= 2,
        "the first attempt hit the stopped server: {attempts}"
    );
    let failed_attempts = publish[0]
        .events
        .iter()
        .filter(|e| e.name == "publish attempt failed")
        .count();
    assert_eq!(failed_attempts as i64, attempts - 1);
    assert_eq!(publish[0].status, Status::Unset);
    assert_eq!(
        *retried::RECEIVED.lock().unwrap_or_else(|e| e.into_inner()),
        [7]
    );
}

#[tokio::test]
async fn a_publish_span_is_a_child_of_the_callers_current_span() {
    let server = support::server();
    let capture = SpanCapture::new();
    let client = support::connect(&server).await;
    let publisher = Publisher::with_tracer_provider(client, capture.provider());

    let tracer = capture.provider().tracer("caller");
    let parent = tracer.start("caller work");
    let cx = opentelemetry::Context::current_with_span(parent);
    publisher
        .publish("caller.events", &Order { id: 1 })
        .with_context(cx.clone())
        .await
        .expect("publish");
    cx.span().end();
    let spans = capture.spans();
    let publish = named(&spans, "publish caller.events");
    assert_eq!(publish.len(), 1, "{}", describe(&spans));
    assert_eq!(
        publish[0].parent_span_id,
        cx.span().span_context().span_id()
    );
}

mod unsampled {
    use super::*;

    use opentelemetry::trace::SpanContext;

    /// The span context current in each run of `forward`.
    pub static CURRENT: Mutex<Vec<SpanContext>> = Mutex::new(Vec::new());

    #[nats_subscriber(subject = "unsampled.in")]
    #[nats_publisher(subject = "unsampled.out")]
    async fn forward(order: Order) -> Result<Order, PublishError> {
        let current = opentelemetry::Context::current()
            .span()
            .span_context()
            .clone();
        CURRENT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(current);
        Ok(order)
    }
}

/// The `traceparent` of a message, parsed by the SDK's propagator.
fn traceparent_of(message: &async_nats::Message) -> opentelemetry::trace::SpanContext {
    use opentelemetry::propagation::TextMapPropagator as _;
    let headers = message.headers.as_ref().expect("headers");
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&nats_trace_runtime::propagation::HeaderExtractor(headers))
        .span()
        .span_context()
        .clone()
}

#[tokio::test]
async fn an_unsampled_trace_goes_through_a_handler_with_new_span_ids_and_no_spans() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::publishing::unsampled::").await;
    let client = support::connect(&server).await;
    let mut out = client.subscribe("unsampled.out").await.expect("subscribe");
    client.flush().await.expect("flush");

    // The capture samples whatever its parent sampled: the first message's
    // trace is not sampled, the second one's is.
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let sampled = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01";
    for (id, traceparent) in [(1, unsampled), (2, sampled)] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", traceparent);
        client
            .publish_with_headers(
                "unsampled.in",
                headers,
                serde_json::to_vec(&Order { id }).expect("encode").into(),
            )
            .await
            .expect("publish");
        let forwarded = tokio::time::timeout(support::WAIT, out.next())
            .await
            .expect("forwarded in time")
            .expect("subscription open");
        let order: Order = serde_json::from_slice(&forwarded.payload).expect("decode");
        assert_eq!(order, Order { id });

        let incoming = traceparent.split('-').collect::<Vec<_>>();
        let current = unsampled::CURRENT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .expect("the handler ran");
        let carried = traceparent_of(&forwarded);
        // The handler's span and the forwarded message's span are new spans
        // of the incoming trace, sampled as it was.
        for span in [&current, &carried] {
            assert_eq!(span.trace_id().to_string(), incoming[1]);
            assert!(span.is_valid());
            assert_ne!(span.span_id().to_string(), incoming[2]);
            assert_eq!(span.is_sampled(), id == 2, "{span:?}");
        }
        assert!(!current.is_remote(), "the handler's span is local");
        assert_ne!(
            carried.span_id(),
            current.span_id(),
            "a publish span of its own"
        );
    }

    capture.wait_for_named("process unsampled.in", 1).await;
    running.stop().await.expect("clean stop");
    let spans = capture.spans();
    let mut names: Vec<_> = spans.iter().map(|s| s.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["process unsampled.in", "publish unsampled.out"],
        "only the sampled trace is recorded:\n{}",
        describe(&spans)
    );
    for span in &spans {
        assert_eq!(
            span.span_context.trace_id().to_string(),
            "1af7651916cd43dd8448eb211c80319c"
        );
    }
}

mod persisted {
    use super::*;

    #[nats_publisher(subject = "persisted.orders", jetstream, message_id = |o: &Order| o.id)]
    pub async fn persist(id: u32) -> Result<Order, PublishError> {
        Ok(Order { id })
    }
}

#[tokio::test]
async fn jetstream_publishes_carry_the_stream_and_sequence_and_deduplicate() {
    let server = support::server();
    let capture = SpanCapture::new();
    let client = support::connect(&server).await;
    let jetstream = async_nats::jetstream::new(client.clone());
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "PERSISTED".into(),
            subjects: vec!["persisted.>".into()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
    // The macro needs a running runtime; this one serves a single handler of
    // another test module, which it never receives messages for.
    let running = support::start(&server, &capture, "integration::publishing::pricing::").await;

    let publisher = running.publisher();
    let ack = publisher
        .publish_jetstream("persisted.direct", &Order { id: 1 })
        .await
        .expect("acknowledged");
    assert_eq!((ack.stream.as_str(), ack.sequence), ("PERSISTED", 1));

    running
        .scope(persisted::persist(7))
        .await
        .expect("first publish");
    running
        .scope(persisted::persist(7))
        .await
        .expect("duplicate is acknowledged too");
    running.stop().await.expect("clean stop");

    let mut stream = jetstream.get_stream("PERSISTED").await.expect("stream");
    let info = stream.info().await.expect("stream info");
    assert_eq!(
        info.state.messages, 2,
        "the duplicate Nats-Msg-Id was dropped"
    );

    let spans = capture.spans();
    let direct = named(&spans, "publish persisted.direct");
    assert_eq!(direct.len(), 1, "{}", describe(&spans));
    assert_eq!(
        string_attribute(direct[0], "messaging.nats.stream").as_deref(),
        Some("PERSISTED")
    );
    assert_eq!(
        attribute(direct[0], "messaging.nats.stream_sequence"),
        Some(&Value::I64(1))
    );
    let persisted = named(&spans, "publish persisted.orders");
    assert_eq!(persisted.len(), 2);
    for span in persisted {
        assert_eq!(span.span_kind, SpanKind::Producer);
        assert_eq!(
            string_attribute(span, semconv::MESSAGING_MESSAGE_ID).as_deref(),
            Some("7")
        );
        assert_eq!(
            attribute(span, "messaging.nats.stream_sequence"),
            Some(&Value::I64(2))
        );
    }
}
