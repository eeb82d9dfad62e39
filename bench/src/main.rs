//! Throughput and CPU per message of traced handlers against raw
//! async-nats, measured in one run against one local nats-server.
//!
//! ```text
//! cargo run --release -p nats-trace-bench -- [--messages 300000] [--size 100] [--rounds 3]
//! ```
//!
//! `--features mimalloc` runs every variant on mimalloc instead of the
//! system's malloc.
//!
//! Variants, each closed-loop (the publisher stays at most `WINDOW` messages
//! ahead of the subscriber, so core NATS drops nothing; every message is
//! counted on arrival):
//! - `raw`: async-nats publish, and a plain subscription that decodes the JSON;
//! - `raw+header`: the same with a fixed, sampled `traceparent` header read
//!   on arrival, the floor for any instrumentation that propagates a sampled
//!   trace (not a ratio of the `RESULT` line);
//! - `raw+header 00`: the same with an unsampled `traceparent` (flags `00`),
//!   the floor of the unsampled variant. nats-server looks for a message
//!   trace destination whenever a `traceparent` is sampled, copying every
//!   header of the message into a map first, so a sampled one costs the
//!   server more;
//! - `2 SDK spans`: the OpenTelemetry SDK alone, no NATS: a PRODUCER span and
//!   its CONSUMER child per message through the same batch processor, the
//!   CPU floor of any SDK-based tracing of a message (CPU only);
//! - `sampled`: `Publisher::publish` and a `#[nats_subscriber]` handler, every
//!   span sampled and fed through the batch processor to a discarding exporter;
//! - `unsampled`: the same with parent-based sampling and an unsampled root:
//!   propagation only;
//! - `unsampled+metrics`: `unsampled` with an SDK meter provider whose
//!   periodic reader exports to a discarding exporter, as an application
//!   exporting metrics has: what recording the runtime's metrics costs on
//!   top (the reader exports once a minute, after the measurement; not a
//!   ratio of the `RESULT` line);
//! - `by-hand sampled` / `by-hand unsampled`: the tracing the macros
//!   replace, written by hand in the style the project started from (the
//!   global tracer looked up, `format!` span names and owned attributes per
//!   message, the SDK's propagator), processing each message as it arrives;
//!   sampled as `sampled` and `unsampled` are (see `by_hand.rs`; not ratios
//!   of the `RESULT` line);
//! - `js-raw` / `js-traced`: draining a JetStream stream of pre-published
//!   messages, each carrying a sampled `traceparent` of its own trace, with a
//!   raw pull consumer that decodes and acks, against a traced
//!   `#[nats_subscriber(stream = ..)]` handler, whose spans continue it;
//! - `js-raw+spans`: js-raw giving each message the two spans a traced
//!   handler needs at least (process, continuing the message's trace, and
//!   the ack's settle span), through the same batch processor: the ceiling
//!   of js-traced (not a ratio of the `RESULT` line).
//!
//! Every variant runs once per round, rounds interleaved, and the table shows
//! each variant's median round, with the CPU per message of this process and
//! of the nats-server.
//!
//! The last line is `RESULT ratio_sampled=.. ratio_unsampled=..
//! ratio_jetstream=.. spans_dropped=.. rss_growth_pct=..`.

mod by_hand;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use futures_util::StreamExt;
use nats_trace_runtime::jetstream::StreamSpec;
use nats_trace_runtime::prelude::*;
use nats_trace_runtime::runtime::{self, Running};
use nats_trace_runtime::telemetry::accounting::{
    CountingExporter, CountingProcessor, SpanCounts, SpanReport,
};
use nats_trace_testing::NatsServer;
use opentelemetry::metrics::noop::NoopMeterProvider;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// How far the publisher may run ahead of the subscriber.
const WINDOW: u64 = 2_000;

#[derive(Serialize, Deserialize)]
struct Payload {
    id: u64,
    customer: String,
    note: String,
}

impl Payload {
    /// A payload whose JSON is about `size` bytes.
    fn sized(id: u64, size: usize) -> Payload {
        let base = serde_json::to_vec(&Payload {
            id,
            customer: "ada".into(),
            note: String::new(),
        })
        .map_or(40, |v| v.len());
        Payload {
            id,
            customer: "ada".into(),
            note: "x".repeat(size.saturating_sub(base)),
        }
    }
}

