//! JetStream handlers on a real server with a file store: nothing is lost,
//! nothing is acked before its handler finished, and every settle is traced.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use bytes::Bytes;
use futures_util::StreamExt;
use nats_trace_runtime::jetstream::{StreamSpec, dead_letter_headers};
use nats_trace_runtime::prelude::*;
use nats_trace_runtime::{Error, runtime::Running};
use nats_trace_testing::spans::{attribute, describe, named, string_attribute};
use nats_trace_testing::{NatsServer, SpanCapture};
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_semantic_conventions::attribute as semconv;
use serde::{Deserialize, Serialize};

use crate::support::{self, eventually, lock};

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
struct Order {
    id: u32,
}

fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::I64(n)) => Some(*n),
        _ => None,
    }
}

async fn consumer_info(
    server: &NatsServer,
    stream: &str,
    consumer: &str,
) -> async_nats::jetstream::consumer::Info {
    let client = support::connect(server).await;
    let jetstream = async_nats::jetstream::new(client);
    let mut consumer = jetstream
        .get_stream(stream)
        .await
        .expect("stream")
        .get_consumer::<PullConfig>(consumer)
        .await
        .expect("consumer");
    consumer.info().await.expect("consumer info").clone()
}

/// Publishes `ids` as orders to `subject`, 200 acknowledged publishes at a time.
async fn publish_all(running: &Running, subject: &str, ids: impl IntoIterator<Item = u32>) {
    let publisher = running.publisher();
    let ids: Vec<u32> = ids.into_iter().collect();
    for chunk in ids.chunks(200) {
        let orders: Vec<Order> = chunk.iter().map(|&id| Order { id }).collect();
        let acks = futures_util::future::join_all(
            orders
                .iter()
                .map(|order| publisher.publish_jetstream(subject, order)),
        )
        .await;
        for ack in acks {
            ack.expect("acknowledged by the stream");
        }
    }
}

mod load {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "LOAD",
        subjects: &["load.>"],
        ..StreamSpec::DEFAULT
    };
    pub static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    #[nats_subscriber(
        stream = "LOAD",
        consumer = "loader",
        subject = "load.items",
        concurrency = 64
    )]
    async fn load(order: Order) {
        lock(&SEEN).push(order.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_are_all_processed_and_acked() {
    const COUNT: u32 = 10_000;
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, "integration::jetstream::load::")
        .stream(load::STREAM)
        .start()
        .await
        .expect("runtime starts");

    publish_all(&running, "load.items", 0..COUNT).await;
    let all_seen = eventually(Duration::from_secs(60), || {
        lock(&load::SEEN).len() >= COUNT as usize
    })
    .await;
    assert!(all_seen, "processed {} of {COUNT}", lock(&load::SEEN).len());
    let settled = eventually(Duration::from_secs(10), || {
        named(&capture.spans(), "ack load.items").len() >= COUNT as usize
    })
    .await;
    assert!(settled, "every message acked");
    running.stop().await.expect("clean stop");

    let info = consumer_info(&server, "LOAD", "loader").await;
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    let seen = lock(&load::SEEN).clone();
    assert_eq!(seen.len(), COUNT as usize, "each exactly once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), COUNT as usize);

    let spans = capture.spans();
    let publishes: HashMap<_, _> = named(&spans, "publish load.items")
        .into_iter()
        .map(|span| (span.span_context.trace_id(), span.span_context.span_id()))
        .collect();
    assert_eq!(publishes.len(), COUNT as usize);
    let process = named(&spans, "process load.items");
    assert_eq!(process.len(), COUNT as usize);
    let mut sequences = HashSet::new();
    for span in &process {
        assert_eq!(span.span_kind, SpanKind::Consumer);
        assert_eq!(
            Some(&span.parent_span_id),
            publishes.get(&span.span_context.trace_id()),
            "parented to its publish span"
        );
        assert_eq!(
            string_attribute(span, "messaging.nats.stream").as_deref(),
            Some("LOAD")
        );
        assert_eq!(
            string_attribute(span, "messaging.nats.consumer").as_deref(),
            Some("loader")
        );
        assert_eq!(
            string_attribute(span, semconv::MESSAGING_CONSUMER_GROUP_NAME).as_deref(),
            Some("loader")
        );
        assert_eq!(int(span, "messaging.nats.delivery_count"), Some(1));
        let sequence = int(span, "messaging.nats.stream_sequence").expect("sequence");
        assert!((1..=i64::from(COUNT)).contains(&sequence));
        sequences.insert(sequence);
    }
    assert_eq!(sequences.len(), COUNT as usize);
    let acks = named(&spans, "ack load.items");
    assert!(
        acks.iter()
            .all(|a| a.status == Status::Unset && a.span_kind == SpanKind::Client)
    );
}

mod flaky {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "FLAKY",
        subjects: &["flaky.>"],
        ..StreamSpec::DEFAULT
    };

    #[nats_subscriber(
        stream = "FLAKY",
        consumer = "flaky",
        subject = "flaky.orders",
        max_deliver = 5,
        backoff = ["100ms", "300ms"]
    )]
    async fn flaky(_order: Order, ctx: MessageContext) -> Result<(), std::io::Error> {
        let delivery = ctx.jetstream().map_or(0, |js| js.delivery_count);
        if delivery < 3 {
            return Err(std::io::Error::other(format!("delivery {delivery} fails")));
        }
        Ok(())
    }
}

