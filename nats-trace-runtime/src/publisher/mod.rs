//! Traced publishing: a PRODUCER span per message, its context injected into
//! the message headers so the consumer's process span continues the trace.

mod batch;
pub(crate) mod current;
pub(crate) mod names;
mod operations;
mod request;
mod retry;

use std::borrow::Cow;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{HeaderValue, NATS_MESSAGE_ID};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::publish::PublishAck;
use async_nats::{Client, HeaderMap, Subject};
use bytes::Bytes;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Serialize;

use crate::codec::{self, Encoder, JsonCodec};
use crate::failure::Failure;
use crate::propagation::{self, Propagation};
use crate::reply::Reply;
use crate::semconv;
use crate::telemetry::Telemetry;

pub use batch::{BatchFailure, BatchReport};
use operations::{Operation, Operations};
pub use request::RequestError;
pub use retry::RetryPolicy;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No runtime is running, so a `#[nats_publisher]` function has no
    /// connection to publish on. Start one with `runtime::run()` or
    /// `runtime::builder().start()`.
    #[error(
        "not connected: no nats-trace runtime is running; start one with \
         runtime::run() or runtime::builder().start() before publishing"
    )]
    NotConnected,
    /// The value could not be encoded.
    #[error("could not encode the message for {subject}: {message}")]
    Encode {
        /// The subject.
        subject: String,
        /// The encoder's message.
        message: String,
    },
    /// The client could not take the message.
    #[error("could not publish to {subject}: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::PublishError,
    },
    /// The client was not connected when a confirmed publish was attempted.
    #[error("could not publish to {subject}: the connection to the server is down")]
    Disconnected {
        /// The subject.
        subject: String,
    },
    /// The server did not confirm the publish in time.
    #[error("publishing to {subject} was not confirmed within {timeout:?}")]
    Timeout {
        /// The subject.
        subject: String,
        /// The per-attempt limit that expired.
        timeout: Duration,
    },
    /// The server did not confirm that it received the message.
    #[error("the publish to {subject} was not confirmed: {reason}")]
    Unconfirmed {
        /// The subject.
        subject: String,
        /// Why the confirmation failed.
        reason: String,
    },
    /// The JetStream publish was not acknowledged.
    #[error("JetStream did not acknowledge the publish to {subject}: {source}")]
    JetStream {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

impl PublishError {
    /// Whether another attempt may succeed: the connection was down or slow.
    /// Encoding failures, a closed client and JetStream refusals (no stream
    /// for the subject, wrong expected sequence, message too large) are final.
    pub fn is_retryable(&self) -> bool {
        use async_nats::jetstream::context::PublishErrorKind;
        match self {
            PublishError::Disconnected { .. }
            | PublishError::Timeout { .. }
            | PublishError::Unconfirmed { .. } => true,
            PublishError::JetStream { source, .. } => matches!(
                source.kind(),
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::Other
            ),
            PublishError::NotConnected
            | PublishError::Encode { .. }
            | PublishError::Publish { .. } => false,
        }
    }

    /// The low-cardinality `error.type` recorded on the span.
    pub fn error_type(&self) -> &'static str {
        match self {
            PublishError::NotConnected => "not_connected",
            PublishError::Encode { .. } => "encode",
            PublishError::Publish { .. } => "publish",
            PublishError::Disconnected { .. } => "disconnected",
            PublishError::Timeout { .. } => semconv::error_type::TIMEOUT,
            PublishError::Unconfirmed { .. } => "unconfirmed",
            PublishError::JetStream { .. } => "jetstream",
        }
    }
}

