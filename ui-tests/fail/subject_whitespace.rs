use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders created")]
async fn bill(_body: bytes::Bytes) {}

fn main() {}
