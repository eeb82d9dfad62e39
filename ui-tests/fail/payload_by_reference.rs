use nats_trace_runtime::prelude::*;

#[derive(serde::Deserialize)]
struct Order;

#[nats_subscriber(subject = "orders.*")]
async fn bill(_order: &Order) {}

fn main() {}