fn elapsed(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

#[tokio::test]
async fn a_failing_handler_is_naked_with_backoff_until_it_succeeds() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, "integration::jetstream::flaky::")
        .stream(flaky::STREAM)
        .start()
        .await
        .expect("runtime starts");
    publish_all(&running, "flaky.orders", [1]).await;
    let spans = capture.wait_for_named("ack flaky.orders", 1).await;
    running.stop().await.expect("clean stop");

    let mut process = named(&spans, "process flaky.orders");
    process.sort_by_key(|s| s.start_time);
    let deliveries: Vec<_> = process
        .iter()
        .map(|s| int(s, "messaging.nats.delivery_count"))
        .collect();
    assert_eq!(
        deliveries,
        [Some(1), Some(2), Some(3)],
        "{}",
        describe(&spans)
    );
    assert!(matches!(process[0].status, Status::Error { .. }));
    assert!(matches!(process[1].status, Status::Error { .. }));
    assert_eq!(process[2].status, Status::Unset);

    let mut naks = named(&spans, "nak flaky.orders");
    naks.sort_by_key(|s| s.start_time);
    assert_eq!(naks.len(), 2);
    for (nak, (parent, delay_ms)) in naks.iter().zip([(process[0], 100), (process[1], 300)]) {
        assert_eq!(nak.parent_span_id, parent.span_context.span_id());
        assert_eq!(nak.span_kind, SpanKind::Client);
        assert_eq!(int(nak, "nats_trace.nak.delay_ms"), Some(delay_ms));
        assert_eq!(
            string_attribute(nak, semconv::MESSAGING_OPERATION_TYPE).as_deref(),
            Some("settle")
        );
    }
    // The server waits at least the asked delay before redelivering.
    assert!(elapsed(naks[0].end_time, process[1].start_time) >= Duration::from_millis(95));
    assert!(elapsed(naks[1].end_time, process[2].start_time) >= Duration::from_millis(290));
    let acks = named(&spans, "ack flaky.orders");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].parent_span_id, process[2].span_context.span_id());
}

mod poison {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "POISON",
        subjects: &["poison.>"],
        ..StreamSpec::DEFAULT
    };

    #[nats_subscriber(
        stream = "POISON",
        consumer = "poison",
        subject = "poison.orders",
        ack_wait = "1s"
    )]
    async fn take(_order: Order) {}
}

