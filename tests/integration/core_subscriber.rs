//! `#[nats_subscriber]` on core NATS: spans, queue groups, request-reply and
//! bad input.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use nats_trace_runtime::prelude::*;
use nats_trace_testing::SpanCapture;
use nats_trace_testing::spans::{describe, named, string_attribute};
use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry_semantic_conventions::attribute as semconv;
use serde::{Deserialize, Serialize};

use crate::support::{self, WAIT, eventually};

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Quote {
    id: u32,
    cents: u64,
}

fn json(order: &Order) -> Bytes {
    serde_json::to_vec(order).expect("encode").into()
}

mod traced {
    use super::*;

    #[nats_subscriber(subject = "orders.*", queue = "billing")]
    async fn bill(order: Order, ctx: MessageContext) {
        assert_eq!(ctx.subject(), format!("orders.{}", order.id));
    }
}

#[tokio::test]
async fn process_span_continues_the_publishers_trace() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::core_subscriber::traced::").await;
    let client = support::connect(&server).await;

    let (publish_cx, headers) = support::traced_headers(&capture, "publish orders.created");
    client
        .publish_with_headers("orders.7", headers, json(&Order { id: 7 }))
        .await
        .expect("publish");
    let spans = capture.wait_for_named("process orders.*", 1).await;
    running.stop().await.expect("clean stop");

    let process = named(&spans, "process orders.*");
    assert_eq!(process.len(), 1, "{}", describe(&spans));
    let process = process[0];
    let publisher = publish_cx.span().span_context().clone();
    assert_eq!(process.span_context.trace_id(), publisher.trace_id());
    assert_eq!(process.parent_span_id, publisher.span_id());
    assert!(
        process.parent_span_is_remote,
        "the parent came through headers"
    );
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(process.status, Status::Unset);

    let attr = |key| string_attribute(process, key);
    assert_eq!(attr(semconv::MESSAGING_SYSTEM).as_deref(), Some("nats"));
    assert_eq!(
        attr(semconv::MESSAGING_OPERATION_NAME).as_deref(),
        Some("process")
    );
    assert_eq!(
        attr(semconv::MESSAGING_OPERATION_TYPE).as_deref(),
        Some("process")
    );
    assert_eq!(
        attr(semconv::MESSAGING_DESTINATION_NAME).as_deref(),
        Some("orders.7")
    );
    assert_eq!(
        attr(semconv::MESSAGING_DESTINATION_TEMPLATE).as_deref(),
        Some("orders.*")
    );
    assert_eq!(
        attr(semconv::MESSAGING_CONSUMER_GROUP_NAME).as_deref(),
        Some("billing")
    );
    assert_eq!(
        attr(semconv::MESSAGING_MESSAGE_BODY_SIZE).as_deref(),
        Some("8")
    );
    assert_eq!(attr(semconv::SERVER_ADDRESS).as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(semconv::SERVER_PORT), Some(server.port().to_string()));
    assert_eq!(attr(semconv::ERROR_TYPE), None);
}

mod grouped {
    use super::*;

    pub static HANDLED: Mutex<Option<HashMap<u32, u32>>> = Mutex::new(None);

    #[nats_subscriber(subject = "work.items", queue = "workers")]
    async fn work(order: Order) {
        let mut handled = HANDLED.lock().unwrap_or_else(|e| e.into_inner());
        *handled
            .get_or_insert_with(HashMap::new)
            .entry(order.id)
            .or_default() += 1;
    }
}

