//! Traced requests: a CLIENT span `request {subject}` around a request and
//! its reply, with service errors turned into typed errors.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Publisher, encode, encode_with};
use crate::codec::{self, Decoder, Encoder};
use crate::semconv;

/// Why a request got no usable reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request could not be encoded.
    #[error("could not encode the request to {subject}: {message}")]
    Encode {
        /// The subject.
        subject: String,
        /// The encoder's message.
        message: String,
    },
    /// No reply arrived in time.
    #[error("no reply from {subject} within {timeout:?}")]
    Timeout {
        /// The subject.
        subject: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Nobody subscribes to the subject.
    #[error("no responders on {subject}")]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// The service replied with an error (`Nats-Service-Error` headers).
    #[error("{subject} replied with error {code}: {message}")]
    Service {
        /// The subject.
        subject: String,
        /// `Nats-Service-Error-Code`, e.g. 400 or 500.
        code: u16,
        /// `Nats-Service-Error`.
        message: String,
    },
    /// The reply could not be decoded.
    #[error("could not decode the reply from {subject}: {message}")]
    Decode {
        /// The subject.
        subject: String,
        /// The decoder's message.
        message: String,
    },
    /// The client failed otherwise.
    #[error("request to {subject} failed: {source}")]
    Request {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::RequestError,
    },
}

impl RequestError {
    /// The low-cardinality `error.type` recorded on the span: `timeout`,
    /// `no_responders`, the service error code, or the failing stage.
    pub fn error_type(&self) -> String {
        match self {
            RequestError::Encode { .. } => "encode".into(),
            RequestError::Timeout { .. } => semconv::error_type::TIMEOUT.into(),
            RequestError::NoResponders { .. } => semconv::error_type::NO_RESPONDERS.into(),
            RequestError::Service { code, .. } => code.to_string(),
            RequestError::Decode { .. } => "decode".into(),
            RequestError::Request { .. } => "request".into(),
        }
    }
}

impl Publisher {
    /// Sends `value` as JSON to `subject` and decodes the reply as `R`, under
    /// a CLIENT span `request {subject}` whose context travels with the
    /// request, so the handler's process span is its child.
    ///
    /// An empty reply decodes as JSON `null`, so `R = ()` accepts the reply
    /// of a handler that returns `()`.
    pub async fn request<T, R>(
        &self,
        subject: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<R, RequestError>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let reply = self
            .request_encoded(subject, encode(subject, value), timeout)
            .await?;
        let body: &[u8] = if reply.payload.is_empty() {
            b"null"
        } else {
            &reply.payload
        };
        serde_json::from_slice(body).map_err(|error| RequestError::Decode {
            subject: subject.to_string(),
            message: error.to_string(),
        })
    }

    /// [`request`](Self::request) with codec `C` for both the request and
    /// the reply, e.g. `ProtobufCodec` (feature `protobuf`) or
    /// `MsgPackCodec` (feature `msgpack`). A reply that does not decode is
    /// a [`RequestError::Decode`].
    ///
    /// ```no_run
    /// # async fn demo(publisher: nats_trace_runtime::Publisher) -> Result<(), nats_trace_runtime::RequestError> {
    /// use std::time::Duration;
    /// use nats_trace_runtime::codec::JsonCodec;
    /// # #[derive(serde::Serialize)] struct Lookup { sku: String }
    /// # #[derive(serde::Deserialize)] struct Stock { count: u32 }
    /// let lookup = Lookup { sku: "A-1".into() };
    /// let stock: Stock = publisher
    ///     .request_with::<JsonCodec, _, _>("stock.get", &lookup, Duration::from_secs(2))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn request_with<C, T, R>(
        &self,
        subject: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<R, RequestError>
    where
        C: Encoder<T> + Decoder<R>,
        T: ?Sized,
    {
        let reply = self
            .request_encoded(subject, encode_with::<C, T>(subject, value), timeout)
            .await?;
        codec::decode::<C, R>(reply.payload).map_err(|failure| RequestError::Decode {
            subject: subject.to_string(),
            message: failure.message().to_string(),
        })
    }

    /// Sends a request whose body was encoded (or failed to encode), for
    /// [`request`](Self::request) and [`request_with`](Self::request_with).
    async fn request_encoded(
        &self,
        subject: &str,
        body: Result<Bytes, super::PublishError>,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        let body = body.map_err(|error| RequestError::Encode {
            subject: subject.to_string(),
            message: error.to_string(),
        })?;
        self.request_bytes(subject, HeaderMap::new(), body, timeout)
            .await
    }

    /// Sends a raw request and returns the raw reply, under the same span.
    /// A reply with `Nats-Service-Error` headers is a [`RequestError::Service`].
    pub async fn request_bytes(
        &self,
        subject: &str,
        mut headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        let (operation, cx) = self.start_send(
            semconv::operation_name::REQUEST,
            SpanKind::Client,
            subject,
            &mut headers,
            body.len(),
        );
        let started = std::time::Instant::now();
        let body_size = body.len();
        let request = async_nats::Request::new()
            .payload(body)
            .headers(headers)
            .timeout(Some(timeout));
        let result = self
            .inner
            .client
            .send_request(operation.names.nats_subject(), request)
            .await
            .map_err(|source| match source.kind() {
                RequestErrorKind::TimedOut => RequestError::Timeout {
                    subject: subject.to_string(),
                    timeout,
                },
                RequestErrorKind::NoResponders => RequestError::NoResponders {
                    subject: subject.to_string(),
                },
                _ => RequestError::Request {
                    subject: subject.to_string(),
                    source,
                },
            })
            .and_then(|reply| service_error(subject, reply));
        if let Err(error) = &result {
            record_error(&cx, error);
        }
        cx.span().end();
        let error_type = result.as_ref().err().map(RequestError::error_type);
        operation.record(
            &self.inner.telemetry,
            started,
            1,
            Some(body_size),
            error_type.as_deref(),
        );
        result
    }
}

/// Turns a reply carrying `Nats-Service-Error` headers into an error.
fn service_error(subject: &str, reply: Message) -> Result<Message, RequestError> {
    let Some(headers) = &reply.headers else {
        return Ok(reply);
    };
    let code = headers.get(NATS_SERVICE_ERROR_CODE).map(|v| v.as_str());
    let message = headers.get(NATS_SERVICE_ERROR).map(|v| v.as_str());
    if code.is_none() && message.is_none() {
        return Ok(reply);
    }
    Err(RequestError::Service {
        subject: subject.to_string(),
        // A code that does not parse is still an error, reported as 500.
        code: code.and_then(|c| c.trim().parse().ok()).unwrap_or(500),
        message: message.unwrap_or_default().to_string(),
    })
}

fn record_error(cx: &Context, error: &RequestError) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error.error_type()));
    span.set_status(Status::error(error.to_string()));
}