/// Publishes with a span per message that continues the caller's current
/// trace, and sends requests that wait for a traced reply.
///
/// Inside a handler, or after the runtime started, [`Publisher::current`]
/// returns the runtime's publisher. Elsewhere, build one on a client:
///
/// ```no_run
/// # async fn demo(client: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
/// #[derive(serde::Serialize)]
/// struct Order { id: u64 }
///
/// let publisher = nats_trace_runtime::Publisher::new(client);
/// publisher.publish("orders.created", &Order { id: 7 }).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    jetstream: async_nats::jetstream::Context,
    telemetry: Telemetry,
    retry: Option<RetryPolicy>,
    /// Names and metrics by operation and subject, kept once each; shared
    /// with the publishers made from this one by [`Publisher::with_retry`].
    operations: Arc<Operations>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher on `client` that traces with the global tracer provider
    /// and propagator (W3C TraceContext + Baggage if none was installed).
    pub fn new(client: Client) -> Self {
        propagation::install_default_if_unset();
        Self::with_telemetry(client, Telemetry::new(None, None, Propagation::Global))
    }

    /// A publisher that traces with `provider` instead of the global one.
    pub fn with_tracer_provider(client: Client, provider: SdkTracerProvider) -> Self {
        propagation::install_default_if_unset();
        Self::with_telemetry(
            client,
            Telemetry::new(Some(provider), None, Propagation::Global),
        )
    }

    pub(crate) fn with_telemetry(client: Client, telemetry: Telemetry) -> Self {
        let (address, port) = crate::connection::server_address(None, &client.server_info());
        Self::from_parts(client, telemetry.with_server(address.as_deref(), port))
    }

    /// A publisher on `client` with `telemetry` as it is.
    pub(crate) fn from_parts(client: Client, telemetry: Telemetry) -> Self {
        Publisher {
            inner: Arc::new(Inner {
                jetstream: async_nats::jetstream::new(client.clone()),
                client,
                telemetry,
                retry: None,
                operations: Arc::default(),
            }),
        }
    }

    /// The publisher of the running runtime: inside a handler its own
    /// runtime's (not in tasks the handler spawns, which see the default),
    /// elsewhere the most recently started one's.
    pub fn current() -> Result<Publisher, PublishError> {
        current::current()
    }

    /// The same publisher, confirming and retrying every publish as `policy` says.
    pub fn with_retry(&self, policy: RetryPolicy) -> Self {
        Publisher {
            inner: Arc::new(Inner {
                client: self.inner.client.clone(),
                jetstream: self.inner.jetstream.clone(),
                telemetry: self.inner.telemetry.clone(),
                retry: Some(policy),
                operations: self.inner.operations.clone(),
            }),
        }
    }

    /// The client this publisher sends with.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The stream that captures `subject`, if any.
    pub(crate) async fn stream_for(&self, subject: &str) -> Option<String> {
        self.inner.jetstream.stream_by_subject(subject).await.ok()
    }

    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// Publishes `value` as JSON to `subject`.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        value: &T,
    ) -> Result<(), PublishError> {
        self.publish_with_headers(subject, HeaderMap::new(), value)
            .await
    }

    /// Publishes `value` as JSON to `subject` with extra `headers`. A
    /// `Nats-Msg-Id` header becomes the span's `messaging.message.id`.
    pub async fn publish_with_headers<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        headers: HeaderMap,
        value: &T,
    ) -> Result<(), PublishError> {
        let body = encode(subject, value)?;
        self.publish_bytes(subject, headers, body).await
    }

    /// Publishes `value` to `subject`, encoded with codec `C`, as handlers
    /// decode it:
    ///
    /// ```no_run
    /// # async fn demo(publisher: nats_trace_runtime::Publisher) -> Result<(), nats_trace_runtime::PublishError> {
    /// use nats_trace_runtime::codec::JsonCodec;
    /// # #[derive(serde::Serialize)] struct Order { id: u64 }
    /// publisher.publish_with::<JsonCodec, _>("orders.created", &Order { id: 7 }).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// With feature `protobuf`, `ProtobufCodec` publishes a `prost::Message`;
    /// with `msgpack`, `MsgPackCodec` publishes MessagePack.
    pub async fn publish_with<C: Encoder<T>, T: ?Sized>(
        &self,
        subject: &str,
        value: &T,
    ) -> Result<(), PublishError> {
        let body = encode_with::<C, T>(subject, value)?;
        self.publish_bytes(subject, HeaderMap::new(), body).await
    }

    /// [`publish_jetstream`](Self::publish_jetstream) with codec `C`.
    pub async fn publish_jetstream_with<C: Encoder<T>, T: ?Sized>(
        &self,
        subject: &str,
        value: &T,
    ) -> Result<PublishAck, PublishError> {
        let body = encode_with::<C, T>(subject, value)?;
        self.publish_jetstream_bytes(subject, HeaderMap::new(), body)
            .await
    }

    /// Publishes a raw body to `subject`.
    pub async fn publish_bytes(
        &self,
        subject: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(), PublishError> {
        self.send(subject, headers, body, |names, headers, body, confirm| {
            self.attempt_core(names, headers, body, confirm)
        })
        .await
    }

    /// Publishes `value` as JSON to the JetStream stream that captures
    /// `subject`, and waits for the stream's acknowledgement. The span
    /// carries the stream and sequence.
    pub async fn publish_jetstream<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        value: &T,
    ) -> Result<PublishAck, PublishError> {
        self.publish_jetstream_with_headers(subject, HeaderMap::new(), value)
            .await
    }

    /// [`publish_jetstream`](Self::publish_jetstream) with extra `headers`,
    /// e.g. `Nats-Msg-Id` for de-duplication.
    pub async fn publish_jetstream_with_headers<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        headers: HeaderMap,
        value: &T,
    ) -> Result<PublishAck, PublishError> {
        let body = encode(subject, value)?;
        self.publish_jetstream_bytes(subject, headers, body).await
    }

    /// [`publish_jetstream`](Self::publish_jetstream) with a raw body.
    ///
    /// With a retry policy and no `Nats-Msg-Id` header, a fresh id is set, the
    /// same for every attempt, so the stream stores a retried message once.
    pub async fn publish_jetstream_bytes(
        &self,
        subject: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<PublishAck, PublishError> {
        if self.inner.retry.is_some() && headers.get(NATS_MESSAGE_ID).is_none() {
            headers.insert(NATS_MESSAGE_ID, nuid::next().to_string());
        }
        self.send(subject, headers, body, |names, headers, body, confirm| {
            self.attempt_jetstream(names, headers, body, confirm)
        })
        .await
    }

    /// Publishes one message under a PRODUCER span `publish {subject}`, with
    /// `attempt` doing the sending, retried if a policy is set.
    ///
    /// A function returning an `async` block rather than an `async fn`, as
    /// are the other steps of a publish: an `async fn` keeps a second copy
    /// of its arguments, and this future lives in every caller's.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` keeps a second copy of its arguments in its state"
    )]
    fn send<R: Acknowledged, F, Fut>(
        &self,
        subject: &str,
        mut headers: HeaderMap,
        body: Bytes,
        attempt: F,
    ) -> impl Future<Output = Result<R, PublishError>>
    where
        F: Fn(Subject, HeaderMap, Bytes, Option<Duration>) -> Fut,
        Fut: Future<Output = Result<R, PublishError>>,
    {
        async move {
            let (operation, cx) = self.start_send(
                semconv::operation_name::PUBLISH,
                SpanKind::Producer,
                subject,
                &mut headers,
                body.len(),
            );
            let names = &operation.names;
            let started = std::time::Instant::now();
            let body_size = body.len();
            let result = match self.inner.retry {
                None => attempt(names.nats_subject(), headers, body, None).await,
                Some(policy) => {
                    // Boxed: it holds a confirmation and a backoff timer, and
                    // would grow every publish's future, retried or not.
                    let (result, attempts) = Box::pin(retry(&cx, subject, policy, || {
                        attempt(
                            names.nats_subject(),
                            headers.clone(),
                            body.clone(),
                            Some(policy.attempt_timeout),
                        )
                    }))
                    .await;
                    cx.span().set_attribute(KeyValue::new(
                        semconv::PUBLISH_ATTEMPTS,
                        i64::from(attempts),
                    ));
                    result
                }
            };
            match &result {
                Ok(ack) => ack.record(&cx),
                Err(error) => record_error(&cx, error),
            }
            cx.span().end();
            operation.record(
                &self.inner.telemetry,
                started,
                1,
                Some(body_size),
                result.as_ref().err().map(PublishError::error_type),
            );
            result
        }
    }

    /// The names and metrics of `operation` on `subject`, kept after the
    /// first time up to the publisher's limit.
    pub(crate) fn operation(&self, operation: &'static str, subject: &str) -> Arc<Operation> {
        self.inner
            .operations
            .get(operation, subject, &self.inner.telemetry)
    }

    /// Fails unless the client is connected, for confirmed publishes only:
    /// an unconfirmed one may be buffered while reconnecting.
    fn check_connected(
        &self,
        subject: &str,
        confirm: Option<Duration>,
    ) -> Result<(), PublishError> {
        let state = self.inner.client.connection_state();
        if confirm.is_some() && state != async_nats::connection::State::Connected {
            return Err(PublishError::Disconnected {
                subject: subject.to_string(),
            });
        }
        Ok(())
    }

    /// One core NATS attempt; with `confirm`, the server must have received
    /// the message within that time.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` keeps a second copy of its arguments in its state"
    )]
    fn attempt_core(
        &self,
        subject: Subject,
        headers: HeaderMap,
        body: Bytes,
        confirm: Option<Duration>,
    ) -> impl Future<Output = Result<(), PublishError>> {
        async move {
            self.check_connected(&subject, confirm)?;
            let client = &self.inner.client;
            client
                .publish_with_headers(subject.clone(), headers, body)
                .await
                .map_err(|source| PublishError::Publish {
                    subject: subject.to_string(),
                    source,
                })?;
            match confirm {
                None => Ok(()),
                // Boxed: only retried publishes confirm, and a request is large.
                Some(timeout) => Box::pin(tokio::time::timeout(timeout, self.round_trip(&subject)))
                    .await
                    .map_err(|_| PublishError::Timeout {
                        subject: subject.to_string(),
                        timeout,
                    })?,
            }
        }
    }

    /// Confirms that the server processed everything this connection sent
    /// so far. A flush is not enough: it only hands bytes to the socket, and
    /// a socket to a server that just died takes them without complaint.
    /// A request to an inbox nobody subscribes to is answered by the server
    /// itself with "no responders", after every earlier message.
    async fn round_trip(&self, subject: &str) -> Result<(), PublishError> {
        let client = &self.inner.client;
        match client.request(client.new_inbox(), Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                Ok(())
            }
            Err(error) => Err(PublishError::Unconfirmed {
                subject: subject.to_string(),
                reason: error.to_string(),
            }),
        }
    }

    /// One JetStream attempt: the stream must acknowledge within `confirm`
    /// (or the JetStream context's own timeout).
    async fn attempt_jetstream(
        &self,
        subject: Subject,
        headers: HeaderMap,
        body: Bytes,
        confirm: Option<Duration>,
    ) -> Result<PublishAck, PublishError> {
        self.check_connected(&subject, confirm)?;
        let jetstream_error = |source| PublishError::JetStream {
            subject: subject.to_string(),
            source,
        };
        let acked = async {
            let ack: PublishAckFuture = self
                .inner
                .jetstream
                .publish_with_headers(subject.clone(), headers, body)
                .await
                .map_err(jetstream_error)?;
            ack.await.map_err(jetstream_error)
        };
        match confirm {
            None => acked.await,
            Some(timeout) => {
                tokio::time::timeout(timeout, acked)
                    .await
                    .map_err(|_| PublishError::Timeout {
                        subject: subject.to_string(),
                        timeout,
                    })?
            }
        }
    }

    /// Starts the span of one outgoing message, `{operation} {subject}`, as
    /// a child of the current context, and injects its context into
    /// `headers`.
    fn start_send(
        &self,
        operation: &'static str,
        kind: SpanKind,
        subject: &str,
        headers: &mut HeaderMap,
        body_size: usize,
    ) -> (Arc<Operation>, Context) {
        let kept = self.operation(operation, subject);
        let cx = self.start_span(
            &kept.names,
            kind,
            operation,
            semconv::operation_type::SEND,
            headers,
            Some(body_size),
        );
        self.inner.telemetry.propagation.inject(&cx, headers);
        (kept, cx)
    }

    /// Starts a span as a child of the current context, with the messaging
    /// attributes set at start.
    fn start_span(
        &self,
        names: &names::Names,
        kind: SpanKind,
        operation_name: &'static str,
        operation_type: &'static str,
        headers: &HeaderMap,
        body_size: Option<usize>,
    ) -> Context {
        let subject = match &names.subject {
            Cow::Borrowed(subject) => opentelemetry::StringValue::from(*subject),
            Cow::Owned(subject) => opentelemetry::StringValue::from(Arc::<str>::from(&**subject)),
        };
        let mut attributes = semconv::messaging_attributes(
            operation_name,
            operation_type,
            subject.clone(),
            subject,
            10,
        );
        if let Some(size) = body_size {
            attributes.push(KeyValue::new(
                semconv::MESSAGING_MESSAGE_BODY_SIZE,
                size as i64,
            ));
        }
        if let Some(id) = headers.get(NATS_MESSAGE_ID).map(HeaderValue::as_str) {
            attributes.push(KeyValue::new(semconv::MESSAGING_MESSAGE_ID, id.to_string()));
        }
        attributes.extend_from_slice(self.inner.telemetry.server_attributes());
        let builder = SpanBuilder::from_name(names.span_name.clone())
            .with_kind(kind)
            .with_attributes(attributes);
        self.inner
            .telemetry
            .start_span(builder, &Context::current())
    }
}

