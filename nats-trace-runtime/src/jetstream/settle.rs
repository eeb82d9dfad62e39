//! The JetStream settle step: ack, nak with backoff, term, in-progress, and
//! dead letters, each under a CLIENT span that is a child of the process span.

use std::borrow::Cow;
use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{HeaderName, HeaderValue};
use async_nats::jetstream::AckKind;
use async_nats::jetstream::Context as JetStream;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue, StringValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::JetStreamInfo;
use super::ack::Acks;
use super::spec::JetStreamSpec;
use crate::failure::{Disposition, Failure};
use crate::publisher::{Publisher, RetryPolicy};
use crate::registry::Handler;
use crate::reply::Reply;
use crate::semconv;
use crate::telemetry::metrics::{self, Binding, OperationMetrics};

/// How many acks, per slot of the handler's concurrency, may wait for their
/// confirmation after their message gave its slot back (see [`settle`]).
/// Under load on 2 cores, with 256 slots, one per slot made a fifth of
/// the acks keep their slot, two a thirtieth, four almost none.
pub(crate) const CONFIRMING_PER_SLOT: usize = 4;

/// How long the request confirming a batch of acks may take.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Dead-letter headers, next to the original ones.
pub mod dead_letter_headers {
    /// The last error's message.
    pub const ERROR: &str = "Nats-Trace-Dlq-Error";
    /// The last error's `error.type`.
    pub const ERROR_TYPE: &str = "Nats-Trace-Dlq-Error-Type";
    /// How often the message was delivered.
    pub const DELIVERY_COUNT: &str = "Nats-Trace-Dlq-Delivery-Count";
    /// The subject it was published to.
    pub const SUBJECT: &str = "Nats-Trace-Dlq-Subject";
    /// Its stream.
    pub const STREAM: &str = "Nats-Trace-Dlq-Stream";
    /// The consumer that gave up on it.
    pub const CONSUMER: &str = "Nats-Trace-Dlq-Consumer";
    /// Its sequence in the stream.
    pub const SEQUENCE: &str = "Nats-Trace-Dlq-Sequence";
}

/// One JetStream delivery: what the settle step needs besides the message.
pub(crate) struct JetStreamDelivery {
    pub(crate) spec: &'static JetStreamSpec,
    pub(crate) info: JetStreamInfo,
    /// The `$JS.ACK…` subject acks are sent to.
    pub(crate) ack_subject: Subject,
    /// `messaging.destination.name`, shared by the message's spans.
    pub(crate) destination: StringValue,
    /// What settling the handler's messages needs, built once.
    pub(crate) settler: Arc<Settler>,
    /// The message's slot in its handler's `concurrency`, once it started
    /// (see [`settle`]).
    pub(crate) slot: Option<OwnedSemaphorePermit>,
}

/// What settling one handler's messages needs, built once per handler.
pub(crate) struct Settler {
    ack: Operation,
    nak: Operation,
    term: Operation,
    progress: Operation,
    acks: Acks,
    /// Room for acks that wait for their confirmation outside their
    /// message's slot: [`CONFIRMING_PER_SLOT`] per slot of the handler's
    /// concurrency (see [`settle`]).
    confirming: Arc<Semaphore>,
    /// Reads a message back from its stream for its dead letter.
    jetstream: JetStream,
}

impl Settler {
    pub(crate) fn new(
        handler: &'static Handler,
        spec: &'static JetStreamSpec,
        jetstream: &JetStream,
        publisher: &Publisher,
    ) -> Self {
        let telemetry = publisher.telemetry();
        let operation = |name, failed| Operation::new(name, failed, handler, spec, telemetry);
        Settler {
            ack: operation("ack", super::ack::ACK_FAILED),
            nak: operation("nak", "nak_failed"),
            term: operation("term", "term_failed"),
            progress: operation("progress", "progress_failed"),
            acks: Acks::new(publisher.client().clone(), ACK_TIMEOUT),
            confirming: Arc::new(Semaphore::new(CONFIRMING_PER_SLOT * handler.concurrency())),
            jetstream: jetstream.clone(),
        }
    }
}

