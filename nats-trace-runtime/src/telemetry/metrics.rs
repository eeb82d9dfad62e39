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
    pub(crate) fn process(&self, attributes: Vec<KeyValue>) -> OperationMetrics {
        OperationMetrics::new(
            attributes,
            &self.process_duration,
            &self.consumed,
            Messages::Consumed,
            &self.body_size,
            Binding::OnFirstUse,
        )
    }

    /// The metrics of client operations with `attributes` (publish,
    /// request or settle): their duration, the messages sent and their
    /// sizes. With [`Binding::Never`], for attribute sets too many to keep,
    /// every call has its attributes looked up.
    pub(crate) fn client_operation(
        &self,
        attributes: Vec<KeyValue>,
        binding: Binding,
    ) -> OperationMetrics {
        OperationMetrics::new(
            attributes,
            &self.operation_duration,
            &self.sent,
            Messages::Sent,
            &self.body_size,
            binding,
        )
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

/// Whether an [`OperationMetrics`] binds its instruments to its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    /// Each instrument binds after its first measurement: a plain
    /// instrument has the SDK hash the attribute set and look it up under a
    /// lock on every call, which cost more than the rest of a message's
    /// metrics.
    OnFirstUse,
    /// Every measurement is plain: for a set recorded once or rarely.
    Never,
}

/// The messages an operation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Messages {
    /// Sent: a failed operation counts them under its `error.type`.
    Sent,
    /// Consumed: received, whatever the handler made of them, so never
    /// under an `error.type`.
    Consumed,
}

/// The instruments of one operation on one attribute set. Successes are
/// recorded through handles bound to the set; failures plainly, with
/// `error.type` added.
pub(crate) struct OperationMetrics {
    attributes: Box<[KeyValue]>,
    duration: BindOnUse<Histogram<f64>>,
    messages: BindOnUse<Counter<u64>>,
    counted: Messages,
    body_size: BindOnUse<Histogram<u64>>,
    binding: Binding,
}

impl OperationMetrics {
    /// The operation's metrics with `attributes`, counting `counted`
    /// messages.
    fn new(
        attributes: Vec<KeyValue>,
        duration: &Histogram<f64>,
        messages: &Counter<u64>,
        counted: Messages,
        body_size: &Histogram<u64>,
        binding: Binding,
    ) -> Self {
        OperationMetrics {
            attributes: attributes.into(),
            duration: BindOnUse::new(duration.clone()),
            messages: BindOnUse::new(messages.clone()),
            counted,
            body_size: BindOnUse::new(body_size.clone()),
            binding,
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
        let (attributes, binding) = (&*self.attributes, self.binding);
        if let Some(size) = body_size {
            self.body_size.record(size as u64, attributes, binding);
        }
        let Some(error_type) = error_type else {
            if messages > 0 {
                self.messages.record(messages, attributes, binding);
            }
            self.duration
                .record(elapsed.as_secs_f64(), attributes, binding);
            return;
        };
        let mut failed = Vec::with_capacity(attributes.len() + 1);
        failed.extend_from_slice(attributes);
        failed.push(KeyValue::new(semconv::ERROR_TYPE, error_type.to_string()));
        if messages > 0 {
            match self.counted {
                Messages::Sent => self.messages.record(messages, &failed, Binding::Never),
                Messages::Consumed => self.messages.record(messages, attributes, binding),
            }
        }
        self.duration
            .record(elapsed.as_secs_f64(), &failed, Binding::Never);
    }
}

impl std::fmt::Debug for OperationMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationMetrics")
            .field("attributes", &self.attributes)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

/// An instrument, and once it has recorded, its handle bound to the one
/// attribute set it records with bound. The first measurement is plain and
/// the handle is bound after it: a handle bound first would make the SDK
/// keep an empty series, which a collection in between would export.
struct BindOnUse<I: Bind> {
    instrument: I,
    bound: OnceLock<I::Bound>,
}

impl<I: Bind> BindOnUse<I> {
    fn new(instrument: I) -> Self {
        BindOnUse {
            instrument,
            bound: OnceLock::new(),
        }
    }

    /// Records `value`: through the bound handle when there is one and
    /// `binding` allows it (`attributes` must then be the set it was bound
    /// to), else plainly, binding afterwards if `binding` says so.
    fn record(&self, value: I::Value, attributes: &[KeyValue], binding: Binding) {
        if binding == Binding::Never {
            self.instrument.record(value, attributes);
        } else if let Some(bound) = self.bound.get() {
            I::record_bound(bound, value);
        } else {
            self.instrument.record(value, attributes);
            // Two first measurements at once may both bind; one is kept.
            let _ = self.bound.set(self.instrument.bind(attributes));
        }
    }
}

/// The instruments [`BindOnUse`] binds.
trait Bind {
    type Value;
    type Bound;
    fn record(&self, value: Self::Value, attributes: &[KeyValue]);
    fn bind(&self, attributes: &[KeyValue]) -> Self::Bound;
    fn record_bound(bound: &Self::Bound, value: Self::Value);
}

impl<T> Bind for Histogram<T> {
    type Value = T;
    type Bound = BoundHistogram<T>;