/// What a successful publish learned, recorded on its span.
trait Acknowledged {
    fn record(&self, cx: &Context);
}

impl Acknowledged for () {
    fn record(&self, _cx: &Context) {}
}

impl Acknowledged for PublishAck {
    fn record(&self, cx: &Context) {
        let span = cx.span();
        span.set_attribute(KeyValue::new(
            semconv::MESSAGING_NATS_STREAM,
            self.stream.clone(),
        ));
        span.set_attribute(KeyValue::new(
            semconv::MESSAGING_NATS_STREAM_SEQUENCE,
            self.sequence as i64,
        ));
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `policy` gives up,
/// recording every failed attempt as a span event. Returns the last result
/// and the number of attempts.
async fn retry<R, Fut>(
    cx: &Context,
    subject: &str,
    policy: RetryPolicy,
    attempt: impl Fn() -> Fut,
) -> (Result<R, PublishError>, u32)
where
    Fut: Future<Output = Result<R, PublishError>>,
{
    let span = cx.span();
    let mut number = 1;
    loop {
        let result = attempt().await;
        match result {
            Err(error) if number < policy.max_attempts && error.is_retryable() => {
                let delay = policy.backoff.delay(number);
                span.add_event(
                    "publish attempt failed",
                    vec![
                        KeyValue::new("attempt", i64::from(number)),
                        KeyValue::new("exception.message", error.to_string()),
                    ],
                );
                tracing::debug!(subject, attempt = number, %error, retry_in = ?delay, "publish attempt failed");
                tokio::time::sleep(delay).await;
                number += 1;
            }
            result => return (result, number),
        }
    }
}

fn encode<T: Serialize + ?Sized>(subject: &str, value: &T) -> Result<Bytes, PublishError> {
    encode_with::<JsonCodec, T>(subject, value)
}

fn encode_with<C: Encoder<T>, T: ?Sized>(subject: &str, value: &T) -> Result<Bytes, PublishError> {
    codec::encode::<C, T>(value)
        .map(|reply| reply.into_body())
        .map_err(|failure| PublishError::Encode {
            subject: subject.to_string(),
            message: failure.message().to_string(),
        })
}

fn record_error(cx: &Context, error: &PublishError) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error.error_type()));
    span.set_status(Status::error(error.to_string()));
}

