//! Errors of the runtime itself: starting, connecting, stopping.

use std::time::Duration;

/// Why the runtime could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The initial connection failed after every attempt.
    #[error("could not connect to NATS at {url} after {attempts} attempts: {source}")]
    Connect {
        /// The server URL, without credentials.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// Subscribing a handler failed.
    #[error("could not subscribe handler {handler} to {subject}: {source}")]
    Subscribe {
        /// The handler's path.
        handler: &'static str,
        /// Its subject.
        subject: &'static str,
        /// The client's error.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// Two handlers claim the same subject and queue group.
    #[error(
        "handlers {first} and {second} both subscribe to `{subject}` {group}; \
         give each its own `queue = \"...\"` (every queue group gets every message) or remove one",
        group = match queue { Some(q) => format!("in queue group `{q}`"), None => "without a queue group".to_string() }
    )]
    DuplicateHandler {
        /// The shared subject.
        subject: &'static str,
        /// The shared queue group.
        queue: Option<&'static str>,
        /// One handler, with its location.
        first: String,
        /// The other handler, with its location.
        second: String,
    },
    /// No handler matched: nothing would ever be processed.
    #[error(
        "no handlers to run: annotate an async fn with #[nats_subscriber(subject = \"...\")] \
         in a crate linked into this program, or relax the builder's handler filter"
    )]
    NoHandlers,
    /// A connection-level operation failed.
    #[error("NATS connection error: {0}")]
    Connection(String),
    /// In-flight handlers were still running when the shutdown timeout expired.
    #[error("{unfinished} handler runs did not finish within the shutdown timeout of {timeout:?}")]
    ShutdownTimeout {
        /// How many handler runs were cut off.
        unfinished: usize,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The runtime's URL or environment is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
}
