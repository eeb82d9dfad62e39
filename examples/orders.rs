//! The orders pipeline: a shop places orders, billing (a queue group) bills
//! them and publishes invoices, a mailer sends the invoices, an auditor sees
//! every order event, and a pricing service answers quote requests. Every
//! message flow prints as one trace tree.
//!
//! The services' data lives in the runtime's state, not in statics: the
//! price list the pricing service quotes from, and the ledger billing
//! writes to, are given to the builder and taken as `State<T>`.
//!
//! Run it with `scripts/demo` (or `cargo run -p nats-trace-examples --example
//! orders` once nats-server is installed). It uses `NATS_URL` when a server
//! answers there, and otherwise starts its own on a free local port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nats_trace_runtime::prelude::*;
use nats_trace_runtime::telemetry::console_tree::ConsoleTreeExporter;
use nats_trace_runtime::{DEFAULT_URL, runtime};
use nats_trace_testing::NatsServer;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invoice {
    order: u64,
    customer: String,
    cents: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct QuoteRequest {
    items: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Quote {
    cents: u64,
}

/// The price list, given to the runtime as state.
#[derive(Debug, Clone)]
struct Prices {
    cents_per_item: u64,
}

/// The invoices billed so far, shared by every run of `bill`.
#[derive(Debug, Clone, Default)]
struct Ledger(Arc<Mutex<Vec<Invoice>>>);

impl Ledger {
    fn record(&self, invoice: &Invoice) {
        let mut invoices = self.0.lock().unwrap_or_else(|e| e.into_inner());
        invoices.push(invoice.clone());
    }

    fn total(&self) -> (usize, u64) {
        let invoices = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (invoices.len(), invoices.iter().map(|i| i.cents).sum())
    }
}

/// Why billing refused an order, or could not pass the invoice on.
#[derive(Debug)]
enum BillingError {
    Empty(u64),
    Publish(PublishError),
}

/// An empty order is the sender's mistake (422, never retried); a failed
/// publish is the service's (503).
impl IntoFailure for BillingError {
    fn into_failure(self) -> Failure {
        match self {
            BillingError::Empty(_) => Failure::service(422, self.to_string()).reject(),
            BillingError::Publish(_) => Failure::service(503, self.to_string()),
        }
    }
}

impl std::fmt::Display for BillingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BillingError::Empty(id) => write!(f, "order {id} has nothing to bill"),
            BillingError::Publish(error) => write!(f, "{error}"),
        }
    }
}

impl From<PublishError> for BillingError {
    fn from(error: PublishError) -> Self {
        BillingError::Publish(error)
    }
}

/// The shop: the returned order is published to `orders.created`.
#[nats_publisher(subject = "orders.created")]
async fn place_order(id: u64, customer: &str, cents: u64) -> Result<Order, PublishError> {
    Ok(Order {
        id,
        customer: customer.to_string(),
        cents,
    })
}

/// Billing: each order is billed once across the `billing` group, and the
/// invoice is published on.
#[nats_subscriber(subject = "orders.created", queue = "billing")]
#[nats_publisher(subject = "invoices.created")]
async fn bill(order: Order, State(ledger): State<Ledger>) -> Result<Invoice, BillingError> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    if order.cents == 0 {
        return Err(BillingError::Empty(order.id));
    }
    let invoice = Invoice {
        order: order.id,
        customer: order.customer,
        cents: order.cents,
    };
    ledger.record(&invoice);
    Ok(invoice)
}

#[nats_subscriber(subject = "invoices.created", queue = "mailer")]
async fn mail(invoice: Invoice) {
    tokio::time::sleep(Duration::from_millis(2)).await;
    let _ = (invoice.customer, invoice.cents);
}

#[nats_subscriber(subject = "orders.*", queue = "audit")]
async fn audit(order: Order, ctx: MessageContext) {
    let _ = (order.id, ctx.subject());
}

/// Pricing: a request; the returned quote is the reply.
#[nats_subscriber(subject = "prices.quote")]
async fn quote(request: QuoteRequest, State(prices): State<Prices>) -> Quote {
    Quote {
        cents: request.items * prices.cents_per_item,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _own_server) = nats_url().await?;

    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(ConsoleTreeExporter::stdout())
        .build();
    let ledger = Ledger::default();
    // The trees below say it all; the runtime's log lines stay off here.
    let running = runtime::builder()
        .url(url)
        .state(Prices {
            cents_per_item: 499,
        })
        .state(ledger.clone())
        .tracer_provider(provider.clone())
        .logging(false)
        .start()
        .await?;
    println!("serving {} handlers:", running.handlers().len());
    for handler in running.handlers() {
        println!("  {handler}");
    }
    println!();

    place_order(1, "ada", 1250).await?;
    pause().await;
    place_order(2, "grace", 0).await?;
    pause().await;
    let quote: Quote = running
        .publisher()
        .request(
            "prices.quote",
            &QuoteRequest { items: 3 },
            Duration::from_secs(2),
        )
        .await?;
    println!("quote for 3 items: {} cents\n", quote.cents);
    pause().await;

    running.stop().await?;
    provider.shutdown()?;
    let (invoices, cents) = ledger.total();
    println!("ledger: {invoices} invoice(s), {cents} cents billed");
    Ok(())
}

/// One flow at a time keeps the printed trees apart.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// `NATS_URL` when a server answers there, else a server of our own.
async fn nats_url() -> Result<(String, Option<NatsServer>), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
    let probe = tokio::time::timeout(Duration::from_secs(2), async_nats::connect(&url)).await;
    if let Ok(Ok(client)) = probe {
        drop(client);
        return Ok((url, None));
    }
    println!("no NATS server at {url}; starting a local one\n");
    let server = NatsServer::start()?;
    Ok((server.url(), Some(server)))
}
