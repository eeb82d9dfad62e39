//! A span exporter that prints every finished trace as an indented tree.
//!
//! Meant for local development: run a service with [`ConsoleTreeExporter::stdout`]
//! and each message flow (publish → process → reply …) shows up as one tidy
//! block in the terminal:
//!
//! ```text
//! trace 4bf92f3577b34da6a3ce929d0e0e4736
//! └─ publish orders.created        PRODUCER    400µs  ━━
//!    │  destination.name=orders.created server=127.0.0.1:4222
//!    └─ process orders.*           CONSUMER    1.8ms     ━━━━━━━━━
//!       │  destination.name=orders.created consumer.group.name=billing body.size=…
//!       └─ ✗ publish _INBOX.reply  PRODUCER    300µs            ━━
//!             destination.name=_INBOX.abc.1
//!             error: no responders
//! ```
//!
//! Columns: tree and span name (errors marked `✗`), span kind, duration, and
//! a bar placing the span within the trace's overall time span. The line
//! below a span lists its key messaging attributes; errors add an `error:`
//! line. Every line fits the configured width (80 columns by default).
//!
//! Spans of one trace end at different times and on different tasks, so the
//! exporter buffers them per trace id and prints a trace once no new span has
//! arrived for it for a short idle period (300 ms by default). A trace whose
//! parts are further apart than that is printed in several blocks that share
//! the trace id; spans whose parent was already printed then show up as roots.
//!
//! The SDK's span processors do not forward `force_flush` to their exporter,
//! so keep a clone of the exporter (clones share one buffer and one writer)
//! if you need to flush by hand, e.g. at the end of a test. Shutting down the
//! tracer provider does reach the exporter and prints whatever is left.

mod render;

use std::collections::HashMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

pub use render::render_trace;

/// How long a trace must go without new spans before it is printed.
const DEFAULT_IDLE: Duration = Duration::from_millis(300);
/// Upper bound for the background thread's sleep between idle checks.
const MAX_TICK: Duration = Duration::from_millis(50);
/// Lower bound so a tiny idle period cannot turn the ticker into a busy loop.
const MIN_TICK: Duration = Duration::from_millis(5);
/// Above this many buffered spans everything is printed at once, so a flood
/// of never-idle traces cannot grow memory without bound.
const MAX_BUFFERED_SPANS: usize = 10_000;
/// Used when the terminal width is unknown.
const DEFAULT_WIDTH: usize = 80;

/// [`SpanExporter`] that prints each finished trace as an indented tree.
///
/// Cloning is cheap and clones share the buffer, the writer and the
/// background thread, so a clone kept outside the tracer provider can be used
/// to call [`SpanExporter::force_flush`].
#[derive(Clone)]
pub struct ConsoleTreeExporter {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Held across draining *and* writing, so when `force_flush` returns, a
    /// trace the ticker drained just before has already been written too.
    out: Mutex<Box<dyn Write + Send>>,
    color: bool,
    /// Handle of the idle ticker, used to wake it on shutdown; `None` until
    /// the first export so exporters that never see a span cost no thread.
    ticker: Mutex<Option<Thread>>,
    /// Cleared by the ticker when it exits; lets tests observe that it stops.
    ticker_alive: Arc<AtomicBool>,
}

struct State {
    traces: HashMap<TraceId, Pending>,
    buffered: usize,
    max_buffered: usize,
    idle: Duration,
    width: usize,
    shut_down: bool,
}

struct Pending {
    spans: Vec<SpanData>,
    last_seen: Instant,
}

/// Which buffered traces a flush should print.
#[derive(Clone, Copy)]
enum Take {
    All,
    IdleAt(Instant),
}

