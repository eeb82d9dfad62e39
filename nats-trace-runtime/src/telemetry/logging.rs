//! Console logging that shows which trace a log line belongs to.

use std::fmt;
use std::io::IsTerminal;

use opentelemetry::trace::TraceContextExt;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// A timestamp followed by the current OpenTelemetry `trace_id` and
/// `span_id`, when a span is current: the ids land at the front of every
/// log line written inside a handler, in the timestamp's dimmed color.
#[derive(Debug, Default, Clone, Copy)]
pub struct TimeAndTraceIds;

impl FormatTime for TimeAndTraceIds {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        SystemTime.format_time(w)?;
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let ids = span.span_context();
        if ids.is_valid() {
            write!(w, " trace_id={} span_id={}", ids.trace_id(), ids.span_id())?;
        }
        Ok(())
    }
}

/// The default console logging: `RUST_LOG` when set, else `info` (with the
/// NATS client's own chatter at `warn`), trace ids on every line written
/// inside a span, and colors when `color` is true.
pub fn subscriber<W>(writer: W, color: bool) -> impl Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_timer(TimeAndTraceIds)
        .with_writer(writer)
        .finish()
}

/// Installs [`subscriber`] on stdout, unless the application installed a
/// `tracing` subscriber already; that one is kept. Colors only on a
/// terminal, and never when `NO_COLOR` is set.
pub(crate) fn install_default() {
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    // Fails only when a subscriber is already installed.
    let _ = tracing::subscriber::set_global_default(subscriber(std::io::stdout, color));
}
