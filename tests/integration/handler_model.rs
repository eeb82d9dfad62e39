//! The handler model against a real server: state per runtime, extractors
//! and their rejections, codecs, reply headers, error codes and JetStream
//! dispositions chosen by the error, and the failure log line.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use nats_trace_runtime::codec::{MsgPackCodec, ProtobufCodec};
use nats_trace_runtime::jetstream::{StreamSpec, dead_letter_headers};
use nats_trace_runtime::prelude::*;
use nats_trace_runtime::{Error, RequestError};
use nats_trace_testing::SpanCapture;
use nats_trace_testing::spans::{attribute, describe, named, string_attribute};
use opentelemetry::Value;
use opentelemetry::trace::Status;
use opentelemetry_semantic_conventions::attribute as semconv;
use serde::{Deserialize, Serialize};

use crate::support::{self, WAIT};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The `Nats-Service-Error-Code` and a header of a raw reply.
fn reply_header<'a>(reply: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    reply.headers.as_ref()?.get(name).map(|v| v.as_str())
}

fn int(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::I64(n)) => Some(*n),
        _ => None,
    }
}

mod stateful {
    use super::*;

    #[derive(Clone)]
    pub struct Greeting(pub &'static str);

    #[nats_subscriber(subject = "state.greet")]
    async fn greet(name: String, State(Greeting(greeting)): State<Greeting>) -> String {
        format!("{greeting} {name}")
    }
}

#[tokio::test]
async fn two_runtimes_serve_the_same_handler_each_with_its_own_state() {
    let (server_a, server_b) = (support::server(), support::server());
    let capture = SpanCapture::new();
    let prefix = "integration::handler_model::stateful::";
    let running_a = support::builder(&server_a, &capture, prefix)
        .state(stateful::Greeting("hello"))
        .start()
        .await
        .expect("runtime A starts");
    let running_b = support::builder(&server_b, &capture, prefix)
        .state(stateful::Greeting("bonjour"))
        .start()
        .await
        .expect("runtime B starts");

    let (client_a, client_b) = (
        support::connect(&server_a).await,
        support::connect(&server_b).await,
    );
    let mut replies = Vec::new();
    for (client, name) in [
        (&client_a, "ada"),
        (&client_b, "grace"),
        (&client_a, "alan"),
    ] {
        let reply = client
            .request("state.greet", Bytes::from(name))
            .await
            .expect("a reply");
        replies.push(String::from_utf8(reply.payload.to_vec()).expect("text"));
    }
    running_a.stop().await.expect("clean stop");
    running_b.stop().await.expect("clean stop");

    assert_eq!(replies, ["hello ada", "bonjour grace", "hello alan"]);
}

#[tokio::test]
async fn a_handler_whose_state_was_not_given_fails_start_naming_it_and_the_type() {
    let server = support::server();
    let capture = SpanCapture::new();
    let error = support::builder(&server, &capture, "integration::handler_model::stateful::")
        .start()
        .await
        .expect_err("the state is missing");

    assert!(matches!(error, Error::MissingState { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("integration::handler_model::stateful::greet")
            && message.contains("State<integration::handler_model::stateful::Greeting>")
            && message.contains(".state("),
        "{message}"
    );
    // Debug is the same sentence, as `main` prints it.
    assert_eq!(format!("{error:?}"), message);
}

mod codecs {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Lookup {
        #[prost(string, tag = "1")]
        pub sku: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stock {
        #[prost(string, tag = "1")]
        pub sku: String,
        #[prost(uint32, tag = "2")]
        pub count: u32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Order {
        pub id: u32,
        pub lines: Vec<String>,
    }

    #[nats_subscriber(subject = "codec.stock")]
    async fn stock(Protobuf(lookup): Protobuf<Lookup>) -> Protobuf<Stock> {
        let count = lookup.sku.len() as u32;
        Protobuf(Stock {
            sku: lookup.sku,
            count,
        })
    }

    /// `Vec<u8>` is `Deserialize` too, but raw: never decoded as JSON.
    #[nats_subscriber(subject = "codec.raw")]
    async fn raw(body: Vec<u8>) -> Vec<u8> {
        body.into_iter().rev().collect()
    }

    #[nats_subscriber(subject = "codec.order")]
    async fn order(MsgPack(mut order): MsgPack<Order>) -> MsgPack<Order> {
        order.id += 1;
        MsgPack(order)
    }
}

#[tokio::test]
async fn protobuf_and_msgpack_round_trip_and_an_undecodable_body_is_a_400() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::handler_model::codecs::").await;
    let publisher = running.publisher();

    let lookup = codecs::Lookup { sku: "A-17".into() };
    let stock: codecs::Stock = publisher
        .request_with::<ProtobufCodec, _, _>("codec.stock", &lookup, TIMEOUT)
        .await
        .expect("a protobuf reply");
    let order = codecs::Order {
        id: 7,
        lines: vec!["tea".into()],
    };
    let next: codecs::Order = publisher
        .request_with::<MsgPackCodec, _, _>("codec.order", &order, TIMEOUT)
        .await
        .expect("a MessagePack reply");
    // JSON is not MessagePack, and 0xff is no protobuf field.
    let bad_msgpack = publisher
        .request_bytes(
            "codec.order",
            Default::default(),
            Bytes::from_static(br#"{"id":7}"#),
            TIMEOUT,
        )
        .await
        .expect_err("a decode failure");
    let bad_protobuf = publisher
        .request_bytes(
            "codec.stock",
            Default::default(),
            Bytes::from_static(b"\xff\xff\xff\xff"),
            TIMEOUT,
        )
        .await
        .expect_err("a decode failure");
    let raw = publisher
        .request_bytes(
            "codec.raw",
            Default::default(),
            Bytes::from_static(b"\x93\x01\xff"),
            TIMEOUT,
        )
        .await
        .expect("raw bytes are no JSON, and need not be");
    let spans = capture.wait_for_named("process codec.stock", 2).await;
    let spans_order = capture.wait_for_named("process codec.order", 2).await;
    running.stop().await.expect("clean stop");

    assert_eq!((stock.sku.as_str(), stock.count), ("A-17", 4));
    assert_eq!(raw.payload, Bytes::from_static(b"\xff\x01\x93"));
    assert_eq!(
        next,
        codecs::Order {
            id: 8,
            ..order.clone()
        }
    );
    for (error, codec_error) in [
        (bad_msgpack, "rmp_serde::decode::Error"),
        (bad_protobuf, "prost::error::DecodeError"),
    ] {
        match error {
            RequestError::Service { code, .. } => assert_eq!(code, 400, "{codec_error}"),
            other => panic!("not a service error: {other}"),
        }
        let failed: Vec<_> = spans
            .iter()
            .chain(&spans_order)
            .filter(|s| string_attribute(s, semconv::ERROR_TYPE).as_deref() == Some(codec_error))
            .collect();
        assert!(
            !failed.is_empty(),
            "no span with error.type {codec_error}: {}",
            describe(&spans)
        );
        assert!(matches!(failed[0].status, Status::Error { .. }));
    }
}

mod coded {
    use super::*;

    #[derive(Debug)]
    pub enum InventoryError {
        NotFound(String),
    }

    impl IntoFailure for InventoryError {
        fn into_failure(self) -> Failure {
            match self {
                InventoryError::NotFound(sku) => Failure::service(404, format!("no item {sku}"))
                    .with_header("Inventory-Sku", &sku)
                    .reject(),
            }
        }
    }

    pub struct Tenant(pub String);

    impl FromMessageParts for Tenant {
        type Rejection = Failure;

        async fn from_message_parts(ctx: &MessageContext) -> Result<Self, Failure> {
            ctx.header("Tenant")
                .map(|tenant| Tenant(tenant.to_string()))
                .ok_or_else(|| Failure::bad_request("the Tenant header is missing"))
        }
    }

    /// Serializable and `Display`: through an alias, its `Err` is still a
    /// failure, never a successful `{"Err": ...}` reply.
    #[derive(Debug, Serialize)]
    pub struct PriceError {
        pub reason: &'static str,
    }

    impl std::fmt::Display for PriceError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.reason)
        }
    }

    pub type PriceResult<T> = Result<T, PriceError>;

    #[nats_subscriber(subject = "inventory.price")]
    async fn price(_: ()) -> PriceResult<u64> {
        Err(PriceError {
            reason: "no price list",
        })
    }

    #[nats_subscriber(subject = "inventory.get")]
    async fn get(sku: String, tenant: Tenant) -> Result<Reply, InventoryError> {
        if sku == "known" {
            return Ok(Reply::new(format!("{} has it", tenant.0)).with_header("Tenant", tenant.0));
        }
        Err(InventoryError::NotFound(sku))
    }
}

#[tokio::test]
async fn a_404_with_its_header_a_reply_with_headers_and_a_rejection_reach_the_requester() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(&server, &capture, "integration::handler_model::coded::").await;
    let client = support::connect(&server).await;
    let request = |sku: &'static str, tenant: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(tenant) = tenant {
                headers.insert("Tenant", tenant);
            }
            client
                .request_with_headers("inventory.get", headers, Bytes::from_static(sku.as_bytes()))
                .await
                .expect("a reply")
        }
    };

    let missing = request("gone", Some("acme")).await;
    let found = request("known", Some("acme")).await;
    let rejected = request("known", None).await;
    let aliased = client
        .request("inventory.price", Bytes::new())
        .await
        .expect("a reply");
    let spans = capture.wait_for_named("process inventory.get", 3).await;
    running.stop().await.expect("clean stop");

    assert_eq!(
        reply_header(&missing, "Nats-Service-Error-Code"),
        Some("404")
    );
    assert_eq!(
        reply_header(&missing, "Nats-Service-Error"),
        Some("no item gone")
    );
    assert_eq!(reply_header(&missing, "Inventory-Sku"), Some("gone"));
    assert!(
        reply_header(&missing, "traceparent").is_some(),
        "the reply carries the trace"
    );

    assert_eq!(found.payload, "acme has it");
    assert_eq!(reply_header(&found, "Tenant"), Some("acme"));
    assert_eq!(reply_header(&found, "Nats-Service-Error-Code"), None);

    assert_eq!(
        reply_header(&aliased, "Nats-Service-Error-Code"),
        Some("500")
    );
    assert_eq!(
        reply_header(&aliased, "Nats-Service-Error"),
        Some("no price list")
    );
    assert!(aliased.payload.is_empty(), "{:?}", aliased.payload);

    assert_eq!(
        reply_header(&rejected, "Nats-Service-Error-Code"),
        Some("400")
    );
    assert_eq!(
        reply_header(&rejected, "Nats-Service-Error"),
        Some("the Tenant header is missing")
    );

    let error_types: Vec<Option<String>> = named(&spans, "process inventory.get")
        .iter()
        .map(|s| string_attribute(s, semconv::ERROR_TYPE))
        .collect();
    assert!(
        error_types.contains(&Some(
            "integration::handler_model::coded::InventoryError".into()
        )),
        "{error_types:?}"
    );
    assert!(
        error_types.contains(&Some("integration::handler_model::coded::Tenant".into())),
        "a rejection built as a bare Failure is named after its extractor: {error_types:?}"
    );
    assert!(error_types.contains(&None), "{error_types:?}");
}