/// Messages received by whichever variant runs now.
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// The count of arrivals a waiter wants to be woken at; `u64::MAX` when
/// none waits.
static WAKE_AT: AtomicU64 = AtomicU64::new(u64::MAX);
static ARRIVED: Notify = Notify::const_new();

/// Counts one processed message. It wakes a waiter only when the count it
/// waits for is reached: a wake per message would cost the handler's
/// thread a futex call and the waiter's thread a context switch per
/// message, which js-raw (counting on the waiter's own thread) never pays.
fn arrived() {
    let received = RECEIVED.fetch_add(1, Ordering::SeqCst) + 1;
    if received >= WAKE_AT.load(Ordering::SeqCst) {
        ARRIVED.notify_one();
    }
}

/// How long a measurement may go without a single arrival before it is
/// declared stalled.
const STALL: Duration = Duration::from_secs(20);

/// A measurement in which messages stopped arriving for [`STALL`], or in
/// which the client reported that they stopped (`cause`).
#[derive(Debug)]
struct Stalled {
    arrived: u64,
    awaited: u64,
    cause: Option<String>,
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "only {} of {} messages arrived, and ",
            self.arrived, self.awaited
        )?;
        match &self.cause {
            None => write!(f, "none for {STALL:?}"),
            Some(cause) => write!(f, "then: {cause}"),
        }
    }
}

/// Waits until `count` messages have arrived; `Err` once none has arrived
/// for [`STALL`].
async fn wait_until(count: u64) -> Result<(), Stalled> {
    WAKE_AT.store(count, Ordering::SeqCst);
    let mut progress = (RECEIVED.load(Ordering::SeqCst), Instant::now());
    let outcome = loop {
        let arrived = RECEIVED.load(Ordering::SeqCst);
        if arrived >= count {
            break Ok(());
        }
        if arrived != progress.0 {
            progress = (arrived, Instant::now());
        } else if progress.1.elapsed() > STALL {
            break Err(Stalled {
                arrived,
                awaited: count,
                cause: None,
            });
        }
        // `notify_one` keeps a wake that came before this wait; the timeout
        // is only a safety net.
        let _ = tokio::time::timeout(Duration::from_millis(5), ARRIVED.notified()).await;
    };
    WAKE_AT.store(u64::MAX, Ordering::SeqCst);
    outcome
}

/// Waits for `count` arrivals in a variant that is never measured again.
async fn wait_for(count: u64) {
    wait_until(count)
        .await
        .unwrap_or_else(|stalled| panic!("{stalled}"));
}

#[nats_subscriber(subject = "bench.traced", concurrency = 256)]
async fn traced(payload: Payload) {
    std::hint::black_box(payload.id);
    arrived();
}

#[nats_subscriber(
    stream = "BENCH",
    consumer = "traced",
    subject = "bench.js",
    concurrency = 256
)]
async fn traced_js(payload: Payload) {
    std::hint::black_box(payload.id);
    arrived();
}

/// Throws spans away, as fast as possible.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// A provider whose batch processor feeds [`Discard`], counting spans.
fn provider(sampler: Sampler) -> (SdkTracerProvider, Arc<SpanCounts>) {
    let counts = Arc::new(SpanCounts::default());
    // The runtime's documented default sizing (`OTEL_BSP_*` where set).
    let processor = BatchSpanProcessor::builder(CountingExporter::new(Discard, counts.clone()))
        .with_batch_config(nats_trace_runtime::telemetry::batch_config())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(CountingProcessor::new(processor, counts.clone()))
        .build();
    (provider, counts)
}

/// Throws metrics away.
#[derive(Debug)]
struct DiscardMetrics;

impl PushMetricExporter for DiscardMetrics {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        std::hint::black_box(metrics);
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// A meter provider as an application exporting metrics has one: a
/// periodic reader, here feeding [`DiscardMetrics`].
fn meter_provider() -> SdkMeterProvider {
    SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(DiscardMetrics).build())
        .build()
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Measure {
    messages: u64,
    seconds: f64,
    cpu_seconds: f64,
    /// CPU time nats-server spent meanwhile.
    server_cpu_seconds: f64,
}

/// When a measurement started: wall clock, this process's CPU and the
/// server's.
struct Clock {
    started: Instant,
    cpu: f64,
    server: f64,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            started: Instant::now(),
            cpu: cpu_time(),
            server: server_cpu_time(),
        }
    }

    fn measure(&self, messages: u64) -> Measure {
        Measure {
            messages,
            seconds: self.started.elapsed().as_secs_f64(),
            cpu_seconds: cpu_time() - self.cpu,
            server_cpu_seconds: server_cpu_time() - self.server,
        }
    }
}

