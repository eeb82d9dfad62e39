//! Confirmed acks without a request per message.
//!
//! A JetStream "double ack" is an ack sent as a request, answered once the
//! consumer applied it. Sent for every message, its inbox, reply and timer
//! were the largest cost of a traced JetStream handler. A consumer applies
//! the acks it receives in order, so one answered ack confirms every ack
//! sent to the same consumer before it on the same connection. Each handler
//! (one durable consumer) gets a task that takes all acks waiting, publishes
//! them in order, sends the last one as a request, and answers every waiter
//! with that request's outcome. Under load one request confirms dozens of
//! acks; alone, an ack costs what it did before.
//!
//! What the order rests on: one connection writes in order, the server
//! reads a connection in order and queues a consumer's acks in arrival
//! order, and the consumer (its leader, in a cluster) applies them from
//! that queue one after another; it answers a request for an ack it already
//! applied too. A reconnect breaks the first link, so a batch that spans
//! one is reported as not confirmed.
//!
//! One timeout bounds each batch, from its first publish to the answer, so
//! an ack waits at most two of them (the batch in progress when it came, and
//! its own) and no message needs a timer of its own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{Client, Subject};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// An ack's outcome: on failure the `error.type` and the message.
pub(crate) type Outcome = Result<(), (&'static str, String)>;

/// One ack waiting to be sent and confirmed.
struct Waiting {
    subject: Subject,
    confirmed: oneshot::Sender<Outcome>,
}

/// Sends one consumer's acks and confirms them in batches. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Acks {
    waiting: mpsc::UnboundedSender<Waiting>,
}

impl Acks {
    /// Starts the task that sends and confirms; it ends when every clone is
    /// dropped. `timeout` bounds each batch, sending and confirming. A batch
    /// takes every ack waiting, so that no ack waits behind more than the
    /// batch in progress. (How many can wait is bounded by the handler's
    /// concurrency: one per slot, and [`CONFIRMING_PER_SLOT`] per slot
    /// outside the slots; see [`settle`](super::settle::settle).)
    ///
    /// [`CONFIRMING_PER_SLOT`]: super::settle::CONFIRMING_PER_SLOT
    pub(crate) fn new(client: Client, timeout: Duration) -> Self {
        let (waiting, queue) = mpsc::unbounded_channel();
        tokio::spawn(confirm_all(client, queue, timeout));
        Acks { waiting }
    }

    /// Acks the message whose ack subject is `subject`, and waits until the
    /// consumer applied the ack: at most two of the timeouts given to
    /// [`Acks::new`].
    pub(crate) async fn ack(&self, subject: Subject) -> Outcome {
        let stopped = || Err((ACK_FAILED, "the ack sender stopped".to_string()));
        let (confirmed, confirmation) = oneshot::channel();
        if self.waiting.send(Waiting { subject, confirmed }).is_err() {
            return stopped();
        }
        confirmation.await.unwrap_or_else(|_| stopped())
    }
}

/// The `error.type` of an ack that could not be sent or was refused.
pub(crate) const ACK_FAILED: &str = "ack_failed";

/// Sends whatever acks are waiting, the last as a request, and answers
/// each waiter, until no sender is left.
async fn confirm_all(
    client: Client,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
    timeout: Duration,
) {
    let mut batch = Vec::new();
    let mut sent = Vec::new();
    while queue.recv_many(&mut batch, usize::MAX).await > 0 {
        // Sent from the back, so the last ack received is the request.
        batch.reverse();
        let outcome =
            match tokio::time::timeout(timeout, send(&client, &mut batch, &mut sent)).await {
                Ok(outcome) => outcome,
                Err(_) => Err((
                    crate::semconv::error_type::TIMEOUT,
                    format!("the server did not confirm the ack within {timeout:?}"),
                )),
            };
        // Acks the timeout left unsent were never published: their messages
        // come again after `ack_wait`. A waiter that gave up is gone;
        // nothing to tell it.
        for waiting in batch.drain(..) {
            let _ = waiting.confirmed.send(Err((
                crate::semconv::error_type::TIMEOUT,
                format!(
                    "the ack could not be sent within {timeout:?}; the message will be delivered again"
                ),
            )));
        }
        for confirmed in sent.drain(..) {
            let _ = confirmed.send(outcome.clone());
        }
    }
}

/// Publishes the acks in `batch` from its back, the last one as a request,
/// and returns the request's outcome. The waiter of each ack sent moves to
/// `sent`; an ack that could not be sent is answered at once.
async fn send(
    client: &Client,
    batch: &mut Vec<Waiting>,
    sent: &mut Vec<oneshot::Sender<Outcome>>,
) -> Outcome {
    // A reconnect in between loses what the old connection had not written
    // yet, so the answer would not vouch for the earlier acks.
    let connects = client.statistics().connects.load(Ordering::Relaxed);
    while let Some(waiting) = batch.pop() {
        if batch.is_empty() {
            sent.push(waiting.confirmed);
            let reconnected = || client.statistics().connects.load(Ordering::Relaxed) != connects;
            return match client.request(waiting.subject, ack_body()).await {
                Ok(_) if reconnected() => Err((
                    ACK_FAILED,
                    "the connection was re-established while the ack was sent; \
                     it may not have arrived, and the message may come again"
                        .to_string(),
                )),
                Ok(_) => Ok(()),
                Err(error) => Err((ACK_FAILED, error.to_string())),
            };
        }
        sent.push(waiting.confirmed);
        if let Err(error) = client.publish(waiting.subject, ack_body()).await
            && let Some(confirmed) = sent.pop()
        {
            let _ = confirmed.send(Err((ACK_FAILED, error.to_string())));
        }
    }
    Ok(())
}

fn ack_body() -> Bytes {
    Bytes::from_static(b"+ACK")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Acks;
    use crate::jetstream::unanswered_client;

    #[tokio::test]
    async fn every_ack_is_answered_within_two_timeouts_however_many_wait() {
        let timeout = Duration::from_millis(500);
        // More than any fixed batch size, so a queue of several batches
        // would show as a later answer.
        let count = 5_000;
        let acks = Acks::new(unanswered_client().await, timeout);
        let started = Instant::now();
        let outcomes = futures_util::future::join_all(
            (0..count).map(|n| acks.ack(format!("$JS.ACK.S.c.1.{n}.{n}.1.0").into())),
        )
        .await;
        let elapsed = started.elapsed();
        assert!(
            outcomes.iter().all(|outcome| outcome.is_err()),
            "an unanswered ack was reported confirmed"
        );
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, Err((error_type, _)) if *error_type == "timeout")),
            "{:?}",
            outcomes.iter().find(|o| !matches!(o, Err(("timeout", _))))
        );
        assert!(
            elapsed < timeout * 3,
            "answered after {elapsed:?}, more than two timeouts of {timeout:?}"
        );
    }
}
