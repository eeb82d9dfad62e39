//! Subscriber and publisher on one function, in both orders, with every
//! publisher argument.
use nats_trace_runtime::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
}

#[derive(serde::Serialize)]
struct Invoice {
    order: u64,
}

#[derive(Debug)]
enum BillingError {
    Publish(PublishError),
}

impl std::fmt::Display for BillingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BillingError::Publish(error) => write!(f, "publish failed: {error}"),
        }
    }
}

impl From<PublishError> for BillingError {
    fn from(error: PublishError) -> Self {
        BillingError::Publish(error)
    }
}

#[nats_subscriber(subject = "orders.created", queue = "billing")]
#[nats_publisher(subject = "invoices.created", jetstream, message_id = |i: &Invoice| i.order, retries = 3)]
async fn bill(order: Order) -> Result<Invoice, BillingError> {
    Ok(Invoice { order: order.id })
}

#[nats_publisher(subject = "orders.shipped")]
#[nats_subscriber(subject = "orders.packed")]
async fn ship(Order { id }: Order) -> Result<Order, PublishError> {
    Ok(Order { id })
}

#[nats_publisher(subject = "raw.out")]
async fn raw(text: &str) -> Result<String, PublishError> {
    Ok(text.to_uppercase())
}

#[tokio::main]
async fn main() {
    assert_eq!(nats_trace_runtime::registered_handlers().len(), 2);
    // No runtime runs: the publish fails and the error reaches the caller.
    let billed = bill(Order { id: 1 }).await;
    assert!(matches!(billed, Err(BillingError::Publish(PublishError::NotConnected))));
    assert!(matches!(ship(Order { id: 2 }).await, Err(PublishError::NotConnected)));
    assert!(raw("x").await.is_err());
}