/// One settle operation of one handler: its span name and metrics.
struct Operation {
    /// `ack`, `nak`, `term` or `progress`.
    name: &'static str,
    /// The `error.type` when it cannot be sent, e.g. `nak_failed`.
    failed: &'static str,
    /// `{operation} {subscription}`.
    span_name: Cow<'static, str>,
    metrics: OperationMetrics,
}

impl Operation {
    fn new(
        name: &'static str,
        failed: &'static str,
        handler: &'static Handler,
        spec: &'static JetStreamSpec,
        telemetry: &crate::telemetry::Telemetry,
    ) -> Self {
        Operation {
            name,
            failed,
            span_name: crate::publisher::names::names(name, handler.subject()).span_name,
            metrics: telemetry.metrics().client_operation(
                metrics::attributes(
                    name,
                    semconv::operation_type::SETTLE,
                    handler.subject(),
                    Some(spec.consumer),
                    telemetry.server_attributes(),
                ),
                Binding::OnFirstUse,
            ),
        }
    }
}

/// How a finished delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// Done: the stream may forget it.
    Ack,
    /// Failed: deliver again after the delay.
    Nak(Duration),
    /// Failed for good: dead-letter it, then stop its deliveries.
    DeadLetter,
}

/// The settle policy: `Ok` acks; a failure its [`Disposition`] rejects
/// (an undecodable payload, a rejected message, or an error that says so)
/// is dead-lettered at once; any other is naked, with its own delay or the
/// backoff delay, until its last delivery, then dead-lettered.
pub(crate) fn decide(
    spec: &JetStreamSpec,
    delivered: u64,
    result: &Result<Reply, Failure>,
) -> Settlement {
    let Err(failure) = result else {
        return Settlement::Ack;
    };
    match failure.disposition() {
        Disposition::Reject => Settlement::DeadLetter,
        _ if delivered >= spec.max_deliver() as u64 => Settlement::DeadLetter,
        Disposition::RetryAfter(delay) => Settlement::Nak(delay),
        Disposition::Retry => Settlement::Nak(spec.nak_delay(delivered)),
    }
}

/// Settles one delivery as [`decide`] says.
///
/// An ack is the common case and runs inline; a nak or a dead letter is
/// boxed, so that its larger state does not grow every message's run.
///
/// An ack waits for the server's confirmation outside the message's slot
/// in its handler's `concurrency`, in room of its own
/// ([`CONFIRMING_PER_SLOT`] acks per slot): the wait (at most two ack
/// timeouts) is only a wait, and holding the slot through it let the
/// handler start, and its consumer pull, fewer messages at a time. When
/// that room is full, the ack keeps the slot, so that no more acks are
/// lost in a reconnect, and their messages delivered twice, than that. The
/// run itself, and its settle span, still end only once the ack is
/// confirmed or has failed. A failed message keeps its slot until it is
/// settled: its dead letter reads the message back and publishes it, with
/// retries, and failing messages must not pile up while they do.
pub(crate) async fn settle(
    handler: &'static Handler,
    delivery: &mut JetStreamDelivery,
    cx: &Context,
    result: &Result<Reply, Failure>,
    publisher: &Publisher,
) {
    match decide(delivery.spec, delivery.info.delivery_count, result) {
        Settlement::Ack => {
            // The slot is given back before the ack is queued, with no wait
            // in between: the consumer cannot pull into it before this run
            // yields.
            let _confirming = match delivery.settler.confirming.clone().try_acquire_owned() {
                Ok(room) => {
                    drop(delivery.slot.take());
                    Some(room)
                }
                Err(_) => None,
            };
            // Confirmed by the consumer, in a batch with other acks; the
            // batch bounds how long that may take.
            traced(
                handler,
                delivery,
                cx,
                publisher,
                &delivery.settler.ack,
                &[],
                || delivery.settler.acks.ack(delivery.ack_subject.clone()),
            )
            .await;
        }
        Settlement::Nak(delay) => Box::pin(nak(handler, delivery, cx, publisher, delay)).await,
        Settlement::DeadLetter => {
            if let Err(failure) = result {
                Box::pin(give_up(handler, delivery, cx, failure, publisher)).await;
            }
        }
    }
}

