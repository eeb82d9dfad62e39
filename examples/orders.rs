//! The orders pipeline: a shop publishes orders, billing and audit handlers
//! in queue groups process them, and a pricing service answers requests.
//! Every message flow prints as one trace tree.
//!
//! Run it with `scripts/demo` (or `cargo run -p nats-trace-examples --example
//! orders` once nats-server is installed). It uses `NATS_URL` when a server
//! answers there, and otherwise starts its own on a free local port.

use std::time::Duration;

use nats_trace_runtime::console_tree::ConsoleTreeExporter;
use nats_trace_runtime::prelude::*;
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

/// Why billing refused an order.
#[derive(Debug)]
struct BillingError(String);

impl std::fmt::Display for BillingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[nats_subscriber(subject = "orders.created", queue = "billing")]
async fn bill(order: Order) -> Result<(), BillingError> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    if order.cents == 0 {
        return Err(BillingError(format!(
            "order {} has nothing to bill",
            order.id
        )));
    }
    Ok(())
}

#[nats_subscriber(subject = "orders.*", queue = "audit")]
async fn audit(order: Order, ctx: MessageContext) {
    tokio::time::sleep(Duration::from_millis(1)).await;
    let _ = (order.customer, ctx.subject());
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _own_server) = nats_url().await?;

    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(ConsoleTreeExporter::stdout())
        .build();
    let running = runtime::builder()
        .url(url)
        .tracer_provider(provider.clone())
        .start()
        .await?;

    let shop = running.publisher();
    let orders = [
        Order {
            id: 1,
            customer: "ada".into(),
            cents: 1250,
        },
        Order {
            id: 2,
            customer: "grace".into(),
            cents: 0,
        },
    ];
    for order in &orders {
        shop.publish("orders.created", order).await?;
        // One trace at a time keeps the printed trees apart.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    running.stop().await?;
    provider.shutdown()?;
    Ok(())
}

/// `NATS_URL` when a server answers there, else a server of our own.
async fn nats_url() -> Result<(String, Option<NatsServer>), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
    let probe = tokio::time::timeout(Duration::from_secs(2), async_nats::connect(&url)).await;
    if let Ok(Ok(client)) = probe {
        drop(client);
        return Ok((url, None));
    }
    println!("no NATS server at {url}; starting a local one");
    let server = NatsServer::start()?;
    Ok((server.url(), Some(server)))
}