mod disposed {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};

    pub const STREAM: StreamSpec = StreamSpec {
        name: "DISPOSED",
        subjects: &["disposed.>"],
        ..StreamSpec::DEFAULT
    };
    pub const DEAD: StreamSpec = StreamSpec {
        name: "DISPOSED_DLQ",
        subjects: &["dlq.DISPOSED.>"],
        ..StreamSpec::DEFAULT
    };

    pub static LATER_RUNS: AtomicU32 = AtomicU32::new(0);

    /// Fails for good: never worth a retry.
    #[nats_subscriber(stream = "DISPOSED", consumer = "permanent", subject = "disposed.permanent",
                      max_deliver = 5, backoff = ["50ms"])]
    async fn permanent(_: ()) -> Result<(), Failure> {
        Err(Failure::service(409, "already shipped").reject())
    }

    /// Fails once, asking to be retried after its own delay, far from the
    /// configured backoff.
    #[nats_subscriber(stream = "DISPOSED", consumer = "later", subject = "disposed.later",
                      max_deliver = 5, backoff = ["30s"])]
    async fn later(_: ()) -> Result<(), Failure> {
        if LATER_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(
                Failure::service(503, "warehouse busy").retry_after(Duration::from_millis(700))
            );
        }
        Ok(())
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Lookup {
        #[prost(string, tag = "1")]
        pub sku: String,
    }

    #[nats_subscriber(stream = "DISPOSED", consumer = "protobuf", subject = "disposed.protobuf",
                      max_deliver = 5, backoff = ["50ms"])]
    async fn protobuf(_lookup: Protobuf<Lookup>) {}
}

