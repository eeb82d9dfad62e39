//! What the code `#[nats_subscriber]` and `#[nats_publisher]` generate
//! calls: for each of the user's types, the extractor, codec or error
//! conversion it gets. Not public API.
//!
//! The choice is made by the compiler from the traits a type implements,
//! never from its name: the generated code calls a method on
//! `&&&&Param<T>` (or `&&Probe<T>`, ...), and method resolution takes the
//! first of these impls, from the most references down, whose bounds hold
//! ("autoref specialization"). So a type that implements
//! [`FromPayload`] is taken by it even when it is also `Deserialize`, and a
//! type alias behaves as the type it stands for. The last impl of each
//! chain always applies, and its method's bound fails with a message that
//! names the fix.
//!
//! Parameters, from first choice to last:
//! 1. `State<T>`, whose `T` must be `Clone + Send + Sync + 'static`;
//! 2. `T: FromMessageParts`;
//! 3. `T: FromPayload`;
//! 4. `T: DeserializeOwned`, a JSON payload;
//! 5. none of these: a compile error.
//!
//! Outputs are split into `Result<T, E>` (a non-`Result` `R` as
//! `Result<R, Infallible>`); `T` is encoded by [`ToReply`], else as JSON if
//! `Serialize`; `E` is a [`Failure`], else converted by [`IntoFailure`],
//! else by its `Display`.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, JsonCodec};
use crate::context::MessageContext;
use crate::extract::{FromMessageParts, FromPayload, Requirements, State};
use crate::failure::{Failure, IntoFailure};
use crate::reply::{Reply, ToReply};

/// The traits whose methods the generated code calls, imported with
/// `use …::adapter::prelude::*;`.
pub mod prelude {
    pub use super::{
        AsJsonPayload as _, AsNothing as _, AsParts as _, AsPayload as _, AsState as _,
        ConvertDisplay as _, ConvertFailure as _, ConvertIntoFailure as _, ConvertNothing as _,
        EncodeJson as _, EncodeNothing as _, EncodeToReply as _, SplitResult as _, SplitValue as _,
        Tally as _,
    };
}

/// Declares a probe: a zero-sized stand-in for a type `T`, whose methods
/// the compiler picks by the traits `T` implements. `Copy`, so that a
/// method taking it by value is found through any number of references.
macro_rules! probe {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        pub struct $name<T>(PhantomData<fn() -> T>);

        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<T> Copy for $name<T> {}

        impl<T> $name<T> {
            /// The probe of `T`.
            #[allow(clippy::new_without_default)]
            pub const fn new() -> Self {
                $name(PhantomData)
            }

            /// The probe of `value`'s type.
            pub fn of(value: &T) -> Self {
                let _ = value;
                $name(PhantomData)
            }
        }
    };
}

/// Marks a parameter that reads the message around the body.
pub struct IsPart;
/// Marks the parameter that decodes the body.
pub struct IsPayload;
/// Marks a parameter that is neither, already reported: counted so that
/// it causes no second error.
pub struct IsUnknown;

probe!(
    /// A handler parameter of type `T`, for the compiler to choose its extractor.
    Param
);

