use nats_trace_runtime::bytes::Bytes;
use nats_trace_runtime::prelude::*;

#[derive(serde::Deserialize)]
struct Order;

#[nats_subscriber(subject = "orders.created")]
async fn store(_ctx: MessageContext, _order: Order, _raw: Bytes) {}

fn main() {}
