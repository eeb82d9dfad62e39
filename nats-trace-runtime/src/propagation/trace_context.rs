//! W3C Trace Context (`traceparent` / `tracestate`) without the formatting
//! machinery on the hot path.
//!
//! The SDK's `TraceContextPropagator` formats every `traceparent` through
//! `format!` and parses it by splitting into a `Vec`, and writes a
//! `tracestate` header even when it is empty. At a hundred thousand
//! messages a second that is a large share of the whole pipeline. This
//! propagator writes the canonical form with a lookup table and reads it
//! with a fixed-layout parser; anything that is not the canonical
//! version-00 form (other versions, whitespace, odd lengths) goes to the
//! SDK's propagator, so the accepted inputs and results are the SDK's.

use std::str::FromStr;

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The length of a version-00 `traceparent`: `00-{32}-{16}-{2}`.
const LENGTH: usize = 55;

/// W3C Trace Context propagation, as the SDK's `TraceContextPropagator`
/// does it, with a fast path for the canonical `traceparent` and no empty
/// `tracestate` header.
///
/// The runtime installs it (with baggage) as the global propagator when the
/// application installed none.
#[derive(Debug, Default, Clone)]
pub struct TraceContext {
    sdk: TraceContextPropagator,
}

impl TraceContext {
    /// The propagator.
    pub fn new() -> Self {
        TraceContext::default()
    }
}

static FIELDS: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| [TRACEPARENT.to_owned(), TRACESTATE.to_owned()]);

impl TextMapPropagator for TraceContext {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return;
        }
        injector.set(TRACEPARENT, traceparent(span_context));
        let state = span_context.trace_state().header();
        if !state.is_empty() {
            injector.set(TRACESTATE, state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(value) = extractor.get(TRACEPARENT) else {
            return cx.clone();
        };
        let Some((trace_id, span_id, flags)) = parse_canonical(value) else {
            return self.sdk.extract_with_context(cx, extractor);
        };
        let state = match extractor.get(TRACESTATE) {
            Some(state) if !state.is_empty() => TraceState::from_str(state).unwrap_or_default(),
            _ => TraceState::default(),
        };
        let span_context = SpanContext::new(trace_id, span_id, flags, true, state);
        if span_context.is_valid() {
            cx.with_remote_span_context(span_context)
        } else {
            cx.clone()
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&*FIELDS)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `00-{trace id}-{span id}-{flags}`, flags reduced to the sampled bit, as
/// the SDK writes it.
fn traceparent(span_context: &SpanContext) -> String {
    let mut out = [0u8; LENGTH];
    out[..3].copy_from_slice(b"00-");
    write_hex(&mut out[3..35], &span_context.trace_id().to_bytes());
    out[35] = b'-';
    write_hex(&mut out[36..52], &span_context.span_id().to_bytes());
    out[52] = b'-';
    let flags = (span_context.trace_flags() & TraceFlags::SAMPLED).to_u8();
    write_hex(&mut out[53..55], &[flags]);
    // Only ASCII hex digits and dashes were written, so this never fails.
    std::str::from_utf8(&out).map_or_else(|_| String::new(), str::to_owned)
}

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
}

/// The ids and sampled flag of a canonical version-00 `traceparent`
/// (lowercase hex, exact length), or `None` for anything else.
fn parse_canonical(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let bytes = value.as_bytes();
    if bytes.len() != LENGTH || &bytes[..3] != b"00-" || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    let mut flags = [0u8; 1];
    read_hex(&bytes[3..35], &mut trace_id)?;
    read_hex(&bytes[36..52], &mut span_id)?;
    read_hex(&bytes[53..55], &mut flags)?;
    Some((
        TraceId::from_bytes(trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::new(flags[0]) & TraceFlags::SAMPLED,
    ))
}

/// Lowercase hex only: the SDK rejects uppercase ids and flags.
fn read_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn context(trace: u128, span: u64, flags: u8, state: &str) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::new(flags),
            true,
            TraceState::from_str(state).expect("trace state"),
        ))
    }

    fn inject(propagator: &dyn TextMapPropagator, cx: &Context) -> HashMap<String, String> {
        let mut carrier = HashMap::new();
        propagator.inject_context(cx, &mut carrier);
        carrier
    }

    fn extract(
        propagator: &dyn TextMapPropagator,
        carrier: &HashMap<String, String>,
    ) -> SpanContext {
        propagator.extract(carrier).span().span_context().clone()
    }

    /// A few thousand contexts from a fixed-seed generator: ids with leading
    /// zeros, all flag bytes, with and without trace state.
    fn contexts() -> Vec<Context> {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        (0..4096)
            .map(|i| {
                let trace = (u128::from(next()) << 64 | u128::from(next())) >> (i % 128);
                let span = next() >> (i % 64);
                let state = if i % 3 == 0 {
                    "vendor=value,other=x"
                } else {
                    ""
                };
                context(trace, span, (i % 256) as u8, state)
            })
            .collect()
    }

    #[test]
    fn writes_what_the_sdk_writes_without_an_empty_tracestate() {
        let sdk = TraceContextPropagator::new();
        for cx in contexts() {
            let mut expected = inject(&sdk, &cx);
            if expected.get(TRACESTATE).is_some_and(String::is_empty) {
                expected.remove(TRACESTATE);
            }
            assert_eq!(inject(&TraceContext::new(), &cx), expected);
        }
    }

    #[test]
    fn reads_what_the_sdk_reads() {
        let sdk = TraceContextPropagator::new();
        for cx in contexts() {
            let carrier = inject(&sdk, &cx);
            assert_eq!(
                extract(&TraceContext::new(), &carrier),
                extract(&sdk, &carrier)
            );
        }
    }

    #[test]
    fn odd_inputs_give_the_sdk_result() {
        let sdk = TraceContextPropagator::new();
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut inputs = vec![
            valid.to_string(),
            format!(" {valid} "),
            format!("{valid}-"),
            valid.to_uppercase(),
            valid.replace("00-4b", "01-4b"),
            valid.replace("00-4b", "ff-4b"),
            valid.replace("-01", "-09"),
            valid.replace("-01", "-ff"),
            valid.replace("-01", "-0G"),
            "02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-XYZxsf09".into(),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01".into(),
            "00-abc-def-01".into(),
            "garbage".into(),
            String::new(),
            "é".repeat(27) + "x",
        ];
        // Every single-byte change of the valid header.
        for i in 0..valid.len() {
            for replacement in ['-', 'g', 'A', '0', ' '] {
                let mut changed = valid.to_string();
                changed.replace_range(i..=i, &replacement.to_string());
                inputs.push(changed);
            }
        }
        for input in inputs {
            for state in [None, Some(""), Some("a=1,b=2"), Some("not valid state")] {
                let mut carrier = HashMap::from([(TRACEPARENT.to_string(), input.clone())]);
                if let Some(state) = state {
                    carrier.insert(TRACESTATE.to_string(), state.to_string());
                }
                assert_eq!(
                    extract(&TraceContext::new(), &carrier),
                    extract(&sdk, &carrier),
                    "traceparent {input:?}, tracestate {state:?}"
                );
            }
        }
    }
}