/// The nats-server's process id, for its CPU time.
static SERVER_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// User + system CPU time of the nats-server process (0 if unknown).
fn server_cpu_time() -> f64 {
    let Some(pid) = SERVER_PID.get() else {
        return 0.0;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime and
    // stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second.max(1) as f64
}

impl Measure {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    fn server_cpu_us_per_message(&self) -> f64 {
        self.server_cpu_seconds * 1e6 / self.messages as f64
    }

    fn cpu_us_per_message(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.messages as f64
    }
}

/// The measure with the median throughput.
fn median(mut measures: Vec<Measure>) -> Measure {
    measures.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    measures[measures.len() / 2]
}

/// glibc's malloc adapts its trim and mmap thresholds while a process runs,
/// so a variant ran faster or slower depending on what ran before it (the
/// traced JetStream variant: 110k msg/s alone, 83k after the unsampled one).
/// Fixed thresholds, the same for every variant, make the order irrelevant.
fn fix_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// User + system CPU time of this process.
fn cpu_time() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Sends `count` messages through `send`, never more than [`WINDOW`] ahead
/// of arrivals, and waits until all arrived.
async fn closed_loop<F, Fut>(count: u64, size: usize, mut send: F) -> Result<Measure, Stalled>
where
    F: FnMut(Payload) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    RECEIVED.store(0, Ordering::Relaxed);
    let clock = Clock::start();
    for id in 0..count {
        if id - RECEIVED.load(Ordering::Relaxed) >= WINDOW {
            wait_until(id + 1 - WINDOW).await?;
        }
        send(Payload::sized(id, size)).await;
    }
    wait_until(count).await?;
    Ok(clock.measure(count))
}

/// Takes a raw measurement, and takes it again if it stalled.
///
/// About one full run in six, a raw variant stalled: nats-server 2.15.1
/// read every message the new publisher sent, answered the new
/// subscriber's `SUB` and `PING`, and delivered none of them, or not the
/// last few dozen (seen with `ss` and the clients' statistics while it
/// stalled). Publishing on a subject of its own per measurement did not
/// avoid it. A stall is printed, and the measurement is taken again with
/// new connections.
async fn retried<T>(name: &str, mut measure: impl AsyncFnMut() -> Result<T, Stalled>) -> T {
    let mut attempts = 1;
    loop {
        match measure().await {
            Ok(measure) => return measure,
            Err(stalled) if attempts < 3 => {
                eprintln!("{name}: {stalled}; measuring it again");
                attempts += 1;
            }
            Err(stalled) => panic!("{name}: {stalled}, in {attempts} attempts"),
        }
    }
}

async fn raw(server: &NatsServer, count: u64, size: usize) -> Result<Measure, Stalled> {
    let publisher = connect(server).await;
    let subscriber = connect(server).await;
    let mut subscription = subscriber.subscribe("bench.raw").await.expect("subscribe");
    subscriber.flush().await.expect("flush");
    let consumer = tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let payload: Payload = serde_json::from_slice(&message.payload).expect("json");
            std::hint::black_box(payload.id);
            arrived();
        }
    });
    let measure = closed_loop(count, size, |payload| {
        let publisher = publisher.clone();
        async move {
            let body = serde_json::to_vec(&payload).expect("json");
            publisher
                .publish("bench.raw", body.into())
                .await
                .expect("publish");
        }
    })
    .await;
    consumer.abort();
    measure
}

/// A sampled `traceparent`.
const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// An unsampled `traceparent`.
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

