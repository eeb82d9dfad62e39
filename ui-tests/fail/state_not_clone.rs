use nats_trace_runtime::prelude::*;

struct Db;

#[nats_subscriber(subject = "orders.created")]
async fn store(_body: (), State(_db): State<Db>) {}

fn main() {}
