use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.paid", max_deliver = 3)]
async fn ship(_body: bytes::Bytes) {}

fn main() {}
