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

mod adapter;
mod backoff;
pub mod codec;
mod connection;
mod context;
mod credentials;
mod dispatch;
mod error;
pub mod extract;
mod failure;
pub mod jetstream;
mod pipeline;
pub mod propagation;
mod publisher;
mod registry;
mod reply;
pub mod runtime;
pub mod semconv;
mod shutdown;
mod subscription;
pub mod telemetry;

/// The NATS client, re-exported so applications need no direct dependency.
pub use async_nats;
pub use backoff::Backoff;
/// Byte buffers of message bodies, re-exported for raw `Bytes` payloads.
pub use bytes;
pub use codec::Json;
#[cfg(feature = "msgpack")]
pub use codec::MsgPack;
#[cfg(feature = "protobuf")]
pub use codec::Protobuf;
pub use connection::{ConnectRetry, ConnectionStats, DEFAULT_URL};
pub use context::MessageContext;
pub use credentials::Credentials;
pub use error::Error;
pub use extract::{FromMessageParts, FromPayload, State};
pub use failure::{Disposition, Failure, FailureKind, IntoFailure};
/// The OpenTelemetry API this crate traces with, re-exported so that
/// applications use the same version.
pub use opentelemetry;
pub use publisher::{
    BatchFailure, BatchReport, FromPublishError, PublishError, Publisher, RequestError, RetryPolicy,
};
pub use registry::{DEFAULT_CONCURRENCY, Handler, Source, registered_handlers};
pub use reply::{Reply, ToReply};
pub use runtime::ShutdownReport;
pub use shutdown::StopHandle;
/// The `tracing` crate this crate logs with, re-exported so that
/// applications use the same version.
pub use tracing;

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
/// | `concurrency = N` | [`DEFAULT_CONCURRENCY`] (64) | How many messages this handler processes at once. The task that receives the handler's messages polls them together, so CPU-heavy work belongs in `tokio::task::spawn_blocking`. A JetStream message whose handler succeeded waits for the server to confirm its ack outside that count, in room for four acks per slot. |
///
/// Subjects and queue names are checked at compile time.
///
/// # JetStream
///
/// With `stream` and `consumer` the handler reads from a durable pull
/// consumer, created (or updated) at start, with `subject` as its filter:
///
/// ```
/// # use nats_trace_runtime::prelude::*;
/// # #[derive(serde::Deserialize)] struct Order { id: u64 }
/// # #[derive(Debug)] struct ShipError;
/// # impl std::fmt::Display for ShipError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("ship failed") }
/// # }
/// #[nats_subscriber(stream = "ORDERS", consumer = "shipper", subject = "orders.paid",
///                   max_deliver = 5, backoff = ["1s", "10s", "1m"])]
/// async fn ship(order: Order) -> Result<(), ShipError> {
///     Ok(())
/// }
/// ```
///
/// | argument | default | meaning |
/// |---|---|---|
/// | `stream = "..."` | — | The stream to read from (no `.`, `*`, `>`, slashes or whitespace). |
/// | `consumer = "..."` | — | The durable consumer's name; instances sharing it share the work, so `queue` does not apply. |
/// | `max_deliver = N` | [`jetstream::DEFAULT_MAX_DELIVER`] (5) | Deliveries before a failing message is dead-lettered and terminated. |
/// | `ack_wait = "30s"` | [`jetstream::DEFAULT_ACK_WAIT`] (30 s) | How long the server waits for a settle before redelivering. Handlers running longer send in-progress acks every half `ack_wait`. |
/// | `backoff = ["1s", ...]` | 1 s, 5 s, 30 s | Nak delay after failed delivery 1, 2, …; the last entry repeats. |
/// | `deliver = "all" \| "new"` | `"all"` | Start with the oldest message, or only new ones, when the consumer is created. |
/// | `dead_letter = "..."` | `dlq.{stream}.{consumer}` | Where failed messages go before they are terminated. |
///
/// Each message is settled after its handler finished, never before:
/// - `Ok` → ack, confirmed by the server;
/// - `Err` or panic → nak with the backoff delay for its delivery count;
///   on delivery `max_deliver` → dead letter, then term;
/// - an error whose [`Failure`] says [`retry_after`](Failure::retry_after)
///   → nak with that delay instead;
/// - an error whose [`Failure`] says [`reject`](Failure::reject), an
///   undecodable payload, or a rejecting extractor → dead letter, then
///   term, on this delivery (retrying cannot help).
///
/// The dead letter carries the original payload and headers, read back
/// from the stream, its trace context, and [`jetstream::dead_letter_headers`]
/// with the last error and the delivery count. If it cannot be read or
/// published the message is not termed, so it stays in the stream; if the
/// stream no longer holds it (a limit removed it), it is termed with nothing
/// to dead-letter. Every settle is a CLIENT span `ack|nak|term|progress
/// {subject}` under the process span, which carries `messaging.nats.stream`,
/// `messaging.nats.consumer`, `messaging.nats.stream_sequence` and
/// `messaging.nats.delivery_count`. The handler sees them through
/// [`MessageContext::jetstream`]. Declare the stream itself with
/// [`declare_stream!`] or [`runtime::Builder::stream`].
///
/// # Parameters
///
/// Every parameter is an extractor, in any order (see [`extract`]):
/// - exactly one **payload**, decoded from the body: a [`FromPayload`] type
///   (`Bytes`, `Vec<u8>` and `String` as they are; [`Json<T>`](Json),
///   `Protobuf<T>`, `MsgPack<T>` and [`codec::Encoded<C, T>`] through their
///   codec; `()` to ignore the body), or else any `T: serde::Deserialize`,
///   as JSON;
/// - any number of [`FromMessageParts`] types, read from the message around
///   the body: [`State<T>`] (the runtime's state), [`MessageContext`] (also
///   by reference), `async_nats::Subject`, `async_nats::HeaderMap`,
///   `Option<T>` of these, and your own.
///
/// Which one a type is, is decided by the traits it implements, never by its
/// name: a type alias is the type it names, and `Vec<u8>` is raw although it
/// is `Deserialize` too.
///
/// # Return type
///
/// Anything [`ToReply`] (`()`, the raw types, the codec wrappers, [`Reply`]
/// with headers) or else `Serialize` (as JSON), or a `Result` of one (an
/// alias too) whose error is [`IntoFailure`] or else `Display`. When the
/// message is a request, the `Ok` value is the reply; a failure replies with
/// the `Nats-Service-Error` and `Nats-Service-Error-Code` headers: its own
/// code and headers for an `IntoFailure` error, 500 and its `Display` for
/// another error or a panic, 400 for an undecodable payload or a rejecting
/// extractor. The payload is never quoted. Handlers whose `Ok` type is `()`
/// never reply: they may share a subject with a JetStream stream without
/// answering its publish acknowledgements.
///
/// Handlers are free functions: the registration cannot live in an `impl`
/// block, so an associated function fails to compile.
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
/// The macro leaves the function as written and adds a registration. For
/// `async fn bill(order: Order, State(db): State<Db>) -> Result<(), BillingError>`
/// it is, with the compiler choosing each step from the types' traits (the
/// methods are prefixed so that no trait of the caller's can clash with them)
/// (`&&&&Param::<T>` resolves to `State<T>`, then `FromMessageParts`, then
/// `FromPayload`, then JSON; the glue is in the runtime's `adapter` module):
///
/// ```ignore
/// const _: () = {
///     fn adapter(delivery: Delivery) -> HandlerFuture {
///         Box::pin(async move {
///             // Compile time only: exactly one parameter is the payload.
///             let count = NoPayload;
///             let count = Tally::tally(count, (&&&&Param::<Order>::new()).__nats_trace_kind());
///             let count = Tally::tally(count, (&&&&Param::<State<Db>>::new()).__nats_trace_kind());
///             exactly_one_payload(count);
///             let (arg0, arg1) = {
///                 let mut delivery = delivery;
///                 let (ctx, mut body) = delivery.parts();
///                 // JSON, as `Order` is only `Deserialize`; a failure is the reply.
///                 let arg0 = (&&&&Param::<Order>::new()).__nats_trace_extract(ctx, &mut body).await?;
///                 let arg1 = (&&&&Param::<State<Db>>::new()).__nats_trace_extract(ctx, &mut body).await?;
///                 (arg0, arg1)
///             };
///             let ret = bill(arg0, arg1).await;
///             match (&Output::of(&ret)).__nats_trace_split(ret) {
///                 Ok(ok) => (&&Probe::of(&ok)).__nats_trace_encode(&ok),
///                 Err(err) => Err((&&&ErrorProbe::of(&err)).__nats_trace_convert(err)),
///             }
///         })
///     }
///     fn replies() -> bool { /* `ToReply::REPLIES` of the `Ok` type: false for `()` */ }
///     fn requirements(r: &mut Requirements) {
///         (&&&&Param::<Order>::new()).__nats_trace_requirements(r);
///         (&&&&Param::<State<Db>>::new()).__nats_trace_requirements(r); // declares `Db`
///     }
///     inventory::submit!(Handler::__new(HandlerSpec {
///         name: "my_crate::bill",
///         subject: "orders.*",
///         span_name: "process orders.*",
///         source: Source::Core { queue: Some("billing") },
///         replies,
///         requirements,
///         concurrency: Some(8),
///         call: adapter,
///         file: file!(),
///         line: line!(),
///     }));
/// };
/// ```
pub use nats_trace_macros::nats_subscriber;

