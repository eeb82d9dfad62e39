//! The annotated function stays an ordinary function for unit tests.
use nats_trace_runtime::prelude::*;

#[derive(serde::Deserialize)]
struct Order {
    cents: u64,
}

#[nats_subscriber(subject = "orders.*", queue = "billing")]
async fn bill(order: Order) -> Result<u64, std::io::Error> {
    Ok(order.cents * 2)
}

#[tokio::main]
async fn main() {
    assert_eq!(bill(Order { cents: 21 }).await.unwrap(), 42);
    let handler = nats_trace_runtime::registered_handlers()
        .into_iter()
        .find(|h| h.name().ends_with("::bill"))
        .unwrap();
    assert_eq!(handler.subject(), "orders.*");
    assert_eq!(handler.queue(), Some("billing"));
}