#[tokio::test]
async fn two_runtimes_in_one_queue_group_handle_each_message_once() {
    const COUNT: u32 = 200;
    let server = support::server();
    let (first_capture, second_capture) = (SpanCapture::new(), SpanCapture::new());
    let prefix = "integration::core_subscriber::grouped::";
    let first = support::start(&server, &first_capture, prefix).await;
    let second = support::start(&server, &second_capture, prefix).await;
    let client = support::connect(&server).await;

    for id in 0..COUNT {
        client
            .publish("work.items", json(&Order { id }))
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let deadline = tokio::time::Instant::now() + WAIT;
    let total = || first_capture.spans().len() + second_capture.spans().len();
    while total() < COUNT as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Anything handled twice would arrive late; give it the chance to.
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.stop().await.expect("first stops");
    second.stop().await.expect("second stops");

    let handled = grouped::HANDLED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    assert_eq!(handled.len(), COUNT as usize, "every message handled");
    assert!(
        handled.values().all(|&n| n == 1),
        "each exactly once: {handled:?}"
    );
    let (a, b) = (first_capture.spans().len(), second_capture.spans().len());
    assert_eq!(a + b, COUNT as usize);
    assert!(a > 0 && b > 0, "the group shares the work: {a} + {b}");
}

mod request_reply {
    use super::*;

    #[nats_subscriber(subject = "prices.quote")]
    async fn quote(order: Order) -> Result<Quote, std::io::Error> {
        if order.id == 0 {
            return Err(std::io::Error::other("order 0 cannot be quoted"));
        }
        Ok(Quote {
            id: order.id,
            cents: u64::from(order.id) * 100,
        })
    }
}

#[tokio::test]
async fn request_gets_the_reply_with_the_process_span_in_its_headers() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(
        &server,
        &capture,
        "integration::core_subscriber::request_reply::",
    )
    .await;
    let client = support::connect(&server).await;

    let reply = client
        .request("prices.quote", json(&Order { id: 3 }))
        .await
        .expect("reply");
    let quote: Quote = serde_json::from_slice(&reply.payload).expect("reply is a Quote");
    assert_eq!(quote, Quote { id: 3, cents: 300 });
    let spans = capture.wait_for_named("process prices.quote", 1).await;
    let process = named(&spans, "process prices.quote")[0];
    let traceparent = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.as_str().to_string())
        .expect("the reply carries traceparent");
    let expected = format!(
        "00-{}-{}-01",
        process.span_context.trace_id(),
        process.span_context.span_id()
    );
    assert_eq!(traceparent, expected);
    assert_eq!(process.status, Status::Unset);

    let failed = client
        .request("prices.quote", json(&Order { id: 0 }))
        .await
        .expect("error reply");
    let headers = failed.headers.expect("error headers");
    assert_eq!(
        headers.get("Nats-Service-Error-Code").map(|v| v.as_str()),
        Some("500")
    );
    assert_eq!(
        headers.get("Nats-Service-Error").map(|v| v.as_str()),
        Some("order 0 cannot be quoted")
    );
    assert!(failed.payload.is_empty());
    let spans = capture.wait_for_named("process prices.quote", 2).await;
    running.stop().await.expect("clean stop");
    let errored: Vec<_> = named(&spans, "process prices.quote")
        .into_iter()
        .filter(|span| matches!(span.status, Status::Error { .. }))
        .collect();
    assert_eq!(errored.len(), 1, "{}", describe(&spans));
    assert_eq!(
        string_attribute(errored[0], semconv::ERROR_TYPE).as_deref(),
        Some("std::io::error::Error")
    );
}

mod malformed {
    use super::*;

    #[nats_subscriber(subject = "malformed.orders")]
    async fn take(order: Order) -> Quote {
        Quote {
            id: order.id,
            cents: 1,
        }
    }
}

#[tokio::test]
async fn malformed_json_fails_the_message_and_the_next_one_is_handled() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(
        &server,
        &capture,
        "integration::core_subscriber::malformed::",
    )
    .await;
    let client = support::connect(&server).await;

    let bad = client
        .request(
            "malformed.orders",
            Bytes::from_static(b"{\"id\": \"not a number\"}"),
        )
        .await
        .expect("an error reply, not a timeout");
    let headers = bad.headers.expect("error headers");
    assert_eq!(
        headers.get("Nats-Service-Error-Code").map(|v| v.as_str()),
        Some("400")
    );
    let message = headers
        .get("Nats-Service-Error")
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    assert_eq!(
        message, "the payload does not match the handler's payload type (line 1, column 21)",
        "says where, never quotes the payload"
    );

    let good = client
        .request("malformed.orders", json(&Order { id: 5 }))
        .await
        .expect("reply");
    let quote: Quote = serde_json::from_slice(&good.payload).expect("a Quote");
    assert_eq!(quote.id, 5);

    let spans = capture.wait_for_named("process malformed.orders", 2).await;
    running.stop().await.expect("clean stop");
    let process = named(&spans, "process malformed.orders");
    assert_eq!(process.len(), 2, "{}", describe(&spans));
    let failed: Vec<_> = process
        .iter()
        .filter(|s| matches!(s.status, Status::Error { .. }))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        string_attribute(failed[0], semconv::ERROR_TYPE).as_deref(),
        Some("serde_json::error::Error")
    );
}

mod garbage_parent {
    use super::*;

    #[nats_subscriber(subject = "garbage.parent")]
    async fn take(body: Bytes) -> Bytes {
        body
    }
}

