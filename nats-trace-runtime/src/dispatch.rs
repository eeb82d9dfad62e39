//! Running one handler's messages, each in its own task, with at most its
//! concurrency at a time. Core NATS and JetStream both feed it; only what
//! they hand over differs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_nats::Message;
use opentelemetry::KeyValue;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use crate::jetstream::settle::JetStreamDelivery;
use crate::pipeline;
use crate::publisher::Publisher;
use crate::registry::Handler;

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

/// The runs of one handler.
pub(crate) struct Runs {
    handler: &'static Handler,
    publisher: Publisher,
    /// Built once for all of the handler's messages.
    metric_attributes: Arc<[KeyValue]>,
    in_flight: InFlight,
    tasks: JoinSet<()>,
}

impl Runs {
    pub(crate) fn new(
        handler: &'static Handler,
        consumer_group: Option<&'static str>,
        publisher: Publisher,
        in_flight: InFlight,
    ) -> Self {
        Runs {
            handler,
            metric_attributes: pipeline::metric_attributes(handler, consumer_group, &publisher),
            publisher,
            in_flight,
            tasks: JoinSet::new(),
        }
    }

    /// Processes `message` in its own task, holding `permit` until it is done.
    pub(crate) fn start(
        &mut self,
        message: Message,
        jetstream: Option<JetStreamDelivery>,
        permit: OwnedSemaphorePermit,
    ) {
        let guard = self.in_flight.enter();
        let handler = self.handler;
        let publisher = self.publisher.clone();
        let attributes = self.metric_attributes.clone();
        self.tasks.spawn(async move {
            // Boxed: the pipeline's future is large, and a spawned task's
            // future is moved into its cell.
            let _result = Box::pin(pipeline::process(
                handler,
                message,
                jetstream,
                &publisher,
                &attributes,
            ))
            .await;
            drop((permit, guard));
        });
        // Reap finished runs so the set stays as small as the concurrency.
        while self.tasks.try_join_next().is_some() {}
    }

    /// Waits until every started run has finished.
    pub(crate) async fn finish(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
