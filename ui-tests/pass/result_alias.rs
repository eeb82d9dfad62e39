//! A `Result` alias behaves as `Result` does: its `Err` fails the message,
//! whatever the alias is called, and even when the error is `Serialize`.
use nats_trace_runtime::prelude::*;

#[derive(Debug, serde::Serialize)]
struct AppError {
    reason: String,
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

type AppResult<T> = Result<T, AppError>;
type Unit = ();

#[derive(serde::Serialize)]
struct Invoice {
    total: u64,
}

#[nats_subscriber(subject = "alias.value")]
async fn value(_: ()) -> AppResult<Invoice> {
    Err(AppError { reason: "nothing to bill".into() })
}

#[nats_subscriber(subject = "alias.unit")]
async fn unit(_: ()) -> AppResult<Unit> {
    Ok(())
}

fn main() {
    let handlers = nats_trace_runtime::registered_handlers();
    let replies = |subject: &str| handlers.iter().find(|h| h.subject() == subject).unwrap().replies();
    assert!(replies("alias.value"));
    assert!(!replies("alias.unit"), "a `()` Ok type never replies, through an alias too");
}
