use nats_trace_runtime::prelude::*;

#[nats_subscriber(subject = "orders.*")]
async fn bill<T: serde::de::DeserializeOwned>(_order: T) {}

fn main() {}
