//! Parameters in any order, with exactly one payload among them.
use nats_trace_runtime::async_nats::{HeaderMap, Subject};
use nats_trace_runtime::bytes::Bytes;
use nats_trace_runtime::prelude::*;

#[derive(Clone)]
struct Db;

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

#[nats_subscriber(subject = "order.first")]
async fn payload_first(order: Order, subject: Subject, State(_db): State<Db>) -> String {
    format!("{} on {subject}", order.id)
}

#[nats_subscriber(subject = "order.middle")]
async fn payload_middle(ctx: &MessageContext, body: Bytes, headers: HeaderMap) -> usize {
    body.len() + headers.len() + ctx.subject().len()
}

#[nats_subscriber(subject = "order.last")]
async fn payload_last(State(_db): State<Db>, _ctx: MessageContext, Json(order): Json<Order>) {
    let _ = order.id;
}

fn main() {
    assert_eq!(nats_trace_runtime::registered_handlers().len(), 3);
}
