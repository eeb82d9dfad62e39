//! Attribute names and values of the OpenTelemetry messaging conventions
//! (v1.44, development status), in one place.
//!
//! Names defined by `opentelemetry-semantic-conventions` are re-exported from
//! it; names it does not define yet are project-specific and live here.

use opentelemetry::{KeyValue, StringValue};
pub use opentelemetry_semantic_conventions::SCHEMA_URL;
pub use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, MESSAGING_BATCH_MESSAGE_COUNT, MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME, MESSAGING_DESTINATION_TEMPLATE, MESSAGING_MESSAGE_BODY_SIZE,
    MESSAGING_MESSAGE_ID, MESSAGING_OPERATION_NAME, MESSAGING_OPERATION_TYPE, MESSAGING_SYSTEM,
    SERVER_ADDRESS, SERVER_PORT,
};

/// `messaging.system`: NATS is not a registered value yet; nats.net uses the same string.
pub const SYSTEM_NATS: &str = "nats";

/// `messaging.operation.type` values.
pub mod operation_type {
    /// A message handler run.
    pub const PROCESS: &str = "process";
    /// Sending one or more messages.
    pub const SEND: &str = "send";
    /// Creating a message that is sent later, in a batch.
    pub const CREATE: &str = "create";
    /// Receiving messages (JetStream fetch).
    pub const RECEIVE: &str = "receive";
    /// Settling a message (JetStream ack, nak, term, progress).
    pub const SETTLE: &str = "settle";
}

/// `messaging.operation.name` values.
pub mod operation_name {
    /// A handler run.
    pub const PROCESS: &str = "process";
    /// A publish.
    pub const PUBLISH: &str = "publish";
    /// A request that waits for a reply.
    pub const REQUEST: &str = "request";
    /// Creating one message of a batch.
    pub const CREATE: &str = "create";
}

/// `messaging.nats.stream`: the JetStream stream of a message.
pub const MESSAGING_NATS_STREAM: &str = "messaging.nats.stream";
/// `messaging.nats.consumer`: the JetStream consumer delivering a message.
pub const MESSAGING_NATS_CONSUMER: &str = "messaging.nats.consumer";
/// `messaging.nats.stream_sequence`: the message's sequence in its stream.
pub const MESSAGING_NATS_STREAM_SEQUENCE: &str = "messaging.nats.stream_sequence";
/// `messaging.nats.delivery_count`: how often JetStream delivered the message.
pub const MESSAGING_NATS_DELIVERY_COUNT: &str = "messaging.nats.delivery_count";

/// `nats_trace.stream.action`: what ensuring a declared stream did
/// (`created`, `updated`, `unchanged`).
pub const STREAM_ACTION: &str = "nats_trace.stream.action";
/// `nats_trace.nak.delay_ms`: the redelivery delay a nak asked for.
pub const NAK_DELAY_MS: &str = "nats_trace.nak.delay_ms";

/// `nats_trace.publish.attempts`: how many attempts a publish with retries took.
pub const PUBLISH_ATTEMPTS: &str = "nats_trace.publish.attempts";
/// `nats_trace.batch.succeeded`: messages of a batch that were sent.
pub const BATCH_SUCCEEDED: &str = "nats_trace.batch.succeeded";
/// `nats_trace.batch.failed`: messages of a batch that failed.
pub const BATCH_FAILED: &str = "nats_trace.batch.failed";

/// `error.type` values of failures that have no Rust error type of their own.
pub mod error_type {
    /// The handler panicked.
    pub const PANIC: &str = "panic";
    /// A request got no reply in time.
    pub const TIMEOUT: &str = "timeout";
    /// A request found no subscriber on its subject.
    pub const NO_RESPONDERS: &str = "no_responders";
}

/// The attributes every messaging span starts with, in a vector with room
/// for `capacity` in all.
///
/// Pushed one by one: extending the vector by an array of them made the
/// compiler build the array and copy it twice, with `memcpy` calls that were
/// a measurable part of a message's cost.
pub(crate) fn messaging_attributes(
    operation_name: &'static str,
    operation_type: &'static str,
    destination: impl Into<StringValue>,
    template: impl Into<StringValue>,
    capacity: usize,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(capacity.max(5));
    attributes.push(KeyValue::new(MESSAGING_SYSTEM, SYSTEM_NATS));
    attributes.push(KeyValue::new(MESSAGING_OPERATION_NAME, operation_name));
    attributes.push(KeyValue::new(MESSAGING_OPERATION_TYPE, operation_type));
    attributes.push(KeyValue::new(
        MESSAGING_DESTINATION_NAME,
        destination.into(),
    ));
    attributes.push(KeyValue::new(
        MESSAGING_DESTINATION_TEMPLATE,
        template.into(),
    ));
    attributes
}