/// What `#[nats_publisher]` generates for one function. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct PublishSpec {
    /// The subject to publish to.
    pub subject: &'static str,
    /// Publish to JetStream and wait for the acknowledgement.
    pub jetstream: bool,
    /// The macro's `retries`, if set.
    pub retries: Option<u32>,
}

/// Publishes a `#[nats_publisher]` function's encoded output. Not public API.
#[doc(hidden)]
pub async fn publish_output(
    spec: &'static PublishSpec,
    encoded: Result<Reply, Failure>,
    message_id: Option<String>,
) -> Result<(), PublishError> {
    let (body, headers) = encoded
        .map_err(|failure| PublishError::Encode {
            subject: spec.subject.to_string(),
            message: failure.message().to_string(),
        })?
        .into_parts();
    let mut publisher = Publisher::current()?;
    if let Some(retries) = spec.retries {
        publisher = publisher.with_retry(RetryPolicy::retries(retries));
    }
    let mut headers = headers.unwrap_or_default();
    if let Some(id) = message_id {
        let value = HeaderValue::from_str(&id).map_err(|_| PublishError::Encode {
            subject: spec.subject.to_string(),
            message: format!("message id {id:?} cannot be a NATS header value"),
        })?;
        headers.insert(NATS_MESSAGE_ID, value);
    }
    if spec.jetstream {
        publisher
            .publish_jetstream_bytes(spec.subject, headers, body)
            .await
            .map(|_| ())
    } else {
        publisher.publish_bytes(spec.subject, headers, body).await
    }
}

/// Computes a `#[nats_publisher]` function's `Nats-Msg-Id`. Not public API.
#[doc(hidden)]
pub fn message_id<T: ?Sized, D: std::fmt::Display>(
    value: &T,
    id: impl FnOnce(&T) -> D,
) -> Option<String> {
    Some(id(value).to_string())
}

/// An error type that a failed publish converts into: any `E: From<PublishError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a publish error",
    label = "#[nats_publisher] returns a failed publish through this error type",
    note = "add `impl From<nats_trace_runtime::PublishError> for {Self}`, or with thiserror a variant `#[error(transparent)] Publish(#[from] nats_trace_runtime::PublishError)`; `anyhow::Error` works as is"
)]
pub trait FromPublishError {
    /// Converts the publish error.
    fn from_publish_error(error: PublishError) -> Self;
}

impl<E: From<PublishError>> FromPublishError for E {
    fn from_publish_error(error: PublishError) -> Self {
        E::from(error)
    }
}

/// Converts a publish error into the function's error type. Not public API.
#[doc(hidden)]
pub fn publish_error_into<E: FromPublishError>(error: PublishError) -> E {
    E::from_publish_error(error)
}
