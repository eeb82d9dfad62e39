//! Feeding one handler from its durable pull consumer.
//!
//! Messages are pulled only as fast as they can start: each pull asks for
//! as many messages as the handler has free concurrency, so none waits in a
//! buffer while its ack timer runs. On shutdown no new pull is made, and a
//! message that arrives for a pull already made is naked at once, never
//! acked, so the next runtime gets it without waiting for `ack_wait`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::Context as JetStream;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::{Message, Subject};
use bytes::Bytes;
use tokio::sync::watch;

use super::JetStreamInfo;
use super::pull;
use super::settle::{JetStreamDelivery, Settler};
use super::spec::JetStreamSpec;
use crate::backoff::Backoff;
use crate::dispatch::{Runs, Shared};
use crate::error::Error;
use crate::publisher::Publisher;
use crate::registry::Handler;

/// How long one pull waits for messages before the next is made.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// The most messages one pull asks for.
const MAX_PULL: usize = 256;

/// A durable pull consumer.
pub(crate) type PullConsumer = Consumer<PullConfig>;

/// Creates the handler's durable consumer, or updates it to the declared
/// settings.
pub(crate) async fn ensure(
    jetstream: &JetStream,
    handler: &'static Handler,
    spec: &'static JetStreamSpec,
) -> Result<PullConsumer, Error> {
    let failed = |reason: String| Error::Consumer {
        stream: spec.stream,
        consumer: spec.consumer,
        reason: crate::error::with_jetstream_hint(reason),
    };
    let stream = jetstream
        .get_stream_no_info(spec.stream)
        .await
        .map_err(|e| {
            failed(format!(
                "stream `{}` is not available ({e}); declare it with declare_stream! or \
             runtime::builder().stream(..)",
                spec.stream
            ))
        })?;
    let config = PullConfig {
        durable_name: Some(spec.consumer.to_string()),
        filter_subject: handler.subject().to_string(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait(),
        // Unlimited on the server: the settle policy ends a message's
        // deliveries itself, after its dead letter is safe. A server-side
        // limit would drop a message whose last delivery was interrupted.
        max_deliver: -1,
        deliver_policy: if spec.deliver_new {
            DeliverPolicy::New
        } else {
            DeliverPolicy::All
        },
        ..Default::default()
    };
    stream
        .create_consumer(config)
        .await
        .map_err(|error| match error.kind() {
            ConsumerErrorKind::JetStream(js) => failed(format!(
                "the server refused its settings ({js}); if it exists with settings that \
                 cannot change, delete it or keep the old ones"
            )),
            _ => failed(error.to_string()),
        })
}

/// Pulls and processes messages until `stop` turns true, then lets every
/// started run finish and settle.
///
/// The runs make progress only while this waits through `runs`: every wait
/// in here goes through [`Runs::alongside`] or [`Runs::permit`]. A plain
/// `.await` would stall them all, with their progress acks, until their
/// messages are redelivered.
pub(crate) async fn serve(
    handler: &'static Handler,
    spec: &'static JetStreamSpec,
    jetstream: JetStream,
    mut consumer: PullConsumer,
    publisher: Publisher,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let mut runs = Runs::new(handler, Some(spec.consumer), publisher.clone(), shared);
    let permits = runs.permits().clone();
    let settler = Arc::new(Settler::new(handler, spec, &jetstream, &publisher));
    let mut failures = 0u32;
    let mut inbox = None;
    loop {
        // Wait for room for at least one message, unless stopping.
        let room = async {
            tokio::select! {
                permit = permits.clone().acquire_owned() => Some(permit),
                _ = stop.wait_for(|s| *s) => None,
            }
        };
        let Some(Ok(first)) = runs.alongside(room).await else {
            break;
        };
        if *stop.borrow() {
            break;
        }
        // A pull made while disconnected would only be queued in the
        // client and answered into a forgotten inbox after reconnecting.
        if publisher.client().connection_state() != async_nats::connection::State::Connected {
            drop(first);
            runs.alongside(pause_or_stop(Duration::from_millis(100), &mut stop))
                .await;
            continue;
        }
        let wanted = (1 + permits.available_permits()).min(MAX_PULL);
        let pulled = pull::pull(
            &mut inbox,
            publisher.client(),
            &consumer,
            wanted,
            PULL_EXPIRES,
        );
        let mut pull = match runs.alongside(pulled).await {
            Ok(pull) => pull,
            Err(error) => {
                drop(first);
                runs.alongside(recover(
                    handler,
                    spec,
                    &jetstream,
                    &mut consumer,
                    &mut failures,
                    &mut stop,
                    &error,
                ))
                .await;
                continue;
            }
        };
        let mut first = Some(first);
        while let Some(next) = runs.alongside(pull.next()).await {
            let mut message = match next {
                Ok(message) => message,
                Err(reason) => {
                    // E.g. 503 while JetStream restarts, or 409 when the
                    // consumer was deleted: back off and recreate it.
                    runs.alongside(recover(
                        handler,
                        spec,
                        &jetstream,
                        &mut consumer,
                        &mut failures,
                        &mut stop,
                        &reason,
                    ))
                    .await;
                    break;
                }
            };
            failures = 0;
            if *stop.borrow() {
                // Never started: give it back at once, without acking.
                let message = async_nats::jetstream::Message {
                    message,
                    context: jetstream.clone(),
                };
                if let Err(error) = runs.alongside(message.ack_with(AckKind::Nak(None))).await {
                    tracing::debug!(%error, "returning an unstarted message failed");
                }
                continue;
            }
            let Some(delivery) = delivery(handler, spec, &jetstream, &mut message, &settler) else {
                tracing::warn!(
                    handler = handler.name(),
                    "a message without JetStream metadata was skipped"
                );
                continue;
            };
            let permit = match first.take() {
                Some(permit) => permit,
                None => match runs.permit().await {
                    Some(permit) => permit,
                    None => break,
                },
            };
            runs.start(message, Some(delivery), permit);
        }
    }
    runs.finish().await;
    tracing::debug!(handler = handler.name(), "JetStream handler stopped");
}

/// Takes the JetStream metadata out of a delivered message, leaving a plain
/// message for the pipeline: its reply subject is the ack subject, which a
/// handler must never answer.
///
/// Nothing else is copied: the handler gets the message itself, and a dead
/// letter reads the stored message back from the stream.
fn delivery(
    handler: &'static Handler,
    spec: &'static JetStreamSpec,
    jetstream: &JetStream,
    inner: &mut Message,
    settler: &Arc<Settler>,
) -> Option<JetStreamDelivery> {
    let reply = inner.reply.as_deref()?;
    let (delivered, stream_sequence) =
        delivery_numbers(reply).or_else(|| async_nats_numbers(jetstream, reply))?;
    let ack_subject = inner.reply.take()?;
    Some(JetStreamDelivery {
        spec,
        info: JetStreamInfo {
            stream: spec.stream,
            consumer: spec.consumer,
            stream_sequence,
            delivery_count: delivered,
        },
        ack_subject,
        destination: crate::pipeline::destination(handler, &inner.subject),
        settler: settler.clone(),
        slot: None,
    })
}

/// The delivery count and the stream sequence in a `$JS.ACK.` reply subject,
/// without the rest of what [`Message::info`](async_nats::jetstream::Message::info)
/// parses (the timestamp, above all), which cost more than the rest of a
/// delivery's set-up.
///
/// Reads only the two shapes ADR-15 defines, as async-nats does: 7 tokens
/// after the prefix, or 9 and more. It answers only when every numeric token
/// is plain digits that async-nats parses to the same numbers: at most 18
/// for the delivery count (an `i64` there), 19 for the others, and a
/// timestamp within `i64` nanoseconds (async-nats's `chrono` backend refuses
/// more). Anything else is `None`, and the caller asks async-nats.
fn delivery_numbers(reply: &str) -> Option<(u64, u64)> {
    let rest = reply.strip_prefix("$JS.ACK.")?.as_bytes();
    // Where each of the first 10 tokens starts and ends; async-nats looks
    // at no more.
    let mut bounds = [(0usize, 0usize); 10];
    let mut count = 0;
    let mut start = 0;
    for dot in memchr::memchr_iter(b'.', rest) {
        bounds[count] = (start, dot);
        count += 1;
        start = dot + 1;
        if count == bounds.len() {
            break;
        }
    }
    if count < bounds.len() {
        bounds[count] = (start, rest.len());
        count += 1;
    }
    // Delivered, stream sequence, consumer sequence, timestamp, pending.
    let first = match count {
        7 => 2,
        9.. => 4,
        _ => return None,
    };
    let mut numbers = [0u64; 5];
    for (at, (number, &(start, end))) in numbers
        .iter_mut()
        .zip(&bounds[first..first + 5])
        .enumerate()
    {
        let digits = &rest[start..end];
        let most = if at == 0 { 18 } else { 19 };
        if digits.is_empty() || digits.len() > most || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *number = digits
            .iter()
            .fold(0, |n, digit| n * 10 + u64::from(digit - b'0'));
    }
    if numbers[3] > i64::MAX as u64 {
        return None;
    }
    Some((numbers[0], numbers[1]))
}

/// The delivery count and the stream sequence in a `$JS.ACK.` reply
/// subject, as [`Message::info`](async_nats::jetstream::Message::info) reads
/// them.
fn async_nats_numbers(jetstream: &JetStream, reply: &str) -> Option<(u64, u64)> {
    let probe = async_nats::jetstream::Message {
        message: Message {
            subject: Subject::from_static(""),
            reply: Some(reply.into()),
            payload: Bytes::new(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        },
        context: jetstream.clone(),
    };
    let info = probe.info().ok()?;
    Some((
        u64::try_from(info.delivered).unwrap_or(1),
        info.stream_sequence,
    ))
}

/// After a failed pull: waits with backoff, then recreates the consumer,
/// which may have been deleted or lost with a memory stream.
async fn recover(
    handler: &'static Handler,
    spec: &'static JetStreamSpec,
    jetstream: &JetStream,
    consumer: &mut PullConsumer,
    failures: &mut u32,
    stop: &mut watch::Receiver<bool>,
    reason: &str,
) {
    *failures = failures.saturating_add(1);
    let delay = Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).delay(*failures);
    tracing::warn!(handler = handler.name(), error = reason, retry_in = ?delay, "pulling messages failed");
    pause_or_stop(delay, stop).await;
    match ensure(jetstream, handler, spec).await {
        Ok(fresh) => *consumer = fresh,
        Err(error) => {
            tracing::warn!(handler = handler.name(), %error, "recreating the consumer failed")
        }
    }
}

async fn pause_or_stop(delay: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{async_nats_numbers, delivery_numbers};
    use rand::Rng;

    /// A context for `Message::info`, which never talks to a server.
    async fn context() -> super::JetStream {
        async_nats::jetstream::new(crate::jetstream::unanswered_client().await)
    }

    fn subjects(rng: &mut impl Rng) -> Vec<String> {
        let mut number = || -> String {
            match rng.random_range(0..4) {
                0 => rng.random_range(0..10u64).to_string(),
                1 => rng.random_range(0..1_000_000u64).to_string(),
                2 => rng
                    .random_range(0..1_000_000_000_000_000_000u64)
                    .to_string(),
                _ => "999999999999999999".to_string(),
            }
        };
        let numbers: Vec<String> = (0..5).map(|_| number()).collect();
        let n = numbers.join(".");
        // A timestamp as the server writes it, in nanoseconds: 19 digits.
        let timestamp = rng.random_range(1_700_000_000_000_000_000..2_000_000_000_000_000_000u64);
        let server = format!(
            "{}.{}.{}.{timestamp}.{}",
            numbers[0], numbers[1], numbers[2], numbers[4]
        );
        vec![
            format!("$JS.ACK.BENCH.traced.{server}"),
            format!("$JS.ACK._.ACCHASH.ORDERS.worker.{server}.tok3n"),
            format!("$JS.ACK.ORDERS.worker.{n}"),
            format!("$JS.ACK._.ACCHASH.ORDERS.worker.{n}"),
            format!("$JS.ACK.hub.ACCHASH.ORDERS.worker.{n}.tok3n"),
            format!("$JS.ACK.hub.ACCHASH.ORDERS.worker.{n}.tok3n.more.and.more"),
        ]
    }

    #[tokio::test]
    async fn the_quick_parse_reads_what_async_nats_reads() {
        let context = context().await;
        let mut rng = rand::rng();
        for _ in 0..1_000 {
            for subject in subjects(&mut rng) {
                let quick = delivery_numbers(&subject);
                assert!(quick.is_some(), "{subject}: canonical, but not read");
                assert_eq!(quick, async_nats_numbers(&context, &subject), "{subject}");
            }
        }
    }

    #[tokio::test]
    async fn the_quick_parse_never_reads_what_async_nats_would_not() {
        let context = context().await;
        let mut rng = rand::rng();
        let replacements = b".09a-+ _\x00";
        let mut quick_answers = 0;
        for base in subjects(&mut rng) {
            let base = base.as_bytes();
            for at in 0..=base.len() {
                let mut variants = vec![[&base[..at], &base[(at + 1).min(base.len())..]].concat()];
                for byte in replacements {
                    variants.push([&base[..at], &[*byte], &base[at..]].concat());
                    if at < base.len() {
                        variants.push([&base[..at], &[*byte], &base[at + 1..]].concat());
                    }
                }
                for variant in variants {
                    let Ok(subject) = String::from_utf8(variant) else {
                        continue;
                    };
                    // Quick says nothing (async-nats decides), or the same.
                    if let Some(quick) = delivery_numbers(&subject) {
                        quick_answers += 1;
                        assert_eq!(
                            Some(quick),
                            async_nats_numbers(&context, &subject),
                            "{subject}"
                        );
                    }
                }
            }
        }
        // Most mutations of a token's text leave a canonical subject.
        assert!(
            quick_answers > 100,
            "only {quick_answers} variants were read"
        );
        // As nats-server 2.15 writes it.
        assert_eq!(
            delivery_numbers("$JS.ACK.BENCH.traced.3.17.1.1795504900447626113.999"),
            Some((3, 17))
        );
        for too_long in [
            "$JS.ACK.S.c.1234567890123456789.1.1.1.1",
            "$JS.ACK.S.c.1.12345678901234567890.1.1.1",
            "$JS.ACK.S.c.1.1.1.12345678901234567890.1",
            "$JS.ACK.S.c.1.1.1.9223372036854775808.1",
            "$JS.ACK.S.c.-1.1.1.1.1",
            "$JS.ACK.S.c.1.1.1.1",
            "$JS.ACK.S.c.1.1.1.1.1.1",
            "$JS.ACK.",
            "$JS.ACKS.c.1.1.1.1.1",
        ] {
            assert_eq!(delivery_numbers(too_long), None, "{too_long}");
        }
    }
}