impl ConsoleTreeExporter {
    /// Exporter writing to standard output.
    ///
    /// Colors are used only when stdout is a terminal and `NO_COLOR` is unset
    /// or empty (<https://no-color.org>). The width is taken from `COLUMNS`
    /// when that is exported, else 80 columns.
    pub fn stdout() -> Self {
        let color = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|&w| w > 0)
            .unwrap_or(DEFAULT_WIDTH);
        Self::new(Box::new(std::io::stdout()), color).with_width(width)
    }

    /// Exporter writing to `writer`, with ANSI colors if `color` is true.
    ///
    /// Lines are at most 80 columns wide; see [`Self::with_width`].
    pub fn new(writer: Box<dyn Write + Send>, color: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    traces: HashMap::new(),
                    buffered: 0,
                    max_buffered: MAX_BUFFERED_SPANS,
                    idle: DEFAULT_IDLE,
                    width: DEFAULT_WIDTH,
                    shut_down: false,
                }),
                out: Mutex::new(writer),
                color,
                ticker: Mutex::new(None),
                ticker_alive: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// Print a trace once no span of it has arrived for `idle` (default 300 ms).
    ///
    /// Longer values keep slow multi-hop flows in one block at the cost of
    /// seeing them later.
    pub fn with_idle(self, idle: Duration) -> Self {
        lock(&self.inner.state).idle = idle;
        self
    }

    /// Maximum line width in columns (default 80). Span names and attribute
    /// lines are cut with `…` to fit; nothing ever wraps.
    pub fn with_width(self, width: usize) -> Self {
        lock(&self.inner.state).width = width;
        self
    }

    /// Start the idle ticker unless it is already running.
    fn ensure_ticker(&self) {
        let mut slot = lock(&self.inner.ticker);
        if slot.is_some() {
            return;
        }
        // The thread only holds a Weak so dropping the last exporter ends it,
        // and its JoinHandle is dropped so it never keeps the process alive.
        let weak = Arc::downgrade(&self.inner);
        let alive = Arc::clone(&self.inner.ticker_alive);
        alive.store(true, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name("console-tree-exporter".into())
            .spawn(move || run_ticker(weak, alive));
        match spawned {
            Ok(handle) => *slot = Some(handle.thread().clone()),
            // No thread: traces still come out on flush, shutdown or when the
            // buffer fills, and the next export tries again.
            Err(_) => self.inner.ticker_alive.store(false, Ordering::SeqCst),
        }
    }
}

impl fmt::Debug for ConsoleTreeExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConsoleTreeExporter");
        d.field("color", &self.inner.color);
        // try_lock: Debug must never block behind an export in progress.
        if let Ok(st) = self.inner.state.try_lock() {
            d.field("width", &st.width)
                .field("idle", &st.idle)
                .field("buffered_spans", &st.buffered);
        }
        d.finish_non_exhaustive()
    }
}

impl SpanExporter for ConsoleTreeExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self.inner.accept(batch);
        if result.is_ok() {
            self.ensure_ticker();
        }
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        {
            let mut st = lock(&self.inner.state);
            if st.shut_down {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            st.shut_down = true;
        }
        self.inner.flush(Take::All);
        // Wake the ticker so it sees the flag now instead of after its sleep.
        if let Some(t) = lock(&self.inner.ticker).as_ref() {
            t.unpark();
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.flush(Take::All);
        Ok(())
    }
}

