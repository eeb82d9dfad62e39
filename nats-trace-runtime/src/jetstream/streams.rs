//! Creating or updating declared streams at startup, traced.

use async_nats::jetstream::Context as JetStream;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};

use super::spec::{Retention, Storage, StreamSpec};
use crate::error::Error;
use crate::semconv;
use crate::telemetry::Telemetry;

/// What ensuring a stream did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAction {
    /// It did not exist and was created.
    Created,
    /// It existed with other updatable settings, which were updated.
    Updated,
    /// It existed as declared.
    Unchanged,
}

impl StreamAction {
    fn as_str(self) -> &'static str {
        match self {
            StreamAction::Created => "created",
            StreamAction::Updated => "updated",
            StreamAction::Unchanged => "unchanged",
        }
    }
}

/// Ensures every stream exists as declared, each under a CLIENT span
/// `ensure_stream {name}`.
pub(crate) async fn ensure_all(
    jetstream: &JetStream,
    streams: &[StreamSpec],
    telemetry: &Telemetry,
) -> Result<(), Error> {
    for stream in streams {
        let mut attributes = vec![
            KeyValue::new(semconv::MESSAGING_SYSTEM, semconv::SYSTEM_NATS),
            KeyValue::new(semconv::MESSAGING_NATS_STREAM, stream.name),
        ];
        attributes.extend_from_slice(telemetry.server_attributes());
        let builder = SpanBuilder::from_name(format!("ensure_stream {}", stream.name))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes);
        let cx = telemetry.start_span(builder, &Context::new());
        let result = ensure(jetstream, stream).await;
        let span = cx.span();
        match &result {
            Ok(action) => {
                span.set_attribute(KeyValue::new(semconv::STREAM_ACTION, action.as_str()));
                tracing::info!(
                    stream = stream.name,
                    action = action.as_str(),
                    "stream ready"
                );
            }
            Err(error) => {
                span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, "stream"));
                span.set_status(Status::error(error.to_string()));
            }
        }
        span.end();
        result?;
    }
    Ok(())
}

async fn ensure(jetstream: &JetStream, spec: &StreamSpec) -> Result<StreamAction, Error> {
    let failed = |reason: String| Error::Stream {
        stream: spec.name,
        reason: crate::error::with_jetstream_hint(reason),
    };
    let mut existing = match jetstream.get_stream(spec.name).await {
        Ok(stream) => stream,
        Err(error) if is_not_found(&error.kind()) => {
            jetstream
                .create_stream(config(spec, None))
                .await
                .map_err(|e| failed(format!("creating it failed: {e}")))?;
            return Ok(StreamAction::Created);
        }
        Err(error) => return Err(failed(format!("looking it up failed: {error}"))),
    };
    let current = existing
        .info()
        .await
        .map_err(|e| failed(format!("reading its configuration failed: {e}")))?
        .config
        .clone();
    if let Some(difference) = incompatibility(spec, &current) {
        return Err(Error::StreamIncompatible {
            stream: spec.name,
            difference,
        });
    }
    let wanted = config(spec, Some(&current));
    if wanted == current {
        return Ok(StreamAction::Unchanged);
    }
    jetstream
        .update_stream(wanted)
        .await
        .map_err(|e| failed(format!("updating it failed: {e}")))?;
    Ok(StreamAction::Updated)
}

fn is_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(error)
        if error.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The settings a server cannot change on an existing stream, if they differ.
fn incompatibility(spec: &StreamSpec, current: &Config) -> Option<String> {
    let storage = storage(spec.storage);
    if current.storage != storage {
        return Some(format!(
            "storage is {:?} on the server but {:?} in the declaration; \
             storage cannot change, so delete the stream or declare {:?}",
            current.storage, storage, current.storage
        ));
    }
    let retention = retention(spec.retention);
    if current.retention != retention {
        return Some(format!(
            "retention is {:?} on the server but {:?} in the declaration; \
             retention cannot change, so delete the stream or declare {:?}",
            current.retention, retention, current.retention
        ));
    }
    None
}

/// The server configuration for `spec`. On update, settings the declaration
/// leaves unset keep their current values.
fn config(spec: &StreamSpec, current: Option<&Config>) -> Config {
    let mut config = current.cloned().unwrap_or_else(|| Config {
        name: spec.name.to_string(),
        ..Default::default()
    });
    config.subjects = spec.subjects.iter().map(|s| s.to_string()).collect();
    config.storage = storage(spec.storage);
    config.retention = retention(spec.retention);
    if let Some(max_age) = spec.max_age {
        config.max_age = max_age;
    }
    if let Some(max_messages) = spec.max_messages {
        config.max_messages = max_messages;
    }
    if let Some(max_bytes) = spec.max_bytes {
        config.max_bytes = max_bytes;
    }
    if let Some(window) = spec.duplicate_window {
        config.duplicate_window = window;
    }
    config
}

fn storage(storage: Storage) -> StorageType {
    match storage {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}

fn retention(retention: Retention) -> RetentionPolicy {
    match retention {
        Retention::Limits => RetentionPolicy::Limits,
        Retention::Interest => RetentionPolicy::Interest,
        Retention::WorkQueue => RetentionPolicy::WorkQueue,
    }
}