#[tokio::test]
async fn an_undecodable_payload_is_termed_and_never_redelivered() {
    let server = support::server();
    let capture = SpanCapture::new();
    let client = support::connect(&server).await;
    let mut dead_letters = client
        .subscribe("dlq.POISON.poison")
        .await
        .expect("subscribe");
    let running = support::builder(&server, &capture, "integration::jetstream::poison::")
        .stream(poison::STREAM)
        .start()
        .await
        .expect("runtime starts");

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Order-Source", "poison-test");
    running
        .publisher()
        .publish_jetstream_bytes("poison.orders", headers, Bytes::from_static(b"{oops"))
        .await
        .expect("stored");
    let spans = capture.wait_for_named("term poison.orders", 1).await;
    let letter = tokio::time::timeout(support::WAIT, dead_letters.next())
        .await
        .expect("a dead letter in time")
        .expect("a dead letter");
    // Longer than two ack waits: a redelivery would have happened by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let spans_later = capture.spans();
    running.stop().await.expect("clean stop");

    assert_eq!(letter.payload, Bytes::from_static(b"{oops"));
    let headers = letter.headers.expect("dead-letter headers");
    assert_eq!(
        headers.get("Order-Source").map(|v| v.as_str()),
        Some("poison-test"),
        "the original headers travel with the dead letter"
    );
    assert_eq!(
        headers
            .get(dead_letter_headers::ERROR_TYPE)
            .map(|v| v.as_str()),
        Some("serde_json::error::Error")
    );
    let process = named(&spans_later, "process poison.orders");
    assert_eq!(
        process.len(),
        1,
        "never redelivered: {}",
        describe(&spans_later)
    );
    assert!(matches!(process[0].status, Status::Error { .. }));
    assert_eq!(
        string_attribute(process[0], semconv::ERROR_TYPE).as_deref(),
        Some("serde_json::error::Error")
    );
    let term = named(&spans, "term poison.orders");
    assert_eq!(term[0].parent_span_id, process[0].span_context.span_id());
    assert!(named(&spans_later, "nak poison.orders").is_empty());
    assert!(named(&spans_later, "ack poison.orders").is_empty());
    let info = consumer_info(&server, "POISON", "poison").await;
    assert_eq!(
        (info.num_ack_pending, info.num_redelivered, info.num_pending),
        (0, 0, 0)
    );
}

mod doomed {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "DOOMED",
        subjects: &["doomed.>"],
        ..StreamSpec::DEFAULT
    };

    #[nats_subscriber(
        stream = "DOOMED",
        consumer = "doomed",
        subject = "doomed.orders",
        max_deliver = 2,
        backoff = ["50ms"],
        dead_letter = "graveyard.orders"
    )]
    async fn take(_order: Order) -> Result<(), std::io::Error> {
        Err(std::io::Error::other("always fails"))
    }
}

#[tokio::test]
async fn after_max_deliver_failures_the_message_is_dead_lettered() {
    let server = support::server();
    let capture = SpanCapture::new();
    let client = support::connect(&server).await;
    let mut graveyard = client
        .subscribe("graveyard.orders")
        .await
        .expect("subscribe");
    let running = support::builder(&server, &capture, "integration::jetstream::doomed::")
        .stream(doomed::STREAM)
        .stream(StreamSpec {
            name: "GRAVEYARD",
            subjects: &["graveyard.>"],
            ..StreamSpec::DEFAULT
        })
        .start()
        .await
        .expect("runtime starts");

    publish_all(&running, "doomed.orders", [13]).await;
    let letter = tokio::time::timeout(support::WAIT, graveyard.next())
        .await
        .expect("a dead letter in time")
        .expect("a dead letter");
    let spans = capture.wait_for_named("term doomed.orders", 1).await;
    running.stop().await.expect("clean stop");

    let graveyard_info = async_nats::jetstream::new(client.clone())
        .get_stream("GRAVEYARD")
        .await
        .expect("graveyard stream")
        .info()
        .await
        .expect("info")
        .state
        .messages;
    assert_eq!(
        graveyard_info, 1,
        "the dead letter is stored by the stream that captures it"
    );
    let order: Order = serde_json::from_slice(&letter.payload).expect("the original payload");
    assert_eq!(order, Order { id: 13 });
    let headers = letter.headers.expect("headers");
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(
        header(dead_letter_headers::ERROR).as_deref(),
        Some("always fails")
    );
    assert_eq!(
        header(dead_letter_headers::DELIVERY_COUNT).as_deref(),
        Some("2")
    );
    assert_eq!(
        header(dead_letter_headers::SUBJECT).as_deref(),
        Some("doomed.orders")
    );
    assert_eq!(
        header(dead_letter_headers::STREAM).as_deref(),
        Some("DOOMED")
    );
    assert_eq!(
        header(dead_letter_headers::CONSUMER).as_deref(),
        Some("doomed")
    );
    assert_eq!(header(dead_letter_headers::SEQUENCE).as_deref(), Some("1"));

    let publish = named(&spans, "publish doomed.orders");
    let trace = publish[0].span_context.trace_id();
    let traceparent = header("traceparent").expect("trace context travels on");
    assert!(
        traceparent.contains(&trace.to_string()),
        "same trace as the original publish"
    );

    let mut process = named(&spans, "process doomed.orders");
    process.sort_by_key(|s| s.start_time);
    assert_eq!(process.len(), 2, "{}", describe(&spans));
    assert_eq!(named(&spans, "nak doomed.orders").len(), 1);
    let term = named(&spans, "term doomed.orders");
    assert_eq!(term[0].parent_span_id, process[1].span_context.span_id());
    let dead = named(&spans, "publish graveyard.orders");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].parent_span_id, process[1].span_context.span_id());
}

