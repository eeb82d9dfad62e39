//! Why a message failed, and what that means for it: the `error.type` on its
//! span, the `Nats-Service-Error` reply a requester gets, and on JetStream
//! whether it is retried.

use std::any::Any;
use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

use async_nats::HeaderMap;

/// Why a message failed. It is recorded on the process span, sent back to
/// a requester with the `Nats-Service-Error` and `Nats-Service-Error-Code`
/// headers, and on JetStream decides between a retry and a dead letter.
///
/// Handlers return their own error types; [`IntoFailure`] turns them into
/// this. A handler may also return `Result<T, Failure>` and build the
/// failure itself:
///
/// ```
/// use std::time::Duration;
/// use nats_trace_runtime::prelude::*;
/// # #[derive(serde::Deserialize)] struct Lookup { sku: String }
/// # #[derive(serde::Serialize)] struct Item { sku: String }
///
/// #[nats_subscriber(subject = "inventory.get")]
/// async fn get(lookup: Lookup) -> Result<Item, Failure> {
///     if lookup.sku.is_empty() {
///         return Err(Failure::service(404, "no such item").with_header("Inventory-Reason", "unknown-sku"));
///     }
///     if lookup.sku == "busy" {
///         // On JetStream: redelivered after 10 s, whatever the backoff says.
///         return Err(Failure::service(503, "warehouse busy").retry_after(Duration::from_secs(10)));
///     }
///     Ok(Item { sku: lookup.sku })
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Failure {
    kind: FailureKind,
    code: u16,
    message: String,
    /// Boxed, with the headers: failures are rare, and every run's state
    /// holds room for one.
    rest: Box<FailureDetails>,
}

#[derive(Debug, Clone)]
struct FailureDetails {
    error_type: Option<Cow<'static, str>>,
    disposition: Disposition,
    headers: Option<Box<HeaderMap>>,
}

/// The stage at which a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The payload could not be decoded. It never will be, so retrying is pointless.
    Decode,
    /// An extractor rejected the message, e.g. a missing header.
    Rejected,
    /// The handler returned `Err`.
    Handler,
    /// The handler panicked.
    Panic,
    /// The handler's output could not be encoded.
    Encode,
}

/// What happens to a failed JetStream message. Core NATS messages are not
/// redelivered, so there it only shows on the span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Nak with the handler's `backoff` delay for this delivery; at
    /// `max_deliver`, dead letter and term. The default for handler errors
    /// and panics.
    Retry,
    /// Nak with this delay instead of the backoff; at `max_deliver`, dead
    /// letter and term.
    RetryAfter(Duration),
    /// Dead letter and term now: retrying cannot help. The default for
    /// undecodable payloads and rejected messages.
    Reject,
}

impl Failure {
    /// A failure with its own service code and description, e.g.
    /// `Failure::service(404, "no such item")`. It is retried on JetStream
    /// unless [`reject`](Self::reject)ed; its `error.type` is the code, or
    /// the error type that built it (see [`IntoFailure`]).
    pub fn service(code: u16, description: impl Into<String>) -> Self {
        Failure {
            kind: FailureKind::Handler,
            code,
            message: description.into(),
            rest: Box::new(FailureDetails {
                error_type: None,
                disposition: Disposition::Retry,
                headers: None,
            }),
        }
    }

