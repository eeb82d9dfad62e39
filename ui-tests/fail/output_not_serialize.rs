use nats_trace_runtime::prelude::*;

struct Quote {
    _cents: u64,
}

#[nats_subscriber(subject = "prices.quote")]
async fn quote(_body: bytes::Bytes) -> Result<Quote, std::io::Error> {
    Ok(Quote { _cents: 1 })
}

fn main() {}
