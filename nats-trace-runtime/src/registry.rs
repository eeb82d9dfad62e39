//! Handlers registered by `#[nats_subscriber]`, collected through `inventory`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::context::Delivery;
use crate::error::Error;
use crate::extract::Requirements;
use crate::failure::Failure;
use crate::jetstream::JetStreamSpec;
use crate::reply::Reply;

/// The future a handler adapter returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply, Failure>> + Send>>;

/// The concurrency a handler gets when its macro does not set `concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// The data `#[nats_subscriber]` generates for one handler. Not public API.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct HandlerSpec {
    /// `module::path::fn_name`.
    pub name: &'static str,
    /// The subscription subject, possibly with wildcards.
    pub subject: &'static str,
    /// `process {subject}`, built at compile time.
    pub span_name: &'static str,
    /// Where messages come from.
    pub source: Source,
    /// Whether the handler returns a value, which answers requests: its
    /// `Ok` type's [`ToReply::REPLIES`](crate::ToReply::REPLIES), found by
    /// the compiler.
    pub replies: fn() -> bool,
    /// Declares the state its extractors need, checked at start.
    pub requirements: fn(&mut Requirements),
    /// The macro's `concurrency`, if set.
    pub concurrency: Option<usize>,
    /// The adapter from a message to the user's function. It must do
    /// nothing before its future is first polled: the pipeline calls it
    /// before it sets the current trace context and publisher, which are in
    /// place for every poll.
    pub call: fn(Delivery) -> HandlerFuture,
    /// Where the handler is defined.
    pub file: &'static str,
    /// Where the handler is defined.
    pub line: u32,
}

/// Where a handler's messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A core NATS subscription, in a queue group if one is named.
    Core {
        /// The queue group.
        queue: Option<&'static str>,
    },
    /// A durable JetStream pull consumer.
    JetStream(&'static JetStreamSpec),
}

/// A registered message handler.
pub struct Handler {
    spec: HandlerSpec,
}

inventory::collect!(Handler);

impl Handler {
    /// Wraps generated data. Not public API.
    #[doc(hidden)]
    pub const fn __new(spec: HandlerSpec) -> Self {
        Handler { spec }
    }

    /// The handler's path, `module::fn_name`.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The subscription subject, e.g. `orders.*`.
    pub fn subject(&self) -> &'static str {
        self.spec.subject
    }

    /// The core NATS queue group, if the handler shares messages with
    /// other instances through one.
    pub fn queue(&self) -> Option<&'static str> {
        match self.spec.source {
            Source::Core { queue } => queue,
            Source::JetStream(_) => None,
        }
    }

    /// The durable consumer, for a JetStream handler.
    pub fn jetstream(&self) -> Option<&'static JetStreamSpec> {
        match self.spec.source {
            Source::Core { .. } => None,
            Source::JetStream(spec) => Some(spec),
        }
    }

    /// Whether the handler answers requests: it returns a value (`T` or
    /// `Result<T, E>` with `T` not `()`). Handlers returning `()` never reply,
    /// so they never answer a JetStream publish on a subject a stream captures.
    pub fn replies(&self) -> bool {
        (self.spec.replies)()
    }

    /// What the handler's extractors need from the runtime, e.g. the
    /// types of their [`State`](crate::State).
    pub fn requirements(&self) -> Requirements {
        let mut requirements = Requirements::default();
        (self.spec.requirements)(&mut requirements);
        requirements
    }

    /// Where the handler's messages come from.
    pub fn source(&self) -> Source {
        self.spec.source
    }

    /// How many messages this handler processes at once.
    pub fn concurrency(&self) -> usize {
        self.spec.concurrency.unwrap_or(DEFAULT_CONCURRENCY)
    }

    /// The source file and line of the handler.
    pub fn location(&self) -> (&'static str, u32) {
        (self.spec.file, self.spec.line)
    }

    /// The name of the handler's process spans, `process {subject}`.
    pub fn span_name(&self) -> &'static str {
        self.spec.span_name
    }

    pub(crate) fn call(&self, delivery: Delivery) -> HandlerFuture {
        (self.spec.call)(delivery)
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name())
            .field("subject", &self.subject())
            .field("source", &self.source())
            .field("concurrency", &self.concurrency())
            .finish()
    }
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <- {}", self.name(), self.subject())?;
        match self.source() {
            Source::Core { queue: Some(queue) } => write!(f, " (queue {queue})"),
            Source::Core { queue: None } => Ok(()),
            Source::JetStream(js) => write!(f, " (stream {}, consumer {})", js.stream, js.consumer),
        }
    }
}

/// Every handler registered in this program, sorted by subject, queue and
/// name (`inventory` itself has no order).
pub fn registered_handlers() -> Vec<&'static Handler> {
    let mut handlers: Vec<&'static Handler> = inventory::iter::<Handler>.into_iter().collect();
    handlers.sort_by_key(|h| (h.subject(), h.queue(), h.name()));
    handlers
}

/// What two handlers must not share: a subject and queue group (they would
/// split its messages at random, or without a group handle each twice), or
/// a durable consumer.
fn claim(
    handler: &Handler,
) -> (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
) {
    match handler.source() {
        Source::Core { queue } => (Some(handler.subject()), queue, None),
        Source::JetStream(js) => (None, Some(js.stream), Some(js.consumer)),
    }
}

/// Fails when two handlers claim the same subject and queue group, or the
/// same durable consumer.
pub fn check_unique(handlers: &[&'static Handler]) -> Result<(), Error> {
    for (i, a) in handlers.iter().enumerate() {
        if let Some(b) = handlers[i + 1..].iter().find(|b| claim(b) == claim(a)) {
            return Err(Error::DuplicateHandler {
                subject: a.subject(),
                queue: a.queue(),
                consumer: a.jetstream().map(|js| js.consumer),
                first: describe(a),
                second: describe(b),
            });
        }
    }
    Ok(())
}

fn describe(handler: &Handler) -> String {
    let (file, line) = handler.location();
    format!("{} ({file}:{line})", handler.name())
}