    fn record(&self, value: T, attributes: &[KeyValue]) {
        Histogram::record(self, value, attributes);
    }

    fn bind(&self, attributes: &[KeyValue]) -> BoundHistogram<T> {
        Histogram::bind(self, attributes)
    }

    fn record_bound(bound: &BoundHistogram<T>, value: T) {
        bound.record(value);
    }
}

impl<T> Bind for Counter<T> {
    type Value = T;
    type Bound = BoundCounter<T>;

    fn record(&self, value: T, attributes: &[KeyValue]) {
        self.add(value, attributes);
    }

    fn bind(&self, attributes: &[KeyValue]) -> BoundCounter<T> {
        Counter::bind(self, attributes)
    }

    fn record_bound(bound: &BoundCounter<T>, value: T) {
        bound.add(value);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use super::{Binding, Metrics};

    fn failed<'a>(mut attributes: impl Iterator<Item = &'a KeyValue>) -> bool {
        attributes.any(|kv| kv.key.as_str() == "error.type")
    }

    /// Each point of metric `name`: whether it has an `error.type`, and its
    /// count (histograms) or sum (counters).
    fn points(exporter: &InMemoryMetricExporter, name: &str) -> Vec<(bool, u64)> {
        let mut found = Vec::new();
        let exported = exporter.get_finished_metrics().expect("metrics");
        let metrics = exported
            .iter()
            .flat_map(|resource| resource.scope_metrics())
            .flat_map(|scope| scope.metrics())
            .filter(|metric| metric.name() == name);
        for metric in metrics {
            match metric.data() {
                AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                    found.extend(h.data_points().map(|p| (failed(p.attributes()), p.count())))
                }
                AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                    found.extend(h.data_points().map(|p| (failed(p.attributes()), p.count())))
                }
                AggregatedMetrics::U64(MetricData::Sum(sum)) => found.extend(
                    sum.data_points()
                        .map(|p| (failed(p.attributes()), p.value())),
                ),
                _ => {}
            }
        }
        found.sort();
        found
    }

    #[test]
    fn successes_bind_after_their_first_measurement_and_failures_stay_plain() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = Metrics::new(&provider.meter("test"));
        let attributes = vec![KeyValue::new("messaging.system", "nats")];
        let millisecond = Duration::from_millis(1);

        let kept = metrics.client_operation(attributes.clone(), Binding::OnFirstUse);
        kept.record(millisecond, 1, Some(10), Some("timeout"));
        assert!(
            kept.duration.bound.get().is_none() && kept.messages.bound.get().is_none(),
            "a failure binds nothing"
        );
        assert!(
            kept.body_size.bound.get().is_some(),
            "sizes are recorded under the operation's own attributes"
        );
        kept.record(millisecond, 1, Some(10), None);
        assert!(kept.duration.bound.get().is_some() && kept.messages.bound.get().is_some());
        kept.record(millisecond, 2, Some(10), None);

        let plain = metrics.client_operation(attributes.clone(), Binding::Never);
        plain.record(millisecond, 1, Some(10), None);
        assert!(
            plain.duration.bound.get().is_none()
                && plain.messages.bound.get().is_none()
                && plain.body_size.bound.get().is_none(),
            "never bound"
        );

        let consumed = metrics.process(attributes);
        consumed.record(millisecond, 1, Some(10), Some("handler_failed"));
        consumed.record(millisecond, 1, Some(10), None);

        provider.force_flush().expect("flush");
        // Bound, plain and first-plain-then-bound measurements of one set
        // land in one series.
        assert_eq!(
            points(&exporter, "messaging.client.sent.messages"),
            [(false, 4), (true, 1)]
        );
        assert_eq!(
            points(&exporter, "messaging.client.operation.duration"),
            [(false, 3), (true, 1)]
        );
        assert_eq!(
            points(&exporter, "messaging.client.consumed.messages"),
            [(false, 2)],
            "consumed messages count without the handler's error.type"
        );
        assert_eq!(
            points(&exporter, "messaging.process.duration"),
            [(false, 1), (true, 1)]
        );
        assert_eq!(
            points(&exporter, "nats_trace.message.body.size"),
            [(false, 6)]
        );
    }
}
