use nats_trace_runtime::prelude::*;

#[nats_subscriber(stream = "ORDERS", consumer = "ship per", subject = "orders.paid")]
async fn ship(_body: bytes::Bytes) {}

fn main() {}
