use nats_trace_runtime::prelude::*;

#[derive(Debug)]
struct QuoteError;

#[nats_subscriber(subject = "prices.quote")]
async fn quote(_body: bytes::Bytes) -> Result<(), QuoteError> {
    Err(QuoteError)
}

fn main() {}
