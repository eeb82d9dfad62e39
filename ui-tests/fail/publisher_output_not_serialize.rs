use nats_trace_runtime::prelude::*;

struct Order {
    _id: u64,
}

#[nats_publisher(subject = "orders.created")]
async fn create() -> Result<Order, PublishError> {
    Ok(Order { _id: 1 })
}

fn main() {}