/// Dead-letters a message that failed for good, then terms it. If the dead
/// letter cannot be sent, the message is naked instead, to come back; if
/// its stream no longer holds it, there is nothing to keep, and it is
/// termed.
async fn give_up(
    handler: &'static Handler,
    delivery: &JetStreamDelivery,
    cx: &Context,
    failure: &Failure,
    publisher: &Publisher,
) {
    // Under the process span, so the dead letter stays in the trace.
    let sent = dead_letter(delivery, failure, publisher)
        .with_context(cx.clone())
        .await;
    match sent {
        Ok(()) => term(handler, delivery, cx, publisher).await,
        Err(NotDeadLettered::Gone) => {
            tracing::warn!(
                handler = handler.name(),
                stream = delivery.spec.stream,
                sequence = delivery.info.stream_sequence,
                "the stream no longer holds the failed message (a limit or a purge removed it), \
                 so there is nothing to dead-letter; terminating it"
            );
            cx.span().add_event(
                "dead letter skipped",
                vec![KeyValue::new(
                    "exception.message",
                    "the stream no longer holds the message",
                )],
            );
            term(handler, delivery, cx, publisher).await;
        }
        Err(NotDeadLettered::Failed(error)) => {
            // Not termed: the message comes back after the backoff delay and
            // its dead letter is tried again. The server sets no delivery
            // limit, so it cannot be dropped.
            tracing::error!(
                handler = handler.name(),
                stream = delivery.spec.stream,
                sequence = delivery.info.stream_sequence,
                %error,
                "dead-lettering failed; the message will be redelivered"
            );
            cx.span().add_event(
                "dead letter failed",
                vec![KeyValue::new("exception.message", error)],
            );
            let delay = delivery.spec.nak_delay(delivery.info.delivery_count);
            nak(handler, delivery, cx, publisher, delay).await;
        }
    }
}

async fn nak(
    handler: &'static Handler,
    delivery: &JetStreamDelivery,
    cx: &Context,
    publisher: &Publisher,
    delay: Duration,
) {
    let extra = [KeyValue::new(
        semconv::NAK_DELAY_MS,
        delay.as_millis() as i64,
    )];
    let nak = &delivery.settler.nak;
    signal(
        handler,
        delivery,
        cx,
        publisher,
        nak,
        &extra,
        AckKind::Nak(Some(delay)),
    )
    .await;
}

async fn term(
    handler: &'static Handler,
    delivery: &JetStreamDelivery,
    cx: &Context,
    publisher: &Publisher,
) {
    let term = &delivery.settler.term;
    signal(handler, delivery, cx, publisher, term, &[], AckKind::Term).await;
}

/// Sends `kind` (a nak, a term or an in-progress ack) to the delivery's ack
/// subject under `operation`'s CLIENT span: a plain publish, which the
/// server does not answer.
async fn signal(
    handler: &'static Handler,
    delivery: &JetStreamDelivery,
    cx: &Context,
    publisher: &Publisher,
    operation: &Operation,
    extra: &[KeyValue],
    kind: AckKind,
) {
    traced(
        handler,
        delivery,
        cx,
        publisher,
        operation,
        extra,
        || async {
            publisher
                .client()
                .publish(delivery.ack_subject.clone(), Bytes::from(kind))
                .await
                .map_err(|e| (operation.failed, e.to_string()))
        },
    )
    .await;
}

