use nats_trace_runtime::prelude::*;

#[derive(serde::Deserialize)]
struct Order;

#[nats_subscriber(subject = "orders.created")]
async fn bill(_order: Order, _other: Order) {}

fn main() {}
