//! What a publisher keeps of each (operation, subject) it used: the names
//! its spans and the client take, and the metrics it records into, found
//! with one lookup per publish.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::names::{self, Names};
use crate::semconv;
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::{self, Binding, OperationMetrics};

/// One operation (`publish` or `request`) on one subject.
#[derive(Debug)]
pub(crate) struct Operation {
    /// `messaging.operation.name`.
    name: &'static str,
    /// The subject's and the span's names: interned unless the global
    /// table of names was full.
    pub(crate) names: Names,
    /// Its metrics, bound to its attributes; `None` when not kept, and then
    /// recorded with attributes built per call.
    metrics: Option<OperationMetrics>,
}

impl Operation {
    /// Records one run of the operation: its duration since `started`, the
    /// messages it sent and the body size of one of them.
    pub(crate) fn record(
        &self,
        telemetry: &Telemetry,
        started: Instant,
        sent: u64,
        body_size: Option<usize>,
        error_type: Option<&str>,
    ) {
        let elapsed = started.elapsed();
        match &self.metrics {
            Some(kept) => kept.record(elapsed, sent, body_size, error_type),
            None => telemetry
                .metrics()
                .client_operation(self.attributes(telemetry), Binding::Never)
                .record(elapsed, sent, body_size, error_type),
        }
    }

    fn attributes(&self, telemetry: &Telemetry) -> Vec<opentelemetry::KeyValue> {
        metrics::attributes(
            self.name,
            semconv::operation_type::SEND,
            &self.names.subject,
            None,
            telemetry.server_attributes(),
        )
    }
}

/// The operations of one publisher and of the publishers
/// [`Publisher::with_retry`](super::Publisher::with_retry) made from it.
///
/// Bounded: past [`Operations::LIMIT`] pairs, an operation is built per
/// call, and its metrics are recorded with attributes built per call. Each
/// kept pair's metric series stay in the meter provider for the publisher's
/// life, so the limit stays well below the SDK's default cardinality limit
/// of 2,000 series per instrument, which the body-size histogram shares
/// with the handlers.
#[derive(Debug, Default)]
pub(crate) struct Operations(RwLock<Kept>);

#[derive(Debug, Default)]
struct Kept {
    /// By subject, then by operation name: a subject has one or two.
    by_subject: HashMap<Box<str>, Vec<Arc<Operation>>>,
    /// Pairs kept, every subject's together.
    len: usize,
}

impl Operations {
    /// Most (operation, subject) pairs kept.
    pub(crate) const LIMIT: usize = 512;

    /// The operation `name` on `subject`, built and kept the first time.
    pub(crate) fn get(
        &self,
        name: &'static str,
        subject: &str,
        telemetry: &Telemetry,
    ) -> Arc<Operation> {
        let full = {
            let kept = self.read();
            if let Some(found) = kept.find(name, subject) {
                return found;
            }
            kept.len >= Self::LIMIT
        };
        let mut operation = Operation {
            name,
            names: names::names(name, subject),
            metrics: None,
        };
        // Past the limit, publishes never wait for the write lock.
        if full {
            return Arc::new(operation);
        }
        let mut kept = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = kept.find(name, subject) {
            return found;
        }
        if kept.len >= Self::LIMIT {
            return Arc::new(operation);
        }
        operation.metrics = Some(
            telemetry
                .metrics()
                .client_operation(operation.attributes(telemetry), Binding::OnFirstUse),
        );
        let operation = Arc::new(operation);
        kept.by_subject
            .entry(subject.into())
            .or_default()
            .push(operation.clone());
        kept.len += 1;
        operation
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Kept> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Kept {
    fn find(&self, name: &str, subject: &str) -> Option<Arc<Operation>> {
        self.by_subject
            .get(subject)?
            .iter()
            .find(|operation| operation.name == name)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Operation, Operations};
    use crate::propagation::Propagation;
    use crate::telemetry::Telemetry;

    #[test]
    fn operations_are_kept_once_per_subject_up_to_the_limit() {
        let telemetry = Telemetry::new(None, None, Propagation::Global);
        let operations = Operations::default();
        let kept = |operation: &Operation| operation.metrics.is_some();
        let first = operations.get("publish", "operations.test.0", &telemetry);
        assert_eq!(first.names.subject, "operations.test.0");
        assert_eq!(first.names.span_name, "publish operations.test.0");
        for n in 1..Operations::LIMIT - 1 {
            let operation = operations.get("publish", &format!("operations.test.{n}"), &telemetry);
            assert!(kept(&operation), "subject {n} is within the limit");
        }
        let again = operations.get("publish", &String::from("operations.test.0"), &telemetry);
        assert!(Arc::ptr_eq(&first, &again), "found, not built again");

        let request = operations.get("request", "operations.test.0", &telemetry);
        assert!(
            kept(&request),
            "another operation on the same subject is another pair"
        );
        assert_eq!(request.names.span_name, "request operations.test.0");
        assert!(!Arc::ptr_eq(&first, &request));
        assert!(
            Arc::ptr_eq(
                &request,
                &operations.get("request", "operations.test.0", &telemetry)
            ),
            "each pair is found under its own operation"
        );

        let past = operations.get("request", "operations.test.1", &telemetry);
        assert!(!kept(&past), "the limit counts every operation's pairs");
        assert_eq!(past.names.span_name, "request operations.test.1");
        assert!(!Arc::ptr_eq(
            &past,
            &operations.get("request", "operations.test.1", &telemetry)
        ));
        assert!(!kept(&operations.get(
            "publish",
            "operations.test.new",
            &telemetry
        )));
        assert!(kept(&operations.get(
            "publish",
            "operations.test.1",
            &telemetry
        )));
    }
}
