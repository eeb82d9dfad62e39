use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.created")]
async fn store(_body: &str) {}

fn main() {}
