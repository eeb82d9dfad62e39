//! Integration tests against a real nats-server, asserting on the spans the
//! SDK's in-memory exporter received.

mod core_subscriber;
mod credentials;
mod handler_model;
mod jetstream;
mod otlp;
mod publishing;
mod runtime_lifecycle;
mod support;
mod telemetry;
