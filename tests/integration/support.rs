//! Shared set-up: a server per test, a runtime serving only the test's own
//! handlers, and a test tracer to publish with a known parent.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use nats_trace_runtime::propagation::HeaderInjector;
use nats_trace_runtime::runtime::{self, Builder, Running};
use nats_trace_testing::{NatsServer, SpanCapture};
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SpanData;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|error| panic!("{error}"))
}

pub async fn connect(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url())
        .await
        .expect("connect to the test server")
}

/// A runtime on `server` serving only the handlers whose path starts with
/// `prefix` (a test module's `module_path!()` plus a separator), traced into
/// `capture`.
pub async fn start(server: &NatsServer, capture: &SpanCapture, prefix: &'static str) -> Running {
    builder(server, capture, prefix)
        .start()
        .await
        .expect("runtime starts")
}

/// The builder [`start`] uses, for tests that add to it. Streams declared
/// with `declare_stream!` are left out: each test creates its own.
pub fn builder(server: &NatsServer, capture: &SpanCapture, prefix: &'static str) -> Builder {
    runtime::builder()
        .url(server.url())
        .tracer_provider(capture.provider())
        .propagator(TraceContextPropagator::new())
        .handlers(move |handler| handler.name().starts_with(prefix))
        .shutdown_timeout(Duration::from_secs(10))
        .declared_streams(false)
        .telemetry_from_env(false)
        .logging(false)
}

/// Starts a PRODUCER span on the test tracer and returns its context and the
/// headers carrying it, as an instrumented publisher would.
pub fn traced_headers(capture: &SpanCapture, name: &'static str) -> (Context, HeaderMap) {
    let tracer = capture.provider().tracer("test-publisher");
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Producer)
        .start(&tracer);
    let cx = Context::new().with_span(span);
    let mut headers = HeaderMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
    (cx, headers)
}

/// An in-memory log sink for `tracing` subscribers.
#[derive(Clone, Default)]
pub struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Buffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs the runtime's default format into a buffer, on this test's thread
/// only (a current-thread runtime started on it logs there), until the
/// guard is dropped.
pub fn capture_logs() -> (Buffer, tracing::subscriber::DefaultGuard) {
    let logs = Buffer::default();
    let writer = logs.clone();
    let default = nats_trace_runtime::telemetry::logging::subscriber(move || writer.clone(), false);
    let guard = tracing::subscriber::set_default(default);
    // `tracing` caches globally whether a callsite is wanted; a rebuild of
    // that cache on another test's thread while this subscriber was set
    // could have left a shared callsite (one in the runtime) stale.
    tracing::callsite::rebuild_interest_cache();
    (logs, guard)
}

/// The line of `logs` that contains `needle`, and the span's ids in it, or
/// a panic that shows the logs.
pub fn assert_logged_in_span(logs: &Buffer, needle: &str, span: &SpanData) -> String {
    let logs = logs.text();
    let line = logs
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{logs}"));
    assert!(
        line.contains(&format!(
            "trace_id={} span_id={}",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )),
        "{line}"
    );
    line.to_string()
}

/// Every attribute value of every span, for checks that a secret never
/// reached telemetry.
pub fn all_attribute_values(spans: &[opentelemetry_sdk::trace::SpanData]) -> String {
    spans
        .iter()
        .flat_map(|span| span.attributes.iter().map(|kv| kv.value.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Locks `mutex`, also after a panicking test thread poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits up to `timeout` for `done`, polling.
pub async fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    done()
}

/// Holds a handler's runs until the test opens it, counting how many run at
/// once.
pub struct Gate {
    /// Runs in progress now, and the most that ever were at once.
    running: Mutex<(usize, usize)>,
    permits: tokio::sync::Semaphore,
    finished: Mutex<Vec<u32>>,
}

impl Gate {
    pub const fn new() -> Self {
        Gate {
            running: Mutex::new((0, 0)),
            permits: tokio::sync::Semaphore::const_new(0),
            finished: Mutex::new(Vec::new()),
        }
    }

    /// Called by the handler: counts the run in, waits until the gate lets
    /// it through, then counts it out as finished with `id`.
    pub async fn hold(&self, id: u32) {
        {
            let mut running = lock(&self.running);
            running.0 += 1;
            running.1 = running.1.max(running.0);
        }
        self.permits
            .acquire()
            .await
            .expect("the gate stays")
            .forget();
        lock(&self.running).0 -= 1;
        lock(&self.finished).push(id);
    }

    /// Lets `count` more runs through.
    pub fn open(&self, count: usize) {
        self.permits.add_permits(count);
    }

    /// Runs held now, and the most that ever were at once.
    pub fn running(&self) -> (usize, usize) {
        *lock(&self.running)
    }

    /// The ids of the runs that finished, in order.
    pub fn finished(&self) -> Vec<u32> {
        lock(&self.finished).clone()
    }
}
