//! Traced publishing: a PRODUCER span per message, its context injected into
//! the message headers so the consumer's process span continues the trace.

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Serialize;

use crate::codec;
use crate::propagation::{self, Propagation};
use crate::semconv;
use crate::telemetry::Telemetry;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The value could not be encoded as JSON.
    #[error("could not encode the message: {0}")]
    Encode(String),
    /// The client could not send the message.
    #[error("could not publish to {subject}: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::PublishError,
    },
}

/// Publishes messages with a PRODUCER span each, continuing the caller's
/// current trace.
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
    client: Client,
    telemetry: Telemetry,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher on `client` that traces with the global tracer provider
    /// and propagator (W3C TraceContext + Baggage if none was installed).
    pub fn new(client: Client) -> Self {
        propagation::install_default_if_unset();
        Self::with_telemetry(client, Telemetry::new(None, Propagation::Global))
    }

    /// A publisher that traces with `provider` instead of the global one.
    pub fn with_tracer_provider(client: Client, provider: SdkTracerProvider) -> Self {
        propagation::install_default_if_unset();
        Self::with_telemetry(client, Telemetry::new(Some(provider), Propagation::Global))
    }

    pub(crate) fn with_telemetry(client: Client, telemetry: Telemetry) -> Self {
        let info = client.server_info();
        let telemetry = telemetry.with_server(&info.host, info.port);
        Publisher { client, telemetry }
    }

    /// The client this publisher sends with.
    pub fn client(&self) -> &Client {
        &self.client
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

    /// Publishes `value` as JSON to `subject` with extra `headers`.
    pub async fn publish_with_headers<T: Serialize + ?Sized>(
        &self,
        subject: &str,
        headers: HeaderMap,
        value: &T,
    ) -> Result<(), PublishError> {
        let body = codec::encode_json(value)
            .map_err(|failure| PublishError::Encode(failure.message().to_string()))?
            .into_body();
        self.publish_bytes(subject, headers, body).await
    }

    /// Publishes a raw body to `subject`.
    pub async fn publish_bytes(
        &self,
        subject: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<(), PublishError> {
        let cx = self.start_publish_span(subject, body.len());
        self.telemetry.propagation.inject(&cx, &mut headers);
        let sent = self
            .client
            .publish_with_headers(subject.to_string(), headers, body)
            .await;
        let span = cx.span();
        let result = sent.map_err(|source| {
            let error = PublishError::Publish {
                subject: subject.to_string(),
                source,
            };
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, "publish"));
            span.set_status(Status::error(error.to_string()));
            error
        });
        span.end();
        result
    }

    /// Starts the PRODUCER span `publish {subject}` as a child of the current context.
    fn start_publish_span(&self, subject: &str, body_size: usize) -> Context {
        let mut attributes = vec![
            KeyValue::new(semconv::MESSAGING_SYSTEM, semconv::SYSTEM_NATS),
            KeyValue::new(
                semconv::MESSAGING_OPERATION_NAME,
                semconv::operation_name::PUBLISH,
            ),
            KeyValue::new(
                semconv::MESSAGING_OPERATION_TYPE,
                semconv::operation_type::SEND,
            ),
            KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, subject.to_string()),
            KeyValue::new(semconv::MESSAGING_DESTINATION_TEMPLATE, subject.to_string()),
            KeyValue::new(semconv::MESSAGING_MESSAGE_BODY_SIZE, body_size as i64),
        ];
        attributes.extend_from_slice(self.telemetry.server_attributes());
        let parent = Context::current();
        let tracer = self.telemetry.tracer();
        let span = tracer
            .span_builder(format!("{} {subject}", semconv::operation_name::PUBLISH))
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        parent.with_span(span)
    }
}
