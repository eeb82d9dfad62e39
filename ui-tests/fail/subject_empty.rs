use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "")]
async fn bill(_body: bytes::Bytes) {}

fn main() {}
