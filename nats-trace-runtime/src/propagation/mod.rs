//! Carrying the trace context in NATS headers.
//!
//! NATS header names are case-sensitive and restricted to printable ASCII
//! without `:`; values may not contain CR or LF. The injector skips what NATS
//! cannot carry instead of panicking, and the extractor tolerates anything a
//! peer may send: missing, duplicated, oddly cased or malformed headers all
//! end in a valid (possibly empty) context, never in an error.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::BaggagePropagator;

mod trace_context;

pub use trace_context::TraceContext;

/// Which propagator the runtime uses.
#[derive(Clone, Default)]
pub enum Propagation {
    /// `opentelemetry::global::get_text_map_propagator`, so an application
    /// that installs B3 or Jaeger propagation gets it.
    #[default]
    Global,
    /// A propagator given to the runtime builder, used instead of the global one.
    Custom(Arc<dyn TextMapPropagator + Send + Sync>),
}

impl std::fmt::Debug for Propagation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Propagation::Global => f.write_str("Global"),
            Propagation::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl Propagation {
    /// Reads the context a publisher put in `headers`.
    pub fn extract(&self, headers: Option<&HeaderMap>) -> Context {
        let Some(headers) = headers else {
            return Context::new();
        };
        let extractor = HeaderExtractor(headers);
        match self {
            Propagation::Global => opentelemetry::global::get_text_map_propagator(|p| {
                p.extract_with_context(&Context::new(), &extractor)
            }),
            Propagation::Custom(p) => p.extract_with_context(&Context::new(), &extractor),
        }
    }

    /// Writes `cx` into `headers`.
    pub fn inject(&self, cx: &Context, headers: &mut HeaderMap) {
        if cx.span().span_context().is_valid() {
            remove_stale_trace_state(headers);
        }
        let mut injector = HeaderInjector(headers);
        match self {
            Propagation::Global => opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(cx, &mut injector)
            }),
            Propagation::Custom(p) => p.inject_context(cx, &mut injector),
        }
    }
}

/// Drops a `tracestate` the caller's headers carry, e.g. copied from
/// another message, before a valid context is injected: it writes its own
/// when it has one
/// (the default propagator writes none when it is empty), and a stale one
/// must not describe a different trace than the new `traceparent`.
fn remove_stale_trace_state(headers: &mut HeaderMap) {
    let stale = |name: &str| name.eq_ignore_ascii_case("tracestate");
    if !headers.iter().any(|(name, _)| stale(name.as_ref())) {
        return;
    }
    let mut kept = HeaderMap::new();
    for (name, values) in headers.iter() {
        if !stale(name.as_ref()) {
            for value in values {
                kept.append(name.clone(), value.clone());
            }
        }
    }
    *headers = kept;
}

/// Set once a propagator was chosen from `OTEL_PROPAGATORS`, which may be
/// `none`: that choice must not be "fixed" by the default below.
static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// Marks the global propagator as chosen on purpose.
pub(crate) fn mark_configured() {
    CONFIGURED.store(true, Ordering::Relaxed);
}

/// The propagator the runtime installs when none was chosen: W3C Trace
/// Context (the fast [`TraceContext`]) and W3C Baggage.
pub fn default_propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContext::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// Installs W3C TraceContext + Baggage as the global propagator, unless the
/// application installed one itself (or `OTEL_PROPAGATORS` chose one). The
/// API's default global propagator is its no-op one, which is how an unset
/// propagator is recognised.
pub fn install_default_if_unset() {
    if CONFIGURED.load(Ordering::Relaxed) {
        return;
    }
    let unset = opentelemetry::global::get_text_map_propagator(|p| {
        format!("{p:?}").starts_with("NoopTextMapPropagator")
    });
    if unset {
        opentelemetry::global::set_text_map_propagator(default_propagator());
    }
}

/// Reads propagation fields from NATS headers.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl HeaderExtractor<'_> {
    fn values(&self, key: &str) -> Vec<&str> {
        if let Some(name) = header_name(key) {
            let exact: Vec<&str> = self.0.get_all(name).map(HeaderValue::as_str).collect();
            if !exact.is_empty() {
                return exact;
            }
        }
        self.case_insensitive(key)
            .flat_map(|values| values.iter().map(HeaderValue::as_str))
            .collect()
    }

    /// Values whose name matches `key` ignoring case: some clients
    /// capitalise (`Traceparent`), though NATS names are case-sensitive.
    fn case_insensitive<'k>(
        &self,
        key: &'k str,
    ) -> impl Iterator<Item = &Vec<HeaderValue>> + use<'_, 'k> {
        self.0
            .iter()
            .filter(move |(name, _)| AsRef::<str>::as_ref(*name).eq_ignore_ascii_case(key))
            .map(|(_, values)| values)
    }
}

