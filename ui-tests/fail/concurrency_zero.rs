use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.*", concurrency = 0)]
async fn bill(_body: bytes::Bytes) {}

fn main() {}