/// Tells the server the handler is still working, so it does not redeliver
/// the message: every half `ack_wait`, until dropped. Never completes.
pub(crate) async fn keep_alive(
    handler: &'static Handler,
    delivery: &JetStreamDelivery,
    cx: &Context,
    publisher: &Publisher,
) -> Infallible {
    let period = delivery.spec.ack_wait() / 2;
    // A fixed schedule: a slow progress ack does not push the next one out.
    let mut next = tokio::time::Instant::now() + period;
    loop {
        tokio::time::sleep_until(next).await;
        next += period;
        // Boxed: most runs never get here, and their state stays small.
        let progress = &delivery.settler.progress;
        Box::pin(signal(
            handler,
            delivery,
            cx,
            publisher,
            progress,
            &[],
            AckKind::Progress,
        ))
        .await;
    }
}

/// Why a message was not dead-lettered.
enum NotDeadLettered {
    /// Its stream no longer holds it: a limit or a purge removed it, so
    /// there is nothing left to keep.
    Gone,
    /// Reading it back or publishing its dead letter failed; its next
    /// delivery tries again.
    Failed(String),
}

/// Publishes the original message, with headers saying why, to the
/// dead-letter subject, confirmed by the server. The publish span is a child
/// of the process span, so the dead letter stays in the message's trace.
///
/// The original is read back from the stream, which holds it at least
/// until it is settled, unless a limit or a purge removed it: keeping a
/// copy of every message for the few that fail would cost every message a
/// copy of its subject and headers.
async fn dead_letter(
    delivery: &JetStreamDelivery,
    failure: &Failure,
    publisher: &Publisher,
) -> Result<(), NotDeadLettered> {
    let info = &delivery.info;
    let original = stored(delivery).await?;
    // The original's publish expectations must not apply to the copy.
    let mut headers: HeaderMap = original
        .headers
        .iter()
        .filter(|(name, _)| !EXPECTATION_HEADERS.contains(&AsRef::<str>::as_ref(*name)))
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.clone(), value.clone()))
        })
        .collect();
    let mut set = |name: &'static str, value: String| {
        let clean: String = value
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(name), HeaderValue::from_str(&clean)) {
            headers.insert(name, value);
        }
    };
    set(dead_letter_headers::ERROR, failure.message().to_string());
    set(
        dead_letter_headers::ERROR_TYPE,
        failure.error_type().into_owned(),
    );
    set(
        dead_letter_headers::DELIVERY_COUNT,
        info.delivery_count.to_string(),
    );
    set(dead_letter_headers::SUBJECT, original.subject.to_string());
    set(dead_letter_headers::STREAM, info.stream.to_string());
    set(dead_letter_headers::CONSUMER, info.consumer.to_string());
    set(
        dead_letter_headers::SEQUENCE,
        info.stream_sequence.to_string(),
    );
    let subject = delivery.spec.dead_letter_subject();
    let body = original.payload;
    let confirmed = publisher.with_retry(RetryPolicy::retries(3));
    // Stored when a stream captures the subject; a JetStream publish to a
    // subject without one would wait in vain for the stream's ack.
    let published = if publisher.stream_for(&subject).await.is_some() {
        confirmed
            .publish_jetstream_bytes(&subject, headers, body)
            .await
            .map(|_| ())
    } else {
        tracing::warn!(
            subject,
            "no stream captures the dead-letter subject, so the dead letter is only \
             published, not stored; declare a stream for it to keep dead letters"
        );
        confirmed.publish_bytes(&subject, headers, body).await
    };
    published.map_err(|error| NotDeadLettered::Failed(error.to_string()))
}

/// The delivered message as its stream stores it: subject, headers and
/// body, whatever the handler did with its own copy.
async fn stored(delivery: &JetStreamDelivery) -> Result<StreamMessage, NotDeadLettered> {
    let (stream, sequence) = (delivery.spec.stream, delivery.info.stream_sequence);
    let failed = |error: &dyn std::fmt::Display| {
        NotDeadLettered::Failed(format!(
            "reading message {sequence} back from stream {stream} failed: {error}"
        ))
    };
    let handle = delivery
        .settler
        .jetstream
        .get_stream_no_info(stream)
        .await
        .map_err(|error| failed(&error))?;
    handle
        .get_raw_message(sequence)
        .await
        .map_err(|error| match error.kind() {
            RawMessageErrorKind::NoMessageFound => NotDeadLettered::Gone,
            _ => failed(&error),
        })
}

