use nats_trace_runtime::prelude::*;

#[nats_subscriber(stream = "ORDERS", consumer = "shipper", subject = "orders.paid", ack_wait = "30")]
async fn ship(_body: bytes::Bytes) {}

fn main() {}