impl Inner {
    fn accept(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let now = Instant::now();
        let overflow = {
            let mut guard = lock(&self.state);
            let st = &mut *guard;
            if st.shut_down {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            for span in batch {
                let pending = st
                    .traces
                    .entry(span.span_context.trace_id())
                    .or_insert_with(|| Pending {
                        spans: Vec::new(),
                        last_seen: now,
                    });
                pending.last_seen = now;
                pending.spans.push(span);
                st.buffered += 1;
            }
            st.buffered >= st.max_buffered
        };
        if overflow {
            self.flush(Take::All);
        }
        Ok(())
    }

    /// Print the selected traces. Lock order is always `out` then `state`.
    fn flush(&self, which: Take) {
        let mut out = lock(&self.out);
        let (traces, width) = {
            let mut st = lock(&self.state);
            (st.take(which), st.width)
        };
        write_traces(&mut **out, &traces, width, self.color);
    }

    /// Sleep between idle checks: fine enough to honour short idle periods.
    fn tick(&self) -> Duration {
        (lock(&self.state).idle / 2).clamp(MIN_TICK, MAX_TICK)
    }

    fn is_shut_down(&self) -> bool {
        lock(&self.state).shut_down
    }
}

impl Drop for Inner {
    /// Last exporter handle gone without shutdown: print rather than lose spans.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !st.shut_down {
            st.shut_down = true;
            let traces = st.take(Take::All);
            let width = st.width;
            let out = self.out.get_mut().unwrap_or_else(PoisonError::into_inner);
            write_traces(&mut **out, &traces, width, self.color);
        }
        if let Some(t) = self
            .ticker
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            t.unpark();
        }
    }
}

impl State {
    /// Remove the selected traces from the buffer, oldest first.
    fn take(&mut self, which: Take) -> Vec<Vec<SpanData>> {
        let idle = self.idle;
        let ready: Vec<TraceId> = self
            .traces
            .iter()
            .filter(|(_, p)| match which {
                Take::All => true,
                Take::IdleAt(now) => now.saturating_duration_since(p.last_seen) >= idle,
            })
            .map(|(id, _)| *id)
            .collect();
        // Collect-then-remove rather than `extract_if`, which needs Rust 1.88
        // while edition 2024 only implies 1.85.
        let mut taken: Vec<Vec<SpanData>> = ready
            .iter()
            .filter_map(|id| self.traces.remove(id))
            .map(|p| p.spans)
            .collect();
        let n: usize = taken.iter().map(Vec::len).sum();
        self.buffered = self.buffered.saturating_sub(n);
        taken.sort_by_key(|spans| spans.iter().map(|s| s.start_time).min());
        taken
    }
}

fn run_ticker(weak: Weak<Inner>, alive: Arc<AtomicBool>) {
    struct ClearOnExit(Arc<AtomicBool>);
    impl Drop for ClearOnExit {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let _clear = ClearOnExit(alive);
    loop {
        // The strong reference lives only for this block, never across the
        // sleep, so the ticker does not delay dropping the exporter.
        let pause = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.is_shut_down() {
                return;
            }
            inner.flush(Take::IdleAt(Instant::now()));
            inner.tick()
        };
        thread::park_timeout(pause);
    }
}

