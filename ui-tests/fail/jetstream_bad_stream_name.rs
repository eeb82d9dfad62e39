use nats_trace_runtime::prelude::*;

#[nats_subscriber(stream = "orders.v1", consumer = "shipper", subject = "orders.paid")]
async fn ship(_body: bytes::Bytes) {}

fn main() {}
