//! Feeding one handler from its core NATS subscription, at most
//! `concurrency` messages at a time, until the runtime stops.

use std::time::Duration;

use async_nats::{Client, Subscriber};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::dispatch::{Runs, Shared};
use crate::error::Error;
use crate::publisher::Publisher;
use crate::registry::Handler;

/// How long a draining subscription may stay silent before shutdown stops
/// waiting for its end.
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// Subscribes `handler`, with its queue group when it has one.
pub(crate) async fn subscribe(
    client: &Client,
    handler: &'static Handler,
) -> Result<Subscriber, Error> {
    let subscribed = match handler.queue() {
        Some(queue) => {
            client
                .queue_subscribe(handler.subject(), queue.to_string())
                .await
        }
        None => client.subscribe(handler.subject()).await,
    };
    subscribed.map_err(|source| Error::Subscribe {
        handler: handler.name(),
        subject: handler.subject(),
        source,
    })
}

/// Runs until `stop` turns true, then drains the subscription: the server
/// stops sending, messages already received are still processed, and this
/// returns once every started run has finished.
///
/// The runs make progress only while this waits through `runs`: every wait
/// in here goes through [`Runs::alongside`] or [`Runs::permit`], and a plain
/// `.await` would stall them all.
pub(crate) async fn serve(
    handler: &'static Handler,
    mut subscriber: Subscriber,
    publisher: Publisher,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let mut runs = Runs::new(handler, handler.queue(), publisher, shared);
    let mut draining = false;
    // One future for the whole loop: building it per message registered a
    // new waiter on the stop signal every time.
    let stopping = async {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    tokio::pin!(stopping);
    loop {
        let next = if draining {
            // Buffered messages come at once; the end of the stream needs the
            // server, so give up when nothing has come for a while.
            let next = tokio::time::timeout(DRAIN_IDLE, subscriber.next());
            match runs.alongside(next).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::warn!(
                        handler = handler.name(),
                        "the subscription did not finish draining"
                    );
                    break;
                }
            }
        } else {
            let next = async {
                tokio::select! {
                    next = subscriber.next() => Some(next),
                    () = &mut stopping => None,
                }
            };
            match runs.alongside(next).await {
                Some(next) => next,
                None => {
                    draining = true;
                    if let Err(error) = runs.alongside(subscriber.drain()).await {
                        tracing::warn!(handler = handler.name(), %error, "draining the subscription failed");
                        break;
                    }
                    continue;
                }
            }
        };
        if next.is_none() && !draining {
            tracing::error!(
                handler = handler.name(),
                "the subscription closed unexpectedly; this handler receives no more messages"
            );
        }
        let Some(message) = next else { break };
        let Some(permit) = runs.permit().await else {
            break;
        };
        runs.start(message, None, permit);
    }
    runs.finish().await;
    tracing::debug!(handler = handler.name(), "handler stopped");
}
