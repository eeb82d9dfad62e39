//! A small service configured only through the environment, as a user's
//! would be: `NATS_URL` and the `OTEL_*` variables. The OTLP export tests run
//! it as a child process and read what reaches their collector.
//!
//! It publishes `APP_MESSAGES` orders (default 3) to `app.orders`, which its
//! own handler processes, sends one request to its `app.quote` handler, then
//! stops and prints `REPORT ended=.. exported=.. dropped=.. processed=..`.
//!
//! With `APP_MODE=global` it first installs its own global tracer provider
//! (in memory, sampling every span, whatever its parent) and a custom
//! propagator, as an application that set up OpenTelemetry itself, and
//! prints `RESPECTED in_memory=.. custom_header=.. foreign=..`: its spans,
//! the messages its propagator wrote, and the spans that are not the
//! runtime's.
//!
//! With `APP_MODE=meter` it first installs only a global meter provider of
//! its own (in memory), leaving the traces to the environment, and prints
//! `METERED metered=.. after_stop=..`: the messages its provider counted in
//! `messaging.process.duration`, and whether it still is the global meter
//! provider once the runtime stopped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nats_trace_runtime::prelude::*;
use nats_trace_runtime::runtime;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Order {
    id: u32,
}

static PROCESSED: AtomicUsize = AtomicUsize::new(0);
static CUSTOM_HEADER_SEEN: AtomicUsize = AtomicUsize::new(0);

#[nats_subscriber(subject = "app.orders", queue = "app")]
async fn take(_order: Order, ctx: MessageContext) {
    if ctx.header("x-app-trace").is_some() {
        CUSTOM_HEADER_SEEN.fetch_add(1, Ordering::Relaxed);
    }
    PROCESSED.fetch_add(1, Ordering::Relaxed);
}

#[nats_subscriber(subject = "app.quote")]
async fn quote(order: Order) -> u32 {
    order.id * 10
}

/// A propagator of the application's own, to prove it is used as is.
#[derive(Debug)]
struct AppPropagator;

impl TextMapPropagator for AppPropagator {
    fn inject_context(&self, _cx: &opentelemetry::Context, injector: &mut dyn Injector) {
        injector.set("x-app-trace", "1".into());
    }

    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        _extractor: &dyn Extractor,
    ) -> opentelemetry::Context {
        cx.clone()
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        const FIELDS: &[String] = &[];
        // Declares no fields on purpose: the runtime must recognise an
        // installed propagator by what it is, not by what it declares.
        opentelemetry::propagation::text_map_propagator::FieldIter::new(FIELDS)
    }
}

/// The sum of a histogram's counts over its data points, in the newest
/// export that has it (the exporter keeps cumulative snapshots).
fn histogram_count(exported: &[ResourceMetrics], name: &str) -> u64 {
    exported
        .iter()
        .rev()
        .flat_map(|resource| resource.scope_metrics())
        .flat_map(|scope| scope.metrics())
        .find(|metric| metric.name() == name)
        .map(|metric| match metric.data() {
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                histogram.data_points().map(|point| point.count()).sum()
            }
            _ => 0,
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::var("APP_MODE").unwrap_or_default();
    let global = mode == "global";
    let memory = InMemorySpanExporter::default();
    if global {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_simple_exporter(memory.clone())
            .build();
        opentelemetry::global::set_tracer_provider(provider);
        opentelemetry::global::set_text_map_propagator(AppPropagator);
    }
    let metered = (mode == "meter").then(|| {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        (provider, exporter)
    });
    let messages: u32 = std::env::var("APP_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);

    let running = runtime::builder().logging(false).start().await?;
    let publisher = Publisher::current()?;
    for id in 0..messages {
        publisher.publish("app.orders", &Order { id }).await?;
    }
    let answer: u32 = publisher
        .request("app.quote", &Order { id: 4 }, Duration::from_secs(5))
        .await?;
    assert_eq!(answer, 40);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while PROCESSED.load(Ordering::Relaxed) < messages as usize
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = running.stop().await?;
    let spans = report.spans.unwrap_or_default();
    println!(
        "REPORT ended={} exported={} dropped={} processed={}",
        spans.ended,
        spans.exported,
        spans.dropped,
        PROCESSED.load(Ordering::Relaxed)
    );
    if let Some((provider, exporter)) = metered {
        // Recorded through the global provider after the runtime stopped.
        opentelemetry::global::meter("otel-app")
            .u64_counter("app.after_stop")
            .build()
            .add(1, &[]);
        provider.force_flush()?;
        let exported = exporter.get_finished_metrics()?;
        println!(
            "METERED metered={} after_stop={}",
            histogram_count(&exported, "messaging.process.duration"),
            exported
                .iter()
                .flat_map(|resource| resource.scope_metrics())
                .flat_map(|scope| scope.metrics())
                .any(|metric| metric.name() == "app.after_stop") as u8
        );
    }
    if global {
        let spans = memory.get_finished_spans().unwrap_or_default();
        let foreign = spans
            .iter()
            .filter(|span| span.instrumentation_scope.name() != "nats-trace")
            .count();
        println!(
            "RESPECTED in_memory={} custom_header={} foreign={foreign}",
            spans.len(),
            CUSTOM_HEADER_SEEN.load(Ordering::Relaxed)
        );
    }
    Ok(())
}
