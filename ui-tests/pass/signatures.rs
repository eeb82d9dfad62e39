//! Every supported parameter and return shape.
use bytes::Bytes;
use nats_trace_runtime::prelude::*;

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

#[derive(serde::Serialize)]
struct Invoice {
    order: u64,
}

#[derive(Debug)]
struct BillingError;

impl std::fmt::Display for BillingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("billing failed")
    }
}

#[nats_subscriber(subject = "a.unit")]
async fn unit(_order: Order) {}

#[nats_subscriber(subject = "a.fallible", queue = "billing", concurrency = 4)]
async fn fallible(_order: Order) -> Result<(), BillingError> {
    Ok(())
}

#[nats_subscriber(subject = "a.value")]
async fn value(order: Order) -> Invoice {
    Invoice { order: order.id }
}

#[nats_subscriber(subject = "a.result.*")]
async fn result(order: Order, ctx: MessageContext) -> Result<Invoice, BillingError> {
    let _ = (ctx.subject(), ctx.reply(), ctx.headers(), ctx.otel_context());
    Ok(Invoice { order: order.id })
}

#[nats_subscriber(subject = "a.raw.>")]
async fn raw(ctx: &MessageContext, body: Bytes) -> String {
    format!("{} bytes on {}", body.len(), ctx.subject())
}

#[nats_subscriber(subject = "a.text")]
async fn text(body: String) -> Result<Bytes, std::io::Error> {
    Ok(Bytes::from(body))
}

mod errors {
    pub type Result<T> = std::result::Result<T, super::BillingError>;
}

#[nats_subscriber(subject = "a.alias")]
async fn alias(order: Order) -> errors::Result<Invoice> {
    Ok(Invoice { order: order.id })
}

fn main() {
    assert_eq!(nats_trace_runtime::registered_handlers().len(), 7);
}
