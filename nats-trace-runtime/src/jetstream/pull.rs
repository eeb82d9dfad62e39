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
//! during the next one; its messages are then simply handled there.

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
}

impl Inbox {
    /// Subscribes a new inbox on `client`.
    pub(crate) async fn open(client: &Client) -> Result<Self, async_nats::SubscribeError> {
        let subject = Subject::from(client.new_inbox());
        let subscriber = client.subscribe(subject.clone()).await?;
        Ok(Inbox {
            subject,
            subscriber,
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
            subscriber: &mut self.subscriber,
            remaining: wanted,
            deadline: Box::pin(tokio::time::sleep(expires.saturating_add(GRACE))),
        })
    }
}

/// The messages of one pull.
pub(crate) struct Pull<'a> {
    subscriber: &'a mut Subscriber,
    remaining: usize,
    /// One timer for the whole pull, not one per message.
    deadline: Pin<Box<Sleep>>,
}

impl Pull<'_> {
    /// The pull's next message; `None` once it ended. An error (the
    /// consumer was deleted, JetStream is unavailable, a limit was
    /// exceeded) ends it too.
    pub(crate) async fn next(&mut self) -> Option<Result<Message, String>> {
        while self.remaining > 0 {
            let message = tokio::select! {
                biased;
                message = self.subscriber.next() => message?,
                () = &mut self.deadline => break,
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
