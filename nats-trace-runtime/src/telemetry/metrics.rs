//! The messaging metrics of the OpenTelemetry semantic conventions, plus the
//! project-scoped ones the conventions do not define.
//!
//! | metric | instrument | unit |
//! |---|---|---|
//! | `messaging.process.duration` | histogram | s |
//! | `messaging.client.operation.duration` (publish, request, settle) | histogram | s |
//! | `messaging.client.sent.messages` | counter | `{message}` |
//! | `messaging.client.consumed.messages` | counter | `{message}` |
//! | `nats_trace.message.body.size` (project-scoped: no semconv metric) | histogram | By |
//! | `nats_trace.connection.events` (project-scoped) | counter | `{event}` |
//!
//! Attributes stay low-cardinality: system, operation name and type,
//! destination **template**, consumer group, `error.type`, server address and
//! port. Never a message id, a concrete subject or an `_INBOX` subject.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Histogram, Meter};
use opentelemetry_semantic_conventions::metric as names;

use crate::semconv;

/// Bucket boundaries the messaging conventions recommend for durations (s).
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Bucket boundaries for message body sizes (bytes).
pub const SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
];

/// `nats_trace.message.body.size`.
pub const BODY_SIZE: &str = "nats_trace.message.body.size";
/// `nats_trace.connection.events`.
pub const CONNECTION_EVENTS: &str = "nats_trace.connection.events";

/// The runtime's instruments, created once.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    process_duration: Histogram<f64>,
    operation_duration: Histogram<f64>,
    sent: Counter<u64>,
    consumed: Counter<u64>,
    body_size: Histogram<u64>,
    connection_events: Counter<u64>,
}

impl Metrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        Metrics {
            process_duration: meter
                .f64_histogram(names::MESSAGING_PROCESS_DURATION)
                .with_unit("s")
                .with_description("Duration of processing operation.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            operation_duration: meter
                .f64_histogram(names::MESSAGING_CLIENT_OPERATION_DURATION)
                .with_unit("s")
                .with_description("Duration of messaging operation initiated by a producer or consumer client.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            sent: meter
                .u64_counter(names::MESSAGING_CLIENT_SENT_MESSAGES)
                .with_unit("{message}")
                .with_description("Number of messages producer attempted to send to the broker.")
                .build(),
            consumed: meter
                .u64_counter(names::MESSAGING_CLIENT_CONSUMED_MESSAGES)
                .with_unit("{message}")
                .with_description("Number of messages that were delivered to the application.")
                .build(),
            body_size: meter
                .u64_histogram(BODY_SIZE)
                .with_unit("By")
                .with_description("Size of message bodies sent and received (nats-trace).")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            connection_events: meter
                .u64_counter(CONNECTION_EVENTS)
                .with_unit("{event}")
                .with_description("NATS connection events: disconnects, reconnects, slow consumers, lame duck (nats-trace).")
                .build(),
        }
    }

    /// The metrics of a handler's runs with `attributes`: their duration,
    /// the consumed messages and their sizes.
    pub(crate) fn process(&self, attributes: Vec<KeyValue>) -> Bound {
        Bound::new(
            attributes,
            self.process_duration.clone(),
            self.consumed.clone(),
            false,
            self.body_size.clone(),
        )
    }

    /// The metrics of client operations with `attributes` (publish,
    /// request or settle): their duration, the messages sent and their
    /// sizes.
    pub(crate) fn client_operation(&self, attributes: Vec<KeyValue>) -> Bound {
        Bound::new(
            attributes,
            self.operation_duration.clone(),
            self.sent.clone(),
            true,
            self.body_size.clone(),
        )
    }

    /// A client operation recorded with `attributes` looked up per call,
    /// for attribute sets too many to keep a [`Bound`] for each.
    pub(crate) fn operation(
        &self,
        attributes: &[KeyValue],
        elapsed: Duration,
        sent: u64,
        body_size: Option<usize>,
        error_type: Option<&str>,
    ) {
        if let Some(size) = body_size {
            self.body_size.record(size as u64, attributes);
        }
        with_error(attributes, error_type, |attributes| {
            if sent > 0 {
                self.sent.add(sent, attributes);
            }
            self.operation_duration
                .record(elapsed.as_secs_f64(), attributes);
        });
    }

