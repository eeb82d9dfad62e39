//! What a handler returns on success, or a `#[nats_publisher]` function
//! publishes: a body and headers.

use std::str::FromStr;

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use bytes::Bytes;

use crate::failure::Failure;

/// An outgoing message body with optional headers: the reply to a request,
/// or the message a `#[nats_publisher]` function publishes.
///
/// Return it (or `Result<Reply, E>`) from a handler to reply with headers:
///
/// ```
/// use nats_trace_runtime::prelude::*;
/// # #[derive(serde::Deserialize)] struct Lookup { sku: String }
/// # #[derive(serde::Serialize)] struct Item { sku: String }
///
/// #[nats_subscriber(subject = "inventory.get")]
/// async fn get(lookup: Lookup) -> Result<Reply, Failure> {
///     let item = Item { sku: lookup.sku };
///     Ok(Reply::encode(&Json(item))?.with_header("Cache-Control", "max-age=60"))
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Reply {
    body: Bytes,
    /// Boxed: most replies have none, and every run's state holds a reply.
    headers: Option<Box<HeaderMap>>,
}

impl Reply {
    /// A reply with an empty body. It is still sent: only a handler whose
    /// `Ok` type is `()` does not reply.
    pub fn empty() -> Self {
        Reply::default()
    }

    /// A reply with this body, as it is.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Reply {
            body: body.into(),
            headers: None,
        }
    }

    /// The reply of anything a handler may return, e.g. `Json(value)`,
    /// `Protobuf(value)` or `Bytes`.
    pub fn encode<T: ToReply + ?Sized>(value: &T) -> Result<Reply, Failure> {
        value.to_reply()
    }

    /// Adds a header. Line breaks in `value` become spaces; a `name` NATS
    /// cannot carry (empty, with `:`, whitespace or non-ASCII) is left out
    /// with a warning, so building a reply never panics. So are
    /// `Nats-Service-Error` and `Nats-Service-Error-Code`: a successful
    /// reply must not read as a failure; return a [`Failure`] instead.
    pub fn with_header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        let service_error = [
            async_nats::service::NATS_SERVICE_ERROR,
            async_nats::service::NATS_SERVICE_ERROR_CODE,
        ]
        .iter()
        .any(|header| header.eq_ignore_ascii_case(name));
        if service_error {
            tracing::warn!(
                header = name,
                "left out a service error header from a successful reply; return a Failure instead"
            );
        } else {
            insert_header(&mut self.headers, name, value.as_ref());
        }
        self
    }

    /// The reply body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The reply's own headers (the trace context is added when it is sent).
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.headers.as_deref()
    }

    /// Takes the body.
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// Takes the body and the headers.
    pub fn into_parts(self) -> (Bytes, Option<HeaderMap>) {
        (self.body, self.headers.map(|headers| *headers))
    }
}

/// A value a handler can return as its reply, or a `#[nats_publisher]`
/// function can publish (axum's `IntoResponse`, by reference so a publisher
/// can still return the value).
///
/// Implemented for `()` (no reply), `Bytes`, `String`, `&'static str` and
/// `Vec<u8>` (raw), [`Reply`] (body and headers), and the codec wrappers
/// [`Json`](crate::Json), `Protobuf` and
/// `MsgPack`. Any other `T: Serialize` is sent as JSON.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent as a reply or published",
    label = "not a reply body",
    note = "derive `serde::Serialize` to send it as JSON, wrap it in a codec (`Json`, `Protobuf`, `MsgPack`, `Encoded<C, _>`), or return `Bytes` / `String` / `Reply`"
)]
pub trait ToReply {
    /// Whether a handler returning this answers requests. Only `()` does
    /// not: such a handler may share a subject with a JetStream stream
    /// without answering its publish acknowledgements.
    const REPLIES: bool = true;

    /// Encodes the value.
    fn to_reply(&self) -> Result<Reply, Failure>;
}

impl ToReply for () {
    const REPLIES: bool = false;

    fn to_reply(&self) -> Result<Reply, Failure> {
        Ok(Reply::empty())
    }
}

impl ToReply for Reply {
    fn to_reply(&self) -> Result<Reply, Failure> {
        Ok(self.clone())
    }
}

impl ToReply for Bytes {
    fn to_reply(&self) -> Result<Reply, Failure> {
        Ok(Reply::new(self.clone()))
    }
}

impl ToReply for String {
    fn to_reply(&self) -> Result<Reply, Failure> {
        Ok(Reply::new(Bytes::copy_from_slice(self.as_bytes())))
    }
}

impl ToReply for &'static str {
    fn to_reply(&self) -> Result<Reply, Failure> {
        Ok(Reply::new(Bytes::from_static(self.as_bytes())))
    }
}

impl ToReply for Vec<u8> {
    fn to_reply(&self) -> Result<Reply, Failure> {
        Ok(Reply::new(Bytes::copy_from_slice(self)))
    }
}

/// A header value holding `text`, with the line breaks NATS headers cannot
/// carry replaced by spaces.
pub(crate) fn header_text(text: &str) -> HeaderValue {
    let single_line: String = text
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    HeaderValue::from(single_line)
}

/// Inserts `name: value` into `headers`, or warns and leaves it out when
/// `name` cannot be a NATS header name.
pub(crate) fn insert_header(headers: &mut Option<Box<HeaderMap>>, name: &str, value: &str) {
    match HeaderName::from_str(name) {
        Ok(header) if !name.is_empty() => {
            headers
                .get_or_insert_with(Box::default)
                .insert(header, header_text(value));
        }
        _ => tracing::warn!(
            header = name.escape_debug().to_string(),
            "left out a header whose name NATS cannot carry"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_cleaned_or_left_out_never_a_panic() {
        let reply = Reply::new("x")
            .with_header("Good", "a\r\nb")
            .with_header("bad name", "v")
            .with_header("colon:", "v")
            .with_header("", "v")
            .with_header("Nats-Service-Error-Code", "500");
        let headers = reply.headers().expect("one header");
        assert_eq!(headers.iter().count(), 1);
        assert_eq!(headers.get("Good").map(|v| v.as_str()), Some("a  b"));
    }

    #[test]
    fn header_text_is_a_single_line() {
        assert_eq!(header_text("bad\r\ninput\n").as_str(), "bad  input ");
    }
}
