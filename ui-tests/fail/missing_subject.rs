use nats_trace_runtime::prelude::*;

#[nats_subscriber(queue = "billing")]
async fn bill(_body: bytes::Bytes) {}

fn main() {}
