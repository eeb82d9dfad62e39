use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.*", queue = "billing team")]
async fn bill(_body: bytes::Bytes) {}

fn main() {}
