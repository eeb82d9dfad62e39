//! Pulls answered into one inbox that lives as long as the handler.
//!
//! async-nats's `Consumer::batch` subscribes a fresh inbox for every pull
//! and unsubscribes it when the pull ends: a SUB and an UNSUB per pull, a
//! new channel in the client, and in the server a change to the
//! subscription index through which every ack is routed too. It also
//! clones the JetStream context into each message. Here the handler's pulls
//! are all answered into one subscription, opened once, and its messages
//! stay plain [`Message`]s.
//!
//! As with `batch`, one pull is outstanding at a time, and it ends when all
//! the messages it asked for arrived, when the server ends it (408 at
//! `expires`, 404), or, should the server's answer never come (it forgets
//! pulls whose inbox lost interest, as in a reconnect), a grace period after
//! `expires`. After that last case a late answer of the old pull can arrive
//! during the next one; its messages are then simply handled there. Should
//! the subscription itself end, the pull fails, and the handler opens a new
//! inbox after its usual backoff.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::BatchConfig;
use async_nats::{Client, Message, StatusCode, Subject, Subscriber};
use futures_util::StreamExt as _;
use tokio::time::Sleep;

use super::consumer::PullConsumer;

/// How long after `expires` a pull still waits for the server's answer, as
/// async-nats's `batch` does.
const GRACE: Duration = Duration::from_secs(5);

/// The inbox of one handler's pulls.
pub(crate) struct Inbox {
    subject: Subject,
    subscriber: Subscriber,
    /// The client ended the subscription (closed, or refused by the
    /// server): pulls into it would never be answered.
    closed: bool,
}

impl Inbox {
    /// Subscribes a new inbox on `client`.
    pub(crate) async fn open(client: &Client) -> Result<Self, async_nats::SubscribeError> {
        let subject = Subject::from(client.new_inbox());
        let subscriber = client.subscribe(subject.clone()).await?;
        Ok(Inbox {
            subject,
            subscriber,
            closed: false,
        })
    }

    /// Asks `consumer` for up to `wanted` messages, waiting at most
    /// `expires` on the server for them to come.
    pub(crate) async fn pull(
        &mut self,
        consumer: &PullConsumer,
        wanted: usize,
        expires: Duration,
    ) -> Result<Pull<'_>, String> {
        let request = BatchConfig {
            batch: wanted,
            expires: Some(expires),
            ..Default::default()
        };
        consumer
            .request_batch(request, self.subject.clone())
            .await
            .map_err(|error| error.to_string())?;
        Ok(Pull {
            inbox: self,
            remaining: wanted,
            deadline: Box::pin(tokio::time::sleep(expires.saturating_add(GRACE))),
        })
    }
}

/// Asks `consumer` for up to `wanted` messages into `inbox`, opened first
/// if there is none yet or the subscription of the last one ended.
pub(crate) async fn pull<'a>(
    inbox: &'a mut Option<Inbox>,
    client: &Client,
    consumer: &PullConsumer,
    wanted: usize,
    expires: Duration,
) -> Result<Pull<'a>, String> {
    if inbox.as_ref().is_some_and(|open| open.closed) {
        *inbox = None;
    }
    let current = match inbox {
        Some(current) => current,
        None => inbox.insert(
            Inbox::open(client)
                .await
                .map_err(|error| format!("subscribing the pull inbox failed: {error}"))?,
        ),
    };
    current.pull(consumer, wanted, expires).await
}

/// The messages of one pull.
pub(crate) struct Pull<'a> {
    inbox: &'a mut Inbox,
    remaining: usize,
    /// One timer for the whole pull, not one per message.
    deadline: Pin<Box<Sleep>>,
}

impl Pull<'_> {
    /// The pull's next message; `None` once it ended. An error (the
    /// consumer was deleted, JetStream is unavailable, a limit was
    /// exceeded, the inbox was closed) ends it too.
    pub(crate) async fn next(&mut self) -> Option<Result<Message, String>> {
        while self.remaining > 0 {
            let message = tokio::select! {
                biased;
                message = self.inbox.subscriber.next() => message,
                () = &mut self.deadline => break,
            };
            let Some(message) = message else {
                self.remaining = 0;
                self.inbox.closed = true;
                return Some(Err("the subscription of the pull inbox ended".to_string()));
            };
            match message.status {
                None | Some(StatusCode::OK) => {
                    self.remaining -= 1;
                    return Some(Ok(message));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::TIMEOUT | StatusCode::NOT_FOUND) => break,
                Some(status) => {
                    self.remaining = 0;
                    let description = message.description.as_deref().unwrap_or("no description");
                    return Some(Err(format!(
                        "the server ended the pull with status {status}: {description}"
                    )));
                }
            }
        }
        self.remaining = 0;
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Inbox, Pull};
    use crate::jetstream::unanswered_client;

    fn pull(inbox: &mut Inbox, deadline: Duration) -> Pull<'_> {
        Pull {
            inbox,
            remaining: 3,
            deadline: Box::pin(tokio::time::sleep(deadline)),
        }
    }

    #[tokio::test]
    async fn an_unanswered_pull_ends_at_its_deadline_and_keeps_the_inbox() {
        let client = unanswered_client().await;
        let mut inbox = Inbox::open(&client).await.expect("inbox");
        let mut pull = pull(&mut inbox, Duration::from_millis(50));
        let ended = tokio::time::timeout(Duration::from_secs(5), pull.next()).await;
        assert!(
            matches!(ended, Ok(None)),
            "the pull did not end at its deadline"
        );
        assert!(pull.next().await.is_none(), "an ended pull yielded again");
        assert!(!inbox.closed);
    }

    #[tokio::test]
    async fn a_pull_into_an_ended_subscription_fails_and_marks_the_inbox_closed() {
        let client = unanswered_client().await;
        let mut inbox = Inbox::open(&client).await.expect("inbox");
        inbox.subscriber.unsubscribe().await.expect("unsubscribe");
        let mut pull = pull(&mut inbox, Duration::from_secs(60));
        let ended = tokio::time::timeout(Duration::from_secs(5), pull.next())
            .await
            .expect("the pull ended before its deadline");
        assert!(
            matches!(&ended, Some(Err(reason)) if reason.contains("subscription")),
            "{ended:?}"
        );
        assert!(inbox.closed, "a new inbox would not be opened");
    }
}