/// Raw async-nats carrying a fixed `traceparent` header that the subscriber
/// reads: the least any propagating instrumentation costs, since a header
/// makes the client build a header map per message on both ends, and a
/// sampled one makes nats-server copy the headers to look for a message
/// trace destination.
async fn raw_with_header(
    server: &NatsServer,
    count: u64,
    size: usize,
    traceparent: &'static str,
) -> Result<Measure, Stalled> {
    let publisher = connect(server).await;
    let subscriber = connect(server).await;
    let mut subscription = subscriber
        .subscribe("bench.header")
        .await
        .expect("subscribe");
    subscriber.flush().await.expect("flush");
    let consumer = tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let header = message.headers.as_ref().and_then(|h| h.get("traceparent"));
            assert!(header.is_some(), "the header arrives");
            let payload: Payload = serde_json::from_slice(&message.payload).expect("json");
            std::hint::black_box((payload.id, header));
            arrived();
        }
    });
    let measure = closed_loop(count, size, |payload| {
        let publisher = publisher.clone();
        async move {
            let body = serde_json::to_vec(&payload).expect("json");
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("traceparent", traceparent);
            publisher
                .publish_with_headers("bench.header", headers, body.into())
                .await
                .expect("publish");
        }
    })
    .await;
    consumer.abort();
    measure
}

/// The attributes the runtime gives a messaging span, `extra` among them,
/// as the reference variants set them.
fn messaging_attributes<const N: usize>(
    operation: &'static str,
    kind: &'static str,
    destination: &'static str,
    extra: [KeyValue; N],
) -> Vec<KeyValue> {
    // Sized as the runtime sizes its vectors, one allocation per span, with
    // room for the body size the process span adds.
    let mut attributes = Vec::with_capacity(8 + N);
    attributes.push(KeyValue::new("messaging.system", "nats"));
    attributes.push(KeyValue::new("messaging.operation.name", operation));
    attributes.push(KeyValue::new("messaging.operation.type", kind));
    attributes.push(KeyValue::new("messaging.destination.name", destination));
    attributes.push(KeyValue::new("messaging.destination.template", destination));
    attributes.extend(extra);
    attributes.push(KeyValue::new("server.address", "127.0.0.1"));
    attributes.push(KeyValue::new("server.port", 4222_i64));
    attributes
}

/// The OpenTelemetry SDK alone, no NATS: per message, a PRODUCER span and
/// its CONSUMER child with the attributes the pipeline sets, through the
/// same batch processor and discarding exporter as `sampled`. What any
/// instrumentation built on the SDK pays at least for two spans.
fn sdk_spans_only(count: u64) -> Measure {
    let (provider, _) = provider(Sampler::AlwaysOn);
    let tracer = provider.tracer("bench");
    let attributes = |operation: &'static str| {
        messaging_attributes(
            operation,
            operation,
            "bench.traced",
            [KeyValue::new("messaging.message.body.size", 100_i64)],
        )
    };
    let clock = Clock::start();
    for _ in 0..count {
        let producer = tracer
            .span_builder("publish bench.traced")
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes("publish"))
            .start(&tracer);
        let cx = Context::new().with_span(producer);
        let consumer = tracer
            .span_builder("process bench.traced")
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes("process"))
            .start_with_context(&tracer, &cx);
        let consumer_cx = cx.with_span(consumer);
        consumer_cx.span().end();
        cx.span().end();
    }
    let measure = clock.measure(count);
    let _ = provider.shutdown();
    measure
}

async fn start(
    server: &NatsServer,
    provider: &SdkTracerProvider,
    meters: Option<SdkMeterProvider>,
    handler: &'static str,
) -> Running {
    let builder = match meters {
        Some(meters) => runtime::builder().meter_provider(meters),
        None => runtime::builder(),
    };
    builder
        .url(server.url())
        .tracer_provider(provider.clone())
        .handlers(move |h| h.name().ends_with(handler))
        .declared_streams(false)
        .stream(StreamSpec {
            name: "BENCH",
            subjects: &["bench.js"],
            ..StreamSpec::DEFAULT
        })
        .logging(false)
        .start()
        .await
        .expect("runtime starts")
}

/// The traced pipeline: `Publisher::publish` into a macro handler.
/// Returns the measure, the RSS after `rss_mark` messages (if reached) and
/// after all, and the span report.
async fn traced_run(
    server: &NatsServer,
    sampler: Sampler,
    count: u64,
    size: usize,
    rss_mark: Option<u64>,
) -> (Measure, Option<(u64, u64)>, SpanReport) {
    traced_run_with(server, sampler, None, count, size, rss_mark).await
}

