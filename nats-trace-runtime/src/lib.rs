//! Traced NATS services without hand-written tracing code.
//!
//! Annotate an `async fn` with [`nats_subscriber`] and call
//! [`runtime::run`]. For every message the runtime extracts the trace context
//! from the headers, opens a CONSUMER span that follows the OpenTelemetry
//! messaging conventions, decodes the payload, calls the handler inside the
//! span, and replies when the message was a request.
//!
//! ```no_run
//! use nats_trace_runtime::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Order { id: u64, cents: u64 }
//!
//! #[derive(Serialize)]
//! struct Invoice { order: u64, total: u64 }
//!
//! #[nats_subscriber(subject = "orders.*", queue = "billing")]
//! async fn bill(order: Order) -> Result<Invoice, std::io::Error> {
//!     Ok(Invoice { order: order.id, total: order.cents })
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), nats_trace_runtime::Error> {
//!     nats_trace_runtime::runtime::run().await
//! }
//! ```
#![warn(missing_docs)]

mod codec;
mod connection;
pub mod console_tree;
mod context;
mod error;
mod outcome;
mod pipeline;
pub mod propagation;
mod publisher;
mod registry;
pub mod runtime;
pub mod semconv;
mod shutdown;
mod subscription;
mod telemetry;

pub use codec::RawBody;
pub use connection::{ConnectRetry, DEFAULT_URL};
pub use context::MessageContext;
pub use error::Error;
pub use outcome::{Failure, FailureKind, Reply};
pub use publisher::{PublishError, Publisher};
pub use registry::{DEFAULT_CONCURRENCY, Handler, registered_handlers};
pub use shutdown::StopHandle;

/// Registers an `async fn` as a traced NATS message handler.
///
/// ```
/// use nats_trace_runtime::prelude::*;
/// # #[derive(serde::Deserialize)] struct Order { id: u64 }
/// # #[derive(Debug)] struct BillingError;
/// # impl std::fmt::Display for BillingError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("billing failed") }
/// # }
///
/// #[nats_subscriber(subject = "orders.*", queue = "billing", concurrency = 8)]
/// async fn bill(order: Order) -> Result<(), BillingError> {
///     Ok(())
/// }
///
/// // Still an ordinary function, for unit tests:
/// # async fn test() {
/// bill(Order { id: 1 }).await.ok();
/// # }
/// ```
///
/// # Arguments
///
/// | argument | default | meaning |
/// |---|---|---|
/// | `subject = "..."` | required | The subscription subject. `*` matches one token, `>` the rest (`orders.>`). |
/// | `queue = "..."` | none | A queue group: each message goes to one member of the group. |
/// | `concurrency = N` | [`DEFAULT_CONCURRENCY`] (64) | How many messages this handler processes at once. |
///
/// Subjects and queue names are checked at compile time.
///
/// # Parameters
///
/// Exactly one **payload** parameter, decoded from the message body:
/// - `bytes::Bytes` or `String` take the body as-is (a `String` must be UTF-8);
/// - any other type must implement `serde::de::DeserializeOwned` and is decoded as JSON.
///
/// Optionally one [`MessageContext`] (by value or by reference) for the
/// subject, headers, reply subject and OpenTelemetry context.
///
/// The classification is by name: a type named `MessageContext` is the
/// context, `Bytes` and `String` are raw bodies, and a return type named
/// `Result` is fallible. Type aliases of these are not recognised.
///
/// # Return type
///
/// `()`, `T`, `Result<(), E>` or `Result<T, E>`, where `T` is encoded like a
/// payload (`Bytes` / `String` raw, other types as JSON) and `E: Display`
/// (e.g. `anyhow::Error` or a `thiserror` type). When the message is a
/// request, `T` is the reply; an `Err`, a panic or an undecodable payload
/// replies with the `Nats-Service-Error` and `Nats-Service-Error-Code`
/// headers (400 for a bad payload, 500 otherwise).
///
/// # Tracing
///
/// Each message gets a CONSUMER span `process {subject}` whose parent is the
/// context in the message headers, so publisher and handler share one trace.
/// The span is the current OpenTelemetry context while the handler runs, and
/// replies carry it in their headers.
///
/// # Equivalent code without the macro
///
/// The macro leaves the function as written and adds a registration,
/// roughly:
///
/// ```ignore
/// const _: () = {
///     fn adapter(delivery: Delivery) -> HandlerFuture {
///         Box::pin(async move {
///             let (body, ctx) = delivery.into_parts();
///             let order = decode_json::<Order>(&body)?;
///             match bill(order).await {
///                 Ok(value) => encode_unit(value),
///                 Err(error) => Err(Failure::handler(error)),
///             }
///         })
///     }
///     inventory::submit!(Handler::__new(HandlerSpec {
///         name: "my_crate::bill",
///         subject: "orders.*",
///         span_name: "process orders.*",
///         queue: Some("billing"),
///         concurrency: Some(8),
///         call: adapter,
///         file: file!(),
///         line: line!(),
///     }));
/// };
/// ```
pub use nats_trace_macros::nats_subscriber;

/// The names most services need: `use nats_trace_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::{MessageContext, Publisher, nats_subscriber};
}

/// Used by the code the macros generate. Not public API: anything here may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::codec::{
        decode_json, decode_raw, decode_unit, encode_json, encode_raw, encode_unit,
    };
    pub use crate::context::Delivery;
    pub use crate::outcome::{Failure, Reply};
    pub use crate::registry::{Handler, HandlerFuture, HandlerSpec};
    pub use inventory;
}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