/// `State<T>`: first, so that a `T` that is not `Clone`, `Send` or `Sync`
/// is reported as such.
pub trait AsState<T> {
    /// Reads the state.
    fn __nats_trace_extract(
        self,
        ctx: &MessageContext,
        body: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<State<T>, Failure>> + Send
    where
        T: Clone + Send + Sync + 'static;
    /// A part, not the payload.
    fn __nats_trace_kind(self) -> IsPart;
    /// The state it needs.
    fn __nats_trace_requirements(self, requirements: &mut Requirements)
    where
        T: 'static;
}

impl<T> AsState<T> for &&&&Param<State<T>> {
    fn __nats_trace_extract(
        self,
        ctx: &MessageContext,
        _: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<State<T>, Failure>> + Send
    where
        T: Clone + Send + Sync + 'static,
    {
        State::<T>::from_message_parts(ctx)
    }

    fn __nats_trace_kind(self) -> IsPart {
        IsPart
    }

    fn __nats_trace_requirements(self, requirements: &mut Requirements)
    where
        T: 'static,
    {
        requirements.state::<T>();
    }
}

/// Any [`FromMessageParts`] extractor.
pub trait AsParts<T> {
    /// Runs the extractor.
    fn __nats_trace_extract(
        self,
        ctx: &MessageContext,
        body: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<T, Failure>> + Send;
    /// A part, not the payload.
    fn __nats_trace_kind(self) -> IsPart;
    /// The state it needs.
    fn __nats_trace_requirements(self, requirements: &mut Requirements);
}

impl<T: FromMessageParts> AsParts<T> for &&&Param<T> {
    async fn __nats_trace_extract(
        self,
        ctx: &MessageContext,
        _: &mut Option<Bytes>,
    ) -> Result<T, Failure> {
        T::from_message_parts(ctx)
            .await
            .map_err(|rejection| rejection.into_failure().rejected_by::<T, T::Rejection>())
    }

    fn __nats_trace_kind(self) -> IsPart {
        IsPart
    }

    fn __nats_trace_requirements(self, requirements: &mut Requirements) {
        T::requirements(requirements);
    }
}

/// Any [`FromPayload`] extractor.
pub trait AsPayload<T> {
    /// Decodes the body.
    fn __nats_trace_extract(
        self,
        ctx: &MessageContext,
        body: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<T, Failure>> + Send;
    /// The payload.
    fn __nats_trace_kind(self) -> IsPayload;
    /// Nothing.
    fn __nats_trace_requirements(self, requirements: &mut Requirements);
}

impl<T: FromPayload> AsPayload<T> for &&Param<T> {
    fn __nats_trace_extract(
        self,
        ctx: &MessageContext,
        body: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<T, Failure>> + Send {
        // Taken before the future, which then does not borrow `body`; the
        // macro checked there is one payload.
        let body = body.take().unwrap_or_default();
        async move {
            T::from_payload(body, ctx)
                .await
                .map_err(|rejection| rejection.into_failure().rejected_by::<T, T::Rejection>())
        }
    }

    fn __nats_trace_kind(self) -> IsPayload {
        IsPayload
    }

    fn __nats_trace_requirements(self, _: &mut Requirements) {}
}

/// A bare `T: Deserialize`: a JSON payload.
pub trait AsJsonPayload<T> {
    /// Decodes the body as JSON.
    fn __nats_trace_extract(
        self,
        ctx: &MessageContext,
        body: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<T, Failure>> + Send;
    /// The payload.
    fn __nats_trace_kind(self) -> IsPayload;
    /// Nothing.
    fn __nats_trace_requirements(self, requirements: &mut Requirements);
}

impl<T: DeserializeOwned + Send> AsJsonPayload<T> for &Param<T> {
    fn __nats_trace_extract(
        self,
        _: &MessageContext,
        body: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<T, Failure>> + Send {
        let decoded = codec::decode::<JsonCodec, T>(body.take().unwrap_or_default());
        std::future::ready(decoded)
    }

    fn __nats_trace_kind(self) -> IsPayload {
        IsPayload
    }

    fn __nats_trace_requirements(self, _: &mut Requirements) {}
}

/// A type that is no handler parameter: never implemented, so that using
/// one is reported with this message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler parameter",
    label = "not an extractor, nor a payload",
    note = "derive `serde::Deserialize` to take it as the JSON payload, wrap it in a codec (`Json<T>`, `Protobuf<T>`, `MsgPack<T>`), \
            or implement `nats_trace_runtime::FromMessageParts` (read from the subject, headers or state) or `nats_trace_runtime::FromPayload` (decode the body)"
)]
pub trait HandlerParameter {}

/// The last choice: a compile error.
pub trait AsNothing<T> {
    /// Fails to compile.
    fn __nats_trace_extract(
        self,
        ctx: &MessageContext,
        body: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<T, Failure>> + Send
    where
        T: HandlerParameter;
    /// Counted as whatever fits, so only one error is reported.
    fn __nats_trace_kind(self) -> IsUnknown;
    /// Nothing.
    fn __nats_trace_requirements(self, requirements: &mut Requirements);
}

impl<T> AsNothing<T> for Param<T> {
    fn __nats_trace_extract(
        self,
        _: &MessageContext,
        _: &mut Option<Bytes>,
    ) -> impl Future<Output = Result<T, Failure>> + Send
    where
        T: HandlerParameter,
    {
        std::future::pending()
    }

