use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.*")]
async fn bill(_order: impl serde::de::DeserializeOwned) {}

fn main() {}
