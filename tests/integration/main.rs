//! Integration tests against a real nats-server.
