use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.created", queu = "billing")]
async fn bill(_body: bytes::Bytes) {}

fn main() {}