#[tokio::test]
async fn on_jetstream_errors_choose_reject_or_their_own_delay_and_bad_bodies_are_dead_lettered_at_once()
 {
    let server = support::server();
    let capture = SpanCapture::new();
    let client = support::connect(&server).await;
    let mut dead_letters = client.subscribe("dlq.DISPOSED.>").await.expect("subscribe");
    let running = support::builder(&server, &capture, "integration::handler_model::disposed::")
        .stream(disposed::STREAM)
        .stream(disposed::DEAD)
        .start()
        .await
        .expect("runtime starts");
    let publisher = running.publisher();
    for subject in ["disposed.permanent", "disposed.later"] {
        publisher
            .publish_jetstream_bytes(subject, Default::default(), Bytes::new())
            .await
            .expect("stored");
    }
    publisher
        .publish_jetstream_bytes(
            "disposed.protobuf",
            Default::default(),
            Bytes::from_static(b"\xff\xff\xff"),
        )
        .await
        .expect("stored");

    let mut letters = Vec::new();
    for _ in 0..2 {
        let letter = tokio::time::timeout(WAIT, dead_letters.next())
            .await
            .expect("a dead letter in time")
            .expect("a dead letter");
        letters.push(letter);
    }
    capture.wait_for_named("ack disposed.later", 1).await;
    // Past several backoffs of 50 ms: a retried message would be back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spans = capture.spans();
    running.stop().await.expect("clean stop");

    let mut letter_subjects: Vec<(String, Option<String>, Option<String>)> = letters
        .iter()
        .map(|letter| {
            let header = |name| reply_header(letter, name).map(String::from);
            (
                letter.subject.to_string(),
                header(dead_letter_headers::ERROR_TYPE),
                header(dead_letter_headers::DELIVERY_COUNT),
            )
        })
        .collect();
    letter_subjects.sort();
    assert_eq!(
        letter_subjects,
        [
            (
                "dlq.DISPOSED.permanent".to_string(),
                Some("409".to_string()),
                Some("1".to_string())
            ),
            (
                "dlq.DISPOSED.protobuf".to_string(),
                Some("prost::error::DecodeError".to_string()),
                Some("1".to_string())
            ),
        ]
    );
    for name in ["disposed.permanent", "disposed.protobuf"] {
        let process = named(&spans, &format!("process {name}"));
        let mut deliveries: Vec<_> = process
            .iter()
            .map(|s| {
                (
                    s.span_context.span_id(),
                    int(s, "messaging.nats.delivery_count"),
                )
            })
            .collect();
        deliveries.dedup();
        assert_eq!(
            deliveries.len(),
            1,
            "{name} is delivered once: {}",
            describe(&spans)
        );
        assert_eq!(deliveries[0].1, Some(1));
        let term = named(&spans, &format!("term {name}"));
        assert_eq!(term.len(), 1, "{name} is termed: {}", describe(&spans));
        assert_eq!(term[0].parent_span_id, process[0].span_context.span_id());
        assert!(
            named(&spans, &format!("nak {name}")).is_empty(),
            "{name} is never naked"
        );
    }

    let nak = named(&spans, "nak disposed.later");
    assert_eq!(nak.len(), 1, "{}", describe(&spans));
    assert_eq!(int(nak[0], "nats_trace.nak.delay_ms"), Some(700));
    let later = named(&spans, "process disposed.later");
    let mut later: Vec<_> = later.iter().collect();
    later.sort_by_key(|s| int(s, "messaging.nats.delivery_count"));
    assert_eq!(later.len(), 2, "{}", describe(&spans));
    let waited = later[1]
        .start_time
        .duration_since(later[0].end_time)
        .expect("redelivered after the first run ended");
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_secs(20),
        "redelivered after {waited:?}: the error's delay, not the 30 s backoff"
    );
}

