//! Retrying a publish until the server confirms it.

use std::time::Duration;

use crate::backoff::Backoff;

/// How a publish is retried.
///
/// Without a policy a core NATS publish is fire-and-forget, as in async-nats:
/// the client buffers it, even while disconnected. With a policy each attempt
/// must be confirmed: the client must be connected, and the server must have
/// received the message (core NATS: a round trip to the server after the
/// publish) or the stream must have acknowledged it (JetStream), within
/// `attempt_timeout`; otherwise the attempt fails and the next one follows
/// after a backoff. The span records the number of attempts, and the last
/// attempt's error is returned.
///
/// A retried message can arrive twice when a confirmation, not the message,
/// was lost; give JetStream messages a `Nats-Msg-Id` to de-duplicate them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The delay between attempts.
    pub backoff: Backoff,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
}

impl RetryPolicy {
    /// `retries` retries after the first attempt, with a backoff from
    /// 100 ms doubling up to 2 s and a 2 s limit per attempt.
    pub const fn retries(retries: u32) -> Self {
        RetryPolicy {
            max_attempts: retries.saturating_add(1),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
            attempt_timeout: Duration::from_secs(2),
        }
    }

    /// The same policy with another backoff.
    pub const fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The same policy with another per-attempt limit.
    pub const fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }
}

impl Default for RetryPolicy {
    /// 5 retries.
    fn default() -> Self {
        RetryPolicy::retries(5)
    }
}
