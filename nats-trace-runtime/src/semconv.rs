//! Attribute names and values of the OpenTelemetry messaging conventions
//! (v1.44, development status), in one place.
//!
//! Names defined by `opentelemetry-semantic-conventions` are re-exported from
//! it; names it does not define yet are project-specific and live here.

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
}

/// `error.type` values of failures that have no Rust error type of their own.
pub mod error_type {
    /// The handler panicked.
    pub const PANIC: &str = "panic";
    /// A request got no reply in time.
    pub const TIMEOUT: &str = "timeout";
    /// A request found no subscriber on its subject.
    pub const NO_RESPONDERS: &str = "no_responders";
}