mod logged {
    use super::*;

    #[nats_subscriber(subject = "logged.failure")]
    async fn fail(_: ()) -> Result<(), std::io::Error> {
        Err(std::io::Error::other("disk full"))
    }
}

#[tokio::test]
async fn the_failure_log_line_carries_the_process_spans_trace_id() {
    let server = support::server();
    let capture = SpanCapture::new();
    let (logs, _guard) = support::capture_logs();

    let running = support::start(&server, &capture, "integration::handler_model::logged::").await;
    running
        .publisher()
        .publish_bytes("logged.failure", Default::default(), Bytes::new())
        .await
        .expect("publish");
    let spans = capture.wait_for_named("process logged.failure", 1).await;
    running.stop().await.expect("clean stop");

    let process = named(&spans, "process logged.failure")[0];
    let line = support::assert_logged_in_span(&logs, "message failed", process);
    assert!(
        line.contains("disk full") && line.contains("error.code=500"),
        "{line}"
    );
}

mod no_jetstream {
    use super::*;

    #[nats_subscriber(stream = "NOJS", consumer = "nojs", subject = "nojs.orders")]
    async fn take(_: ()) {}
}

#[tokio::test]
async fn a_server_without_jetstream_fails_start_saying_how_to_enable_it() {
    let server = nats_trace_testing::NatsServer::builder()
        .jetstream(false)
        .start()
        .unwrap_or_else(|error| panic!("{error}"));
    let capture = SpanCapture::new();
    let error = support::builder(
        &server,
        &capture,
        "integration::handler_model::no_jetstream::",
    )
    .stream(StreamSpec {
        name: "NOJS",
        subjects: &["nojs.>"],
        ..StreamSpec::DEFAULT
    })
    .start()
    .await
    .expect_err("no JetStream");

    let message = error.to_string();
    assert!(
        message.contains("NOJS") && message.contains("`-js`"),
        "{message}"
    );
}
