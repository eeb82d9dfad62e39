use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.created", subject = "orders.paid")]
async fn bill(_body: bytes::Bytes) {}

fn main() {}
