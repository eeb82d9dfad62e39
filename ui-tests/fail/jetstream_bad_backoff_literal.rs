use nats_trace_runtime::prelude::*;

#[nats_subscriber(stream = "ORDERS", consumer = "shipper", subject = "orders.paid", backoff = ["1s", "5 seconds"])]
async fn ship(_body: bytes::Bytes) {}

fn main() {}
