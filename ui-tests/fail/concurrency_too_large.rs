use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.*", concurrency = 18446744073709551615)]
async fn bill(_body: bytes::Bytes) {}

fn main() {}