    fn __nats_trace_kind(self) -> IsUnknown {
        IsUnknown
    }

    fn __nats_trace_requirements(self, _: &mut Requirements) {}
}

/// The payloads counted so far: none.
pub struct NoPayload;
/// The payloads counted so far: one.
pub struct OnePayload;

/// Counts payload parameters, at compile time.
pub trait Tally<K> {
    /// The count with this parameter.
    type Next;
    /// Adds this parameter.
    fn tally(self, kind: K) -> Self::Next;
}

impl Tally<IsPart> for NoPayload {
    type Next = NoPayload;
    fn tally(self, _: IsPart) -> NoPayload {
        self
    }
}

impl Tally<IsPayload> for NoPayload {
    type Next = OnePayload;
    fn tally(self, _: IsPayload) -> OnePayload {
        OnePayload
    }
}

impl Tally<IsUnknown> for NoPayload {
    type Next = OnePayload;
    fn tally(self, _: IsUnknown) -> OnePayload {
        OnePayload
    }
}

impl<K: AfterThePayload> Tally<K> for OnePayload {
    type Next = OnePayload;
    fn tally(self, _: K) -> OnePayload {
        self
    }
}

/// The parameters that may follow the payload: any but a second payload.
#[diagnostic::on_unimplemented(
    message = "a handler takes exactly one payload parameter, and this is a second one",
    label = "a second payload",
    note = "put the fields in one type, and read the subject, headers or state with extractors such as `MessageContext` or `State<T>`"
)]
pub trait AfterThePayload {}

impl AfterThePayload for IsPart {}
impl AfterThePayload for IsUnknown {}

/// Holds when exactly one parameter is the payload.
#[diagnostic::on_unimplemented(
    message = "a handler takes exactly one payload parameter, and this one has none",
    label = "no parameter decodes the message body",
    note = "add one, e.g. `order: Order` for JSON or `body: bytes::Bytes` for the raw body; take `_: ()` to ignore the body"
)]
pub trait ExactlyOnePayload {}

impl ExactlyOnePayload for OnePayload {}

/// Fails to compile unless `count` is one payload.
pub fn exactly_one_payload<C: ExactlyOnePayload>(count: C) {
    let _ = count;
}

probe!(
    /// A handler's output type, for the compiler to split into `Ok` and `Err`.
    Output
);

impl<T> Output<T> {
    /// Fixes `T` by inference, from code that never runs.
    pub fn observe(&self, value: T) {
        let _ = value;
    }
}

/// A `Result` output: its `Ok` is the reply, its `Err` the failure.
pub trait SplitResult<T, E> {
    /// The result itself.
    fn __nats_trace_split(self, output: Result<T, E>) -> Result<T, E>;
    /// The `Ok` type's probe.
    fn __nats_trace_ok(self) -> Probe<T>;
}

impl<T, E> SplitResult<T, E> for &Output<Result<T, E>> {
    fn __nats_trace_split(self, output: Result<T, E>) -> Result<T, E> {
        output
    }

