//! Handler parameters: every one comes from an extractor, as in axum.
//!
//! - [`FromMessageParts`] reads from the message around the body: its
//!   subject, headers, the runtime's [`State`], or anything else in the
//!   [`MessageContext`]. A handler takes any number of them.
//! - [`FromPayload`] decodes the body. A handler takes exactly one payload;
//!   a bare `T: serde::Deserialize` is a JSON payload.
//!
//! Parameters may come in any order. An extractor that fails rejects the
//! message with its rejection's [`IntoFailure`]. [`Failure::bad_request`]
//! is the usual one: code 400 to a requester, a dead letter and term on
//! JetStream. A transient problem (a lookup that timed out) can say
//! [`Failure::service`]`(503, ..)` instead, which JetStream retries.
//!
//! ```
//! use nats_trace_runtime::prelude::*;
//!
//! /// The tenant a message is for, from its `Tenant` header.
//! struct Tenant(String);
//!
//! impl FromMessageParts for Tenant {
//!     type Rejection = Failure;
//!
//!     async fn from_message_parts(ctx: &MessageContext) -> Result<Self, Failure> {
//!         match ctx.header("Tenant") {
//!             Some(tenant) => Ok(Tenant(tenant.to_string())),
//!             None => Err(Failure::bad_request("the Tenant header is missing")),
//!         }
//!     }
//! }
//!
//! #[derive(Clone)]
//! struct Db { /* a pool */ }
//!
//! # #[derive(serde::Deserialize)] struct Order { id: u64 }
//! #[nats_subscriber(subject = "orders.created")]
//! async fn store(tenant: Tenant, order: Order, State(db): State<Db>) {
//!     let _ = (tenant.0, order.id, db);
//! }
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;

use crate::context::MessageContext;
use crate::failure::{Failure, IntoFailure};

/// A handler parameter read from the message around its body (axum's
/// `FromRequestParts`). Implement it for your own types, e.g. a tenant read
/// from a header; see the [module docs](self).
///
/// Built in: [`State<T>`], [`MessageContext`], [`Subject`] (the concrete
/// subject), [`HeaderMap`] (empty when the message has none), and
/// `Option<T>` of any of them (`None` instead of a rejection).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an extractor",
    label = "cannot be read from the message",
    note = "implement `nats_trace_runtime::FromMessageParts` for it"
)]
pub trait FromMessageParts: Sized + Send {
    /// Why the message is rejected; see [`IntoFailure`].
    type Rejection: IntoFailure;

    /// Reads the parameter.
    fn from_message_parts(
        ctx: &MessageContext,
    ) -> impl Future<Output = Result<Self, Self::Rejection>> + Send;

    /// Declares the state this extractor reads, so that a runtime missing
    /// it fails at `start()` rather than on every message. [`State<T>`]
    /// declares `T`; an extractor that reads state through
    /// [`MessageContext::state`] declares it here.
    fn requirements(requirements: &mut Requirements) {
        let _ = requirements;
    }
}

/// A handler parameter decoded from the message body (axum's
/// `FromRequest`). A handler takes exactly one.
///
/// Built in: `Bytes`, `Vec<u8>` and `String` (the body as it is; a
/// `String` must be UTF-8), `()` (the body ignored), and the codec wrappers
/// [`Json`](crate::Json), `Protobuf`,
/// `MsgPack` and [`Encoded`](crate::codec::Encoded). A
/// type that implements none of these but `serde::Deserialize` is decoded
/// as JSON.
pub trait FromPayload: Sized + Send {
    /// Why the body is rejected; see [`IntoFailure`].
    type Rejection: IntoFailure;

    /// Decodes the body.
    fn from_payload(
        body: Bytes,
        ctx: &MessageContext,
    ) -> impl Future<Output = Result<Self, Self::Rejection>> + Send;
}

/// Application state given to the runtime with
/// [`Builder::state`](crate::runtime::Builder::state), for example a
/// database pool or the configuration. Each runtime has its own, keyed by
/// type; a handler whose state is missing fails `start()`.
///
/// ```
/// use nats_trace_runtime::prelude::*;
///
/// #[derive(Clone)]
/// struct Config { greeting: String }
///
/// #[nats_subscriber(subject = "greet")]
/// async fn greet(name: String, State(config): State<Config>) -> String {
///     format!("{} {name}", config.greeting)
/// }
///
/// # async fn start() -> Result<(), nats_trace_runtime::Error> {
/// nats_trace_runtime::runtime::builder()
///     .state(Config { greeting: "hello".into() })
///     .run()
///     .await
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct State<T>(pub T);