/// [`traced_run`], recording metrics with `meters` when given.
async fn traced_run_with(
    server: &NatsServer,
    sampler: Sampler,
    meters: Option<SdkMeterProvider>,
    count: u64,
    size: usize,
    rss_mark: Option<u64>,
) -> (Measure, Option<(u64, u64)>, SpanReport) {
    let (provider, counts) = provider(sampler);
    // A publisher outside a runtime records with the global meter provider.
    if let Some(meters) = &meters {
        opentelemetry::global::set_meter_provider(meters.clone());
    }
    let running = start(server, &provider, meters.clone(), "::traced").await;
    let client = connect(server).await;
    let publisher = Publisher::with_tracer_provider(client, provider.clone());
    let mut mark = None;
    let measure = closed_loop(count, size, |payload| {
        let publisher = publisher.clone();
        if Some(payload.id) == rss_mark {
            mark = Some(rss());
        }
        async move {
            publisher
                .publish("bench.traced", &payload)
                .await
                .expect("publish");
        }
    })
    .await
    .unwrap_or_else(|stalled| panic!("{stalled}"));
    let after = rss();
    running.stop().await.expect("stop");
    let _ = provider.shutdown();
    if let Some(meters) = meters {
        opentelemetry::global::set_meter_provider(NoopMeterProvider::new());
        let _ = meters.shutdown();
    }
    (measure, mark.map(|m| (m, after)), counts.report())
}

async fn fill_stream(server: &NatsServer, count: u64, size: usize) {
    let client = connect(server).await;
    let jetstream = async_nats::jetstream::new(client);
    let _ = jetstream
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "BENCH".into(),
            subjects: vec!["bench.js".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let mut pending = Vec::new();
    for id in 0..count {
        let body = serde_json::to_vec(&Payload::sized(id, size)).expect("json");
        // Each message continues a sampled trace of its own, as one a
        // traced publisher sent would.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "traceparent",
            format!("00-{:032x}-{:016x}-01", id + 1, id + 1).as_str(),
        );
        pending.push(
            jetstream
                .publish_with_headers("bench.js", headers, body.into())
                .await
                .expect("publish"),
        );
        if pending.len() == 1_000 {
            for ack in pending.drain(..) {
                ack.await.expect("stored");
            }
        }
    }
    for ack in pending {
        ack.await.expect("stored");
    }
}

/// A connection of the bench's own, that reports what happens to it: a
/// message lost to a slow consumer or a reconnect shows here, not only as a
/// count that never completes.
async fn connect(server: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .event_callback(|event| async move {
            if !matches!(
                event,
                async_nats::Event::Connected | async_nats::Event::Closed
            ) {
                eprintln!("bench connection: {event}");
            }
        })
        .connect(server.url())
        .await
        .expect("connect")
}

/// [`jetstream_raw`], measured again after a stall, on `count` more
/// messages published to the stream first: the stalled measurement took
/// some of the round's. (Every consumer of the stream gets them; each
/// measurement drains only `count`, so the rest waits, unread.)
async fn jetstream_raw_retried(
    server: &NatsServer,
    count: u64,
    size: usize,
    spans: bool,
) -> (Measure, SpanReport) {
    let name = if spans { "js-raw+spans" } else { "js-raw" };
    let mut attempts = 0;
    retried(name, async || {
        if attempts > 0 {
            fill_stream(server, count, size).await;
        }
        attempts += 1;
        jetstream_raw(server, count, spans).await
    })
    .await
}