mod vanished {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "VANISHED",
        subjects: &["vanished.>"],
        ..StreamSpec::DEFAULT
    };

    /// Fails for good after removing its own message from the stream, as a
    /// stream limit could while it ran.
    #[nats_subscriber(
        stream = "VANISHED",
        consumer = "vanished",
        subject = "vanished.*",
        max_deliver = 1
    )]
    async fn take(_order: Order, ctx: MessageContext) -> Result<(), std::io::Error> {
        let info = ctx.jetstream().expect("a JetStream delivery");
        let client = Publisher::current()
            .expect("inside a handler")
            .client()
            .clone();
        let deleted = async_nats::jetstream::new(client)
            .get_stream(info.stream)
            .await
            .map_err(std::io::Error::other)?
            .delete_message(info.stream_sequence)
            .await
            .map_err(std::io::Error::other)?;
        assert!(deleted, "the message was in the stream");
        Err(std::io::Error::other("fails after its message vanished"))
    }
}

#[tokio::test]
async fn a_failed_message_its_stream_no_longer_holds_is_termed_without_a_dead_letter() {
    let server = support::server();
    let capture = SpanCapture::new();
    let client = support::connect(&server).await;
    let mut dead_letters = client
        .subscribe("dlq.VANISHED.vanished")
        .await
        .expect("subscribe");
    let running = support::builder(&server, &capture, "integration::jetstream::vanished::")
        .stream(vanished::STREAM)
        .start()
        .await
        .expect("runtime starts");

    publish_all(&running, "vanished.orders", [7]).await;
    let spans = capture.wait_for_named("term vanished.*", 1).await;
    let letter = tokio::time::timeout(Duration::from_millis(500), dead_letters.next()).await;
    running.stop().await.expect("clean stop");

    assert!(letter.is_err(), "no dead letter: {letter:?}");
    let process = named(&spans, "process vanished.*");
    assert_eq!(process.len(), 1, "{}", describe(&spans));
    assert!(matches!(process[0].status, Status::Error { .. }));
    assert!(
        process[0]
            .events
            .iter()
            .any(|event| event.name == "dead letter skipped"),
        "the process span says why: {:?}",
        process[0].events
    );
    let term = named(&spans, "term vanished.*");
    assert_eq!(term[0].parent_span_id, process[0].span_context.span_id());
    // A wildcard subscription: both spans name the concrete subject.
    for span in [process[0], term[0]] {
        assert_eq!(
            string_attribute(span, semconv::MESSAGING_DESTINATION_NAME).as_deref(),
            Some("vanished.orders")
        );
        assert_eq!(
            string_attribute(span, semconv::MESSAGING_DESTINATION_TEMPLATE).as_deref(),
            Some("vanished.*")
        );
    }
    assert!(named(&spans, "nak vanished.*").is_empty());
    assert!(named(&spans, "publish dlq.VANISHED.vanished").is_empty());
    let info = consumer_info(&server, "VANISHED", "vanished").await;
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 0));
}

mod patient {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "PATIENT",
        subjects: &["patient.>"],
        ..StreamSpec::DEFAULT
    };

    #[nats_subscriber(
        stream = "PATIENT",
        consumer = "patient",
        subject = "patient.jobs",
        ack_wait = "1s"
    )]
    async fn take(_order: Order) {
        tokio::time::sleep(Duration::from_millis(1800)).await;
    }
}

