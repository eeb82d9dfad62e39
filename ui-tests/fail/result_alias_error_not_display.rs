use nats_trace_runtime::prelude::*;

// Serializable but not `Display`: it must not be sent as a successful
// `{"Err": ...}` reply, nor compile.
#[derive(Debug, serde::Serialize)]
struct AppError {
    reason: String,
}

type AppResult<T> = Result<T, AppError>;

#[nats_subscriber(subject = "orders.quote")]
async fn quote(_body: ()) -> AppResult<u64> {
    Ok(1)
}

fn main() {}
