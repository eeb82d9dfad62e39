//! Errors of the runtime itself: starting, connecting, stopping.

use std::time::Duration;

/// Why the runtime could not start or stop cleanly.
///
/// Its `Debug` is its message, with the chain of causes, as anyhow's is:
/// `main() -> Result<(), nats_trace_runtime::Error>` prints a sentence,
/// not a struct.
#[derive(thiserror::Error)]
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
    /// Two handlers claim the same subject and queue group, or the same
    /// durable consumer.
    #[error(
        "handlers {first} and {second} both {claim}; {fix}",
        claim = match (queue, consumer) {
            (_, Some(c)) => format!("read from the durable consumer `{c}`"),
            (Some(q), None) => format!("subscribe to `{subject}` in queue group `{q}`"),
            (None, None) => format!("subscribe to `{subject}` without a queue group"),
        },
        fix = if consumer.is_some() {
            "give each its own `consumer = \"...\"` or remove one"
        } else {
            "give each its own `queue = \"...\"` (every queue group gets every message) or remove one"
        }
    )]
    DuplicateHandler {
        /// The shared subject.
        subject: &'static str,
        /// The shared queue group.
        queue: Option<&'static str>,
        /// The shared durable consumer (`stream/consumer`).
        consumer: Option<&'static str>,
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
    /// A declared stream could not be created, read or updated.
    #[error("JetStream stream `{stream}`: {reason}")]
    Stream {
        /// The stream.
        stream: &'static str,
        /// What failed.
        reason: String,
    },
    /// A declared stream exists with a setting that cannot change.
    #[error("JetStream stream `{stream}` exists with an incompatible configuration: {difference}")]
    StreamIncompatible {
        /// The stream.
        stream: &'static str,
        /// The difference, and how to resolve it.
        difference: String,
    },
    /// A handler's durable consumer could not be created or updated.
    #[error("JetStream consumer `{consumer}` on stream `{stream}`: {reason}")]
    Consumer {
        /// The stream.
        stream: &'static str,
        /// The consumer.
        consumer: &'static str,
        /// What failed.
        reason: String,
    },
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
    /// A handler takes `State<T>`, and the runtime was not given a `T`.
    #[error(
        "handler {handler} takes State<{type_name}>, but the runtime was given no `{type_name}`; \
         add `.state(value)` with a value of that type to the runtime builder"
    )]
    MissingState {
        /// The handler, with its location.
        handler: String,
        /// The missing state's type.
        type_name: &'static str,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        if source.is_some() {
            f.write_str("\n\nCaused by:")?;
        }
        while let Some(cause) = source {
            write!(f, "\n    {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// `reason`, with a hint on how to enable JetStream when it says the
/// server has none: nats-server answers no JetStream API request then.
pub(crate) fn with_jetstream_hint(reason: String) -> String {
    let text = reason.to_ascii_lowercase();
    let disabled = text.contains("jetstream not enabled")
        || text.contains("not enabled for account")
        || text.contains("no responders")
        || text.contains("requested jetstream resource does not exist");
    if disabled {
        format!(
            "{reason}; is JetStream enabled? Start nats-server with `-js` (or a `jetstream {{}}` \
             block in its configuration), and enable it for this account"
        )
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_readable_message() {
        let error = Error::Stream {
            stream: "ORDERS",
            reason: "creating it failed: timed out".into(),
        };
        assert_eq!(
            format!("{error:?}"),
            "JetStream stream `ORDERS`: creating it failed: timed out"
        );
    }

    #[test]
    fn a_missing_jetstream_is_named() {
        assert!(with_jetstream_hint("looking it up failed: no responders".into()).contains("-js"));
        assert_eq!(with_jetstream_hint("timed out".into()), "timed out");
    }
}