/// Drains `count` messages of the stream with a plain pull consumer that
/// decodes and acks, and with `spans`, gives each message the two spans a
/// traced handler needs at least. Returns the measure and, with `spans`,
/// the span report; `Err` when the client reports a missed heartbeat (other
/// errors of the stream are printed, and it goes on, as it does): the
/// server stopped sending for a while (a round that went on after one ran
/// at 8k msg/s instead of about 170k), and the measurement would be mostly
/// that wait.
async fn jetstream_raw(
    server: &NatsServer,
    count: u64,
    spans: bool,
) -> Result<(Measure, SpanReport), Stalled> {
    let client = connect(server).await;
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream("BENCH").await.expect("stream");
    // Each variant drains the stream with its own durable consumer.
    let durable = if spans { "raw-spans" } else { "raw" };
    let consumer = stream
        .get_or_create_consumer(
            durable,
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some(durable.into()),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let traced = spans.then(|| provider(Sampler::AlwaysOn));
    let tracer = traced
        .as_ref()
        .map(|(provider, _)| provider.tracer("bench"));
    RECEIVED.store(0, Ordering::Relaxed);
    let clock = Clock::start();
    let mut messages = consumer.messages().await.expect("messages");
    while RECEIVED.load(Ordering::Relaxed) < count {
        let message = match messages.next().await.expect("a message") {
            Ok(message) => message,
            Err(error) if error.kind() != MessagesErrorKind::MissingHeartbeat => {
                eprintln!("js-raw: {error}; continuing");
                continue;
            }
            Err(error) => {
                if let Some((provider, _)) = &traced {
                    let _ = provider.shutdown();
                }
                return Err(Stalled {
                    arrived: RECEIVED.load(Ordering::Relaxed),
                    awaited: count,
                    cause: Some(error.to_string()),
                });
            }
        };
        let payload: Payload = serde_json::from_slice(&message.payload).expect("json");
        std::hint::black_box(payload.id);
        match &tracer {
            None => message.ack().await.expect("ack"),
            Some(tracer) => {
                let (process, settle) = jetstream_spans(tracer, &message);
                message.ack().await.expect("ack");
                settle.span().end();
                process.span().end();
            }
        }
        arrived();
    }
    let measure = clock.measure(count);
    let report = traced.map_or_else(SpanReport::default, |(provider, counts)| {
        let _ = provider.shutdown();
        counts.report()
    });
    Ok((measure, report))
}

/// The two spans a traced JetStream handler needs at least, with the
/// attributes the runtime gives them: a CONSUMER process span, and its
/// CLIENT child around the ack. Returns both contexts, the settle one last.
fn jetstream_spans(
    tracer: &SdkTracer,
    message: &async_nats::jetstream::Message,
) -> (Context, Context) {
    let info = message.info().expect("JetStream metadata");
    let attributes = |operation: &'static str, kind: &'static str| {
        messaging_attributes(
            operation,
            kind,
            "bench.js",
            [
                KeyValue::new("messaging.consumer.group.name", "raw-spans"),
                KeyValue::new("messaging.nats.stream", "BENCH"),
                KeyValue::new("messaging.nats.consumer", "raw-spans"),
                KeyValue::new(
                    "messaging.nats.stream_sequence",
                    info.stream_sequence as i64,
                ),
                KeyValue::new("messaging.nats.delivery_count", info.delivered),
            ],
        )
    };
    let mut process_attributes = attributes("process", "process");
    process_attributes.push(KeyValue::new(
        "messaging.message.body.size",
        message.payload.len() as i64,
    ));
    let parent = TraceContextPropagator::new().extract(&Headers(message.headers.as_ref()));
    let process = tracer
        .span_builder("process bench.js")
        .with_kind(SpanKind::Consumer)
        .with_attributes(process_attributes)
        .start_with_context(tracer, &parent);
    let process = parent.with_span(process);
    let settle = tracer
        .span_builder("ack bench.js")
        .with_kind(SpanKind::Client)
        .with_attributes(attributes("ack", "settle"))
        .start_with_context(tracer, &process);
    let settle = process.with_span(settle);
    (process, settle)
}

/// A message's headers, as the propagator reads them.
struct Headers<'a>(Option<&'a async_nats::HeaderMap>);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0?.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .map(|headers| headers.iter().map(|(name, _)| name.as_ref()).collect())
            .unwrap_or_default()
    }
}

async fn jetstream_traced(server: &NatsServer, count: u64) -> (Measure, SpanReport) {
    let (provider, counts) = provider(Sampler::AlwaysOn);
    RECEIVED.store(0, Ordering::Relaxed);
    let clock = Clock::start();
    let running = start(server, &provider, None, "::traced_js").await;
    wait_for(count).await;
    let measure = clock.measure(count);
    running.stop().await.expect("stop");
    let _ = provider.shutdown();
    (measure, counts.report())
}

/// The variants of a round, in the order they run.
const VARIANTS: [&str; 12] = [
    "raw",
    "raw+header",
    "raw+header 00",
    "2 SDK spans",
    "sampled",
    "unsampled",
    "unsampled+metrics",
    "by-hand sampled",
    "by-hand unsampled",
    "js-raw",
    "js-raw+spans",
    "js-traced",
];

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// With `--features mimalloc`, every variant allocates through mimalloc:
/// with glibc's malloc, the SDK's export thread frees each span on the
/// arena of the worker that built it, and they contend for its lock.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator every variant of this build uses.
const ALLOCATOR_NAME: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "the system's malloc"
};

fn main() {
    fix_malloc_thresholds();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run());
}

