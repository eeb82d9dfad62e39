//! JetStream: durable pull consumers for `#[nats_subscriber(stream = ...,
//! consumer = ...)]` handlers, streams declared in code, and the settle step
//! (ack, nak with backoff, term, in-progress, dead letters).
//!
//! JetStream handlers run through the same per-message pipeline as core NATS
//! handlers; only the source of messages (`consumer`) and the settle step
//! (`settle`) are their own.

mod ack;
pub(crate) mod consumer;
mod pull;
pub(crate) mod settle;
mod spec;
pub(crate) mod streams;

use opentelemetry::KeyValue;

use crate::semconv;

pub use settle::dead_letter_headers;
#[doc(hidden)]
pub use spec::StreamRegistration;
pub use spec::{
    DEFAULT_ACK_WAIT, DEFAULT_BACKOFF_MS, DEFAULT_MAX_DELIVER, JetStreamSpec, Retention, Storage,
    StreamSpec, declared_streams,
};
pub use streams::StreamAction;

/// A client whose server never answers: it never connects. For tests of
/// what happens without answers, and of async-nats's parsing.
#[cfg(test)]
pub(crate) async fn unanswered_client() -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect("nats://127.0.0.1:1")
        .await
        .expect("a client that connects in the background")
}

/// Where a JetStream message came from; see [`MessageContext::jetstream`](crate::MessageContext::jetstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JetStreamInfo {
    /// The stream.
    pub stream: &'static str,
    /// The durable consumer.
    pub consumer: &'static str,
    /// The message's sequence in the stream.
    pub stream_sequence: u64,
    /// How often it was delivered, this delivery included (1 the first time).
    pub delivery_count: u64,
}

impl JetStreamInfo {
    /// How many span attributes [`JetStreamInfo::add_attributes`] adds.
    pub(crate) const ATTRIBUTES: usize = 5;

    /// Adds the JetStream span attributes to `attributes`, one by one (see
    /// [`semconv::messaging_attributes`] for why).
    pub(crate) fn add_attributes(&self, attributes: &mut Vec<KeyValue>) {
        attributes.push(KeyValue::new(
            semconv::MESSAGING_CONSUMER_GROUP_NAME,
            self.consumer,
        ));
        attributes.push(KeyValue::new(semconv::MESSAGING_NATS_STREAM, self.stream));
        attributes.push(KeyValue::new(
            semconv::MESSAGING_NATS_CONSUMER,
            self.consumer,
        ));
        attributes.push(KeyValue::new(
            semconv::MESSAGING_NATS_STREAM_SEQUENCE,
            self.stream_sequence as i64,
        ));
        attributes.push(KeyValue::new(
            semconv::MESSAGING_NATS_DELIVERY_COUNT,
            self.delivery_count as i64,
        ));
    }
}
