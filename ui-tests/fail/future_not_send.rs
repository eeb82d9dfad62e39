use nats_trace_runtime::prelude::*;
use std::rc::Rc;

#[nats_subscriber(subject = "orders.*")]
async fn bill(_body: bytes::Bytes) {
    let local = Rc::new(1);
    tokio::task::yield_now().await;
    drop(local);
}

fn main() {}
