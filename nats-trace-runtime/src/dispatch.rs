//! Running one handler's messages, at most its concurrency at a time (a
//! JetStream message's ack may wait for its confirmation outside that
//! count; see [`settle`](crate::jetstream::settle::settle)). Core NATS and
//! JetStream both feed it; only what they hand over differs.
//!
//! A handler's runs are polled by the task that receives its messages,
//! while it waits for the next one ([`Runs::alongside`]), not spawned one
//! task per message nor handed to a task of their own. A spawn per message
//! cost more than the rest of the dispatch, mostly in waking idle worker
//! threads to steal each new task; a task of their own cost a wake-up and
//! often a switch of thread per message (measured: about a tenth of the
//! CPU per message on 2 cores). Handlers are async and mostly wait;
//! CPU-heavy work inside one belongs in `tokio::task::spawn_blocking`, as
//! anywhere in tokio.

use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use async_nats::Message;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::extract::States;
use crate::jetstream::settle::JetStreamDelivery;
use crate::pipeline;
use crate::publisher::Publisher;
use crate::registry::Handler;
use crate::telemetry::metrics::OperationMetrics;

/// Counts handler runs in progress across a runtime, for shutdown reports.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.0.clone())
    }
}

/// What every handler of one runtime shares: the count of runs in
/// progress, and the state its extractors read.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    pub(crate) in_flight: InFlight,
    pub(crate) states: Arc<States>,
}

/// One run in progress; counted until dropped.
struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One message's run, from extraction to the ended span.
type Run = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The runs of one handler, polled by the task that feeds them.
///
/// Dropping it unfinished (shutdown timed out and aborted the feeding task)
/// drops every run in progress with it.
pub(crate) struct Runs {
    handler: &'static Handler,
    publisher: Publisher,
    /// Built once for all of the handler's messages.
    metrics: Arc<OperationMetrics>,
    in_flight: InFlight,
    /// The runtime's state, for the handler's extractors; `None` when it
    /// has none, which spares every message a reference count.
    states: Option<Arc<States>>,
    /// One permit per run in progress, at most the handler's concurrency; a
    /// JetStream run whose ack waits for its confirmation may have given
    /// its permit back.
    permits: Arc<Semaphore>,
    /// The runs in progress.
    running: FuturesUnordered<Run>,
}

impl Runs {
    pub(crate) fn new(
        handler: &'static Handler,
        consumer_group: Option<&'static str>,
        publisher: Publisher,
        shared: Shared,
    ) -> Self {
        Runs {
            handler,
            metrics: pipeline::metrics(handler, consumer_group, &publisher),
            publisher,
            in_flight: shared.in_flight,
            states: Some(shared.states).filter(|states| !states.is_empty()),
            permits: Arc::new(Semaphore::new(handler.concurrency())),
            running: FuturesUnordered::new(),
        }
    }

    /// The permits a message needs before it may start.
    pub(crate) fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// Starts processing `message`, holding `permit` until it is done, or,
    /// for a JetStream delivery, until its handler succeeded and its ack is
    /// about to be queued (see [`settle`](crate::jetstream::settle::settle)).
    /// It makes progress whenever the feeding task waits through
    /// [`alongside`](Self::alongside), [`permit`](Self::permit) or
    /// [`finish`](Self::finish).
    pub(crate) fn start(
        &mut self,
        message: Message,
        mut jetstream: Option<JetStreamDelivery>,
        permit: OwnedSemaphorePermit,
    ) {
        let permit = match &mut jetstream {
            Some(delivery) => {
                delivery.slot = Some(permit);
                None
            }
            None => Some(permit),
        };
        let guard = self.in_flight.enter();
        let handler = self.handler;
        let process = pipeline::process(
            handler,
            message,
            jetstream,
            self.publisher.clone(),
            self.metrics.clone(),
            self.states.clone(),
        );
        // Combinators, not an `async` block: a block would hold the process
        // future twice, once as its capture and once as what it awaits.
        self.running.push(Box::pin(
            // The handler's own panics are failures of its message; this
            // catches the rest, so one run cannot end the handler's others.
            AssertUnwindSafe(process)
                .catch_unwind()
                .map(move |finished| {
                    if finished.is_err() {
                        tracing::error!(handler = handler.name(), "processing a message panicked");
                    }
                    drop((permit, guard));
                }),
        ));
    }

    /// Waits for `future` while the runs in progress make progress. Every
    /// wait of the feeding task goes through this (or [`permit`] or
    /// [`finish`]), so that no run stalls while it waits for messages,
    /// permits or a reconnect.
    ///
    /// [`permit`]: Self::permit
    /// [`finish`]: Self::finish
    pub(crate) async fn alongside<F: Future>(&mut self, future: F) -> F::Output {
        let mut future = pin!(future);
        poll_fn(|cx| {
            // Finished runs give their permits back before `future` may
            // wait for one. Each `Ready` is a run that ended, and none
            // starts in here, so this loop ends.
            while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {}
            future.as_mut().poll(cx)
        })
        .await
    }