/// One write call per trace (plus its blank separator line) keeps blocks
/// whole even if the writer is shared with other code, e.g. stdout.
fn write_traces(out: &mut dyn Write, traces: &[Vec<SpanData>], width: usize, color: bool) {
    // The ticker lands here every tick; don't flush the writer for nothing.
    if traces.is_empty() {
        return;
    }
    for spans in traces {
        let mut text = render_trace(spans, width, color);
        text.push('\n');
        // A console exporter must never take the application down, so write
        // errors (closed pipe, full disk) are deliberately ignored.
        let _ = out.write_all(text.as_bytes());
    }
    let _ = out.flush();
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind that
    // is still usable; refusing to print forever would be worse.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod test_spans;

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::AtomicU64;
    use std::task::{Context as TaskContext, Poll, Waker};

    use opentelemetry::trace::{
        Span as _, SpanId, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_sdk::trace::{IdGenerator, SdkTracerProvider, SimpleSpanProcessor};

    use super::test_spans::{TRACE, data, spec};
    use super::*;

    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl SharedBuf {
        fn text(&self) -> String {
            String::from_utf8_lossy(&lock(&self.0)).into_owned()
        }
    }

    /// Sequential ids so provider-made traces are predictable.
    #[derive(Debug, Default)]
    struct Counter(AtomicU64);

    impl IdGenerator for Counter {
        fn new_trace_id(&self) -> TraceId {
            TraceId::from(u128::from(self.0.fetch_add(1, Ordering::SeqCst) + 1) << 64 | 0xabc)
        }
        fn new_span_id(&self) -> SpanId {
            SpanId::from(self.0.fetch_add(1, Ordering::SeqCst) + 1)
        }
    }

    fn setup(idle: Duration) -> (ConsoleTreeExporter, SdkTracerProvider, SharedBuf) {
        let buf = SharedBuf::default();
        let exporter = ConsoleTreeExporter::new(Box::new(buf.clone()), false).with_idle(idle);
        let provider = SdkTracerProvider::builder()
            .with_id_generator(Counter::default())
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .build();
        (exporter, provider, buf)
    }

    /// Publisher span ends first, consumer span (a child) ends later.
    fn emit_flow(provider: &SdkTracerProvider, subject: &str) {
        let tracer = provider.tracer("test");
        let mut publish = tracer
            .span_builder(format!("publish {subject}"))
            .with_kind(SpanKind::Producer)
            .with_attributes([KeyValue::new(
                "messaging.destination.name",
                subject.to_owned(),
            )])
            .start(&tracer);
        let cx = Context::new().with_remote_span_context(publish.span_context().clone());
        publish.end();
        let mut process = tracer
            .span_builder(format!("process {subject}"))
            .with_kind(SpanKind::Consumer)
            .start_with_context(&tracer, &cx);
        process.end();
    }

    fn wait_for(buf: &SharedBuf, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if pred(&buf.text()) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        pred(&buf.text())
    }

    fn block_on<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut
                .as_mut()
                .poll(&mut TaskContext::from_waker(Waker::noop()))
            {
                return v;
            }
        }
    }

    #[test]
    fn idle_trace_is_printed_after_idle_period() {
        let (_exporter, provider, buf) = setup(Duration::from_millis(50));
        emit_flow(&provider, "orders.created");
        let ended = Instant::now();
        let early = buf.text();
        // Only meaningful if this thread was not descheduled for the period.
        if ended.elapsed() < Duration::from_millis(40) {
            assert_eq!(early, "", "printed before the trace went idle");
        }
        assert!(wait_for(&buf, |s| s.contains("process orders.created")));
        let out = buf.text();
        assert!(ended.elapsed() >= Duration::from_millis(45));
        let header = out.lines().next().unwrap_or("");
        assert!(
            header.starts_with("trace ") && header.ends_with("0abc"),
            "{out}"
        );
        assert!(out.contains("└─ publish orders.created"), "{out}");
        assert!(out.contains("   └─ process orders.created"), "{out}");
        assert!(
            out.ends_with("\n\n"),
            "blank line after each trace: {out:?}"
        );
    }

    #[test]
    fn force_flush_prints_immediately() {
        let (exporter, provider, buf) = setup(Duration::from_secs(3600));
        emit_flow(&provider, "a");
        emit_flow(&provider, "b");
        assert_eq!(buf.text(), "");
        exporter.force_flush().expect("flush");
        let out = buf.text();
        assert_eq!(out.matches("trace ").count(), 2, "{out}");
        assert!(
            out.find("publish a") < out.find("publish b"),
            "oldest first: {out}"
        );
        exporter.force_flush().expect("flush");
        assert_eq!(buf.text(), out, "nothing printed twice");
    }

    #[test]
    fn shutdown_prints_rest_and_stops_ticker() {
        let (exporter, provider, buf) = setup(Duration::from_secs(3600));
        emit_flow(&provider, "orders.created");
        assert!(exporter.inner.ticker_alive.load(Ordering::SeqCst));
        provider.shutdown().expect("shutdown");
        assert!(buf.text().contains("process orders.created"));
        let deadline = Instant::now() + Duration::from_secs(2);
        while exporter.inner.ticker_alive.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !exporter.inner.ticker_alive.load(Ordering::SeqCst),
            "ticker still running"
        );
        let late = data(TRACE, spec(1, 0, "late", SpanKind::Internal, 0, 1));
        assert!(block_on(exporter.export(vec![late])).is_err());
        assert!(matches!(
            exporter.shutdown(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }

    #[test]
    fn dropping_last_handle_prints_and_ends_ticker() {
        let buf = SharedBuf::default();
        let exporter = ConsoleTreeExporter::new(Box::new(buf.clone()), false)
            .with_idle(Duration::from_secs(3600));
        let span = data(TRACE, spec(1, 0, "pending", SpanKind::Internal, 0, 1));
        block_on(exporter.export(vec![span])).expect("export");
        let alive = Arc::clone(&exporter.inner.ticker_alive);
        drop(exporter);
        // The ticker may hold the last strong reference for a moment, in
        // which case the final print happens on its thread.
        assert!(wait_for(&buf, |s| s.contains("pending")));
        assert!(wait_for(&buf, |_| !alive.load(Ordering::SeqCst)));
    }

    #[test]
    fn full_buffer_is_printed_not_dropped() {
        let buf = SharedBuf::default();
        let exporter = ConsoleTreeExporter::new(Box::new(buf.clone()), false)
            .with_idle(Duration::from_secs(3600));
        lock(&exporter.inner.state).max_buffered = 5;
        let spans: Vec<SpanData> = (1..=5u64)
            .map(|i| data(u128::from(i), spec(i, 0, "s", SpanKind::Internal, i, i + 1)))
            .collect();
        block_on(exporter.export(spans[..4].to_vec())).expect("export");
        assert_eq!(buf.text(), "");
        block_on(exporter.export(spans[4..].to_vec())).expect("export");
        assert_eq!(buf.text().matches("trace ").count(), 5);
        assert_eq!(lock(&exporter.inner.state).buffered, 0);
    }

    #[test]
    fn concurrent_traces_do_not_interleave() {
        let buf = SharedBuf::default();
        let exporter = ConsoleTreeExporter::new(Box::new(buf.clone()), false)
            .with_idle(Duration::from_millis(20));
        let workers: Vec<_> = (0..8u64)
            .map(|w| {
                let exporter = exporter.clone();
                thread::spawn(move || {
                    for n in 0..20u64 {
                        let trace = u128::from(w * 1_000 + n + 1);
                        // One batch per trace, children first, so the idle
                        // ticker can never catch a trace half-exported.
                        let batch: Vec<SpanData> = (1..=4u64)
                            .rev()
                            .map(|i| {
                                let mut s =
                                    data(trace, spec(i, i - 1, "", SpanKind::Internal, i, 10));
                                s.name = format!("w{w}-n{n}-s{i}").into();
                                s
                            })
                            .collect();
                        block_on(exporter.export(batch)).expect("export");
                        if n % 5 == 0 {
                            exporter.force_flush().expect("flush");
                        }
                    }
                })
            })
            .collect();
        for h in workers {
            h.join().expect("worker");
        }
        exporter.force_flush().expect("flush");
        let out = buf.text();
        let blocks: Vec<&str> = out.split_terminator("\n\n").collect();
        assert_eq!(blocks.len(), 8 * 20, "{out}");
        for block in blocks {
            let lines: Vec<&str> = block.lines().collect();
            assert!(lines[0].starts_with("trace "), "{block}");
            assert_eq!(lines.len(), 5, "{block}");
            let tag = lines[1]
                .trim_start_matches(['└', '─', ' '])
                .rsplit_once("-s")
                .map(|(tag, _)| tag)
                .unwrap_or("?");
            for (depth, line) in lines[1..].iter().enumerate() {
                assert!(line.contains(&format!("{tag}-s{}", depth + 1)), "{block}");
            }
        }
    }

    #[test]
    fn debug_output_is_informative() {
        let exporter = ConsoleTreeExporter::new(Box::new(Vec::new()), true);
        let dbg = format!("{exporter:?}");
        assert!(
            dbg.contains("ConsoleTreeExporter") && dbg.contains("width: 80"),
            "{dbg}"
        );
    }
}
