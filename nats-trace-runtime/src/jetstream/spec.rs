//! What `#[nats_subscriber(stream = ..., consumer = ...)]` and
//! [`declare_stream!`](crate::declare_stream) describe: consumers and streams
//! as `'static`, const-constructible data.

use std::time::Duration;

/// Deliveries before a failing message is dead-lettered and terminated.
pub const DEFAULT_MAX_DELIVER: usize = 5;
/// How long the server waits for a settle before it redelivers.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Nak delays by delivery: 1 s after the first failure, 5 s after the
/// second, 30 s after every later one.
pub const DEFAULT_BACKOFF_MS: &[u64] = &[1_000, 5_000, 30_000];

/// A durable pull consumer a JetStream handler reads from, as the macro
/// wrote it. Unset fields take the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JetStreamSpec {
    /// The stream.
    pub stream: &'static str,
    /// The durable consumer's name.
    pub consumer: &'static str,
    /// `max_deliver`, default [`DEFAULT_MAX_DELIVER`].
    pub max_deliver: Option<usize>,
    /// `ack_wait` in milliseconds, default [`DEFAULT_ACK_WAIT`].
    pub ack_wait_ms: Option<u64>,
    /// `backoff` delays in milliseconds, default [`DEFAULT_BACKOFF_MS`].
    pub backoff_ms: Option<&'static [u64]>,
    /// `deliver = "new"`: only messages published after the consumer was
    /// created. The default, `"all"`, starts with the oldest message.
    pub deliver_new: bool,
    /// `dead_letter`, default `dlq.{stream}.{consumer}`.
    pub dead_letter: Option<&'static str>,
}

impl JetStreamSpec {
    /// Deliveries before a failing message is dead-lettered and terminated.
    pub fn max_deliver(&self) -> usize {
        self.max_deliver.unwrap_or(DEFAULT_MAX_DELIVER)
    }

    /// How long the server waits for a settle before it redelivers.
    pub fn ack_wait(&self) -> Duration {
        self.ack_wait_ms
            .map_or(DEFAULT_ACK_WAIT, Duration::from_millis)
    }

    /// The nak delay after failed delivery `delivered` (1-based): the
    /// backoff entry for it, or the last entry once the list runs out.
    pub fn nak_delay(&self, delivered: u64) -> Duration {
        let backoff = self.backoff_ms.unwrap_or(DEFAULT_BACKOFF_MS);
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
        let ms = backoff.get(index).or(backoff.last()).copied().unwrap_or(0);
        Duration::from_millis(ms)
    }

    /// Where messages go after their last failed delivery.
    pub fn dead_letter_subject(&self) -> String {
        match self.dead_letter {
            Some(subject) => subject.to_string(),
            None => format!("dlq.{}.{}", self.stream, self.consumer),
        }
    }
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// On disk: survives server restarts.
    File,
    /// In memory.
    Memory,
}

/// When a stream deletes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// When a limit (age, count, size) is reached.
    Limits,
    /// When every consumer has acknowledged them.
    Interest,
    /// As soon as one consumer acknowledges them.
    WorkQueue,
}

/// A stream the runtime creates, or updates, before any consumer starts.
///
/// Declare it next to its handlers with [`declare_stream!`](crate::declare_stream),
/// or hand it to [`runtime::Builder::stream`](crate::runtime::Builder::stream).
/// Unset limits (`None`) keep the server's default on creation and the
/// existing value on update.
///
/// ```
/// use std::time::Duration;
/// use nats_trace_runtime::jetstream::{Storage, StreamSpec};
///
/// nats_trace_runtime::declare_stream!(StreamSpec {
///     name: "ORDERS",
///     subjects: &["orders.>"],
///     max_age: Some(Duration::from_secs(7 * 24 * 3600)),
///     ..StreamSpec::DEFAULT
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream's name.
    pub name: &'static str,
    /// The subjects it captures.
    pub subjects: &'static [&'static str],
    /// File (default) or memory. Cannot change once created.
    pub storage: Storage,
    /// Limits (default), interest or work queue. Cannot change once created.
    pub retention: Retention,
    /// Oldest message age kept.
    pub max_age: Option<Duration>,
    /// Most messages kept.
    pub max_messages: Option<i64>,
    /// Most bytes kept.
    pub max_bytes: Option<i64>,
    /// How long `Nats-Msg-Id` de-duplication remembers an id.
    pub duplicate_window: Option<Duration>,
}

impl StreamSpec {
    /// A file-backed, limits-retention stream with no name or subjects yet:
    /// the base for `..StreamSpec::DEFAULT`.
    pub const DEFAULT: StreamSpec = StreamSpec {
        name: "",
        subjects: &[],
        storage: Storage::File,
        retention: Retention::Limits,
        max_age: None,
        max_messages: None,
        max_bytes: None,
        duplicate_window: None,
    };
}

/// A stream registered with [`declare_stream!`](crate::declare_stream). Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct StreamRegistration(pub StreamSpec);

inventory::collect!(StreamRegistration);

/// Every stream declared with [`declare_stream!`](crate::declare_stream),
/// sorted by name.
pub fn declared_streams() -> Vec<StreamSpec> {
    let mut streams: Vec<StreamSpec> = inventory::iter::<StreamRegistration>
        .into_iter()
        .map(|registration| registration.0)
        .collect();
    streams.sort_by_key(|stream| stream.name);
    streams
}

/// Declares a JetStream stream next to the handlers that use it, so that the
/// runtime creates or updates it before any consumer starts.
///
/// ```
/// use nats_trace_runtime::jetstream::StreamSpec;
///
/// nats_trace_runtime::declare_stream!(StreamSpec {
///     name: "SHIPMENTS",
///     subjects: &["shipments.>"],
///     ..StreamSpec::DEFAULT
/// });
/// ```
#[macro_export]
macro_rules! declare_stream {
    ($spec:expr) => {
        const _: () = {
            $crate::__private::inventory::submit! {
                $crate::__private::StreamRegistration($spec)
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nak_delays_follow_the_backoff_and_stay_at_its_last_entry() {
        let spec = JetStreamSpec {
            stream: "S",
            consumer: "c",
            max_deliver: None,
            ack_wait_ms: None,
            backoff_ms: Some(&[100, 300]),
            deliver_new: false,
            dead_letter: None,
        };
        let delays: Vec<_> = (1..=4).map(|d| spec.nak_delay(d).as_millis()).collect();
        assert_eq!(delays, [100, 300, 300, 300]);
        assert_eq!(spec.dead_letter_subject(), "dlq.S.c");
        assert_eq!(spec.max_deliver(), DEFAULT_MAX_DELIVER);
        assert_eq!(spec.ack_wait(), DEFAULT_ACK_WAIT);
    }
}
