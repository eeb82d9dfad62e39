//! The per-message pipeline: extract the trace context, start the process
//! span, run the handler inside it, reply (core NATS) or settle (JetStream),
//! end the span.
//!
//! Core NATS and JetStream share it; a JetStream delivery only adds its
//! attributes, in-progress acks while the handler runs, and the settle step.
//! Every stage is an ordinary function. The generated adapter only decodes
//! the payload, calls the user's function and encodes its output.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use async_nats::header::{HeaderValue, NATS_MESSAGE_ID};
use async_nats::{Client, HeaderMap, Message, Subject};
use futures_util::FutureExt as _;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue, StringValue};

use crate::context::Delivery;
use crate::extract::States;
use crate::failure::Failure;
use crate::jetstream::JetStreamInfo;
use crate::jetstream::settle::{self, JetStreamDelivery};
use crate::publisher::{Publisher, current};
use crate::registry::Handler;
use crate::reply::{Reply, header_text};
use crate::semconv;
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::OperationMetrics;

/// Processes one message with `handler`, from extraction to the settled
/// message and the ended span. Returns the handler's result.
///
/// Every message's run is one boxed future of this shape, so its size is
/// kept down: the rare steps (a reply, a nak, a dead letter, an in-progress
/// ack) are boxed where they happen, and futures are awaited where they are
/// built, never from a variable, which would store them twice.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` keeps a second copy of its arguments in its state"
)]
pub(crate) fn process(
    handler: &'static Handler,
    message: Message,
    mut jetstream: Option<JetStreamDelivery>,
    publisher: Publisher,
    metrics: Arc<OperationMetrics>,
    states: Option<Arc<States>>,
) -> impl Future<Output = Result<Reply, Failure>> + Send + 'static {
    async move {
        let started = Instant::now();
        let body_size = message.payload.len();
        let telemetry = publisher.telemetry();
        let parent = telemetry.propagation.extract(message.headers.as_ref());
        let info = jetstream.as_ref().map(|js| js.info);
        // A JetStream delivery's settle spans share it.
        let destination = match &jetstream {
            Some(js) => js.destination.clone(),
            None => destination(handler, &message.subject),
        };
        let cx = start_process_span(
            handler,
            &message,
            destination,
            info.as_ref(),
            &parent,
            telemetry,
        );
        // Not kept across the awaits below, where it would take room.
        drop(parent);
        // Only value-returning handlers answer: a `()` handler on a subject a
        // stream also captures must not answer JetStream's publish acks.
        let reply_to = message.reply.clone().filter(|_| handler.replies());

        let delivery = Delivery::new(message, handler.subject(), cx.clone(), info, states);
        let result = match &jetstream {
            None => run_in_scope(handler, delivery, &publisher, &cx).await,
            Some(js) => {
                tokio::select! {
                    result = run_in_scope(handler, delivery, &publisher, &cx) => result,
                    never = settle::keep_alive(handler, js, &cx, &publisher) => match never {},
                }
            }
        };

        if let Some(reply_to) = reply_to {
            Box::pin(send_reply(
                publisher.client(),
                telemetry,
                &cx,
                reply_to,
                &result,
            ))
            .await;
        }
        if let Some(js) = &mut jetstream {
            settle::settle(handler, js, &cx, &result, &publisher).await;
        }
        end_span(handler, &cx, &result);
        let error_type = result.as_ref().err().map(Failure::error_type);
        metrics.record(started.elapsed(), 1, Some(body_size), error_type.as_deref());
        result
    }
}

/// The metrics of `handler`'s runs, with the attributes every message
/// shares, built once.
pub(crate) fn metrics(
    handler: &'static Handler,
    consumer_group: Option<&'static str>,
    publisher: &Publisher,
) -> Arc<OperationMetrics> {
    let telemetry = publisher.telemetry();
    let attributes = crate::telemetry::metrics::attributes(
        semconv::operation_name::PROCESS,
        semconv::operation_type::PROCESS,
        handler.subject(),
        consumer_group,
        telemetry.server_attributes(),
    );
    Arc::new(telemetry.metrics().process(attributes))
}

/// Starts the CONSUMER span `process {subscription}`, with every
/// sampling-relevant attribute set at start.
fn start_process_span(
    handler: &'static Handler,
    message: &Message,
    destination: StringValue,
    jetstream: Option<&JetStreamInfo>,
    parent: &Context,
    telemetry: &Telemetry,
) -> Context {
    let mut attributes = semconv::messaging_attributes(
        semconv::operation_name::PROCESS,
        semconv::operation_type::PROCESS,
        destination,
        handler.subject(),
        // The 5 above, the body size, a consumer group, a message id, the
        // JetStream ones and the server's.
        8 + JetStreamInfo::ATTRIBUTES + telemetry.server_attributes().len(),
    );
    attributes.push(KeyValue::new(
        semconv::MESSAGING_MESSAGE_BODY_SIZE,
        message.payload.len() as i64,
    ));
    if let Some(queue) = handler.queue() {
        attributes.push(KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, queue));
    }
    if let Some(info) = jetstream {
        info.add_attributes(&mut attributes);
    }
    if let Some(id) = message_id(message.headers.as_ref()) {
        attributes.push(KeyValue::new(semconv::MESSAGING_MESSAGE_ID, id.to_string()));
    }
    attributes.extend_from_slice(telemetry.server_attributes());

    let builder = SpanBuilder::from_name(handler.span_name())
        .with_kind(SpanKind::Consumer)
        .with_attributes(attributes);
    telemetry.start_span(builder, parent)
}

