//! Starting, listing, refusing and stopping: the runtime around the handlers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nats_trace_runtime::prelude::*;
use nats_trace_runtime::runtime;
use nats_trace_runtime::{Backoff, ConnectRetry, Error};
use nats_trace_testing::spans::{describe, named};
use nats_trace_testing::{NatsServer, SpanCapture};
use opentelemetry::trace::Status;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tokio::sync::Notify;

use crate::support;

mod slow {
    use super::*;

    pub static STARTED: Notify = Notify::const_new();
    pub static FINISHED: AtomicBool = AtomicBool::new(false);

    #[nats_subscriber(subject = "slow.job")]
    async fn slow_job(_body: bytes::Bytes) {
        STARTED.notify_one();
        tokio::time::sleep(Duration::from_millis(500)).await;
        FINISHED.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_handlers_and_exports_their_spans() {
    let server = support::server();
    // Batched: the spans are only visible if shutdown flushes the provider.
    let capture = SpanCapture::batched();
    let client = support::connect(&server).await;

    // Ask to stop while the handler is mid-sleep.
    let shutdown = slow::STARTED.notified();
    let runner = runtime::builder()
        .url(server.url())
        .tracer_provider(capture.provider())
        .propagator(TraceContextPropagator::new())
        .handlers(|h| {
            h.name()
                .starts_with("integration::runtime_lifecycle::slow::")
        })
        .logging(false)
        .telemetry_from_env(false)
        .shutdown_signal(shutdown)
        .run();
    let started = Instant::now();
    let run = tokio::spawn(runner);
    // `run` subscribes before it waits; publish until the handler starts.
    let publisher = tokio::spawn(async move {
        while !slow::FINISHED.load(Ordering::SeqCst) {
            client
                .publish("slow.job", "go".into())
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let result = run.await.expect("run task");
    // Read the spans the instant `run` returns: nothing may still be pending.
    let spans = capture.spans();
    publisher.abort();

    result.expect("run returns Ok");
    assert!(
        slow::FINISHED.load(Ordering::SeqCst),
        "the handler finished before run returned"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    let process = named(&spans, "process slow.job");
    assert!(!process.is_empty(), "{}", describe(&spans));
    assert!(process.iter().all(|span| span.status == Status::Unset));
}

mod twins {
    use super::*;

    #[nats_subscriber(subject = "twins.subject", queue = "same")]
    async fn first(_body: bytes::Bytes) {}

    #[nats_subscriber(subject = "twins.subject", queue = "same")]
    async fn second(_body: bytes::Bytes) {}
}

#[tokio::test]
async fn two_handlers_on_the_same_subject_and_queue_are_refused() {
    let error = runtime::builder()
        .url("nats://127.0.0.1:1")
        .handlers(|h| {
            h.name()
                .starts_with("integration::runtime_lifecycle::twins::")
        })
        .logging(false)
        .telemetry_from_env(false)
        .start()
        .await
        .expect_err("duplicates are refused before connecting");
    let Error::DuplicateHandler {
        subject,
        queue,
        consumer,
        first,
        second,
    } = &error
    else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(
        (*subject, *queue, *consumer),
        ("twins.subject", Some("same"), None)
    );
    assert!(
        first.contains("twins::first") && first.contains("runtime_lifecycle.rs:"),
        "{first}"
    );
    assert!(second.contains("twins::second"), "{second}");
    let message = error.to_string();
    assert!(
        message.contains("queue = "),
        "the message names the fix: {message}"
    );
}

#[tokio::test]
async fn a_filter_that_matches_nothing_is_an_error_not_a_silent_idle_service() {
    let error = runtime::builder()
        .url("nats://127.0.0.1:1")
        .handlers(|_| false)
        .logging(false)
        .telemetry_from_env(false)
        .start()
        .await
        .expect_err("nothing to run");
    assert!(matches!(error, Error::NoHandlers), "{error}");
}

mod listed {
    use super::*;

    #[nats_subscriber(subject = "listed.b", concurrency = 3)]
    async fn beta(_body: String) {}

    #[nats_subscriber(subject = "listed.a", queue = "q")]
    async fn alpha(_body: String) {}
}

#[tokio::test]
async fn the_runtime_lists_its_handlers_sorted_by_subject() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(
        &server,
        &capture,
        "integration::runtime_lifecycle::listed::",
    )
    .await;
    let listed: Vec<_> = running
        .handlers()
        .iter()
        .map(|h| (h.name(), h.subject(), h.queue(), h.concurrency()))
        .collect();
    running.stop().await.expect("clean stop");
    assert_eq!(
        listed,
        [
            (
                "integration::runtime_lifecycle::listed::alpha",
                "listed.a",
                Some("q"),
                64
            ),
            (
                "integration::runtime_lifecycle::listed::beta",
                "listed.b",
                None,
                3
            ),
        ]
    );
    let all = nats_trace_runtime::registered_handlers();
    assert!(
        all.iter()
            .any(|h| h.name() == "integration::runtime_lifecycle::listed::beta")
    );
}

#[tokio::test]
async fn the_initial_connect_gives_up_after_the_configured_attempts() {
    let port = free_port();
    let error = runtime::builder()
        .url(format!("nats://user:secret@127.0.0.1:{port}"))
        .handlers(|h| {
            h.name()
                .starts_with("integration::runtime_lifecycle::listed::")
        })
        .connect_retry(ConnectRetry {
            max_attempts: Some(2),
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(10)),
        })
        .logging(false)
        .telemetry_from_env(false)
        .start()
        .await
        .expect_err("nothing listens there");
    let Error::Connect { attempts, url, .. } = &error else {
        panic!("unexpected error: {error}");
    };
    assert_eq!(*attempts, 2);
    assert!(
        !url.contains("secret") && !error.to_string().contains("secret"),
        "{error}"
    );
}

#[tokio::test]
async fn the_initial_connect_is_retried_until_the_server_comes_up() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let starting = tokio::spawn(
        runtime::builder()
            .url(url)
            .handlers(|h| {
                h.name()
                    .starts_with("integration::runtime_lifecycle::listed::")
            })
            .connect_retry(ConnectRetry {
                max_attempts: Some(50),
                backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(200)),
            })
            .logging(false)
            .telemetry_from_env(false)
            .start(),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !starting.is_finished(),
        "still retrying while no server runs"
    );
    let _server = NatsServer::builder()
        .port(port)
        .start()
        .expect("server on the chosen port");
    let running = starting
        .await
        .expect("task")
        .expect("connects once the server is up");
    assert_eq!(running.handlers().len(), 2);
    running.stop().await.expect("clean stop");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

mod idle {
    use super::*;

    #[nats_subscriber(subject = "idle.work")]
    async fn work(_body: bytes::Bytes) {}
}

#[tokio::test]
async fn stop_returns_when_the_server_is_gone() {
    let mut server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, "integration::runtime_lifecycle::idle::")
        .shutdown_timeout(Duration::from_secs(3))
        .start()
        .await
        .expect("runtime starts");
    server.kill();
    let stopped = tokio::time::timeout(Duration::from_secs(20), running.stop()).await;
    let result = stopped.expect("stop returns although the connection is down");
    assert!(result.is_ok(), "nothing was in flight: {result:?}");
}

mod answering {
    use super::*;

    pub static STARTED: Notify = Notify::const_new();

    #[nats_subscriber(subject = "answering.slow")]
    async fn slow(body: String) -> String {
        STARTED.notify_one();
        tokio::time::sleep(Duration::from_millis(300)).await;
        body.to_uppercase()
    }
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_still_gets_its_reply() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::start(
        &server,
        &capture,
        "integration::runtime_lifecycle::answering::",
    )
    .await;
    let client = support::connect(&server).await;

    let request = tokio::spawn(async move { client.request("answering.slow", "hi".into()).await });
    answering::STARTED.notified().await;
    running.stop().await.expect("clean stop");
    let reply = request
        .await
        .expect("request task")
        .expect("a reply, not a timeout");
    assert_eq!(reply.payload, bytes::Bytes::from_static(b"HI"));
}

mod stuck {
    use super::*;

    pub static STARTED: Notify = Notify::const_new();
    pub static DROPPED: AtomicBool = AtomicBool::new(false);
    pub static FINISHED: AtomicBool = AtomicBool::new(false);

    /// Records that the handler's future was dropped before it finished.
    struct Dropped;

    impl Drop for Dropped {
        fn drop(&mut self) {
            if !FINISHED.load(Ordering::SeqCst) {
                DROPPED.store(true, Ordering::SeqCst);
            }
        }
    }

    #[nats_subscriber(subject = "stuck.job")]
    async fn stuck_job(_body: bytes::Bytes) {
        let _dropped = Dropped;
        STARTED.notify_one();
        tokio::time::sleep(Duration::from_secs(30)).await;
        FINISHED.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_shutdown_that_times_out_aborts_the_runs_still_in_flight() {
    let server = support::server();
    let capture = SpanCapture::new();
    let running = support::builder(&server, &capture, "integration::runtime_lifecycle::stuck::")
        .shutdown_timeout(Duration::from_millis(300))
        .start()
        .await
        .expect("runtime starts");
    let started = stuck::STARTED.notified();
    let client = support::connect(&server).await;
    client
        .publish("stuck.job", "go".into())
        .await
        .expect("publish");
    tokio::time::timeout(support::WAIT, started)
        .await
        .expect("the handler started");

    let stopped = Instant::now();
    let result = running.stop().await;
    assert!(
        matches!(result, Err(Error::ShutdownTimeout { unfinished: 1, .. })),
        "shutdown times out with the run unfinished: {result:?}"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "stop keeps to its timeout: {:?}",
        stopped.elapsed()
    );
    // Aborted with the task that fed it, not left running in the background.
    let aborted = Instant::now();
    while !stuck::DROPPED.load(Ordering::SeqCst) && aborted.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        stuck::DROPPED.load(Ordering::SeqCst),
        "the unfinished run was dropped"
    );
    assert!(!stuck::FINISHED.load(Ordering::SeqCst));
}