    fn __nats_trace_ok(self) -> Probe<T> {
        Probe(PhantomData)
    }
}

/// Any other output: the reply.
pub trait SplitValue<R> {
    /// `Ok(output)`.
    fn __nats_trace_split(self, output: R) -> Result<R, Infallible>;
    /// The output's probe.
    fn __nats_trace_ok(self) -> Probe<R>;
}

impl<R> SplitValue<R> for Output<R> {
    fn __nats_trace_split(self, output: R) -> Result<R, Infallible> {
        Ok(output)
    }

    fn __nats_trace_ok(self) -> Probe<R> {
        Probe(PhantomData)
    }
}

probe!(
    /// A reply or published type, for the compiler to choose its encoding.
    Probe
);

/// A [`ToReply`] type.
pub trait EncodeToReply<T> {
    /// Encodes it.
    fn __nats_trace_encode(self, value: &T) -> Result<Reply, Failure>;
    /// Whether it answers requests.
    fn __nats_trace_replies(self) -> bool;
}

impl<T: ToReply> EncodeToReply<T> for &&Probe<T> {
    fn __nats_trace_encode(self, value: &T) -> Result<Reply, Failure> {
        value.to_reply()
    }

    fn __nats_trace_replies(self) -> bool {
        T::REPLIES
    }
}

/// A bare `T: Serialize`: JSON.
pub trait EncodeJson<T> {
    /// Encodes it as JSON.
    fn __nats_trace_encode(self, value: &T) -> Result<Reply, Failure>;
    /// It answers requests.
    fn __nats_trace_replies(self) -> bool;
}

impl<T: Serialize> EncodeJson<T> for &Probe<T> {
    fn __nats_trace_encode(self, value: &T) -> Result<Reply, Failure> {
        codec::encode::<JsonCodec, T>(value)
    }

    fn __nats_trace_replies(self) -> bool {
        true
    }
}

/// The last choice: a compile error naming [`ToReply`].
pub trait EncodeNothing<T> {
    /// Fails to compile.
    fn __nats_trace_encode(self, value: &T) -> Result<Reply, Failure>
    where
        T: ToReply;
    /// Reported by `encode`.
    fn __nats_trace_replies(self) -> bool;
}

impl<T> EncodeNothing<T> for Probe<T> {
    fn __nats_trace_encode(self, value: &T) -> Result<Reply, Failure>
    where
        T: ToReply,
    {
        value.to_reply()
    }

    fn __nats_trace_replies(self) -> bool {
        true
    }
}

probe!(
    /// A handler's error type, for the compiler to choose its conversion.
    ErrorProbe
);

/// A [`Failure`] as it is.
pub trait ConvertFailure {
    /// The failure.
    fn __nats_trace_convert(self, error: Failure) -> Failure;
}

impl ConvertFailure for &&&ErrorProbe<Failure> {
    fn __nats_trace_convert(self, error: Failure) -> Failure {
        error
    }
}

/// An [`IntoFailure`] error, named by its type unless it names itself.
pub trait ConvertIntoFailure<E> {
    /// Converts it.
    fn __nats_trace_convert(self, error: E) -> Failure;
}

impl<E: IntoFailure> ConvertIntoFailure<E> for &&ErrorProbe<E> {
    fn __nats_trace_convert(self, error: E) -> Failure {
        error.into_failure().or_error_type::<E>()
    }
}

/// Any other `Display` error: code 500, retried.
pub trait ConvertDisplay<E> {
    /// Converts it.
    fn __nats_trace_convert(self, error: E) -> Failure;
}

impl<E: Display> ConvertDisplay<E> for &ErrorProbe<E> {
    fn __nats_trace_convert(self, error: E) -> Failure {
        Failure::handler(error)
    }
}

/// An error type that is neither: never implemented, so that using one is
/// reported with this message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's error type",
    label = "neither `Display` nor `IntoFailure`",
    note = "implement `std::fmt::Display` (e.g. with thiserror), or `nats_trace_runtime::IntoFailure` to choose its service code and JetStream disposition"
)]
pub trait HandlerError {}

/// The last choice: a compile error.
pub trait ConvertNothing<E> {
    /// Fails to compile.
    fn __nats_trace_convert(self, error: E) -> Failure
    where
        E: HandlerError;
}