    /// A permit for one more run, once one is free, while the runs in
    /// progress make progress. `None` once the permits are closed.
    pub(crate) async fn permit(&mut self) -> Option<OwnedSemaphorePermit> {
        // Without waiting when one is free, as it mostly is: waiting costs
        // a poll of the runs and a unit of the task's scheduling budget.
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::Closed) => None,
            Err(TryAcquireError::NoPermits) => {
                let permits = self.permits.clone();
                self.alongside(permits.acquire_owned()).await.ok()
            }
        }
    }

    /// Waits until every started run has finished.
    pub(crate) async fn finish(mut self) {
        while self.running.next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_nats::Message;
    use bytes::Bytes;
    use tokio::sync::Semaphore;

    use super::{InFlight, Runs};
    use crate::context::Delivery;
    use crate::jetstream::settle::{CONFIRMING_PER_SLOT, JetStreamDelivery, Settler};
    use crate::jetstream::{JetStreamInfo, JetStreamSpec, unanswered_client};
    use crate::publisher::Publisher;
    use crate::registry::{Handler, HandlerFuture, HandlerSpec, Source};
    use crate::reply::Reply;

    static SPEC: JetStreamSpec = JetStreamSpec {
        stream: "S",
        consumer: "c",
        max_deliver: Some(3),
        ack_wait_ms: None,
        backoff_ms: None,
        deliver_new: false,
        dead_letter: None,
    };

    /// Closed until the test adds permits.
    static GATE: Semaphore = Semaphore::const_new(0);
    /// Handlers that returned.
    static RETURNED: AtomicUsize = AtomicUsize::new(0);

    fn succeed_once_let_through(_: Delivery) -> HandlerFuture {
        Box::pin(async {
            drop(GATE.acquire().await);
            RETURNED.fetch_add(1, Ordering::Relaxed);
            Ok(Reply::empty())
        })
    }

    static HANDLER: Handler = Handler::__new(HandlerSpec {
        name: "dispatch::tests::succeed_once_let_through",
        subject: "s.orders",
        span_name: "process s.orders",
        source: Source::JetStream(&SPEC),
        replies: || false,
        requirements: |_| {},
        concurrency: Some(2),
        call: succeed_once_let_through,
        file: file!(),
        line: line!(),
    });

    fn delivery(sequence: u64, settler: &Arc<Settler>) -> (Message, JetStreamDelivery) {
        let message = Message {
            subject: "s.orders".into(),
            reply: None,
            payload: Bytes::from_static(b"{}"),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        let delivery = JetStreamDelivery {
            spec: &SPEC,
            info: JetStreamInfo {
                stream: SPEC.stream,
                consumer: SPEC.consumer,
                stream_sequence: sequence,
                delivery_count: 1,
            },
            ack_subject: format!("$JS.ACK.S.c.1.{sequence}.{sequence}.1.0").into(),
            destination: "s.orders".into(),
            settler: settler.clone(),
            slot: None,
        };
        (message, delivery)
    }

    /// Polls the runs until `done` holds, for at most two seconds.
    async fn until(runs: &mut Runs, done: impl Fn() -> bool) -> bool {
        runs.alongside(async {
            for _ in 0..200 {
                if done() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            done()
        })
        .await
    }

    #[tokio::test]
    async fn acks_wait_for_their_confirmation_outside_the_slots_in_room_of_their_own() {
        // Its server never answers, so no ack is ever confirmed.
        let client = unanswered_client().await;
        let publisher = Publisher::new(client.clone());
        let jetstream = async_nats::jetstream::new(client);
        let settler = Arc::new(Settler::new(&HANDLER, &SPEC, &jetstream, &publisher));
        let in_flight = InFlight::default();
        let mut runs = Runs::new(
            &HANDLER,
            Some(SPEC.consumer),
            publisher,
            super::Shared {
                in_flight: in_flight.clone(),
                states: Default::default(),
            },
        );
        let permits = runs.permits().clone();
        let free = || permits.available_permits();

        for sequence in 1..=2 {
            let (message, delivery) = delivery(sequence, &settler);
            let permit = runs.permit().await.expect("a free slot");
            runs.start(message, Some(delivery), permit);
        }
        runs.alongside(tokio::time::sleep(Duration::from_millis(200)))
            .await;
        assert_eq!(free(), 0, "both handlers hold their slots while they run");

        GATE.add_permits(Semaphore::MAX_PERMITS);
        assert!(
            until(&mut runs, || free() == 2).await,
            "{} of 2 slots free once both handlers returned",
            free()
        );
        assert_eq!(
            in_flight.count(),
            2,
            "both runs still wait for their acks to be confirmed"
        );

        // Six more acks fit in the room for unconfirmed ones (eight); the
        // last two runs find it full and keep their slots.
        let room = CONFIRMING_PER_SLOT * HANDLER.concurrency();
        assert_eq!(room, 8);
        for sequence in 3..=10 {
            let (message, delivery) = delivery(sequence, &settler);
            let permit = runs.permit().await.expect("a free slot");
            runs.start(message, Some(delivery), permit);
        }
        assert!(
            until(&mut runs, || RETURNED.load(Ordering::Relaxed) == 10).await,
            "{} of 10 handlers returned",
            RETURNED.load(Ordering::Relaxed)
        );
        runs.alongside(tokio::time::sleep(Duration::from_millis(100)))
            .await;
        assert_eq!(
            (in_flight.count(), free()),
            (10, 0),
            "no more acks wait outside the slots than their room"
        );
    }
}
