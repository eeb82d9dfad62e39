//! Deciding when to stop: SIGINT / SIGTERM, a future, or a handle.

use tokio::sync::watch;

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Stops a running runtime from anywhere: clone it into whatever decides
/// that the service should stop.
#[derive(Debug, Clone)]
pub struct StopHandle {
    sender: watch::Sender<bool>,
}

impl StopHandle {
    pub(crate) fn new() -> (StopHandle, watch::Receiver<bool>) {
        let (sender, receiver) = watch::channel(false);
        (StopHandle { sender }, receiver)
    }

    /// Asks the runtime to stop taking messages and shut down. Idempotent.
    pub fn stop(&self) {
        self.sender.send_replace(true);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        *self.sender.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.sender.subscribe()
    }
}
