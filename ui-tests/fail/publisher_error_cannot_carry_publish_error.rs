use nats_trace_runtime::prelude::*;

#[derive(serde::Serialize)]
struct Order {
    id: u64,
}

#[derive(Debug)]
struct OrderError;

#[nats_publisher(subject = "orders.created")]
async fn create() -> Result<Order, OrderError> {
    Ok(Order { id: 1 })
}

fn main() {}
