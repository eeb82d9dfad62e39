//! Spans built by hand for the renderer's and the exporter's tests.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

pub(super) const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;

pub(super) fn t(us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_micros(us)
}

pub(super) struct Spec {
    pub(super) id: u64,
    pub(super) parent: u64,
    pub(super) name: &'static str,
    pub(super) kind: SpanKind,
    pub(super) start_us: u64,
    pub(super) end_us: u64,
    pub(super) attrs: Vec<KeyValue>,
    pub(super) status: Status,
}

pub(super) fn spec(
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

pub(super) fn data(trace: u128, s: Spec) -> SpanData {
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