/// `messaging.destination.name` of a message `handler` received on
/// `subject`: the subscription subject itself when it has no wildcards, with
/// no copy, or else one shared copy that every span of the message can
/// clone.
pub(crate) fn destination(handler: &'static Handler, subject: &str) -> StringValue {
    if subject == handler.subject() {
        StringValue::from(handler.subject())
    } else {
        StringValue::from(Arc::<str>::from(subject))
    }
}

/// The `Nats-Msg-Id` header, found by reading the few headers a message
/// has rather than hashing the name, which cost more.
fn message_id(headers: Option<&HeaderMap>) -> Option<&str> {
    let (_, values) = headers?
        .iter()
        .find(|(name, _)| **name == NATS_MESSAGE_ID)?;
    values.first().map(HeaderValue::as_str)
}

/// The handler's run with the process span as the current context, and its
/// own publishes going through its runtime's connection.
fn run_in_scope(
    handler: &'static Handler,
    delivery: Delivery,
    publisher: &Publisher,
    cx: &Context,
) -> impl Future<Output = Result<Reply, Failure>> {
    current::scope(
        publisher.clone(),
        run_handler(handler, delivery).with_context(cx.clone()),
    )
}

/// Calls the handler, turning a panic into a [`Failure`] so the runtime
/// keeps serving. The adapter returns its future boxed, so this holds only
/// the box, not the delivery next to it.
fn run_handler(
    handler: &'static Handler,
    delivery: Delivery,
) -> impl Future<Output = Result<Reply, Failure>> {
    AssertUnwindSafe(handler.call(delivery))
        .catch_unwind()
        .map(|finished| finished.unwrap_or_else(|panic| Err(Failure::panic(&*panic))))
}

/// Answers a request: the body and the reply's headers on success, the
/// `Nats-Service-Error` headers and the failure's own on failure. The reply
/// carries the process span's context.
async fn send_reply(
    client: &Client,
    telemetry: &Telemetry,
    cx: &Context,
    reply_to: Subject,
    result: &Result<Reply, Failure>,
) {
    let (headers, body) = match result {
        Ok(reply) => (reply.headers().cloned(), reply.body().clone()),
        Err(failure) => {
            let mut headers = failure.headers().cloned().unwrap_or_default();
            headers.insert(
                async_nats::service::NATS_SERVICE_ERROR,
                header_text(failure.message()),
            );
            headers.insert(
                async_nats::service::NATS_SERVICE_ERROR_CODE,
                HeaderValue::from(failure.service_code()),
            );
            (Some(headers), bytes::Bytes::new())
        }
    };
    let mut headers = headers.unwrap_or_default();
    telemetry.propagation.inject(cx, &mut headers);
    if let Err(error) = client.publish_with_headers(reply_to, headers, body).await {
        tracing::warn!(%error, "sending the reply failed");
        cx.span().add_event(
            "reply failed",
            vec![KeyValue::new("exception.message", error.to_string())],
        );
    }
}

/// Ends the process span, first recording a failure on it and logging it
/// with the span as the current OpenTelemetry context, so the line carries
/// its ids (the default logging prints them; an OpenTelemetry log bridge
/// links the record to the span).
fn end_span(handler: &'static Handler, cx: &Context, result: &Result<Reply, Failure>) {
    let span = cx.span();
    if let Err(failure) = result {
        let error_type = failure.error_type();
        span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type.to_string()));
        span.set_status(Status::error(failure.message().to_string()));
        let _current = cx.clone().attach();
        tracing::warn!(
            handler = handler.name(),
            error.type = &*error_type,
            error.code = failure.service_code(),
            error = failure.message(),
            "message failed"
        );
    }
    span.end();
}

#[cfg(test)]
mod tests {
    use super::message_id;
    use async_nats::HeaderMap;

    #[test]
    fn the_message_id_is_the_first_nats_msg_id_value() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        headers.insert("nats-msg-id", "lowercase is another header");
        assert_eq!(message_id(Some(&headers)), None);
        headers.insert("Nats-Msg-Id", "order-7");
        headers.append("Nats-Msg-Id", "order-8");
        assert_eq!(message_id(Some(&headers)), Some("order-7"));
        assert_eq!(message_id(None), None);
    }
}