#[tokio::test]
async fn a_handler_slower_than_ack_wait_keeps_its_message_with_progress_acks() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, "integration::jetstream::patient::")
        .stream(patient::STREAM)
        .start()
        .await
        .expect("runtime starts");
    publish_all(&running, "patient.jobs", [1]).await;
    capture.wait_for_named("ack patient.jobs", 1).await;
    // Past another ack wait: a redelivery would show up now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spans = capture.spans();
    running.stop().await.expect("clean stop");

    let process = named(&spans, "process patient.jobs");
    assert_eq!(process.len(), 1, "not redelivered: {}", describe(&spans));
    let progress = named(&spans, "progress patient.jobs");
    assert!(
        progress.len() >= 2,
        "a progress ack every half ack wait: {}",
        progress.len()
    );
    assert!(
        progress
            .iter()
            .all(|p| p.parent_span_id == process[0].span_context.span_id())
    );
    assert_eq!(named(&spans, "ack patient.jobs").len(), 1);
}

mod survivor {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "SURVIVE",
        subjects: &["survive.>"],
        ..StreamSpec::DEFAULT
    };
    pub static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    #[nats_subscriber(
        stream = "SURVIVE",
        consumer = "survivor",
        subject = "survive.orders",
        ack_wait = "2s",
        concurrency = 32
    )]
    async fn take(order: Order) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        lock(&SEEN).push(order.id);
    }
}

mod slow_survivor {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "SLOWSURVIVE",
        subjects: &["slowsurvive.>"],
        ..StreamSpec::DEFAULT
    };
    pub static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    #[nats_subscriber(
        stream = "SLOWSURVIVE",
        consumer = "survivor",
        subject = "slowsurvive.orders",
        ack_wait = "2s",
        concurrency = 32
    )]
    async fn take(order: Order) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        lock(&SEEN).push(order.id);
    }
}

