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

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

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

const KIND_W: usize = 8;
const DUR_W: usize = 7;
const BAR_W: usize = 12;
const GAP: &str = "  ";
/// Columns taken by everything right of the name column.
const RIGHT_W: usize = GAP.len() + KIND_W + GAP.len() + DUR_W + GAP.len() + BAR_W;

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

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// Render the spans of one trace as a tree, one string with `\n` after every
/// line and no trailing blank line.
///
/// The header names the trace id of the first span; the slice is expected to
/// hold one trace. Spans whose parent is not in the slice (remote parent, or
/// parent printed earlier) become roots; siblings are ordered by start time.
/// Every line is at most `width` characters wide (counting chars, ignoring
/// ANSI codes); with `color == false` the output has no escape codes at all.
/// Returns an empty string for an empty slice.
pub fn render_trace(spans: &[SpanData], width: usize, color: bool) -> String {
    let mut out = String::new();
    let Some(first) = spans.first() else {
        return out;
    };

    let mut header = Line::default();
    header.push(
        format!("trace {}", first.span_context.trace_id()),
        Style::Dim,
    );
    header.truncate_to(width);
    header.render(color, &mut out);

    let rows = layout(spans, width);
    let timeline = Timeline::of(spans);
    let max_left = rows
        .iter()
        .map(|r| {
            let marker = if is_error(&spans[r.idx]) { 2 } else { 0 };
            r.prefix.chars().count() + marker + spans[r.idx].name.chars().count()
        })
        .max()
        .unwrap_or(0);
    let name_col = max_left.min(width.saturating_sub(RIGHT_W));

    for row in &rows {
        let span = &spans[row.idx];
        let error = match &span.status {
            Status::Error { description } => Some(description),
            _ => None,
        };
        let bar_style = if error.is_some() {
            Style::Red
        } else {
            Style::Bar
        };

        let mut line = Line::default();
        line.push(row.prefix.clone(), Style::Dim);
        if error.is_some() {
            line.push("✗ ", Style::Red);
        }
        line.push(sanitize(&span.name), Style::Bold);
        line.truncate_to(name_col);
        line.pad_to(name_col);
        let kind = kind_label(&span.span_kind);
        line.push(GAP, Style::Plain);
        line.push(kind, Style::Kind);
        line.push(" ".repeat(KIND_W.saturating_sub(kind.len())), Style::Plain);
        line.push(GAP, Style::Plain);
        let dur = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default();
        line.push(format!("{:>DUR_W$}", format_duration(dur)), Style::Plain);
        line.push(GAP, Style::Plain);
        let (offset, cells) = timeline.cells(span);
        line.push(" ".repeat(offset), Style::Plain);
        line.push("━".repeat(cells), bar_style);
        line.truncate_to(width);
        line.render(color, &mut out);

        // Detail lines hang below the span, keeping the vertical rule to its
        // children (if any) so the tree stays connected.
        let detail_prefix = format!(
            "{}{}",
            row.child_prefix,
            if row.has_children { "│  " } else { "   " }
        );

        let attrs = key_attributes(&span.attributes);
        if !attrs.is_empty() {
            let mut line = Line::default();
            line.push(detail_prefix.clone(), Style::Dim);
            for (i, (key, value)) in attrs.iter().enumerate() {
                if i > 0 {
                    line.push(" ", Style::Plain);
                }
                line.push(format!("{key}="), Style::Dim);
                line.push(value.clone(), Style::Plain);
            }
            line.truncate_to(width);
            line.render(color, &mut out);
        }

        if let Some(description) = error.filter(|d| !d.is_empty()) {
            let mut line = Line::default();
            line.push(detail_prefix, Style::Dim);
            line.push(format!("error: {}", sanitize(description)), Style::Red);
            line.truncate_to(width);
            line.render(color, &mut out);
        }
    }
    out
}

fn is_error(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
}

fn kind_label(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Client => "CLIENT",
        SpanKind::Server => "SERVER",
        SpanKind::Producer => "PRODUCER",
        SpanKind::Consumer => "CONSUMER",
        SpanKind::Internal => "INTERNAL",
    }
}

