use nats_trace_runtime::prelude::*;

#[derive(serde::Serialize)]
struct Order {
    id: u64,
}

#[nats_publisher(subject = "orders.created")]
async fn create() -> Order {
    Order { id: 1 }
}

fn main() {}