/// The header name for a propagation field; the common ones without an
/// allocation, since this runs for every message.
fn header_name(key: &str) -> Option<HeaderName> {
    match key {
        "traceparent" => Some(HeaderName::from_static("traceparent")),
        "tracestate" => Some(HeaderName::from_static("tracestate")),
        "baggage" => Some(HeaderName::from_static("baggage")),
        other => HeaderName::from_str(other).ok(),
    }
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // One pass over the few headers a message carries, cheaper than
        // hashing the name for every field. An exact name wins over one
        // that only matches ignoring case.
        let mut loose = None;
        for (name, values) in self.0.iter() {
            let name: &str = name.as_ref();
            if name == key {
                if let Some(value) = values.first() {
                    return Some(value.as_str());
                }
            } else if loose.is_none() && name.eq_ignore_ascii_case(key) {
                loose = values.first();
            }
        }
        loose.map(HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values = self.values(key);
        (!values.is_empty()).then_some(values)
    }
}

/// Writes propagation fields into NATS headers, skipping any name or value
/// NATS cannot carry.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The same check `HeaderValue::from_str` makes, without copying the value.
        let line_break = memchr::memchr2(b'\r', b'\n', value.as_bytes()).is_some();
        let (Some(name), false) = (header_name(key), line_break) else {
            tracing::debug!(key, "skipping a propagation header NATS cannot carry");
            return;
        };
        self.0.insert(name, HeaderValue::from(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    fn propagation() -> Propagation {
        Propagation::Custom(Arc::new(TraceContextPropagator::new()))
    }

    fn sampled_context() -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id"),
            SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    }

    #[test]
    fn inject_then_extract_round_trips() {
        let mut headers = HeaderMap::new();
        propagation().inject(&sampled_context(), &mut headers);
        assert_eq!(
            headers.get("traceparent").map(HeaderValue::as_str),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let cx = propagation().extract(Some(&headers));
        assert_eq!(
            cx.span().span_context(),
            sampled_context().span().span_context()
        );
    }

    #[test]
    fn malformed_or_missing_traceparent_gives_an_empty_context() {
        for value in [
            "garbage",
            "00-zz-yy-01",
            "",
            "00-00000000000000000000000000000000-0000000000000000-01",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", value);
            let cx = propagation().extract(Some(&headers));
            assert!(
                !cx.span().span_context().is_valid(),
                "{value:?} must not parse"
            );
        }
        assert!(!propagation().extract(None).span().span_context().is_valid());
        assert!(
            !propagation()
                .extract(Some(&HeaderMap::new()))
                .span()
                .span_context()
                .is_valid()
        );
    }

    #[test]
    fn capitalised_header_names_are_found() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let cx = propagation().extract(Some(&headers));
        assert!(cx.span().span_context().is_valid());
    }

    #[test]
    fn duplicated_traceparent_uses_the_first() {
        let mut headers = HeaderMap::new();
        headers.append(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        headers.append("traceparent", "garbage");
        let cx = propagation().extract(Some(&headers));
        assert_eq!(
            cx.span().span_context().trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id")
        );
    }

    #[test]
    fn injecting_drops_a_stale_tracestate() {
        let mut headers = HeaderMap::new();
        headers.insert("tracestate", "old=1");
        headers.insert("Order-Id", "7");
        Propagation::Custom(Arc::new(TraceContext::new())).inject(&sampled_context(), &mut headers);
        assert_eq!(headers.get("tracestate"), None);
        assert_eq!(headers.get("Order-Id").map(HeaderValue::as_str), Some("7"));
        assert_eq!(
            headers.get("traceparent").map(HeaderValue::as_str),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
    }

    #[test]
    fn injector_skips_what_nats_cannot_carry() {
        let mut headers = HeaderMap::new();
        let mut injector = HeaderInjector(&mut headers);
        injector.set("bad:name", "v".into());
        injector.set("bad name", "v".into());
        injector.set("good", "line\r\nbreak".into());
        injector.set("good", "fine".into());
        assert_eq!(headers.len(), 1);
        assert_eq!(headers.get("good").map(HeaderValue::as_str), Some("fine"));
    }
}
