//! An error type that chooses its service code, headers and JetStream
//! disposition; `anyhow`-style and `Display` errors keep the defaults.
use std::time::Duration;

use nats_trace_runtime::prelude::*;

#[derive(Debug)]
enum InventoryError {
    NotFound(String),
    Busy,
}

impl IntoFailure for InventoryError {
    fn into_failure(self) -> Failure {
        match self {
            InventoryError::NotFound(sku) => Failure::service(404, format!("no item {sku}"))
                .with_header("Inventory-Sku", sku)
                .reject(),
            InventoryError::Busy => {
                Failure::service(503, "busy").retry_after(Duration::from_secs(5))
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct Lookup {
    sku: String,
}

#[nats_subscriber(subject = "inventory.get")]
async fn get(lookup: Lookup) -> Result<String, InventoryError> {
    match lookup.sku.as_str() {
        "" => Err(InventoryError::Busy),
        sku => Err(InventoryError::NotFound(sku.to_string())),
    }
}

#[nats_subscriber(stream = "INVENTORY", consumer = "restock", subject = "inventory.restock")]
async fn restock(lookup: Lookup) -> Result<(), InventoryError> {
    Err(InventoryError::NotFound(lookup.sku))
}

#[nats_subscriber(subject = "inventory.io")]
async fn io(_: ()) -> Result<(), std::io::Error> {
    Ok(())
}

#[nats_subscriber(subject = "inventory.failure")]
async fn failure(_: ()) -> Result<(), Failure> {
    Err(Failure::service(409, "taken"))
}

fn main() {
    assert_eq!(nats_trace_runtime::registered_handlers().len(), 4);
}