/// Publishes `count` messages, kills the server with SIGKILL once some are
/// processed, restarts it on the same port and store after `outage`, and
/// checks that every message is processed: 0 lost, duplicates reported.
async fn survive_a_kill(
    prefix: &'static str,
    stream: StreamSpec,
    subject: &str,
    seen: &'static Mutex<Vec<u32>>,
    count: u32,
    outage: Duration,
) {
    let mut server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, prefix)
        .stream(stream)
        .start()
        .await
        .expect("runtime starts");
    publish_all(&running, subject, 0..count).await;
    let some = eventually(support::WAIT, || lock(seen).len() >= count as usize / 10).await;
    assert!(some, "processing started");

    server.kill();
    let at_kill = lock(seen).len();
    tokio::time::sleep(outage).await;
    server
        .start_again()
        .expect("restart on the same port and store");

    let unique = || lock(seen).iter().collect::<HashSet<_>>().len();
    let all = eventually(Duration::from_secs(90), || unique() >= count as usize).await;
    running.stop().await.expect("clean stop");
    let runs = lock(seen).len();
    println!(
        "server killed after {at_kill} of {count} and down for {outage:?}; \
         {runs} handler runs for {} messages: {} processed twice",
        unique(),
        runs - unique()
    );
    assert!(all, "all {count} processed, {} seen", unique());
    assert_eq!(unique(), count as usize, "0 lost");
    let info = consumer_info(&server, stream.name, "survivor").await;
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_5000_messages_in_flight_loses_none() {
    survive_a_kill(
        "integration::jetstream::survivor::",
        survivor::STREAM,
        "survive.orders",
        &survivor::SEEN,
        5_000,
        Duration::from_millis(500),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_for_several_seconds_loses_nothing() {
    survive_a_kill(
        "integration::jetstream::slow_survivor::",
        slow_survivor::STREAM,
        "slowsurvive.orders",
        &slow_survivor::SEEN,
        1_000,
        Duration::from_secs(6),
    )
    .await;
}

mod drained {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "DRAIN",
        subjects: &["drain.>"],
        ..StreamSpec::DEFAULT
    };
    /// Stream sequences whose handler finished.
    pub static FINISHED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

    #[nats_subscriber(
        stream = "DRAIN",
        consumer = "drainer",
        subject = "drain.orders",
        concurrency = 16
    )]
    async fn take(_order: Order, ctx: MessageContext) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(js) = ctx.jetstream() {
            lock(&FINISHED).push(js.stream_sequence);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_acks_only_finished_handlers_and_a_new_runtime_takes_the_rest() {
    const COUNT: usize = 1_000;
    let server = support::server();
    let first_capture = SpanCapture::new();
    let prefix = "integration::jetstream::drained::";
    let first = support::builder(&server, &first_capture, prefix)
        .stream(drained::STREAM)
        .start()
        .await
        .expect("first runtime starts");
    publish_all(&first, "drain.orders", 0..COUNT as u32).await;
    let busy = eventually(support::WAIT, || lock(&drained::FINISHED).len() >= 100).await;
    assert!(busy, "the first runtime is processing");
    first.stop().await.expect("first stops cleanly");
    let finished_by_first: HashSet<u64> = lock(&drained::FINISHED).iter().copied().collect();
    assert!(finished_by_first.len() < COUNT, "stopped under load");

    let acked: Vec<i64> = named(&first_capture.spans(), "ack drain.orders")
        .iter()
        .filter_map(|ack| int(ack, "messaging.nats.stream_sequence"))
        .collect();
    assert!(!acked.is_empty());
    for sequence in &acked {
        assert!(
            finished_by_first.contains(&(*sequence as u64)),
            "sequence {sequence} was acked but its handler never finished"
        );
    }

    let second_capture = SpanCapture::new();
    let second = support::builder(&server, &second_capture, prefix)
        .stream(drained::STREAM)
        .start()
        .await
        .expect("second runtime starts");
    let unique = || {
        lock(&drained::FINISHED)
            .iter()
            .collect::<HashSet<_>>()
            .len()
    };
    let all = eventually(Duration::from_secs(60), || unique() >= COUNT).await;
    second.stop().await.expect("second stops cleanly");
    let total = lock(&drained::FINISHED).len();
    println!(
        "first runtime finished {}, second the rest; {} handler runs for {COUNT} messages",
        finished_by_first.len(),
        total
    );
    assert!(all, "every message processed: {} of {COUNT}", unique());
    assert_eq!(unique(), COUNT);
    let info = consumer_info(&server, "DRAIN", "drainer").await;
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
}

mod bounded {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "BOUNDED",
        subjects: &["bounded.>"],
        ..StreamSpec::DEFAULT
    };
    pub static GATE: support::Gate = support::Gate::new();

    #[nats_subscriber(
        stream = "BOUNDED",
        consumer = "bounded",
        subject = "bounded.orders",
        concurrency = 4
    )]
    async fn take(order: Order) {
        GATE.hold(order.id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_sent_no_more_messages_than_it_has_room_for() {
    const COUNT: u32 = 40;
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, "integration::jetstream::bounded::")
        .stream(bounded::STREAM)
        .start()
        .await
        .expect("runtime starts");
    publish_all(&running, "bounded.orders", 0..COUNT).await;
    let full = eventually(support::WAIT, || bounded::GATE.running().0 == 4).await;
    assert!(full, "four handlers run: {:?}", bounded::GATE.running());
    // Long enough for another pull to be made and answered, were one made.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = consumer_info(&server, "BOUNDED", "bounded").await;
    assert_eq!(
        (info.num_ack_pending, info.num_pending),
        (4, u64::from(COUNT) - 4),
        "only as many messages delivered as the handler runs at once"
    );

    bounded::GATE.open(COUNT as usize);
    let all = eventually(support::WAIT, || {
        bounded::GATE.finished().len() == COUNT as usize
    })
    .await;
    running.stop().await.expect("stops cleanly");
    assert!(
        all,
        "{} of {COUNT} finished",
        bounded::GATE.finished().len()
    );
    assert_eq!(bounded::GATE.running().1, 4, "at most four ran at once");
    let info = consumer_info(&server, "BOUNDED", "bounded").await;
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
}

nats_trace_runtime::declare_stream!(StreamSpec {
    name: "DECLARED",
    subjects: &["declared.>"],
    ..StreamSpec::DEFAULT
});

mod declared {
    use super::*;

    #[nats_subscriber(
        stream = "DECLARED",
        consumer = "declarer",
        subject = "declared.events"
    )]
    async fn take(_body: Bytes) {}
}

