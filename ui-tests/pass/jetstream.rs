//! A JetStream handler with every argument, and a declared stream.
use nats_trace_runtime::jetstream::{Retention, Storage, StreamSpec};
use nats_trace_runtime::prelude::*;

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

nats_trace_runtime::declare_stream!(StreamSpec {
    name: "ORDERS",
    subjects: &["orders.>"],
    storage: Storage::File,
    retention: Retention::Limits,
    max_age: Some(std::time::Duration::from_secs(3600)),
    ..StreamSpec::DEFAULT
});

#[nats_subscriber(
    stream = "ORDERS",
    consumer = "shipper",
    subject = "orders.paid",
    max_deliver = 4,
    ack_wait = "45s",
    backoff = ["500ms", "5s", "1m"],
    deliver = "new",
    dead_letter = "dead.orders",
    concurrency = 8
)]
async fn ship(order: Order, ctx: MessageContext) -> Result<(), std::io::Error> {
    let _ = (order.id, ctx.jetstream().map(|js| js.delivery_count));
    Ok(())
}

fn main() {
    let handler = nats_trace_runtime::registered_handlers()[0];
    let js = handler.jetstream().unwrap();
    assert_eq!((js.stream, js.consumer), ("ORDERS", "shipper"));
    assert_eq!(js.ack_wait(), std::time::Duration::from_secs(45));
    assert_eq!(js.nak_delay(1), std::time::Duration::from_millis(500));
    assert_eq!(js.nak_delay(9), std::time::Duration::from_secs(60));
    assert_eq!(js.max_deliver(), 4);
    assert!(js.deliver_new);
    assert_eq!(js.dead_letter_subject(), "dead.orders");
    assert_eq!(handler.queue(), None);
    assert_eq!(nats_trace_runtime::jetstream::declared_streams()[0].name, "ORDERS");
}
