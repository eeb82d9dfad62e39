use nats_trace_runtime::prelude::*;

#[nats_subscriber(stream = "ORDERS", subject = "orders.paid")]
async fn ship(_body: bytes::Bytes) {}

fn main() {}
