use nats_trace_runtime::prelude::*;

struct Billing;

impl Billing {
    #[nats_subscriber(subject = "orders.*")]
    async fn bill(_body: bytes::Bytes) {}
}

fn main() {}