fn stream_action(spans: &[SpanData], stream: &str) -> Option<String> {
    named(spans, &format!("ensure_stream {stream}"))
        .last()
        .and_then(|span| string_attribute(span, "nats_trace.stream.action"))
}

#[tokio::test]
async fn streams_and_consumers_declared_in_code_are_created_once_and_checked() {
    let server = support::server();
    let prefix = "integration::jetstream::declared::";
    let start = |capture: &SpanCapture| {
        support::builder(&server, capture, prefix)
            .declared_streams(true)
            .start()
    };

    let first = SpanCapture::new();
    start(&first)
        .await
        .expect("first start")
        .stop()
        .await
        .expect("stop");
    assert_eq!(
        stream_action(&first.spans(), "DECLARED").as_deref(),
        Some("created")
    );
    let created = consumer_info(&server, "DECLARED", "declarer").await.created;

    let second = SpanCapture::new();
    start(&second)
        .await
        .expect("second start")
        .stop()
        .await
        .expect("stop");
    assert_eq!(
        stream_action(&second.spans(), "DECLARED").as_deref(),
        Some("unchanged")
    );
    assert_eq!(
        consumer_info(&server, "DECLARED", "declarer").await.created,
        created
    );

    let wider = SpanCapture::new();
    support::builder(&server, &wider, prefix)
        .stream(StreamSpec {
            name: "DECLARED",
            subjects: &["declared.>", "announced.>"],
            ..StreamSpec::DEFAULT
        })
        .start()
        .await
        .expect("start with more subjects")
        .stop()
        .await
        .expect("stop");
    assert_eq!(
        stream_action(&wider.spans(), "DECLARED").as_deref(),
        Some("updated")
    );
    let wider_spans = wider.spans();
    let ensure = named(&wider_spans, "ensure_stream DECLARED");
    assert_eq!(ensure[0].span_kind, SpanKind::Client);
    assert_eq!(ensure[0].parent_span_id, SpanId::INVALID);

    let client = support::connect(&server).await;
    async_nats::jetstream::new(client)
        .create_stream(StreamConfig {
            name: "CLASH".into(),
            subjects: vec!["clash.>".into()],
            storage: StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("a memory stream");
    let clash = SpanCapture::new();
    let error = support::builder(&server, &clash, prefix)
        .stream(StreamSpec {
            name: "CLASH",
            subjects: &["clash.>"],
            ..StreamSpec::DEFAULT
        })
        .start()
        .await
        .expect_err("file storage cannot replace memory storage");
    let Error::StreamIncompatible { stream, difference } = &error else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(*stream, "CLASH");
    assert!(
        difference.contains("storage is Memory on the server but File"),
        "{difference}"
    );
    let clash_spans = clash.spans();
    let failed = named(&clash_spans, "ensure_stream CLASH");
    assert!(matches!(failed[0].status, Status::Error { .. }));
}

mod recovering {
    use super::*;

    pub const STREAM: StreamSpec = StreamSpec {
        name: "RECOVER",
        subjects: &["recover.>"],
        ..StreamSpec::DEFAULT
    };
    pub static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    #[nats_subscriber(stream = "RECOVER", consumer = "recoverer", subject = "recover.orders")]
    async fn take(order: Order) {
        lock(&SEEN).push(order.id);
    }
}

#[tokio::test]
async fn a_deleted_consumer_is_recreated_and_processing_resumes() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, "integration::jetstream::recovering::")
        .stream(recovering::STREAM)
        .start()
        .await
        .expect("runtime starts");
    publish_all(&running, "recover.orders", [1]).await;
    assert!(eventually(support::WAIT, || lock(&recovering::SEEN).contains(&1)).await);

    let client = support::connect(&server).await;
    async_nats::jetstream::new(client)
        .get_stream("RECOVER")
        .await
        .expect("stream")
        .delete_consumer("recoverer")
        .await
        .expect("delete the consumer under the runtime");
    publish_all(&running, "recover.orders", [2]).await;
    let resumed = eventually(Duration::from_secs(20), || {
        lock(&recovering::SEEN).contains(&2)
    })
    .await;
    running.stop().await.expect("clean stop");
    assert!(resumed, "processing resumed: {:?}", lock(&recovering::SEEN));
}