async fn run() {
    let count = arg("--messages", 300_000);
    let size = arg("--size", 100) as usize;
    let rss_total = arg("--rss-messages", 1_000_000);
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    if let Some(pid) = server.pid() {
        let _ = SERVER_PID.set(pid);
    }
    println!(
        "nats-trace bench: {count} messages of ~{size} B per variant, window {WINDOW}, {ALLOCATOR_NAME}"
    );
    // `--only raw|header|header-00|spans|sampled|unsampled|metrics|hand|hand-00|js|js-raw|js-spans`: one
    // variant alone, for profiling.
    let args: Vec<String> = std::env::args().collect();
    if let Some(only) = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
    {
        let measure = match only.as_str() {
            "sampled" => {
                traced_run(&server, Sampler::AlwaysOn, count, size, None)
                    .await
                    .0
            }
            "unsampled" => {
                let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
                traced_run(&server, sampler, count, size, None).await.0
            }
            "metrics" => {
                let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
                let meters = Some(meter_provider());
                traced_run_with(&server, sampler, meters, count, size, None)
                    .await
                    .0
            }
            "header" => {
                retried("raw+header", async || {
                    raw_with_header(&server, count, size, SAMPLED).await
                })
                .await
            }
            "header-00" => {
                retried("raw+header 00", async || {
                    raw_with_header(&server, count, size, UNSAMPLED).await
                })
                .await
            }
            "spans" => sdk_spans_only(count),
            "hand" => {
                retried("by-hand sampled", async || {
                    by_hand::run(&server, Sampler::AlwaysOn, count, size).await
                })
                .await
                .0
            }
            "hand-00" => {
                retried("by-hand unsampled", async || {
                    let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
                    by_hand::run(&server, sampler, count, size).await
                })
                .await
                .0
            }
            "js" => {
                fill_stream(&server, count, size).await;
                jetstream_traced(&server, count).await.0
            }
            "js-spans" => {
                fill_stream(&server, count, size).await;
                jetstream_raw_retried(&server, count, size, true).await.0
            }
            "js-raw" => {
                fill_stream(&server, count, size).await;
                jetstream_raw_retried(&server, count, size, false).await.0
            }
            _ => retried("raw", async || raw(&server, count, size).await).await,
        };
        println!(
            "{only}: {:.0} msg/s, {:.2} µs CPU/msg, server {:.2} µs/msg",
            measure.rate(),
            measure.cpu_us_per_message(),
            measure.server_cpu_us_per_message()
        );
        return;
    }

    // Warm up connections, allocators and the page cache.
    retried("raw", async || raw(&server, count / 10, size).await).await;
    // Interleaved rounds, each variant's median taken: throughput on a small
    // shared machine drifts by more than the differences measured.
    let rounds = arg("--rounds", 3).max(1);
    let mut all: [Vec<Measure>; 12] = Default::default();
    let mut sampled_spans = SpanReport::default();
    let mut js_spans_report = SpanReport::default();
    let mut by_hand_spans = SpanReport::default();
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        all[0].push(retried("raw", async || raw(&server, count, size).await).await);
        all[1].push(
            retried("raw+header", async || {
                raw_with_header(&server, count, size, SAMPLED).await
            })
            .await,
        );
        all[2].push(
            retried("raw+header 00", async || {
                raw_with_header(&server, count, size, UNSAMPLED).await
            })
            .await,
        );
        let spans = tokio::task::spawn_blocking(move || sdk_spans_only(count));
        all[3].push(spans.await.expect("spans"));
        let (sampled, _, spans) = traced_run(&server, Sampler::AlwaysOn, count, size, None).await;
        all[4].push(sampled);
        sampled_spans.ended += spans.ended;
        sampled_spans.exported += spans.exported;
        sampled_spans.dropped += spans.dropped;
        sampled_spans.failed += spans.failed;
        let unsampled_sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        all[5].push(
            traced_run(&server, unsampled_sampler, count, size, None)
                .await
                .0,
        );
        let unsampled_sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        let meters = Some(meter_provider());
        all[6].push(
            traced_run_with(&server, unsampled_sampler, meters, count, size, None)
                .await
                .0,
        );
        let (hand_sampled, spans) = retried("by-hand sampled", async || {
            by_hand::run(&server, Sampler::AlwaysOn, count, size).await
        })
        .await;
        all[7].push(hand_sampled);
        by_hand_spans.ended += spans.ended;
        by_hand_spans.dropped += spans.dropped;
        all[8].push(
            retried("by-hand unsampled", async || {
                let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
                by_hand::run(&server, sampler, count, size).await
            })
            .await
            .0,
        );
        fill_stream(&server, count, size).await;
        all[9].push(jetstream_raw_retried(&server, count, size, false).await.0);
        let (js_spans, spans) = jetstream_raw_retried(&server, count, size, true).await;
        all[10].push(js_spans);
        js_spans_report.ended += spans.ended;
        js_spans_report.dropped += spans.dropped;
        all[11].push(jetstream_traced(&server, count).await.0);
        // Each round's figures, so that a bimodal variant shows as one.
        let figures: Vec<String> = VARIANTS
            .iter()
            .zip(&all)
            .filter_map(|(name, measures)| {
                let measure = measures.last()?;
                Some(format!(
                    "{name} {:.0}k/s {:.2}µs",
                    measure.rate() / 1000.0,
                    measure.cpu_us_per_message()
                ))
            })
            .collect();
        println!("  {}", figures.join(", "));
    }
    let [
        raw,
        header,
        header_unsampled,
        spans_only,
        sampled,
        unsampled,
        unsampled_metrics,
        by_hand_sampled,
        by_hand_unsampled,
        js_raw,
        js_spans,
        js_traced,
    ] = all.map(median);

    let (_, rss_marks, _) = traced_run(
        &server,
        Sampler::AlwaysOn,
        rss_total,
        size,
        Some(rss_total / 10),
    )
    .await;
    let rss_growth = rss_marks.map_or(f64::NAN, |(at_tenth, at_end)| {
        (at_end as f64 - at_tenth as f64) * 100.0 / at_tenth as f64
    });

    println!();
    println!(
        "{:<18} {:>12} {:>10} {:>14} {:>10} {:>14}",
        "variant", "msg/s", "vs raw", "CPU µs/msg", "vs raw", "server µs/msg"
    );
    let row = |name: &str, m: &Measure, base: &Measure| {
        println!(
            "{:<18} {:>12.0} {:>9.2}x {:>14.2} {:>9.2}x {:>14.2}",
            name,
            m.rate(),
            m.rate() / base.rate(),
            m.cpu_us_per_message(),
            m.cpu_us_per_message() / base.cpu_us_per_message(),
            m.server_cpu_us_per_message()
        );
    };
    row("raw", &raw, &raw);
    row("raw+header", &header, &raw);
    row("raw+header 00", &header_unsampled, &raw);
    println!(
        "{:<18} {:>12} {:>10} {:>14.2} {:>9.2}x {:>14}",
        "2 SDK spans",
        "-",
        "-",
        spans_only.cpu_us_per_message(),
        spans_only.cpu_us_per_message() / raw.cpu_us_per_message(),
        "-"
    );
    row("sampled", &sampled, &raw);
    row("unsampled", &unsampled, &raw);
    row("unsampled+metrics", &unsampled_metrics, &raw);
    row("by-hand sampled", &by_hand_sampled, &raw);
    row("by-hand unsampled", &by_hand_unsampled, &raw);
    row("js-raw", &js_raw, &js_raw);
    row("js-raw+spans", &js_spans, &js_raw);
    row("js-traced", &js_traced, &js_raw);
    println!(
        "spans (sampled, all rounds): ended {} exported {} dropped {} failed {}",
        sampled_spans.ended, sampled_spans.exported, sampled_spans.dropped, sampled_spans.failed
    );
    println!(
        "spans (js-raw+spans, all rounds): ended {} dropped {}",
        js_spans_report.ended, js_spans_report.dropped
    );
    println!(
        "spans (by-hand sampled, all rounds): ended {} dropped {}",
        by_hand_spans.ended, by_hand_spans.dropped
    );
    println!(
        "RSS of the sampled pipeline: {:.1}% growth from {} to {} messages",
        rss_growth,
        rss_total / 10,
        rss_total
    );
    println!();
    println!(
        "RESULT ratio_sampled={:.3} ratio_unsampled={:.3} ratio_jetstream={:.3} spans_dropped={} rss_growth_pct={:.2}",
        sampled.rate() / raw.rate(),
        unsampled.rate() / raw.rate(),
        js_traced.rate() / js_raw.rate(),
        sampled_spans.dropped,
        rss_growth
    );
}