/// Compact duration with at most 7 columns, e.g. `812µs`, `3.4ms`, `1.20s`.
fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let secs = d.as_secs();
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", ns / 1_000)
    } else if ns < 100_000_000 {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else if ns < 1_000_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else if secs < 60 {
        format!("{:.2}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Span names and error texts come from application code; control
/// characters would break the one-line layout or inject escape codes.
fn sanitize(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// The attributes worth a glance, as `(short key, value)`, most useful first
/// so truncation cuts the least interesting ones.
fn key_attributes(attrs: &[KeyValue]) -> Vec<(Cow<'static, str>, String)> {
    let find = |k: &str| attrs.iter().find(|kv| kv.key.as_str() == k);
    let port = find("server.port").map(|kv| kv.value.as_str().into_owned());
    let has_address = find("server.address").is_some();

    let mut picked: Vec<(u8, Cow<'static, str>, String)> = Vec::new();
    for kv in attrs {
        let key = kv.key.as_str();
        match key {
            "server.address" => {
                let addr = kv.value.as_str();
                let value = match &port {
                    // Bracket IPv6 so the port separator stays unambiguous.
                    Some(p) if addr.contains(':') => format!("[{addr}]:{p}"),
                    Some(p) => format!("{addr}:{p}"),
                    None => addr.into_owned(),
                };
                picked.push((5, Cow::Borrowed("server"), quote(&value)));
            }
            "server.port" if !has_address => {
                picked.push((5, Cow::Borrowed("server.port"), format_value(&kv.value)));
            }
            "error.type" => {
                // First: when something failed, what failed matters most.
                picked.push((0, Cow::Borrowed("error.type"), format_value(&kv.value)));
            }
            _ => {
                let Some(short) = key.strip_prefix("messaging.") else {
                    continue;
                };
                // system and operation repeat what name and kind already say;
                // the destination template is the span name itself.
                if short == "system"
                    || short == "operation"
                    || short.starts_with("operation.")
                    || short == "destination.template"
                {
                    continue;
                }
                // `message.body.size` reads fine as `body.size`; `message.id`
                // keeps its prefix because a bare `id` would be ambiguous.
                let short = short
                    .strip_prefix("message.")
                    .filter(|rest| rest.starts_with("body.") || rest.starts_with("envelope."))
                    .unwrap_or(short);
                let rank = match short {
                    "destination.name" => 1,
                    "consumer.group.name" => 2,
                    _ if short.starts_with("nats.") => 3,
                    _ => 4,
                };
                let key = Cow::Owned(sanitize(short).into_owned());
                picked.push((rank, key, format_value(&kv.value)));
            }
        }
    }
    picked.sort_by_key(|(rank, _, _)| *rank);
    picked.into_iter().map(|(_, k, v)| (k, v)).collect()
}

fn format_value(v: &Value) -> String {
    quote(&v.as_str())
}

/// Quote values that would otherwise blur the `k=v k=v` layout.
fn quote(s: &str) -> String {
    let needs_quotes = s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if needs_quotes {
        format!("{s:?}")
    } else {
        s.to_owned()
    }
}

struct Row {
    idx: usize,
    /// Connector prefix of the span line, e.g. `│  ├─ `.
    prefix: String,
    /// Prefix for everything hanging below this span, e.g. `│  │  `.
    child_prefix: String,
    has_children: bool,
}

/// Depth-first rows of the span tree. Iterative, because a deep (or corrupt)
/// trace must not overflow the stack of the exporter thread.
fn layout(spans: &[SpanData], width: usize) -> Vec<Row> {
    let n = spans.len();
    let mut by_id: HashMap<SpanId, usize> = HashMap::with_capacity(n);
    for (i, s) in spans.iter().enumerate() {
        by_id.entry(s.span_context.span_id()).or_insert(i);
    }
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots: Vec<usize> = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match by_id.get(&s.parent_span_id) {
            Some(&p) if s.parent_span_id != SpanId::INVALID && p != i => {
                parent[i] = Some(p);
                children[p].push(i);
            }
            _ => roots.push(i),
        }
    }

    // Parent links that form a cycle (only possible with corrupt data) are
    // unreachable from any root; promote their earliest span to a root so
    // nothing is silently left out.
    let mut reached = vec![false; n];
    mark_reachable(&roots, &children, &mut reached);
    while let Some(orphan) = (0..n)
        .filter(|&i| !reached[i])
        .min_by_key(|&i| (spans[i].start_time, i))
    {
        if let Some(p) = parent[orphan].take() {
            children[p].retain(|&c| c != orphan);
        }
        roots.push(orphan);
        mark_reachable(&[orphan], &children, &mut reached);
    }

    let by_start =
        |a: &usize, b: &usize| (spans[*a].start_time, *a).cmp(&(spans[*b].start_time, *b));
    roots.sort_by(by_start);
    for c in &mut children {
        c.sort_by(by_start);
    }

    let mut rows = Vec::with_capacity(n);
    // (span, prefix of its parent's continuation, is last sibling)
    let mut stack: Vec<(usize, Arc<str>, bool)> = Vec::new();
    let top: Arc<str> = Arc::from("");
    for (pos, &r) in roots.iter().enumerate().rev() {
        stack.push((r, Arc::clone(&top), pos + 1 == roots.len()));
    }
    while let Some((idx, cont, last)) = stack.pop() {
        // Past the line width a longer prefix is cut anyway; not growing it
        // keeps memory linear for absurdly deep traces.
        let deep = cont.chars().count() >= width;
        let grow = |piece: &str| -> String {
            if deep {
                cont.to_string()
            } else {
                format!("{cont}{piece}")
            }
        };
        let prefix = grow(if last { "└─ " } else { "├─ " });
        let child_prefix = grow(if last { "   " } else { "│  " });
        let kids = &children[idx];
        let shared: Arc<str> = Arc::from(child_prefix.as_str());
        for (pos, &c) in kids.iter().enumerate().rev() {
            stack.push((c, Arc::clone(&shared), pos + 1 == kids.len()));
        }
        rows.push(Row {
            idx,
            prefix,
            child_prefix,
            has_children: !kids.is_empty(),
        });
    }
    rows
}

fn mark_reachable(from: &[usize], children: &[Vec<usize>], reached: &mut [bool]) {
    let mut stack: Vec<usize> = from.to_vec();
    while let Some(i) = stack.pop() {
        if !reached[i] {
            reached[i] = true;
            stack.extend(children[i].iter().copied());
        }
    }
}

/// Maps span times onto the `BAR_W` cells of the duration bar.
struct Timeline {
    start: SystemTime,
    total_ns: u128,
}

impl Timeline {
    fn of(spans: &[SpanData]) -> Self {
        let start = spans
            .iter()
            .map(|s| s.start_time)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let end = spans.iter().map(|s| s.end_time).max().unwrap_or(start);
        let total_ns = end.duration_since(start).unwrap_or_default().as_nanos();
        Self { start, total_ns }
    }

    /// `(blank cells before the bar, bar cells)`; always at least one bar
    /// cell so even instant spans are visible.
    fn cells(&self, span: &SpanData) -> (usize, usize) {
        if self.total_ns == 0 {
            return (0, 1);
        }
        let w = BAR_W as u128;
        let off = span
            .start_time
            .duration_since(self.start)
            .unwrap_or_default()
            .as_nanos();
        let len = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default()
            .as_nanos();
        let first = (off * w / self.total_ns).min(w - 1);
        let end = ((off + len) * w).div_ceil(self.total_ns).min(w);
        let cells = end.saturating_sub(first).max(1);
        // Both values are at most BAR_W, so the casts cannot truncate.
        (first as usize, cells as usize)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Dim,
    Bold,
    Kind,
    Bar,
    Red,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Dim => "\x1b[2m",
            Style::Bold => "\x1b[1m",
            Style::Kind => "\x1b[36m",
            Style::Bar => "\x1b[32m",
            Style::Red => "\x1b[31m",
        }
    }
}

/// A line kept as styled segments so widths are measured on the visible text
/// and escape codes are added only when rendering.
#[derive(Default)]
struct Line {
    segments: Vec<(String, Style)>,
}

impl Line {
    fn push(&mut self, text: impl Into<String>, style: Style) {
        self.segments.push((text.into(), style));
    }

    fn width(&self) -> usize {
        self.segments.iter().map(|(t, _)| t.chars().count()).sum()
    }

    fn pad_to(&mut self, width: usize) {
        let w = self.width();
        if w < width {
            self.push(" ".repeat(width - w), Style::Plain);
        }
    }

    /// Cut to at most `max` columns, ending in `…` when anything was cut.
    fn truncate_to(&mut self, max: usize) {
        if self.width() <= max {
            return;
        }
        let mut budget = max.saturating_sub(1);
        let mut kept: Vec<(String, Style)> = Vec::new();
        for (text, style) in self.segments.drain(..) {
            if budget == 0 {
                break;
            }
            let n = text.chars().count();
            if n <= budget {
                budget -= n;
                kept.push((text, style));
            } else {
                kept.push((text.chars().take(budget).collect(), style));
                budget = 0;
            }
        }
        if max > 0 {
            // Same style as the cut text, so a cut name stays bold.
            let style = kept.last().map_or(Style::Plain, |(_, s)| *s);
            kept.push(("…".to_owned(), style));
        }
        self.segments = kept;
    }

    fn render(&self, color: bool, out: &mut String) {
        for (text, style) in &self.segments {
            if text.is_empty() {
                continue;
            }
            if color && *style != Style::Plain {
                out.push_str(style.sgr());
                out.push_str(text);
                out.push_str("\x1b[0m");
            } else {
                out.push_str(text);
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        Span as _, SpanContext, TraceContextExt as _, TraceFlags, TraceState, Tracer as _,
        TracerProvider as _,
    };
    use opentelemetry::{Context, InstrumentationScope};
    use opentelemetry_sdk::trace::{
        IdGenerator, SdkTracerProvider, SimpleSpanProcessor, SpanEvents, SpanLinks,
    };
    use std::future::Future;
    use std::sync::atomic::AtomicU64;
    use std::task::{Context as TaskContext, Poll, Waker};

    const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;

    fn t(us: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_micros(us)
    }

    struct Spec {
        id: u64,
        parent: u64,
        name: &'static str,
        kind: SpanKind,
        start_us: u64,
        end_us: u64,
        attrs: Vec<KeyValue>,
        status: Status,
    }

    fn spec(
        id: u64,
        parent: u64,
        name: &'static str,
        kind: SpanKind,
        start: u64,
        end: u64,
    ) -> Spec {
        Spec {
            id,
            parent,
            name,
            kind,
            start_us: start,
            end_us: end,
            attrs: Vec::new(),
            status: Status::Unset,
        }
    }

    fn data(trace: u128, s: Spec) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(s.id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(s.parent),
            parent_span_is_remote: false,
            span_kind: s.kind,
            name: s.name.into(),
            start_time: t(s.start_us),
            end_time: t(s.end_us),
            attributes: s.attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: s.status,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    fn publish_process_reply() -> Vec<SpanData> {
        let mut publish = spec(1, 0, "publish orders.created", SpanKind::Producer, 0, 400);
        publish.attrs = vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.destination.name", "orders.created"),
            KeyValue::new("server.address", "127.0.0.1"),
            KeyValue::new("server.port", 4222),
        ];
        let mut process = spec(2, 1, "process orders.*", SpanKind::Consumer, 600, 2_400);
        process.attrs = vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.template", "orders.*"),
            KeyValue::new("messaging.destination.name", "orders.created"),
            KeyValue::new("messaging.message.body.size", 87),
            KeyValue::new("messaging.consumer.group.name", "billing"),
        ];
        let mut reply = spec(
            3,
            2,
            "publish _INBOX.reply",
            SpanKind::Producer,
            2_000,
            2_300,
        );
        reply.attrs = vec![KeyValue::new("messaging.destination.name", "_INBOX.abc.1")];
        // Out of order on purpose, as spans arrive when they end.
        vec![
            data(TRACE, reply),
            data(TRACE, process),
            data(TRACE, publish),
        ]
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn assert_fits(out: &str, width: usize) {
        for line in strip_ansi(out).lines() {
            assert!(
                line.chars().count() <= width,
                "line wider than {width}: {line:?} ({} chars)",
                line.chars().count()
            );
        }
    }

    #[test]
    fn renders_publish_process_reply_tree() {
        let out = render_trace(&publish_process_reply(), 80, false);
        println!("{out}");
        let expected = "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ publish orders.created      PRODUCER    400µs  ━━
   │  destination.name=orders.created server=127.0.0.1:4222
   └─ process orders.*         CONSUMER    1.8ms     ━━━━━━━━━
      │  destination.name=orders.created consumer.group.name=billing body.size=…
      └─ publish _INBOX.reply  PRODUCER    300µs            ━━
            destination.name=_INBOX.abc.1
";
        assert_eq!(out, expected);
        assert_fits(&out, 80);
    }

    #[test]
    fn remote_or_missing_parent_becomes_root() {
        // Parent 99 lives in another process; 5 hangs below the local root.
        let spans = vec![
            data(TRACE, spec(5, 4, "child", SpanKind::Internal, 20, 30)),
            data(
                TRACE,
                spec(4, 99, "process remote", SpanKind::Consumer, 10, 40),
            ),
            data(TRACE, spec(7, 0, "other root", SpanKind::Internal, 50, 60)),
        ];
        let out = render_trace(&spans, 80, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[1].starts_with("├─ process remote "), "{out}");
        assert!(lines[2].starts_with("│  └─ child "), "{out}");
        assert!(lines[3].starts_with("└─ other root "), "{out}");
    }

    #[test]
    fn siblings_are_ordered_by_start_time() {
        let spans = vec![
            data(TRACE, spec(1, 0, "root", SpanKind::Server, 0, 100)),
            data(TRACE, spec(4, 1, "third", SpanKind::Client, 70, 80)),
            data(TRACE, spec(2, 1, "first", SpanKind::Client, 10, 20)),
            data(TRACE, spec(3, 1, "second", SpanKind::Client, 40, 50)),
        ];
        let out = render_trace(&spans, 80, false);
        let pos = |n: &str| out.find(n).unwrap_or(usize::MAX);
        assert!(
            pos("first") < pos("second") && pos("second") < pos("third"),
            "{out}"
        );
        assert!(out.contains("└─ third"), "{out}");
        assert!(out.contains("├─ first"), "{out}");
    }

    #[test]
    fn kinds_and_durations_line_up() {
        let out = render_trace(&publish_process_reply(), 80, false);
        let span_lines: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("PRODUCER") || l.contains("CONSUMER"))
            .collect();
        assert_eq!(span_lines.len(), 3);
        let kind_col = |l: &str| {
            let byte = l
                .find("PRODUCER")
                .or_else(|| l.find("CONSUMER"))
                .unwrap_or(0);
            l[..byte].chars().count()
        };
        let col = kind_col(span_lines[0]);
        assert!(span_lines.iter().all(|l| kind_col(l) == col), "{out}");
    }

    #[test]
    fn lines_never_exceed_width() {
        let long: &'static str = Box::leak("x".repeat(300).into_boxed_str());
        let mut spans = Vec::new();
        // A deep chain of long names, each carrying many attributes.
        for i in 1..=30u64 {
            let mut s = spec(i, i - 1, long, SpanKind::Consumer, i, 1_000 + i);
            s.attrs = (0..40)
                .map(|k| KeyValue::new(format!("messaging.nats.attr{k}"), "some-rather-long-value"))
                .collect();
            s.status = Status::error("boom ".repeat(50));
            spans.push(data(TRACE, s));
        }
        for width in [80, 120, 40, 33, 10, 1, 0] {
            for color in [false, true] {
                let out = render_trace(&spans, width, color);
                assert_fits(&out, width);
                if width >= 10 {
                    assert!(out.contains('…'), "nothing truncated at {width}");
                }
            }
        }
        let out = render_trace(&spans, 80, false);
        assert_eq!(out.lines().count(), 1 + 30 * 3);
    }

    #[test]
    fn unicode_counts_as_one_column() {
        let name: &'static str =
            "verarbeite bestellung ✓ für café µ-service ━━ ünïcödé ünïcödé ünïcödé";
        let spans = vec![data(TRACE, spec(1, 0, name, SpanKind::Internal, 0, 812))];
        let out = render_trace(&spans, 80, false);
        assert_fits(&out, 80);
        assert!(
            out.lines().nth(1).is_some_and(|l| l.chars().count() > 70),
            "{out}"
        );
    }

    #[test]
    fn no_escape_codes_without_color() {
        let mut spans = publish_process_reply();
        spans[0].status = Status::error("timeout");
        let plain = render_trace(&spans, 80, false);
        assert!(!plain.contains('\x1b'));
        let colored = render_trace(&spans, 80, true);
        assert!(colored.contains("\x1b[1m") && colored.contains("\x1b[31m"));
        assert_eq!(strip_ansi(&colored), plain);
    }

    #[test]
    fn control_characters_are_neutralised() {
        let mut s = spec(1, 0, "evil\x1b[31m\nname", SpanKind::Internal, 0, 10);
        s.attrs = vec![KeyValue::new("messaging.destination.name", "a\nb c")];
        s.status = Status::error("line1\nline2");
        let out = render_trace(&[data(TRACE, s)], 80, false);
        assert!(!out.contains('\x1b'), "{out:?}");
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(out.contains(r#"destination.name="a\nb c""#), "{out}");
    }

    #[test]
    fn error_spans_get_marker_and_error_line() {
        let mut s = spec(1, 0, "process orders.*", SpanKind::Consumer, 0, 1_000);
        s.attrs = vec![KeyValue::new("error.type", "timeout")];
        s.status = Status::error("handler timed out after 1s");
        let ok = spec(2, 1, "publish reply", SpanKind::Producer, 100, 200);
        let out = render_trace(&[data(TRACE, s), data(TRACE, ok)], 80, false);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("└─ ✗ process orders.*"), "{out}");
        assert_eq!(lines[2], "   │  error.type=timeout");
        assert_eq!(lines[3], "   │  error: handler timed out after 1s");
        assert!(!lines[4].contains('✗'), "{out}");
        assert_eq!(out.matches('✗').count(), 1);

        let colored = render_trace(
            &[data(TRACE, spec(9, 0, "x", SpanKind::Internal, 0, 1))],
            80,
            true,
        );
        assert!(!colored.contains("\x1b[31m"), "ok spans have no red");
    }

    #[test]
    fn attribute_line_is_filtered_and_shortened() {
        let mut s = spec(1, 0, "process ORDERS", SpanKind::Consumer, 0, 10);
        s.attrs = vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.template", "orders.*"),
            KeyValue::new("server.port", 4222),
            KeyValue::new("messaging.nats.stream", "ORDERS"),
            KeyValue::new("messaging.nats.delivery_count", 2),
            KeyValue::new("thread.id", 7),
            KeyValue::new("server.address", "::1"),
            KeyValue::new("messaging.consumer.group.name", "billing"),
            KeyValue::new("messaging.destination.name", "orders.created"),
        ];
        let out = render_trace(&[data(TRACE, s)], 200, false);
        assert_eq!(
            out.lines().nth(2),
            Some(
                "      destination.name=orders.created consumer.group.name=billing \
                 nats.stream=ORDERS nats.delivery_count=2 server=[::1]:4222"
            ),
            "{out}"
        );

        let mut bare = spec(1, 0, "publish x", SpanKind::Producer, 0, 10);
        bare.attrs = vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.name", "publish"),
        ];
        assert_eq!(
            render_trace(&[data(TRACE, bare)], 80, false)
                .lines()
                .count(),
            2
        );
    }

    #[test]
    fn durations_are_compact() {
        let cases = [
            (Duration::from_nanos(850), "850ns"),
            (Duration::from_micros(812), "812µs"),
            (Duration::from_micros(3_400), "3.4ms"),
            (Duration::from_micros(45_250), "45.2ms"),
            (Duration::from_millis(812), "812ms"),
            (Duration::from_millis(1_200), "1.20s"),
            (Duration::from_secs(125), "2m05s"),
            (Duration::from_secs(3 * 3600 + 7 * 60), "3h07m"),
        ];
        for (d, s) in cases {
            assert_eq!(format_duration(d), s);
            assert!(s.chars().count() <= DUR_W);
        }
    }

    #[test]
    fn bar_shows_position_in_trace() {
        let spans = vec![
            data(TRACE, spec(1, 0, "a", SpanKind::Internal, 0, 1_200)),
            data(TRACE, spec(2, 1, "b", SpanKind::Internal, 600, 700)),
            data(TRACE, spec(3, 1, "c", SpanKind::Internal, 1_200, 1_200)),
        ];
        let tl = Timeline::of(&spans);
        assert_eq!(tl.cells(&spans[0]), (0, 12));
        assert_eq!(tl.cells(&spans[1]), (6, 1));
        assert_eq!(tl.cells(&spans[2]), (11, 1));
        assert_eq!(Timeline::of(&spans[2..]).cells(&spans[2]), (0, 1));
    }

    #[test]
    fn parent_cycle_does_not_lose_spans() {
        let spans = vec![
            data(TRACE, spec(1, 2, "a", SpanKind::Internal, 0, 10)),
            data(TRACE, spec(2, 1, "b", SpanKind::Internal, 5, 10)),
            data(TRACE, spec(3, 3, "self", SpanKind::Internal, 7, 10)),
        ];
        let out = render_trace(&spans, 80, false);
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(render_trace(&[], 80, false).is_empty());
    }

    // ---- exporter ---------------------------------------------------------

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