mod forbidden {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub const STREAM: StreamSpec = StreamSpec {
        name: "FORBIDDEN",
        subjects: &["forbidden.>"],
        ..StreamSpec::DEFAULT
    };

    pub static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[nats_subscriber(
        stream = "FORBIDDEN",
        consumer = "forbidden",
        subject = "forbidden.orders",
        max_deliver = 1,
        backoff = ["50ms"]
    )]
    async fn take(_order: Order) -> Result<(), std::io::Error> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::other("always fails"))
    }
}

/// A user that may not read messages back from a stream by sequence, which
/// a dead letter needs.
const FORBIDDEN_CONFIG: &str = r#"
authorization {
  users = [
    { user: admin, password: admin }
    {
      user: restricted, password: restricted,
      permissions: { publish: { deny: ["$JS.API.STREAM.MSG.GET.>", "$JS.API.DIRECT.GET.>"] } }
    }
  ]
}
"#;

/// The server answers a forbidden request with an error on the connection,
/// not on the request, so reading the message back times out first.
#[tokio::test]
async fn a_dead_letter_the_permissions_forbid_leaves_the_message_to_come_back() {
    use std::sync::atomic::Ordering;
    let server = NatsServer::builder()
        .config_file(FORBIDDEN_CONFIG)
        .start()
        .unwrap_or_else(|error| panic!("{error}"));
    let capture = SpanCapture::new();
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into())
        .connect(server.url())
        .await
        .expect("admin client");
    let mut dead_letters = admin
        .subscribe("dlq.FORBIDDEN.forbidden")
        .await
        .expect("subscribe");
    let url = format!("nats://restricted:restricted@127.0.0.1:{}", server.port());
    let running = support::builder(&server, &capture, "integration::jetstream::forbidden::")
        .url(url)
        .stream(forbidden::STREAM)
        .shutdown_timeout(Duration::from_millis(500))
        .start()
        .await
        .expect("runtime starts");

    publish_all(&running, "forbidden.orders", [21]).await;
    // The only delivery fails, its dead letter cannot read the message
    // back, and the message is naked: it comes back to be tried again.
    let spans = capture
        .wait_for(Duration::from_secs(30), |spans| {
            !named(spans, "nak forbidden.orders").is_empty()
        })
        .await;
    assert!(
        eventually(Duration::from_secs(5), || forbidden::CALLS
            .load(Ordering::SeqCst)
            >= 2)
        .await,
        "delivered again after the nak"
    );
    // The second attempt is still waiting for its own read-back.
    let _ = running.stop().await;

    let process = named(&spans, "process forbidden.orders");
    assert_eq!(process.len(), 1, "{}", describe(&spans));
    let failed = process[0]
        .events
        .iter()
        .find(|event| event.name == "dead letter failed")
        .unwrap_or_else(|| panic!("the process span says why: {:?}", process[0].events));
    let error = failed
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .map(|kv| kv.value.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("reading message 1 back from stream FORBIDDEN"),
        "{error}"
    );
    let nak = named(&spans, "nak forbidden.orders");
    assert_eq!(nak[0].parent_span_id, process[0].span_context.span_id());
    assert!(named(&spans, "term forbidden.orders").is_empty());
    assert!(named(&spans, "publish dlq.FORBIDDEN.forbidden").is_empty());
    let letter = tokio::time::timeout(Duration::from_millis(200), dead_letters.next()).await;
    assert!(letter.is_err(), "no dead letter: {letter:?}");
    let stored = async_nats::jetstream::new(admin)
        .get_stream("FORBIDDEN")
        .await
        .expect("stream")
        .get_raw_message(1)
        .await
        .expect("the message is still in its stream");
    let order: Order = serde_json::from_slice(&stored.payload).expect("the original payload");
    assert_eq!(order, Order { id: 21 });
}
