//! Starting and stopping: connect, subscribe every registered handler, wait
//! for a shutdown signal, drain, flush.
//!
//! [`run`] does it all from the environment. [`builder`] does the same with
//! explicit settings, and can start in the background for tests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::Client;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::task::JoinSet;

use crate::connection::{self, ConnectRetry, ConnectionEvents, ConnectionStats};
use crate::credentials::Credentials;
use crate::dispatch::{InFlight, Shared};
use crate::error::Error;
use crate::extract::States;
use crate::jetstream::{self, StreamSpec};
use crate::propagation::{self, Propagation};
use crate::publisher::{Publisher, current};
use crate::registry::{self, Handler};
use crate::shutdown::{self, StopHandle};
use crate::subscription;
use crate::telemetry::accounting::SpanReport;
use crate::telemetry::config::OtelEnv;
use crate::telemetry::install::Installed;
use crate::telemetry::{self, Telemetry};

static NEXT_RUNTIME_ID: AtomicU64 = AtomicU64::new(1);

/// How long shutdown waits for in-flight handlers by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to `NATS_URL` (default `nats://127.0.0.1:4222`), runs every
/// registered handler until SIGINT or SIGTERM, then shuts down gracefully:
/// stops taking messages, waits for in-flight handlers, drains the
/// connection and flushes telemetry.
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> Result<(), nats_trace_runtime::Error> {
///     nats_trace_runtime::runtime::run().await
/// }
/// ```
pub async fn run() -> Result<(), Error> {
    builder().run().await
}

/// A [`Builder`] with the defaults [`run`] uses.
pub fn builder() -> Builder {
    Builder::default()
}

type Filter = Box<dyn Fn(&Handler) -> bool + Send + Sync>;
type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Connection {
    FromEnv,
    Url(String),
    Client(Client),
}

/// Configures a runtime. Every setting has the default [`run`] uses.
///
/// ```no_run
/// # async fn demo(client: async_nats::Client) -> Result<(), nats_trace_runtime::Error> {
/// use std::time::Duration;
///
/// let running = nats_trace_runtime::runtime::builder()
///     .client(client)
///     .shutdown_timeout(Duration::from_secs(5))
///     .start()
///     .await?;
/// println!("serving {} handlers", running.handlers().len());
/// running.stop().await?;
/// # Ok(())
/// # }
/// ```
pub struct Builder {
    connection: Connection,
    connect_retry: ConnectRetry,
    shutdown_signal: Option<ShutdownSignal>,
    shutdown_timeout: Duration,
    filter: Option<Filter>,
    credentials: Option<Credentials>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    telemetry_from_env: bool,
    propagation: Propagation,
    logging: bool,
    streams: Vec<StreamSpec>,
    declared_streams: bool,
    states: States,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            connection: Connection::FromEnv,
            connect_retry: ConnectRetry::default(),
            shutdown_signal: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            filter: None,
            credentials: None,
            tracer_provider: None,
            meter_provider: None,
            telemetry_from_env: true,
            propagation: Propagation::Global,
            logging: true,
            streams: Vec::new(),
            declared_streams: true,
            states: States::default(),
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let connection = match &self.connection {
            Connection::FromEnv => "NATS_URL".to_string(),
            Connection::Url(url) => connection::redact(url),
            Connection::Client(_) => "existing client".to_string(),
        };
        f.debug_struct("Builder")
            .field("connection", &connection)
            .field("connect_retry", &self.connect_retry)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("propagation", &self.propagation)
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Gives the handlers `value` as [`State<T>`](crate::State), e.g. a
    /// database pool or the configuration. Call it once per type; a second
    /// value of the same type replaces the first. A handler that takes a
    /// `State<T>` this runtime was not given fails [`start`](Self::start)
    /// with [`Error::MissingState`].
    ///
    /// Each runtime has its own state, so two runtimes in one process can
    /// serve the same handlers with different dependencies.
    ///
    /// ```no_run
    /// # #[derive(Clone)] struct Db;
    /// # #[derive(Clone)] struct Config;
    /// # async fn demo() -> Result<(), nats_trace_runtime::Error> {
    /// nats_trace_runtime::runtime::builder()
    ///     .state(Db)
    ///     .state(Config)
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Connects to `url` instead of `NATS_URL`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.connection = Connection::Url(url.into());
        self
    }

    /// Uses a client the application already connected. It is used as given:
    /// shutdown flushes it but does not close it.
    pub fn client(mut self, client: Client) -> Self {
        self.connection = Connection::Client(client);
        self
    }

    /// Authenticates with `credentials` instead of those in the `NATS_*`
    /// environment variables ([`Credentials::from_env`]). Not used with
    /// [`client`](Self::client), which is already connected.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// How the initial connect is retried.
    pub fn connect_retry(mut self, retry: ConnectRetry) -> Self {
        self.connect_retry = retry;
        self
    }

    /// Shuts down when `signal` completes, instead of on SIGINT / SIGTERM.
    /// Used by [`run`](Self::run) only.
    pub fn shutdown_signal(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.shutdown_signal = Some(Box::pin(signal));
        self
    }

    /// How long shutdown waits for in-flight handlers (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Runs only the registered handlers for which `keep` returns true, e.g.
    /// to give each test its own handlers.
    pub fn handlers(mut self, keep: impl Fn(&Handler) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Box::new(keep));
        self
    }

    /// Traces with `provider` instead of the global tracer provider, and
    /// flushes it at shutdown. The provider is used as given.
    pub fn tracer_provider(mut self, provider: SdkTracerProvider) -> Self {
        self.tracer_provider = Some(provider);
        self
    }

    /// Records metrics with `provider` instead of the global meter provider.
    /// The provider is used as given.
    pub fn meter_provider(mut self, provider: SdkMeterProvider) -> Self {
        self.meter_provider = Some(provider);
        self
    }

    /// Whether the runtime sets up OpenTelemetry from the `OTEL_*`
    /// environment variables (on by default). It never does when a tracer
    /// provider was given to the builder, or when the application installed
    /// a global tracer provider before starting the runtime: then the
    /// application's providers and propagator are used as they are. A meter
    /// provider given to the builder, or installed as the global one, is
    /// likewise used as it is, even when the traces are set up from the
    /// environment.
    ///
    /// Set up from the environment, the runtime installs its providers and
    /// propagator as the globals and shuts them down when it stops, flushing
    /// what is left and reporting spans that were dropped.
    pub fn telemetry_from_env(mut self, enabled: bool) -> Self {
        self.telemetry_from_env = enabled;
        self
    }

    /// Propagates with `propagator` instead of the global propagator.
    pub fn propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagation = Propagation::Custom(Arc::new(propagator));
        self
    }

    /// Creates or updates `stream` before any consumer starts, as
    /// [`declare_stream!`](crate::declare_stream) does.
    pub fn stream(mut self, stream: StreamSpec) -> Self {
        self.streams.push(stream);
        self
    }

    /// Whether the streams declared with [`declare_stream!`](crate::declare_stream)
    /// are created or updated at start. On by default; tests that run
    /// several runtimes in one program may want only their own.
    pub fn declared_streams(mut self, enabled: bool) -> Self {
        self.declared_streams = enabled;
        self
    }

    /// Whether the runtime installs console logging (`RUST_LOG`, default
    /// `info`) when the application has not installed a `tracing` subscriber.
    /// On by default.
    pub fn logging(mut self, enabled: bool) -> Self {
        self.logging = enabled;
        self
    }

    /// Starts, runs until the shutdown signal, then shuts down gracefully.
    pub async fn run(mut self) -> Result<(), Error> {
        let signal = self.shutdown_signal.take();
        let running = self.start().await?;
        let stop = running.stop_handle();
        let mut stopped = stop.subscribe();
        match signal {
            Some(signal) => tokio::select! {
                () = signal => {}
                _ = stopped.wait_for(|s| *s) => {}
            },
            None => tokio::select! {
                () = shutdown::signal() => {}
                _ = stopped.wait_for(|s| *s) => {}
            },
        }
        running.stop().await.map(|_| ())
    }

    /// Connects and subscribes every selected handler, then returns while
    /// they run in the background. When this returns, the server has
    /// registered every subscription.
    pub async fn start(self) -> Result<Running, Error> {
        if self.logging {
            telemetry::logging::install_default();
        }
        let mut handlers = registry::registered_handlers();
        if let Some(keep) = &self.filter {
            handlers.retain(|handler| keep(handler));
        }
        registry::check_unique(&handlers)?;
        if handlers.is_empty() {
            return Err(Error::NoHandlers);
        }
        check_states(&handlers, &self.states)?;
        let states = Arc::new(self.states);

        let events = Arc::new(ConnectionEvents::default());
        let credentials = self.credentials.unwrap_or_else(Credentials::from_env);
        let (client, owns_client, url) = match self.connection {
            Connection::Client(client) => (client, false, None),
            Connection::Url(url) => {
                let client =
                    connection::connect(&url, &self.connect_retry, &credentials, &events).await?;
                (client, true, Some(url))
            }
            Connection::FromEnv => {
                let url = connection::url_from_env();
                let client =
                    connection::connect(&url, &self.connect_retry, &credentials, &events).await?;
                (client, true, Some(url))
            }
        };

        let installed = if self.tracer_provider.is_none()
            && self.telemetry_from_env
            && !telemetry::global_tracer_installed()
        {
            // An application's own meter provider, given or global, stays.
            let meters = self.meter_provider.is_none() && !telemetry::global_meter_installed();
            Some(telemetry::install::from_env(&OtelEnv::from_env(), meters))
        } else {
            None
        };
        if matches!(self.propagation, Propagation::Global) {
            propagation::install_default_if_unset();
        }
        let (address, port) = connection::server_address(url.as_deref(), &client.server_info());
        // The provider set up from the environment is also the global one;
        // holding it directly spares a box per span.
        let tracer_provider = self.tracer_provider.or_else(|| {
            installed
                .as_ref()
                .and_then(|installed| installed.tracer_provider.clone())
        });
        let telemetry = Telemetry::new(
            tracer_provider,
            self.meter_provider.as_ref(),
            self.propagation,
        )
        .with_server(address.as_deref(), port);
        events.set_metrics(telemetry.metrics().clone());

        let publisher = Publisher::from_parts(client.clone(), telemetry.clone());
        let (stop, _) = StopHandle::new();
        let in_flight = InFlight::default();
        let shared = Shared {
            in_flight: in_flight.clone(),
            states,
        };
        let mut tasks = JoinSet::new();
        let jetstream = async_nats::jetstream::new(client.clone());
        let mut streams = self.streams;
        if self.declared_streams {
            streams.extend(jetstream::declared_streams());
        }
        let subscribed = async {
            jetstream::streams::ensure_all(&jetstream, &streams, &telemetry).await?;
            for &handler in &handlers {
                match handler.jetstream() {
                    None => {
                        let subscriber = subscription::subscribe(&client, handler).await?;
                        tasks.spawn(subscription::serve(
                            handler,
                            subscriber,
                            publisher.clone(),
                            shared.clone(),
                            stop.subscribe(),
                        ));
                    }
                    Some(spec) => {
                        let consumer =
                            jetstream::consumer::ensure(&jetstream, handler, spec).await?;
                        tasks.spawn(jetstream::consumer::serve(
                            handler,
                            spec,
                            jetstream.clone(),
                            consumer,
                            publisher.clone(),
                            shared.clone(),
                            stop.subscribe(),
                        ));
                    }
                }
            }
            connection::round_trip(&client).await
        }
        .await;
        if let Err(error) = subscribed {
            // Whatever was set up for this runtime goes with it.
            tasks.abort_all();
            if let Some(installed) = installed {
                installed.shutdown(Duration::from_secs(2)).await;
            }
            return Err(error);
        }

        tracing::info!(count = handlers.len(), "nats-trace serving handlers");
        for handler in &handlers {
            tracing::info!(
                handler = handler.name(),
                subject = handler.subject(),
                queue = handler.queue().unwrap_or("-"),
                concurrency = handler.concurrency(),
                "handler registered"
            );
        }

        let id = NEXT_RUNTIME_ID.fetch_add(1, Ordering::Relaxed);
        current::install(id, publisher.clone());
        Ok(Running {
            shut_down: false,
            events,
            id,
            installed,
            publisher,
            client,
            owns_client,
            handlers,
            stop,
            tasks,
            in_flight,
            telemetry,
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

/// A runtime serving its handlers in the background. Call
/// [`stop`](Running::stop) for a graceful shutdown.
#[must_use = "dropping a Running stops it; call .stop().await to wait for a graceful shutdown"]
pub struct Running {
    /// Set once `stop` finished, so `Drop` has nothing left to do.
    shut_down: bool,
    events: Arc<ConnectionEvents>,
    id: u64,
    installed: Option<Installed>,
    publisher: Publisher,
    client: Client,
    owns_client: bool,
    handlers: Vec<&'static Handler>,
    stop: StopHandle,
    tasks: JoinSet<()>,
    in_flight: InFlight,
    telemetry: Telemetry,
    shutdown_timeout: Duration,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("handlers", &self.handlers)
            .field("in_flight", &self.in_flight.count())
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The handlers this runtime serves, sorted by subject.
    pub fn handlers(&self) -> &[&'static Handler] {
        &self.handlers
    }

    /// The connection the handlers use.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Connection events since start: disconnects, reconnects, slow
    /// consumers, lame duck notices. Counted only for connections the runtime
    /// opened itself.
    pub fn connection_stats(&self) -> ConnectionStats {
        self.events.stats()
    }

    /// A [`Publisher`] on this runtime's connection, traced like its handlers.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Runs `future` with this runtime as the one `#[nats_publisher]`
    /// functions publish on. Only needed when several runtimes run in one
    /// process; otherwise the most recently started one is used.
    pub async fn scope<F: Future>(&self, future: F) -> F::Output {
        current::scope(self.publisher.clone(), future).await
    }

    /// A handle that stops this runtime from elsewhere; [`stopped`](Self::stopped)
    /// then completes.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Waits until a [`StopHandle`] asks to stop, then shuts down.
    pub async fn stopped(self) -> Result<ShutdownReport, Error> {
        let mut stopped = self.stop.subscribe();
        let _ = stopped.wait_for(|s| *s).await;
        self.stop().await
    }

    /// Shuts down gracefully: stops taking messages, waits up to the shutdown
    /// timeout for in-flight handlers (their replies are sent), drains the
    /// connection if the runtime opened it, and flushes telemetry.
    pub async fn stop(mut self) -> Result<ShutdownReport, Error> {
        self.stop.stop();
        current::uninstall(self.id);
        // One deadline for the whole shutdown, so a lost connection cannot
        // stretch it.
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let finished = tokio::time::timeout_at(deadline, join_all(&mut self.tasks)).await;
        let result = match finished {
            Ok(()) => Ok(()),
            Err(_) => {
                let unfinished = self.in_flight.count();
                self.tasks.abort_all();
                join_all(&mut self.tasks).await;
                tracing::warn!(unfinished, timeout = ?self.shutdown_timeout, "shutdown timed out");
                Err(Error::ShutdownTimeout {
                    unfinished,
                    timeout: self.shutdown_timeout,
                })
            }
        };
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if connected {
            // Replies and publishes of the finished handlers reach the server.
            let grace = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
            match tokio::time::timeout_at(grace, self.client.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "flushing the connection failed"),
                Err(_) => tracing::warn!("flushing the connection timed out"),
            }
            if self.owns_client
                && let Err(error) = self.client.drain().await
            {
                tracing::warn!(%error, "draining the connection failed");
            }
        } else {
            tracing::warn!(
                "the connection to NATS is down at shutdown: replies and publishes \
                 still buffered in the client are not sent"
            );
        }
        // Telemetry gets what is left of the deadline, at least a second.
        let telemetry_deadline = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
        // A tracer provider the runtime set up is shut down below, which
        // exports the rest: it is not flushed first as well.
        let shut_down_below = self
            .installed
            .as_ref()
            .is_some_and(|installed| installed.tracer_provider.is_some());
        if !shut_down_below
            && tokio::time::timeout_at(telemetry_deadline, self.telemetry.flush())
                .await
                .is_err()
        {
            tracing::warn!("flushing spans did not finish before the shutdown deadline");
        }
        let mut report = ShutdownReport::default();
        if let Some(installed) = self.installed.take() {
            let remaining = telemetry_deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_secs(1));
            report.spans = Some(installed.shutdown(remaining / 2).await);
        }
        self.shut_down = true;
        tracing::info!("nats-trace stopped");
        result.map(|()| report)
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// What happened to the spans, when the runtime set up telemetry from
    /// the environment: exported, failed, and dropped by the batch processor.
    pub spans: Option<SpanReport>,
}

/// Fails when a handler takes state the runtime was not given.
fn check_states(handlers: &[&'static Handler], states: &States) -> Result<(), Error> {
    for handler in handlers {
        let requirements = handler.requirements();
        if let Some(&(_, type_name)) = requirements
            .states()
            .iter()
            .find(|(type_id, _)| !states.contains(*type_id))
        {
            let (file, line) = handler.location();
            return Err(Error::MissingState {
                handler: format!("{} ({file}:{line})", handler.name()),
                type_name,
            });
        }
    }
    Ok(())
}

/// Waits for every task, logging those that panicked.
async fn join_all(tasks: &mut JoinSet<()>) {
    while let Some(joined) = tasks.join_next().await {
        if let Err(error) = joined
            && error.is_panic()
        {
            tracing::error!(%error, "a handler's message loop panicked");
        }
    }
}

impl Drop for Running {
    /// Dropping a running runtime without [`Running::stop`] still stops it:
    /// it stops taking messages and lets in-flight handlers finish in the
    /// background, bounded by the shutdown timeout.
    fn drop(&mut self) {
        current::uninstall(self.id);
        if self.shut_down {
            return;
        }
        self.stop.stop();
        let mut tasks = std::mem::take(&mut self.tasks);
        let timeout = self.shutdown_timeout;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if tokio::time::timeout(timeout, join_all(&mut tasks))
                    .await
                    .is_err()
                {
                    tracing::warn!("a dropped runtime's handlers did not finish in time");
                }
            });
        }
    }
}