    /// A connection event such as `disconnected`.
    pub(crate) fn connection_event(&self, event: &'static str) {
        self.connection_events.add(
            1,
            &[
                KeyValue::new(semconv::MESSAGING_SYSTEM, semconv::SYSTEM_NATS),
                KeyValue::new("nats_trace.connection.event", event),
            ],
        );
    }
}

/// One operation's instruments, each bound to its attribute set the first
/// time it records: a plain instrument has the SDK hash the attribute set
/// and look it up under a lock on every call, which cost more than the rest
/// of a message's metrics. Binding on first use, not up front, exports
/// exactly the points plain recording would: no empty series. Failures are
/// recorded plain, with `error.type` added to the attributes.
pub(crate) struct Bound {
    attributes: Box<[KeyValue]>,
    duration: Histogram<f64>,
    messages: Counter<u64>,
    /// Whether a failure's messages count under its `error.type`: sent ones
    /// do; consumed ones were received, whatever the handler made of them.
    messages_fail: bool,
    body_size: Histogram<u64>,
    bound_duration: OnceLock<BoundHistogram<f64>>,
    bound_messages: OnceLock<BoundCounter<u64>>,
    bound_body_size: OnceLock<BoundHistogram<u64>>,
}

impl Bound {
    fn new(
        attributes: Vec<KeyValue>,
        duration: Histogram<f64>,
        messages: Counter<u64>,
        messages_fail: bool,
        body_size: Histogram<u64>,
    ) -> Self {
        Bound {
            attributes: attributes.into(),
            duration,
            messages,
            messages_fail,
            body_size,
            bound_duration: OnceLock::new(),
            bound_messages: OnceLock::new(),
            bound_body_size: OnceLock::new(),
        }
    }

    /// One run or operation: how long it took, the `messages` it consumed
    /// or sent, their size, and its `error.type` if it failed.
    pub(crate) fn record(
        &self,
        elapsed: Duration,
        messages: u64,
        body_size: Option<usize>,
        error_type: Option<&str>,
    ) {
        let attributes = &*self.attributes;
        if let Some(size) = body_size {
            self.bound_body_size
                .get_or_init(|| self.body_size.bind(attributes))
                .record(size as u64);
        }
        let Some(error_type) = error_type else {
            self.count(messages);
            self.bound_duration
                .get_or_init(|| self.duration.bind(attributes))
                .record(elapsed.as_secs_f64());
            return;
        };
        with_error(attributes, Some(error_type), |failed| {
            if !self.messages_fail {
                self.count(messages);
            } else if messages > 0 {
                self.messages.add(messages, failed);
            }
            self.duration.record(elapsed.as_secs_f64(), failed);
        });
    }

    /// Counts `messages` under the operation's own attributes.
    fn count(&self, messages: u64) {
        if messages > 0 {
            self.bound_messages
                .get_or_init(|| self.messages.bind(&self.attributes))
                .add(messages);
        }
    }
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

/// Runs `record` with `attributes`, plus `error.type` when there is one.
/// Only failures pay for the extra allocation.
fn with_error(attributes: &[KeyValue], error_type: Option<&str>, record: impl FnOnce(&[KeyValue])) {
    match error_type {
        None => record(attributes),
        Some(error_type) => {
            let mut with = attributes.to_vec();
            with.push(KeyValue::new(semconv::ERROR_TYPE, error_type.to_string()));
            record(&with);
        }
    }
}

/// The low-cardinality attributes of one operation on one destination
/// template, built once and reused for every message.
pub(crate) fn attributes(
    operation_name: &'static str,
    operation_type: &'static str,
    template: &str,
    consumer_group: Option<&'static str>,
    server: &[KeyValue],
) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new(semconv::MESSAGING_SYSTEM, semconv::SYSTEM_NATS),
        KeyValue::new(semconv::MESSAGING_OPERATION_NAME, operation_name),
        KeyValue::new(semconv::MESSAGING_OPERATION_TYPE, operation_type),
        KeyValue::new(
            semconv::MESSAGING_DESTINATION_TEMPLATE,
            template.to_string(),
        ),
    ];
    if let Some(group) = consumer_group {
        attributes.push(KeyValue::new(semconv::MESSAGING_CONSUMER_GROUP_NAME, group));
    }
    attributes.extend_from_slice(server);
    attributes
}
