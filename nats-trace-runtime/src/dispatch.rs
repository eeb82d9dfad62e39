//! Running one handler's messages, at most its concurrency at a time. Core
//! NATS and JetStream both feed it; only what they hand over differs.
//!
//! The runs of a handler are polled together by one task per handler, not
//! spawned one task per message: a spawn per message cost more than the
//! rest of the dispatch, mostly in waking idle worker threads to steal each
//! new task. Handlers are async and mostly wait; CPU-heavy work inside one
//! belongs in `tokio::task::spawn_blocking`, as anywhere in tokio.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_nats::Message;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

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

/// One run in progress; counted until dropped.
struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One message's run, from extraction to the ended span.
type Run = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The runs of one handler.
pub(crate) struct Runs {
    handler: &'static Handler,
    publisher: Publisher,
    /// Built once for all of the handler's messages.
    metrics: Arc<OperationMetrics>,
    in_flight: InFlight,
    /// One permit per run in progress, at most the handler's concurrency.
    permits: Arc<Semaphore>,
    /// To the task that polls the runs; closed by `finish`.
    runs: Option<mpsc::UnboundedSender<Run>>,
    /// That task. Dropping `Runs` unfinished (shutdown timed out and aborted
    /// the feeding task) aborts it, and with it every run.
    runner: Option<JoinHandle<()>>,
}

impl Runs {
    pub(crate) fn new(
        handler: &'static Handler,
        consumer_group: Option<&'static str>,
        publisher: Publisher,
        in_flight: InFlight,
    ) -> Self {
        let (runs, queued) = mpsc::unbounded_channel();
        Runs {
            handler,
            metrics: pipeline::metrics(handler, consumer_group, &publisher),
            publisher,
            in_flight,
            permits: Arc::new(Semaphore::new(handler.concurrency())),
            runs: Some(runs),
            runner: Some(tokio::spawn(run_all(queued))),
        }
    }

    /// The permits a message needs before it may start.
    pub(crate) fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    /// Starts processing `message`, holding `permit` until it is done.
    pub(crate) fn start(
        &self,
        message: Message,
        jetstream: Option<JetStreamDelivery>,
        permit: OwnedSemaphorePermit,
    ) {
        let guard = self.in_flight.enter();
        let handler = self.handler;
        let process = pipeline::process(
            handler,
            message,
            jetstream,
            self.publisher.clone(),
            self.metrics.clone(),
        );
        // Combinators, not an `async` block: a block would hold the process
        // future twice, once as its capture and once as what it awaits.
        let run: Run = Box::pin(
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
        );
        if let Some(runs) = &self.runs
            && runs.send(run).is_err()
        {
            tracing::error!(handler = handler.name(), "the handler's runner is gone");
        }
    }

    /// Waits until every started run has finished. The runner stays in
    /// `self` while this waits: if the wait is cancelled (shutdown timed out
    /// and aborted the caller), dropping `self` aborts it with its runs.
    pub(crate) async fn finish(mut self) {
        self.runs = None;
        if let Some(runner) = self.runner.as_mut() {
            let finished = runner.await;
            self.runner = None;
            if let Err(error) = finished {
                tracing::error!(handler = self.handler.name(), %error, "the handler's runner failed");
            }
        }
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        if let Some(runner) = &self.runner {
            runner.abort();
        }
    }
}

/// Polls every run until it ends, taking new ones as they come, until the
/// sender is gone and no run is left.
async fn run_all(mut queued: mpsc::UnboundedReceiver<Run>) {
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            run = queued.recv(), if open => match run {
                Some(run) => running.push(run),
                None => open = false,
            },
            Some(()) = running.next(), if !running.is_empty() => {}
            else => break,
        }
    }
}