/// Publishes the `Ok` value of an `async fn` to a NATS subject, traced.
///
/// Calling the function runs its body, then publishes the `Ok` value under a
/// PRODUCER span `publish {subject}`, a child of the caller's current
/// context, whose context travels in the message headers. The function then
/// returns the value. A failed publish is returned as the function's error,
/// so `E` must implement `From<PublishError>` (`anyhow::Error` does).
///
/// ```
/// use nats_trace_runtime::prelude::*;
/// use nats_trace_runtime::PublishError;
/// # #[derive(serde::Deserialize)] struct NewOrder { cents: u64 }
/// # #[derive(serde::Serialize)] struct Order { id: u64, cents: u64 }
///
/// #[derive(Debug)]
/// enum OrderError { Publish(PublishError) }
///
/// impl From<PublishError> for OrderError {
///     fn from(error: PublishError) -> Self { OrderError::Publish(error) }
/// }
///
/// #[nats_publisher(subject = "orders.created")]
/// async fn create_order(input: NewOrder) -> Result<Order, OrderError> {
///     Ok(Order { id: 7, cents: input.cents })
/// }
/// ```
///
/// Stacked under `#[nats_subscriber]`, the handler's output is published
/// downstream and the publish span is a child of the process span, so a
/// chain of services forms one trace:
///
/// ```
/// # use nats_trace_runtime::prelude::*;
/// # #[derive(serde::Deserialize, serde::Serialize)] struct Order { id: u64 }
/// # #[derive(serde::Serialize)] struct Invoice { order: u64 }
/// #[nats_subscriber(subject = "orders.created", queue = "billing")]
/// #[nats_publisher(subject = "invoices.created")]
/// async fn bill(order: Order) -> Result<Invoice, anyhow_like::Error> {
///     Ok(Invoice { order: order.id })
/// }
/// # mod anyhow_like {
/// #     #[derive(Debug)] pub struct Error(pub String);
/// #     impl std::fmt::Display for Error {
/// #         fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) }
/// #     }
/// #     impl From<nats_trace_runtime::PublishError> for Error {
/// #         fn from(e: nats_trace_runtime::PublishError) -> Self { Error(e.to_string()) }
/// #     }
/// # }
/// ```
///
/// # Arguments
///
/// | argument | default | meaning |
/// |---|---|---|
/// | `subject = "..."` | required | Where to publish; must be concrete (no `*` or `>`). |
/// | `jetstream` | off | Publish to JetStream and wait for the stream's acknowledgement; the span gets the stream and sequence. |
/// | `message_id = <fn>` | none | A closure or function from `&T` to something `Display`, sent as `Nats-Msg-Id` for JetStream de-duplication, e.g. `message_id = \|o: &Order\| o.id`. |
/// | `retries = N` | none | Confirm the publish and retry up to `N` times with backoff ([`RetryPolicy::retries`]). |
///
/// # Connection
///
/// The function publishes on the running runtime's connection: inside a
/// handler its own runtime's, elsewhere the most recently started one's
/// (see [`runtime::Running::scope`]). With no runtime running it returns
/// [`PublishError::NotConnected`].
///
/// The `Ok` value is encoded as a handler's reply: a [`ToReply`] type
/// (`Protobuf<T>`, `MsgPack<T>`, [`Json<T>`](Json), raw bodies, a [`Reply`]
/// whose headers are published with it) or else a `Serialize` type as JSON.
///
/// # Equivalent code without the macro
///
/// ```ignore
/// async fn create_order(input: NewOrder) -> Result<Order, OrderError> {
///     static SPEC: PublishSpec = PublishSpec { subject: "orders.created", jetstream: false, retries: None };
///     let output: Result<Order, OrderError> = async move { /* body */ }.await;
///     PublisherOutput::from_result(match PublisherOutput::into_result(output) {
///         Ok(order) => {
///             let body = (&&Probe::of(&order)).__nats_trace_encode(&order); // JSON: `Order` is `Serialize`
///             match publish_output(&SPEC, body, None).await {
///                 Ok(()) => Ok(order),
///                 Err(error) => Err(OrderError::from(error)),
///             }
///         }
///         Err(error) => Err(error),
///     })
/// }
/// ```
pub use nats_trace_macros::nats_publisher;

/// The names most services need: `use nats_trace_runtime::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "msgpack")]
    pub use crate::MsgPack;
    #[cfg(feature = "protobuf")]
    pub use crate::Protobuf;
    pub use crate::{
        Failure, FromMessageParts, FromPayload, IntoFailure, Json, MessageContext, PublishError,
        Publisher, Reply, State, ToReply, nats_publisher, nats_subscriber,
    };
}

/// Used by the code the macros generate. Not public API: anything here may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::adapter::*;
    pub use crate::context::Delivery;
    pub use crate::extract::Requirements;
    pub use crate::failure::Failure;
    pub use crate::jetstream::{JetStreamSpec, StreamRegistration};
    pub use crate::publisher::{PublishSpec, message_id, publish_error_into, publish_output};
    pub use crate::registry::{Handler, HandlerFuture, HandlerSpec, Source};
    pub use crate::reply::Reply;
    pub use inventory;
}

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
