use nats_trace_runtime::prelude::*;

struct Order {
    _id: u64,
}

#[nats_subscriber(subject = "orders.*")]
async fn bill(_order: Order) {}

fn main() {}
