use nats_trace_runtime::prelude::*;

#[derive(serde::Serialize)]
struct Order {
    id: u64,
}

#[nats_publisher(subject = "orders.created", retries = "three")]
async fn create() -> Result<Order, PublishError> {
    Ok(Order { id: 1 })
}

fn main() {}
