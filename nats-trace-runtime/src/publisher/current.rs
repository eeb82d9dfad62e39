//! The publisher of the running runtime, for `#[nats_publisher]` functions.
//!
//! Inside a handler it is the handler's own runtime (a task-local), so a
//! stacked subscriber + publisher publishes on the connection it received
//! on. Elsewhere it is the most recently started runtime that still runs,
//! or the one [`Running::scope`](crate::runtime::Running::scope) names.

use std::future::Future;
use std::sync::RwLock;

use super::{PublishError, Publisher};

tokio::task_local! {
    static SCOPED: Publisher;
}

/// Running runtimes in start order; the last one is the default.
static RUNNING: RwLock<Vec<(u64, Publisher)>> = RwLock::new(Vec::new());

/// The publisher `#[nats_publisher]` functions use right now.
pub fn current() -> Result<Publisher, PublishError> {
    if let Ok(publisher) = SCOPED.try_with(Publisher::clone) {
        return Ok(publisher);
    }
    let running = RUNNING.read().unwrap_or_else(|e| e.into_inner());
    running
        .last()
        .map(|(_, publisher)| publisher.clone())
        .ok_or(PublishError::NotConnected)
}

/// Runs `future` with `publisher` as the current publisher.
///
/// A plain function, not an `async fn`: an `async fn` would keep its own
/// copy of `future` next to the one it awaits, doubling the size of every
/// handler run.
pub(crate) fn scope<F: Future>(publisher: Publisher, future: F) -> impl Future<Output = F::Output> {
    SCOPED.scope(publisher, future)
}

/// Makes the runtime `id` the default for code outside handlers.
pub(crate) fn install(id: u64, publisher: Publisher) {
    RUNNING
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, publisher));
}

/// Forgets runtime `id`; an older runtime still running becomes the default.
pub(crate) fn uninstall(id: u64) {
    RUNNING
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(running, _)| *running != id);
}