#[tokio::test]
async fn garbage_traceparent_starts_a_new_root_and_the_message_is_handled() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(
        &server,
        &capture,
        "integration::core_subscriber::garbage_parent::",
    )
    .await;
    let client = support::connect(&server).await;

    let mut headers = HeaderMap::new();
    headers.insert("traceparent", "00-this-is-not-a-trace-01");
    headers.insert("tracestate", "\u{1}\u{2}==,,");
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("subscribe");
    client
        .publish_with_reply_and_headers(
            "garbage.parent",
            inbox,
            headers,
            Bytes::from_static(b"\xffraw"),
        )
        .await
        .expect("publish");
    let reply = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(
        reply.payload,
        Bytes::from_static(b"\xffraw"),
        "raw bytes come back as-is"
    );

    let spans = capture.wait_for_named("process garbage.parent", 1).await;
    running.stop().await.expect("clean stop");
    let process = named(&spans, "process garbage.parent")[0];
    assert_eq!(
        process.parent_span_id,
        opentelemetry::trace::SpanId::INVALID,
        "a new root"
    );
    assert!(process.span_context.is_valid());
    assert_eq!(process.status, Status::Unset);
}

mod panicking {
    use super::*;

    #[nats_subscriber(subject = "panicky")]
    async fn explode(order: Order) -> u32 {
        if order.id == 13 {
            panic!("unlucky order {}", order.id);
        }
        order.id
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_its_message_and_the_runtime_keeps_serving() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(
        &server,
        &capture,
        "integration::core_subscriber::panicking::",
    )
    .await;
    let client = support::connect(&server).await;

    let failed = client
        .request("panicky", json(&Order { id: 13 }))
        .await
        .expect("error reply");
    let headers = failed.headers.expect("error headers");
    assert_eq!(
        headers.get("Nats-Service-Error-Code").map(|v| v.as_str()),
        Some("500")
    );
    assert_eq!(
        headers.get("Nats-Service-Error").map(|v| v.as_str()),
        Some("handler panicked: unlucky order 13")
    );
    for id in [1, 2] {
        let reply = client
            .request("panicky", json(&Order { id }))
            .await
            .expect("still serving");
        assert_eq!(reply.payload, Bytes::from(id.to_string()));
    }

    let spans = capture.wait_for_named("process panicky", 3).await;
    running.stop().await.expect("clean stop");
    let process = named(&spans, "process panicky");
    assert_eq!(process.len(), 3, "{}", describe(&spans));
    let panicked: Vec<_> = process
        .iter()
        .filter(|s| matches!(s.status, Status::Error { .. }))
        .collect();
    assert_eq!(panicked.len(), 1);
    assert_eq!(
        panicked[0]
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == semconv::ERROR_TYPE)
            .map(|kv| &kv.value),
        Some(&Value::from("panic"))
    );
}

mod published {
    use super::*;

    #[nats_subscriber(subject = "published.orders")]
    async fn take(_order: Order) {}
}

#[tokio::test]
async fn publisher_span_is_the_parent_of_the_process_span() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(
        &server,
        &capture,
        "integration::core_subscriber::published::",
    )
    .await;

    running
        .publisher()
        .publish("published.orders", &Order { id: 1 })
        .await
        .expect("publish");
    let spans = capture.wait_for_named("process published.orders", 1).await;
    running.stop().await.expect("clean stop");

    let publish = named(&spans, "publish published.orders");
    let process = named(&spans, "process published.orders");
    assert_eq!(
        (publish.len(), process.len()),
        (1, 1),
        "{}",
        describe(&spans)
    );
    let (publish, process) = (publish[0], process[0]);
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(
        publish.parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
    assert_eq!(
        process.span_context.trace_id(),
        publish.span_context.trace_id()
    );
    assert_eq!(process.parent_span_id, publish.span_context.span_id());
    assert_eq!(
        string_attribute(publish, semconv::MESSAGING_OPERATION_TYPE).as_deref(),
        Some("send")
    );
    assert_eq!(
        string_attribute(publish, semconv::MESSAGING_DESTINATION_NAME).as_deref(),
        Some("published.orders")
    );
}

mod nested {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};

    pub static PROVIDER: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> =
        std::sync::OnceLock::new();

    #[nats_subscriber(subject = "nested.work")]
    async fn work(_body: Bytes) {
        // Across an await, the process span must still be the current context.
        tokio::time::sleep(Duration::from_millis(5)).await;
        if let Some(provider) = PROVIDER.get() {
            let mut span = provider.tracer("user-code").start("user work");
            tokio::task::yield_now().await;
            span.end();
        }
    }
}

