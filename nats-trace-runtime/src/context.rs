//! What a handler can know about the message it is processing.

use std::sync::Arc;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;

use crate::extract::States;
use crate::jetstream::JetStreamInfo;

/// The message around a handler's payload: take `ctx: MessageContext` (or
/// `&MessageContext`) as a parameter to get it. Extractors
/// ([`FromMessageParts`](crate::FromMessageParts)) read from it.
///
/// ```
/// use nats_trace_runtime::prelude::*;
///
/// #[nats_subscriber(subject = "orders.*")]
/// async fn audit(body: bytes::Bytes, ctx: MessageContext) {
///     println!("{} bytes on {}", body.len(), ctx.subject());
/// }
/// ```
#[derive(Debug, Clone)]
pub struct MessageContext {
    subject: Subject,
    reply: Option<Subject>,
    headers: Option<HeaderMap>,
    template: &'static str,
    otel: opentelemetry::Context,
    jetstream: Option<JetStreamInfo>,
    states: Option<Arc<States>>,
}

impl MessageContext {
    /// The concrete subject the message was published to, e.g. `orders.created`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub(crate) fn subject_ref(&self) -> &Subject {
        &self.subject
    }

    /// The state of type `T` given to the runtime with
    /// [`Builder::state`](crate::runtime::Builder::state), for extractors
    /// of your own (declare it in their
    /// [`requirements`](crate::FromMessageParts::requirements)); handlers
    /// take [`State<T>`](crate::State).
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.states.as_deref()?.get::<T>()
    }

    /// The subscription subject the handler was registered with, e.g. `orders.*`.
    pub fn subscription(&self) -> &'static str {
        self.template
    }

    /// The reply subject, when the message is a request.
    pub fn reply(&self) -> Option<&str> {
        self.reply.as_deref()
    }

    /// All headers of the message.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.headers.as_ref()
    }

    /// The first value of header `name`, if present. Names are case-sensitive,
    /// as in NATS. Never panics, whatever `name` is.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name: async_nats::header::HeaderName = name.parse().ok()?;
        self.headers.as_ref()?.get(name).map(|value| value.as_str())
    }

    /// The stream, consumer, stream sequence and delivery count, for a
    /// message from a JetStream consumer.
    pub fn jetstream(&self) -> Option<&JetStreamInfo> {
        self.jetstream.as_ref()
    }

    /// The OpenTelemetry context of the handler's process span. It is also the
    /// current context while the handler runs, so this is rarely needed.
    pub fn otel_context(&self) -> &opentelemetry::Context {
        &self.otel
    }
}

/// One message handed to a handler adapter: the body to decode and the
/// context around it. Built by the pipeline, consumed by generated code.
#[derive(Debug)]
pub struct Delivery {
    payload: Bytes,
    context: MessageContext,
}

impl Delivery {
    pub(crate) fn new(
        message: async_nats::Message,
        template: &'static str,
        otel: opentelemetry::Context,
        jetstream: Option<JetStreamInfo>,
        states: Option<Arc<States>>,
    ) -> Self {
        Delivery {
            payload: message.payload,
            context: MessageContext {
                subject: message.subject,
                reply: message.reply,
                headers: message.headers,
                template,
                otel,
                jetstream,
                states,
            },
        }
    }

    /// The context, borrowed where it is, and the body, taken out (once):
    /// what the extractors read. The delivery is then dropped where it is,
    /// with nothing moved.
    pub fn parts(&mut self) -> (&MessageContext, Option<Bytes>) {
        (&self.context, Some(std::mem::take(&mut self.payload)))
    }
}
