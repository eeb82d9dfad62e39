//! `#[nats_publisher]` keeps the body where it was written: methods,
//! `Self`, generics, `impl Trait`, borrowed arguments, `?` and early
//! `return` all work. Suffixed integer arguments are accepted too.
use nats_trace_runtime::prelude::*;

#[derive(serde::Serialize)]
struct Order {
    id: u64,
}

struct Shop {
    next: u64,
}

impl Shop {
    fn order(&self) -> Order {
        Order { id: self.next }
    }

    #[nats_publisher(subject = "orders.created", retries = 2u8)]
    async fn place(&self, note: &str) -> Result<Order, PublishError> {
        if note.is_empty() {
            return Ok(Self::order(self));
        }
        Ok(self.order())
    }
}

#[nats_publisher(subject = "things.created")]
async fn generic<T: serde::Serialize + Send + Sync>(thing: T) -> Result<T, PublishError> {
    Ok(thing)
}

#[nats_publisher(subject = "numbers.parsed")]
async fn parse(text: impl AsRef<str> + Send) -> Result<u64, anyhow_like::Error> {
    let n: u64 = text.as_ref().parse()?;
    Ok(n)
}

#[nats_subscriber(subject = "orders.*", concurrency = 8usize)]
async fn take(_order: bytes::Bytes) {}

mod anyhow_like {
    #[derive(Debug)]
    pub struct Error(pub String);

    impl From<std::num::ParseIntError> for Error {
        fn from(e: std::num::ParseIntError) -> Self {
            Error(e.to_string())
        }
    }

    impl From<nats_trace_runtime::PublishError> for Error {
        fn from(e: nats_trace_runtime::PublishError) -> Self {
            Error(e.to_string())
        }
    }
}

#[tokio::main]
async fn main() {
    let shop = Shop { next: 1 };
    assert!(matches!(shop.place("").await, Err(PublishError::NotConnected)));
    assert!(generic(Order { id: 2 }).await.is_err());
    // The body's own error comes back before anything is published.
    assert!(parse("not a number").await.unwrap_err().0.contains("invalid digit"));
}
