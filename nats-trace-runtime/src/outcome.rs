//! What a handler run produced: a reply body, or a failure that explains itself.

use std::any::Any;
use std::fmt;

use bytes::Bytes;

/// The body a successful handler produced. It becomes the reply when the
/// message was a request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    body: Bytes,
}

impl Reply {
    /// An empty reply, for handlers that return `()`.
    pub fn empty() -> Self {
        Reply { body: Bytes::new() }
    }

    /// A reply with this body.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Reply { body: body.into() }
    }

    /// The reply body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> Bytes {
        self.body
    }
}

/// Why a message failed. It is recorded on the span and sent back to a
/// requester with the `Nats-Service-Error` headers.
#[derive(Debug, Clone)]
pub struct Failure {
    kind: FailureKind,
    error_type: String,
    message: String,
}

/// The stage at which a message failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The payload could not be decoded. It never will be, so retrying is pointless.
    Decode,
    /// The handler returned `Err`.
    Handler,
    /// The handler panicked.
    Panic,
    /// The handler's output could not be encoded.
    Encode,
}

impl Failure {
    /// A payload that could not be decoded; `error_type` is the codec's error type.
    pub fn decode<E: fmt::Display>(error: E) -> Self {
        Failure::new(FailureKind::Decode, std::any::type_name::<E>(), error)
    }

    /// A payload that could not be decoded, described by `message` rather
    /// than by the codec error's own text.
    pub fn decode_described<E>(message: String) -> Self {
        Failure {
            kind: FailureKind::Decode,
            error_type: std::any::type_name::<E>().to_string(),
            message,
        }
    }

    /// A handler that returned `Err(error)`.
    pub fn handler<E: fmt::Display>(error: E) -> Self {
        Failure::new(FailureKind::Handler, std::any::type_name::<E>(), error)
    }

    /// An output that could not be encoded.
    pub fn encode<E: fmt::Display>(error: E) -> Self {
        Failure::new(FailureKind::Encode, std::any::type_name::<E>(), error)
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
            error_type: crate::semconv::error_type::PANIC.to_string(),
            message: format!("handler panicked: {detail}"),
        }
    }

    fn new(kind: FailureKind, error_type: &str, error: impl fmt::Display) -> Self {
        Failure {
            kind,
            error_type: error_type.to_string(),
            message: error.to_string(),
        }
    }

    /// The stage that failed.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The low-cardinality `error.type`: the Rust error type's name, or `panic`.
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The error's message (its `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Nats-Service-Error-Code` sent to a requester: 400 when the request
    /// itself was bad, 500 when the service failed.
    pub fn service_code(&self) -> u16 {
        match self.kind {
            FailureKind::Decode => 400,
            FailureKind::Handler | FailureKind::Panic | FailureKind::Encode => 500,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
