//! Batch publishing: a PRODUCER `create` span per message, whose context
//! travels with that message, and one CLIENT `publish` span linking them all.

use async_nats::HeaderMap;
use bytes::Bytes;
use opentelemetry::trace::{Link, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use serde::Serialize;

use super::{PublishError, Publisher, encode, record_error, retry};
use crate::semconv;

/// What happened to each message of a batch.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Messages sent: handed to the client, or, with a retry policy,
    /// confirmed by the server.
    pub sent: usize,
    /// Messages that failed, with their position in the batch.
    pub failed: Vec<BatchFailure>,
}

impl BatchReport {
    /// Whether every message was sent.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// One message of a batch that failed.
#[derive(Debug)]
pub struct BatchFailure {
    /// Its position in the batch, from 0.
    pub index: usize,
    /// Why it failed.
    pub error: PublishError,
}

struct Created {
    index: usize,
    headers: HeaderMap,
    body: Bytes,
}

impl Publisher {
    /// Publishes each item as JSON to `subject`.
    ///
    /// Each message gets a PRODUCER span `create {subject}` whose context is
    /// injected into that message, so each consumer's process span is a child
    /// of its own message's span. One CLIENT span `publish {subject}` links to
    /// every create span and carries `messaging.batch.message_count` and the
    /// success and failure counts. A failing message does not stop the rest.
    pub async fn publish_batch<T: Serialize>(
        &self,
        subject: &str,
        items: impl IntoIterator<Item = T>,
    ) -> BatchReport {
        let mut report = BatchReport::default();
        let mut created = Vec::new();
        let mut links = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match self.create(subject, &item) {
                Ok((message, span_context)) => {
                    links.push(Link::with_context(span_context));
                    created.push(Created { index, ..message });
                }
                Err(error) => report.failed.push(BatchFailure { index, error }),
            }
        }
        let total = created.len() + report.failed.len();

        let mut attributes = semconv::messaging_attributes(
            semconv::operation_name::PUBLISH,
            semconv::operation_type::SEND,
            subject.to_string(),
            subject.to_string(),
            10,
        );
        attributes.push(KeyValue::new(
            semconv::MESSAGING_BATCH_MESSAGE_COUNT,
            total as i64,
        ));
        attributes.extend_from_slice(self.inner.telemetry.server_attributes());
        let operation = self.operation(semconv::operation_name::PUBLISH, subject);
        let names = &operation.names;
        let builder = SpanBuilder::from_name(names.span_name.clone())
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .with_links(links);
        let cx = self
            .inner
            .telemetry
            .start_span(builder, &Context::current());

        let started = std::time::Instant::now();
        let mut attempts = 0;
        for message in created {
            let sent = match self.inner.retry {
                None => {
                    attempts += 1;
                    self.attempt_core(names.nats_subject(), message.headers, message.body, None)
                        .await
                }
                Some(policy) => {
                    let (sent, tries) = retry(&cx, subject, policy, || {
                        self.attempt_core(
                            names.nats_subject(),
                            message.headers.clone(),
                            message.body.clone(),
                            Some(policy.attempt_timeout),
                        )
                    })
                    .await;
                    attempts += tries;
                    sent
                }
            };
            match sent {
                Ok(()) => report.sent += 1,
                Err(error) => report.failed.push(BatchFailure {
                    index: message.index,
                    error,
                }),
            }
        }
        if self.inner.retry.is_some() {
            cx.span().set_attribute(KeyValue::new(
                semconv::PUBLISH_ATTEMPTS,
                i64::from(attempts),
            ));
        }
        report.failed.sort_by_key(|failure| failure.index);

        let span = cx.span();
        span.set_attribute(KeyValue::new(semconv::BATCH_SUCCEEDED, report.sent as i64));
        span.set_attribute(KeyValue::new(
            semconv::BATCH_FAILED,
            report.failed.len() as i64,
        ));
        if let Some(first) = report.failed.first() {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, first.error.error_type()));
            span.set_status(Status::error(format!(
                "{} of {total} messages failed; first: {}",
                report.failed.len(),
                first.error
            )));
        }
        span.end();
        operation.record(
            &self.inner.telemetry,
            started,
            total as u64,
            None,
            report
                .failed
                .first()
                .map(|failure| failure.error.error_type()),
        );
        report
    }

    /// Encodes one message under its `create` span and injects that span's
    /// context into the message.
    fn create<T: Serialize>(
        &self,
        subject: &str,
        item: &T,
    ) -> Result<(Created, SpanContext), PublishError> {
        let encoded = encode(subject, item);
        let cx = self.start_span(
            &super::names::names(semconv::operation_name::CREATE, subject),
            SpanKind::Producer,
            semconv::operation_name::CREATE,
            semconv::operation_type::CREATE,
            &HeaderMap::new(),
            encoded.as_ref().ok().map(Bytes::len),
        );
        let span_context = cx.span().span_context().clone();
        let result = encoded.map(|body| {
            let mut headers = HeaderMap::new();
            self.inner.telemetry.propagation.inject(&cx, &mut headers);
            Created {
                index: 0,
                headers,
                body,
            }
        });
        if let Err(error) = &result {
            record_error(&cx, error);
        }
        cx.span().end();
        result.map(|created| (created, span_context))
    }
}