/// Headers that tell JetStream what to expect of a publish; a dead letter
/// is a new publish to another subject, so they are removed from the copy.
const EXPECTATION_HEADERS: &[&str] = &[
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Sequence",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Msg-Id",
];

/// Runs one settle operation under a CLIENT span `{operation} {subscription}`.
/// `settle` builds the operation's future where it is awaited, so it is not
/// stored twice.
async fn traced<F>(
    handler: &'static Handler,
    delivery: &JetStreamDelivery,
    cx: &Context,
    publisher: &Publisher,
    operation: &Operation,
    extra: &[KeyValue],
    settle: impl FnOnce() -> F,
) where
    F: Future<Output = Result<(), (&'static str, String)>>,
{
    let telemetry = publisher.telemetry();
    let mut attributes = semconv::messaging_attributes(
        operation.name,
        semconv::operation_type::SETTLE,
        delivery.destination.clone(),
        handler.subject(),
        5 + JetStreamInfo::ATTRIBUTES + extra.len() + telemetry.server_attributes().len(),
    );
    delivery.info.add_attributes(&mut attributes);
    attributes.extend_from_slice(extra);
    attributes.extend_from_slice(telemetry.server_attributes());
    let builder = SpanBuilder::from_name(operation.span_name.clone())
        .with_kind(SpanKind::Client)
        .with_attributes(attributes);
    let settle_cx = telemetry.start_span(builder, cx);
    let started = std::time::Instant::now();
    let outcome = settle().await;
    operation.metrics.record(
        started.elapsed(),
        0,
        None,
        outcome.as_ref().err().map(|(error_type, _)| *error_type),
    );
    if let Err((error_type, message)) = outcome {
        tracing::warn!(
            handler = handler.name(),
            operation = operation.name,
            sequence = delivery.info.stream_sequence,
            error = %message,
            "settling a message failed"
        );
        let span = settle_cx.span();
        span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type));
        span.set_status(Status::error(message));
    }
    settle_cx.span().end();
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: JetStreamSpec = JetStreamSpec {
        stream: "S",
        consumer: "c",
        max_deliver: Some(3),
        ack_wait_ms: None,
        backoff_ms: Some(&[100, 300]),
        deliver_new: false,
        dead_letter: None,
    };

    #[test]
    fn the_policy_acks_naks_with_backoff_and_dead_letters() {
        let ok = Ok(Reply::empty());
        let failed = Err(Failure::handler("boom"));
        let undecodable = Err(Failure::decode("bad json"));
        assert_eq!(decide(&SPEC, 1, &ok), Settlement::Ack);
        assert_eq!(
            decide(&SPEC, 1, &failed),
            Settlement::Nak(Duration::from_millis(100))
        );
        assert_eq!(
            decide(&SPEC, 2, &failed),
            Settlement::Nak(Duration::from_millis(300))
        );
        assert_eq!(decide(&SPEC, 3, &failed), Settlement::DeadLetter);
        assert_eq!(decide(&SPEC, 1, &undecodable), Settlement::DeadLetter);
        let panicked = Err(Failure::panic(&"oops"));
        assert_eq!(
            decide(&SPEC, 1, &panicked),
            Settlement::Nak(Duration::from_millis(100))
        );
        let rejected = Err(Failure::service(409, "taken").reject());
        assert_eq!(decide(&SPEC, 1, &rejected), Settlement::DeadLetter);
        let later = Err(Failure::service(503, "busy").retry_after(Duration::from_secs(7)));
        assert_eq!(
            decide(&SPEC, 1, &later),
            Settlement::Nak(Duration::from_secs(7))
        );
        assert_eq!(decide(&SPEC, 3, &later), Settlement::DeadLetter);
    }
}