#[tokio::test]
async fn spans_the_handler_starts_are_children_of_the_process_span() {
    let server = support::server();
    let capture = SpanCapture::new();
    nested::PROVIDER.set(capture.provider()).expect("set once");
    let running = support::start(&server, &capture, "integration::core_subscriber::nested::").await;
    let client = support::connect(&server).await;

    client
        .publish("nested.work", Bytes::new())
        .await
        .expect("publish");
    let spans = capture.wait_for_named("process nested.work", 1).await;
    running.stop().await.expect("clean stop");

    let process = named(&spans, "process nested.work");
    let user = named(&spans, "user work");
    assert_eq!((process.len(), user.len()), (1, 1), "{}", describe(&spans));
    assert_eq!(
        user[0].span_context.trace_id(),
        process[0].span_context.trace_id()
    );
    assert_eq!(user[0].parent_span_id, process[0].span_context.span_id());
}

mod audited {
    use super::*;

    pub static SEEN: Mutex<u32> = Mutex::new(0);

    #[nats_subscriber(subject = "audited.events")]
    async fn audit(_body: Bytes) {
        *SEEN.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }
}

#[tokio::test]
async fn a_unit_handler_on_a_stream_subject_never_answers_jetstream_publish_acks() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, "integration::core_subscriber::audited::")
        .stream(nats_trace_runtime::jetstream::StreamSpec {
            name: "AUDITED",
            subjects: &["audited.>"],
            ..nats_trace_runtime::jetstream::StreamSpec::DEFAULT
        })
        .start()
        .await
        .expect("runtime starts");
    let client = support::connect(&server).await;
    let jetstream = async_nats::jetstream::new(client);
    for id in 0..200u32 {
        let ack = jetstream
            .publish("audited.events", json(&Order { id }))
            .await
            .expect("sent")
            .await
            .expect("the stream's ack, not the handler's reply");
        assert_eq!(
            (ack.stream.as_str(), ack.sequence),
            ("AUDITED", u64::from(id) + 1)
        );
    }
    capture.wait_for_named("process audited.events", 200).await;
    running.stop().await.expect("clean stop");
    assert_eq!(
        *audited::SEEN.lock().unwrap_or_else(|e| e.into_inner()),
        200
    );
}

mod addressed {
    use super::*;

    #[nats_subscriber(subject = "addressed.here")]
    async fn here(_body: Bytes) {}
}

#[tokio::test]
async fn server_address_is_the_host_of_the_url() {
    let server = support::server();
    let capture = SpanCapture::new();
    let url = format!("nats://localhost:{}", server.port());
    let running = support::builder(
        &server,
        &capture,
        "integration::core_subscriber::addressed::",
    )
    .url(url)
    .start()
    .await
    .expect("runtime starts");
    let client = support::connect(&server).await;
    client
        .publish("addressed.here", Bytes::new())
        .await
        .expect("publish");
    let spans = capture.wait_for_named("process addressed.here", 1).await;
    running.stop().await.expect("clean stop");
    let process = named(&spans, "process addressed.here")[0];
    assert_eq!(
        string_attribute(process, semconv::SERVER_ADDRESS).as_deref(),
        Some("localhost"),
        "the server itself reports 127.0.0.1; the URL names localhost"
    );
}

mod gated {
    use super::*;

    pub static GATE: support::Gate = support::Gate::new();

    #[nats_subscriber(subject = "gated.orders", concurrency = 3)]
    async fn take(order: Order) {
        GATE.hold(order.id).await;
    }
}

/// A handler's runs overlap up to its concurrency and never beyond, and
/// held runs finish while the handler waits for room for the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_runs_as_many_messages_at_once_as_its_concurrency_and_no_more() {
    const COUNT: u32 = 20;
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::core_subscriber::gated::").await;
    let client = support::connect(&server).await;
    for id in 0..COUNT {
        let body = serde_json::to_vec(&Order { id }).expect("encode");
        client
            .publish("gated.orders", body.into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");

    let full = eventually(WAIT, || gated::GATE.running().0 == 3).await;
    assert!(full, "three handlers run: {:?}", gated::GATE.running());
    // All of them reached the server before this wait began, and they come
    // to the runtime's connection at once; none may start while three run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gated::GATE.running(),
        (3, 3),
        "no fourth run starts while three are held"
    );
    assert!(gated::GATE.finished().is_empty());

    gated::GATE.open(COUNT as usize);
    let all = eventually(WAIT, || gated::GATE.finished().len() == COUNT as usize).await;
    let done = gated::GATE.finished().len();
    running.stop().await.expect("stops cleanly");
    assert!(all, "{done} of {COUNT} finished before stopping");
    let mut finished = gated::GATE.finished();
    finished.sort_unstable();
    assert_eq!(
        finished,
        (0..COUNT).collect::<Vec<_>>(),
        "each message once"
    );
    assert_eq!(gated::GATE.running().1, 3, "at most three ran at once");
    let processed = named(&capture.spans(), "process gated.orders").len();
    assert_eq!(processed, COUNT as usize, "a process span per message");
}
