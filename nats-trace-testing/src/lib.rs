//! Test support for nats-trace:
//! - [`NatsServer`]: a real `nats-server` on a free loopback port, with
//!   JetStream and a throw-away store directory, killed on drop;
//! - [`SpanCapture`]: a tracer provider whose finished spans tests can read.
//!
//! ```no_run
//! let server = nats_trace_testing::NatsServer::start()?;
//! println!("connect to {}", server.url());
//! # Ok::<(), nats_trace_testing::ServerError>(())
//! ```
//!
//! The binary is looked up by [`find_nats_server`]; install the pinned one
//! with `scripts/install-nats-server` from the repository root.
#![warn(missing_docs)]

mod server;
pub mod spans;

pub use server::{NATS_SERVER_BIN, NatsServer, NatsServerBuilder, ServerError, find_nats_server};
pub use spans::SpanCapture;
