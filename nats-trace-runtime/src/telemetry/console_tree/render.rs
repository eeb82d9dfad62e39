//! Rendering one trace as an indented tree of fixed-width lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;

const KIND_W: usize = 8;
const DUR_W: usize = 7;
const BAR_W: usize = 12;
const GAP: &str = "  ";
/// Columns taken by everything right of the name column.
const RIGHT_W: usize = GAP.len() + KIND_W + GAP.len() + DUR_W + GAP.len() + BAR_W;

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
    use super::super::test_spans::{TRACE, data, spec};
    use super::*;

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
}
