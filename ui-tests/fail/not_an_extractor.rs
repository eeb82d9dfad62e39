use nats_trace_runtime::prelude::*;

struct Tenant(String);

#[derive(serde::Deserialize)]
struct Order;

#[nats_subscriber(subject = "orders.created")]
async fn store(_order: Order, _tenant: Tenant) {}

fn main() {}
