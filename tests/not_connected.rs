//! Publishing with no runtime running is an error, never a panic.

use nats_trace_runtime::prelude::*;

#[derive(Debug, serde::Serialize)]
struct Order {
    id: u32,
}

#[derive(Debug)]
enum OrderError {
    Publish(PublishError),
}

impl From<PublishError> for OrderError {
    fn from(error: PublishError) -> Self {
        OrderError::Publish(error)
    }
}

#[nats_publisher(subject = "orders.created")]
async fn create_order(id: u32) -> Result<Order, OrderError> {
    Ok(Order { id })
}

#[tokio::test]
async fn a_publisher_fn_without_a_runtime_returns_not_connected() {
    let error = create_order(1).await.expect_err("no runtime is running");
    let OrderError::Publish(error) = error;
    assert!(matches!(error, PublishError::NotConnected), "{error:?}");
    assert!(
        error.to_string().contains("runtime::run()"),
        "the message names the fix: {error}"
    );
    assert!(matches!(
        Publisher::current(),
        Err(PublishError::NotConnected)
    ));
}
