//! The tracer and propagator a runtime uses, resolved once at start, and
//! the terminal trace tree for local runs.

pub mod console_tree;

use std::sync::Arc;

use opentelemetry::global::{self, BoxedTracer, ObjectSafeTracerProvider};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::propagation::Propagation;
use crate::semconv;

/// The instrumentation scope of every span the runtime creates.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("nats-trace")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(semconv::SCHEMA_URL)
        .build()
}

/// Everything the pipeline needs to trace, shared by all handlers of a runtime.
#[derive(Clone)]
pub(crate) struct Telemetry {
    tracer: Arc<BoxedTracer>,
    /// Flushed at shutdown when the application handed it to the builder.
    provider: Option<SdkTracerProvider>,
    pub(crate) propagation: Propagation,
    server: Arc<[KeyValue]>,
}

impl Telemetry {
    /// Uses `provider` when given, else the global tracer provider, which
    /// the application may have installed (it is never replaced).
    pub(crate) fn new(provider: Option<SdkTracerProvider>, propagation: Propagation) -> Self {
        let tracer = match &provider {
            Some(provider) => BoxedTracer::new(provider.boxed_tracer(scope())),
            None => global::tracer_with_scope(scope()),
        };
        Telemetry {
            tracer: Arc::new(tracer),
            provider,
            propagation,
            server: Arc::from(Vec::new()),
        }
    }

    /// Records `server.address` / `server.port` on every span from now on.
    pub(crate) fn with_server(mut self, address: Option<&str>, port: u16) -> Self {
        let mut server = Vec::with_capacity(2);
        if let Some(address) = address.filter(|a| !a.is_empty()) {
            server.push(KeyValue::new(
                semconv::SERVER_ADDRESS,
                StringValue::from(address.to_string()),
            ));
        }
        if port != 0 {
            server.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
        }
        self.server = Arc::from(server);
        self
    }

    pub(crate) fn tracer(&self) -> &BoxedTracer {
        &self.tracer
    }

    pub(crate) fn server_attributes(&self) -> &[KeyValue] {
        &self.server
    }

    /// Exports every finished span of the provider handed to the builder.
    /// Spans of the global provider are flushed by whoever installed it.
    pub(crate) async fn flush(&self) {
        let Some(provider) = self.provider.clone() else {
            return;
        };
        // The SDK blocks the calling thread while it exports.
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "flushing spans failed"),
            Err(error) => tracing::warn!(%error, "flushing spans failed"),
        }
    }
}