    /// A message the service refuses, code 400: an extractor's rejection.
    /// On JetStream it is dead-lettered and termed at once.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Failure {
            kind: FailureKind::Rejected,
            ..Failure::service(400, description).reject()
        }
    }

    /// A payload that could not be decoded; `error_type` is the codec's error type.
    pub fn decode<E: fmt::Display>(error: E) -> Self {
        Failure::decode_described::<E>(error.to_string())
    }

    /// A payload that could not be decoded, described by `message` rather
    /// than by the codec error's own text (which may quote the payload).
    pub fn decode_described<E>(message: String) -> Self {
        Failure {
            kind: FailureKind::Decode,
            ..Failure::service(400, message)
                .with_error_type(std::any::type_name::<E>())
                .reject()
        }
    }

    /// A handler that returned `Err(error)`: code 500, retried with the
    /// backoff, `error.type` the error's type name.
    pub fn handler<E: fmt::Display>(error: E) -> Self {
        Failure::service(500, error.to_string()).with_error_type(std::any::type_name::<E>())
    }

    /// An output that could not be encoded.
    pub fn encode<E: fmt::Display>(error: E) -> Self {
        Failure {
            kind: FailureKind::Encode,
            ..Failure::handler(error)
        }
    }

    /// A handler that panicked with `payload`.
    pub fn panic(payload: &(dyn Any + Send)) -> Self {
        let detail = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("non-string panic payload");
        Failure {
            kind: FailureKind::Panic,
            ..Failure::service(500, format!("handler panicked: {detail}"))
                .with_error_type(crate::semconv::error_type::PANIC)
        }
    }

    /// Sets the `error.type` recorded on the span, e.g. `"not_found"`.
    /// Keep it low-cardinality: a type or a code, never an id.
    pub fn with_error_type(mut self, error_type: impl Into<Cow<'static, str>>) -> Self {
        self.rest.error_type = Some(error_type.into());
        self
    }

    /// Adds a header to the error reply a requester gets, cleaned as
    /// [`Reply::with_header`](crate::Reply::with_header) does.
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        crate::reply::insert_header(&mut self.rest.headers, name.as_ref(), value.as_ref());
        self
    }

    /// On JetStream: dead letter and term now, without retrying.
    pub fn reject(mut self) -> Self {
        self.rest.disposition = Disposition::Reject;
        self
    }

    /// On JetStream: redeliver after `delay` instead of the handler's
    /// backoff (still dead-lettered at `max_deliver`).
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.rest.disposition = Disposition::RetryAfter(delay);
        self
    }

    /// The stage that failed.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The low-cardinality `error.type`: the Rust error type's name, the
    /// one set with [`with_error_type`](Self::with_error_type), `panic`, or
    /// else the service code.
    pub fn error_type(&self) -> Cow<'static, str> {
        match &self.rest.error_type {
            Some(error_type) => error_type.clone(),
            None => Cow::Owned(self.code.to_string()),
        }
    }

    /// The description (for a handler error, its `Display`), sent as
    /// `Nats-Service-Error`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Nats-Service-Error-Code` sent to a requester: 400 for a bad
    /// payload or a rejection, 500 for a failed handler by default.
    pub fn service_code(&self) -> u16 {
        self.code
    }

    /// What JetStream does with the message.
    pub fn disposition(&self) -> Disposition {
        self.rest.disposition
    }

    /// The headers added to the error reply.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.rest.headers.as_deref()
    }

    /// Marks a failure extractor `T` rejected a message with, as rejection
    /// type `R`, as a rejection. Unless it has an `error.type`, it is named
    /// after `R`, or after `T` when `R` is `Failure` itself and says nothing.
    pub(crate) fn rejected_by<T, R>(mut self) -> Self {
        if self.kind == FailureKind::Handler {
            self.kind = FailureKind::Rejected;
        }
        if std::any::type_name::<R>() == std::any::type_name::<Failure>() {
            self.or_error_type::<T>()
        } else {
            self.or_error_type::<R>()
        }
    }

    /// Names `E` as the `error.type`, unless the failure has one.
    pub(crate) fn or_error_type<E>(mut self) -> Self {
        if self.rest.error_type.is_none() {
            self.rest.error_type = Some(Cow::Borrowed(std::any::type_name::<E>()));
        }
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An error a handler returns, or an extractor rejects a message with,
/// choosing its service code, description, reply headers and JetStream
/// [`Disposition`].
///
/// Types that do not implement it but implement `Display` (`anyhow::Error`,
/// a `thiserror` enum, `std::io::Error`) keep the defaults: code 500, their
/// `Display` text, their type name as `error.type`, retried with the
/// backoff. Implement it to choose:
///
/// ```
/// use nats_trace_runtime::prelude::*;
///
/// #[derive(Debug)]
/// enum InventoryError { NotFound(String), OutOfStock, Database(String) }
///
/// impl IntoFailure for InventoryError {
///     fn into_failure(self) -> Failure {
///         match self {
///             InventoryError::NotFound(sku) => Failure::service(404, format!("no item {sku}")).reject(),
///             InventoryError::OutOfStock => Failure::service(409, "out of stock").reject(),
///             InventoryError::Database(e) => Failure::service(503, e),
///         }
///     }
/// }
/// ```
///
/// A failure that sets no [`error_type`](Failure::with_error_type) gets the
/// implementing type's name.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be turned into a failed message",
    label = "needs `IntoFailure`",
    note = "implement `nats_trace_runtime::IntoFailure` for it, or use `nats_trace_runtime::Failure` itself"
)]
pub trait IntoFailure {
    /// The failure this error stands for.
    fn into_failure(self) -> Failure;
}

impl IntoFailure for Failure {
    fn into_failure(self) -> Failure {
        self
    }
}

impl IntoFailure for Infallible {
    fn into_failure(self) -> Failure {
        match self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_by_stage() {
        let handler = Failure::handler(std::io::Error::other("disk full"));
        assert_eq!(
            (handler.service_code(), handler.disposition()),
            (500, Disposition::Retry)
        );
        assert_eq!(handler.error_type(), "std::io::error::Error");
        assert_eq!(handler.message(), "disk full");

        let decode = Failure::decode("bad");
        assert_eq!(
            (decode.kind(), decode.service_code(), decode.disposition()),
            (FailureKind::Decode, 400, Disposition::Reject)
        );

        let rejected = Failure::bad_request("no tenant").rejected_by::<u8, String>();
        assert_eq!(rejected.kind(), FailureKind::Rejected);
        assert_eq!(rejected.error_type(), "alloc::string::String");
        let bare = Failure::bad_request("no tenant").rejected_by::<u8, Failure>();
        assert_eq!(bare.error_type(), "u8", "named after the extractor");
    }

    #[test]
    fn a_service_failure_names_its_code_until_given_a_type() {
        let failure = Failure::service(404, "no such item");
        assert_eq!(failure.error_type(), "404");
        assert_eq!(failure.or_error_type::<u8>().error_type(), "u8");
        let typed = Failure::service(404, "gone").with_error_type("not_found");
        assert_eq!(typed.or_error_type::<u8>().error_type(), "not_found");
    }

    #[test]
    fn builders_set_headers_and_dispositions() {
        let failure = Failure::service(409, "taken")
            .with_header("Reason", "duplicate")
            .retry_after(Duration::from_secs(3));
        assert_eq!(
            failure.disposition(),
            Disposition::RetryAfter(Duration::from_secs(3))
        );
        let headers = failure.headers().expect("headers");
        assert_eq!(headers.get("Reason").map(|v| v.as_str()), Some("duplicate"));
        assert_eq!(failure.reject().disposition(), Disposition::Reject);
    }
}