impl<E> ConvertNothing<E> for ErrorProbe<E> {
    fn __nats_trace_convert(self, _: E) -> Failure
    where
        E: HandlerError,
    {
        unreachable!("no type implements HandlerError")
    }
}

/// The return type of a `#[nats_publisher]` function: a `Result`, whatever
/// it is called.
#[diagnostic::on_unimplemented(
    message = "#[nats_publisher] needs a `Result<T, E>` return type, not `{Self}`",
    label = "`T` is published, and a failed publish reaches the caller as `E`",
    note = "`E` must implement `From<nats_trace_runtime::PublishError>` (`anyhow::Error` does)"
)]
pub trait PublisherOutput: Sized {
    /// What is published.
    type Ok;
    /// What a failed publish becomes.
    type Err;
    /// The output as a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
    /// The output from a `Result`.
    fn from_result(result: Result<Self::Ok, Self::Err>) -> Self;
}

impl<T, E> PublisherOutput for Result<T, E> {
    type Ok = T;
    type Err = E;

    fn into_result(self) -> Self {
        self
    }

    fn from_result(result: Self) -> Self {
        result
    }
}

#[cfg(test)]
#[allow(
    clippy::needless_borrow,
    reason = "the references choose the impl, as in the generated code"
)]
mod tests {
    use super::prelude::*;
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize)]
    struct Order {
        id: u32,
    }

    #[derive(Debug)]
    struct Coded;

    impl IntoFailure for Coded {
        fn into_failure(self) -> Failure {
            Failure::service(404, "gone")
        }
    }

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("displayed")
        }
    }

    #[test]
    fn raw_types_win_over_json_and_json_is_the_default() {
        // `String` and `Vec<u8>` are `Deserialize` too: the raw impls win.
        let _: IsPayload = (&&&&Param::<String>::new()).__nats_trace_kind();
        let _: IsPart = (&&&&Param::<State<u8>>::new()).__nats_trace_kind();
        let _: IsPart = (&&&&Param::<MessageContext>::new()).__nats_trace_kind();
        let _: IsPayload = (&&&&Param::<Order>::new()).__nats_trace_kind();
        let raw = (&&Probe::of(&"a\"b".to_string()))
            .__nats_trace_encode(&"a\"b".to_string())
            .expect("raw");
        assert_eq!(raw.body(), "a\"b");
        let json = (&&Probe::of(&Order { id: 3 }))
            .__nats_trace_encode(&Order { id: 3 })
            .expect("json");
        assert_eq!(json.body(), "{\"id\":3}");
        assert!(!(&&Probe::<()>(PhantomData)).__nats_trace_replies());
        assert!((&&Probe::<Order>(PhantomData)).__nats_trace_replies());
    }

    #[test]
    fn an_error_that_chooses_its_failure_wins_over_its_display() {
        let failure = (&&&ErrorProbe::of(&Coded)).__nats_trace_convert(Coded);
        assert_eq!(failure.service_code(), 404);
        assert_eq!(failure.error_type(), std::any::type_name::<Coded>());
        let io = std::io::Error::other("disk");
        let failure = (&&&ErrorProbe::of(&io)).__nats_trace_convert(io);
        assert_eq!((failure.service_code(), failure.message()), (500, "disk"));
        let own = Failure::service(409, "taken");
        assert_eq!(
            (&&&ErrorProbe::of(&own))
                .__nats_trace_convert(own)
                .error_type(),
            "409"
        );
    }

    #[test]
    fn results_split_and_values_are_ok() {
        let result: Result<u8, Coded> = Ok(1);
        assert!(matches!(
            (&Output::of(&result)).__nats_trace_split(result),
            Ok(1)
        ));
        let value = 2u8;
        assert!(matches!(
            (&Output::of(&value)).__nats_trace_split(value),
            Ok(2)
        ));
    }
}