impl<T> std::ops::Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for State<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Clone + Send + Sync + 'static> FromMessageParts for State<T> {
    type Rejection = Failure;

    async fn from_message_parts(ctx: &MessageContext) -> Result<Self, Failure> {
        // `start()` checked that the state is there, so this is only
        // reached by a context built without the runtime.
        ctx.state::<T>().cloned().map(State).ok_or_else(|| {
            Failure::service(
                500,
                format!("no state of type {}", std::any::type_name::<T>()),
            )
            .with_error_type("missing_state")
        })
    }

    fn requirements(requirements: &mut Requirements) {
        requirements.state::<T>();
    }
}

impl FromMessageParts for MessageContext {
    type Rejection = std::convert::Infallible;

    async fn from_message_parts(ctx: &MessageContext) -> Result<Self, Self::Rejection> {
        Ok(ctx.clone())
    }
}

/// The concrete subject, e.g. `orders.7` for a handler of `orders.*`.
impl FromMessageParts for Subject {
    type Rejection = std::convert::Infallible;

    async fn from_message_parts(ctx: &MessageContext) -> Result<Self, Self::Rejection> {
        Ok(ctx.subject_ref().clone())
    }
}

/// The message's headers, empty when it has none.
impl FromMessageParts for HeaderMap {
    type Rejection = std::convert::Infallible;

    async fn from_message_parts(ctx: &MessageContext) -> Result<Self, Self::Rejection> {
        Ok(ctx.headers().cloned().unwrap_or_default())
    }
}

/// `None` where `T` would reject the message. It requires nothing of the
/// runtime: an `Option<State<T>>` is `None` in a runtime given no `T`,
/// which starts all the same.
impl<T: FromMessageParts> FromMessageParts for Option<T> {
    type Rejection = std::convert::Infallible;

    async fn from_message_parts(ctx: &MessageContext) -> Result<Self, Self::Rejection> {
        Ok(T::from_message_parts(ctx).await.ok())
    }
}

/// What a handler's extractors need from the runtime, collected at start.
#[derive(Debug, Default)]
pub struct Requirements {
    states: Vec<(TypeId, &'static str)>,
}

impl Requirements {
    /// Declares that state of type `T` must be given to the runtime.
    pub fn state<T: 'static>(&mut self) {
        let key = (TypeId::of::<T>(), std::any::type_name::<T>());
        if !self.states.contains(&key) {
            self.states.push(key);
        }
    }

    /// The names of the state types required, in the order declared.
    pub fn state_names(&self) -> Vec<&'static str> {
        self.states.iter().map(|&(_, name)| name).collect()
    }

    /// The state types required, with their names.
    pub(crate) fn states(&self) -> &[(TypeId, &'static str)] {
        &self.states
    }
}

/// The state one runtime was given, by type.
#[derive(Default)]
pub(crate) struct States {
    values: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl States {
    /// Adds `value`, replacing an earlier value of its type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
    }

    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>())?.downcast_ref()
    }

    pub(crate) fn contains(&self, type_id: TypeId) -> bool {
        self.values.contains_key(&type_id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for States {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("States")
            .field("count", &self.values.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_keyed_by_type_and_replaced() {
        let mut states = States::default();
        states.insert(1u32);
        states.insert(String::from("a"));
        states.insert(2u32);
        assert_eq!(states.get::<u32>(), Some(&2));
        assert_eq!(states.get::<String>().map(String::as_str), Some("a"));
        assert_eq!(states.get::<u64>(), None);
        assert!(states.contains(TypeId::of::<String>()));
    }

    #[test]
    fn requirements_are_listed_once() {
        let mut requirements = Requirements::default();
        State::<u32>::requirements(&mut requirements);
        State::<u32>::requirements(&mut requirements);
        MessageContext::requirements(&mut requirements);
        assert_eq!(requirements.states(), &[(TypeId::of::<u32>(), "u32")]);
        let mut optional = Requirements::default();
        Option::<State<u64>>::requirements(&mut optional);
        assert!(
            optional.states().is_empty(),
            "an optional state is not required"
        );
    }
}
