//! Message bodies and Rust values: the codecs (JSON; protobuf and
//! MessagePack behind features; your own through [`Decoder`] and
//! [`Encoder`]), the wrappers that name a codec in a handler's types, and
//! the raw bodies (`Bytes`, `String`, `Vec<u8>`).
//!
//! The encoding is stated by the types, never guessed from their names:
//! a bare `T: Deserialize` payload or `T: Serialize` reply is JSON, a
//! wrapper names its codec, and the raw types take the body as it is.
//!
//! ```
//! use nats_trace_runtime::prelude::*;
//! # #[derive(serde::Deserialize, serde::Serialize)] struct Order { id: u64 }
//!
//! // The same handler three ways: JSON implied, JSON stated, raw bytes.
//! #[nats_subscriber(subject = "a")]
//! async fn implied(order: Order) -> Order { order }
//!
//! #[nats_subscriber(subject = "b")]
//! async fn stated(Json(order): Json<Order>) -> Json<Order> { Json(order) }
//!
//! #[nats_subscriber(subject = "c")]
//! async fn raw(body: Vec<u8>) -> Vec<u8> { body }
//! ```

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::MessageContext;
use crate::extract::FromPayload;
use crate::failure::Failure;
use crate::reply::{Reply, ToReply};

/// A codec that decodes bodies into `T`. Implement it, with [`Encoder`],
/// for a format of your own and use it through [`Encoded<C, T>`].
///
/// ```
/// use nats_trace_runtime::bytes::Bytes;
/// use nats_trace_runtime::codec::{Decoder, Encoded, Encoder};
/// use nats_trace_runtime::prelude::*;
///
/// /// Bodies of comma-separated numbers.
/// struct Csv;
///
/// impl Decoder<Vec<u64>> for Csv {
///     type Error = std::num::ParseIntError;
///     fn decode(body: Bytes) -> Result<Vec<u64>, Self::Error> {
///         String::from_utf8_lossy(&body).split(',').map(|n| n.trim().parse()).collect()
///     }
/// }
///
/// impl Encoder<u64> for Csv {
///     type Error = std::convert::Infallible;
///     fn encode(value: &u64) -> Result<Bytes, Self::Error> {
///         Ok(value.to_string().into())
///     }
/// }
///
/// #[nats_subscriber(subject = "numbers.sum")]
/// async fn sum(numbers: Encoded<Csv, Vec<u64>>) -> Encoded<Csv, u64> {
///     Encoded::new(numbers.into_inner().iter().sum())
/// }
/// ```
pub trait Decoder<T>: 'static {
    /// Why a body did not decode; its type name becomes the span's
    /// `error.type`.
    type Error: fmt::Display;

    /// Decodes a message body.
    fn decode(body: Bytes) -> Result<T, Self::Error>;

    /// The description a requester and the span get when `decode` failed.
    /// By default the error's `Display`; a codec whose errors quote the
    /// payload (serde's do) says something safer here.
    fn describe(error: &Self::Error) -> String {
        error.to_string()
    }
}

/// A codec that encodes `T` into bodies; see [`Decoder`].
pub trait Encoder<T: ?Sized>: 'static {
    /// Why a value did not encode.
    type Error: fmt::Display;

    /// Encodes a value.
    fn encode(value: &T) -> Result<Bytes, Self::Error>;
}

/// Decodes `body` with `C`, as a decode failure (code 400, dead letter on
/// JetStream) whose `error.type` is the codec's error type.
pub fn decode<C: Decoder<T>, T>(body: Bytes) -> Result<T, Failure> {
    C::decode(body).map_err(|error| Failure::decode_described::<C::Error>(C::describe(&error)))
}

/// Encodes `value` with `C` into a reply.
pub fn encode<C: Encoder<T>, T: ?Sized>(value: &T) -> Result<Reply, Failure> {
    C::encode(value)
        .map(Reply::new)
        .map_err(Failure::encode::<C::Error>)
}

/// JSON through `serde_json`: the default for bare `Deserialize` payloads
/// and `Serialize` replies.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl<T: DeserializeOwned> Decoder<T> for JsonCodec {
    type Error = serde_json::Error;

    fn decode(body: Bytes) -> Result<T, Self::Error> {
        serde_json::from_slice(&body)
    }

    /// Where the JSON went wrong, but not what it contained: serde's own
    /// message quotes payload values, which must not reach spans, logs or
    /// replies. That message is logged at debug level only.
    fn describe(error: &serde_json::Error) -> String {
        tracing::debug!(%error, "payload did not decode");
        let what = match error.classify() {
            serde_json::error::Category::Syntax => "is not valid JSON",
            serde_json::error::Category::Eof => "is truncated or empty JSON",
            serde_json::error::Category::Data => "does not match the handler's payload type",
            serde_json::error::Category::Io => "could not be read",
        };
        format!(
            "the payload {what} (line {}, column {})",
            error.line(),
            error.column()
        )
    }
}

impl<T: Serialize + ?Sized> Encoder<T> for JsonCodec {
    type Error = serde_json::Error;

    fn encode(value: &T) -> Result<Bytes, Self::Error> {
        serde_json::to_vec(value).map(Bytes::from)
    }
}

/// Protocol Buffers through `prost` (feature `protobuf`).
#[cfg(feature = "protobuf")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtobufCodec;

#[cfg(feature = "protobuf")]
impl<T: prost::Message + Default> Decoder<T> for ProtobufCodec {
    type Error = prost::DecodeError;

    fn decode(body: Bytes) -> Result<T, Self::Error> {
        T::decode(body)
    }
}

#[cfg(feature = "protobuf")]
impl<T: prost::Message> Encoder<T> for ProtobufCodec {
    type Error = prost::EncodeError;

    fn encode(value: &T) -> Result<Bytes, Self::Error> {
        Ok(Bytes::from(value.encode_to_vec()))
    }
}

/// MessagePack through `rmp-serde` (feature `msgpack`); structs are
/// encoded as maps, so fields can be added and reordered.
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPackCodec;

#[cfg(feature = "msgpack")]
impl<T: DeserializeOwned> Decoder<T> for MsgPackCodec {
    type Error = rmp_serde::decode::Error;

    fn decode(body: Bytes) -> Result<T, Self::Error> {
        rmp_serde::from_slice(&body)
    }

    /// Serde's messages quote payload values; only the kind of problem is
    /// kept.
    fn describe(error: &rmp_serde::decode::Error) -> String {
        tracing::debug!(%error, "payload did not decode");
        let what = match error {
            rmp_serde::decode::Error::Syntax(_) | rmp_serde::decode::Error::Utf8Error(_) => {
                "does not match the handler's payload type"
            }
            rmp_serde::decode::Error::InvalidMarkerRead(_)
            | rmp_serde::decode::Error::InvalidDataRead(_) => "is truncated MessagePack",
            _ => "is not valid MessagePack for the handler's payload type",
        };
        format!("the payload {what}")
    }
}

#[cfg(feature = "msgpack")]
impl<T: Serialize + ?Sized> Encoder<T> for MsgPackCodec {
    type Error = rmp_serde::encode::Error;

    fn encode(value: &T) -> Result<Bytes, Self::Error> {
        rmp_serde::to_vec_named(value).map(Bytes::from)
    }
}

/// A payload or reply in codec `C`: `Encoded<MyCodec, T>`. The built-in
/// codecs have wrappers of their own: [`Json`], `Protobuf` (feature
/// `protobuf`), `MsgPack` (feature `msgpack`).
pub struct Encoded<C, T> {
    value: T,
    codec: PhantomData<fn() -> C>,
}

impl<C, T> Encoded<C, T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Encoded {
            value,
            codec: PhantomData,
        }
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<C, T> std::ops::Deref for Encoded<C, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<C, T: fmt::Debug> fmt::Debug for Encoded<C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Encoded").field(&self.value).finish()
    }
}

impl<C: Decoder<T>, T: Send> FromPayload for Encoded<C, T> {
    type Rejection = Failure;

    async fn from_payload(body: Bytes, _: &MessageContext) -> Result<Self, Failure> {
        decode::<C, T>(body).map(Encoded::new)
    }
}

impl<C: Encoder<T>, T> ToReply for Encoded<C, T> {
    fn to_reply(&self) -> Result<Reply, Failure> {
        encode::<C, T>(&self.value)
    }
}

/// Declares a tuple-struct wrapper `$name<T>(pub T)` for codec `$codec`.
macro_rules! wrapper {
    ($(#[$meta:meta])* $name:ident, $codec:ty) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name<T>(pub T);

        impl<T: Send> FromPayload for $name<T>
        where
            $codec: Decoder<T>,
        {
            type Rejection = Failure;

            async fn from_payload(body: Bytes, _: &MessageContext) -> Result<Self, Failure> {
                decode::<$codec, T>(body).map($name)
            }
        }

        impl<T> ToReply for $name<T>
        where
            $codec: Encoder<T>,
        {
            fn to_reply(&self) -> Result<Reply, Failure> {
                encode::<$codec, T>(&self.0)
            }
        }

        impl<T> std::ops::Deref for $name<T> {
            type Target = T;

            fn deref(&self) -> &T {
                &self.0
            }
        }
    };
}

wrapper!(
    /// A JSON payload or reply, stated; a bare `Deserialize` / `Serialize`
    /// type is JSON too.
    Json,
    JsonCodec
);

#[cfg(feature = "protobuf")]
wrapper!(
    /// A Protocol Buffers payload or reply (feature `protobuf`), for any
    /// `prost::Message`.
    ///
    /// ```
    /// use nats_trace_runtime::prelude::*;
    ///
    /// #[derive(Clone, PartialEq, prost::Message)]
    /// struct Lookup { #[prost(string, tag = "1")] sku: String }
    ///
    /// #[derive(Clone, PartialEq, prost::Message)]
    /// struct Stock { #[prost(uint32, tag = "1")] count: u32 }
    ///
    /// #[nats_subscriber(subject = "stock.get")]
    /// async fn stock(Protobuf(lookup): Protobuf<Lookup>) -> Protobuf<Stock> {
    ///     Protobuf(Stock { count: lookup.sku.len() as u32 })
    /// }
    /// ```
    Protobuf,
    ProtobufCodec
);

#[cfg(feature = "msgpack")]
wrapper!(
    /// A MessagePack payload or reply (feature `msgpack`), for any serde type.
    ///
    /// ```
    /// use nats_trace_runtime::prelude::*;
    /// # #[derive(serde::Deserialize, serde::Serialize)] struct Order { id: u64 }
    ///
    /// #[nats_subscriber(subject = "orders.echo")]
    /// async fn echo(MsgPack(order): MsgPack<Order>) -> MsgPack<Order> {
    ///     MsgPack(order)
    /// }
    /// ```
    MsgPack,
    MsgPackCodec
);

impl FromPayload for Bytes {
    type Rejection = std::convert::Infallible;

    async fn from_payload(body: Bytes, _: &MessageContext) -> Result<Self, Self::Rejection> {
        Ok(body)
    }
}

impl FromPayload for Vec<u8> {
    type Rejection = std::convert::Infallible;

    async fn from_payload(body: Bytes, _: &MessageContext) -> Result<Self, Self::Rejection> {
        Ok(body.into())
    }
}

impl FromPayload for String {
    type Rejection = Failure;

    /// The body as UTF-8 text; anything else is a decode failure.
    async fn from_payload(body: Bytes, _: &MessageContext) -> Result<Self, Failure> {
        String::from_utf8(body.into()).map_err(|error| Failure::decode(error.utf8_error()))
    }
}

/// A handler that ignores the body takes `_: ()`.
impl FromPayload for () {
    type Rejection = std::convert::Infallible;

    async fn from_payload(_: Bytes, _: &MessageContext) -> Result<Self, Self::Rejection> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{Disposition, FailureKind};

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Order {
        id: u32,
    }

    #[test]
    fn json_round_trip() {
        let reply = encode::<JsonCodec, _>(&Order { id: 7 }).expect("encodes");
        let back: Order = decode::<JsonCodec, _>(reply.into_body()).expect("decodes");
        assert_eq!(back, Order { id: 7 });
    }

    #[test]
    fn bad_json_is_a_decode_failure_named_after_the_codec_error() {
        let failure = decode::<JsonCodec, Order>(Bytes::from_static(b"{not json")).unwrap_err();
        assert_eq!(failure.kind(), FailureKind::Decode);
        assert_eq!(failure.error_type(), "serde_json::error::Error");
        assert_eq!(failure.service_code(), 400);
        assert_eq!(failure.disposition(), Disposition::Reject);
    }

    #[test]
    fn decode_failures_never_quote_the_payload() {
        let body = Bytes::from_static(br#"{"id": "secret-card-number"}"#);
        let failure = decode::<JsonCodec, Order>(body).unwrap_err();
        assert_eq!(
            failure.message(),
            "the payload does not match the handler's payload type (line 1, column 27)"
        );
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn msgpack_round_trips_and_never_quotes_the_payload() {
        let reply = encode::<MsgPackCodec, _>(&Order { id: 9 }).expect("encodes");
        assert_eq!(
            decode::<MsgPackCodec, Order>(reply.into_body()).expect("decodes"),
            Order { id: 9 }
        );
        #[derive(serde::Serialize)]
        struct Wrong<'a> {
            id: &'a str,
        }
        let body = rmp_serde::to_vec_named(&Wrong { id: "secret" }).expect("encodes");
        let failure = decode::<MsgPackCodec, Order>(body.into()).unwrap_err();
        assert_eq!(failure.error_type(), "rmp_serde::decode::Error");
        assert!(
            !failure.message().contains("secret"),
            "{}",
            failure.message()
        );
    }

    #[cfg(feature = "protobuf")]
    #[test]
    fn protobuf_round_trips_and_rejects_garbage() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Stock {
            #[prost(uint32, tag = "1")]
            count: u32,
        }
        let reply = encode::<ProtobufCodec, _>(&Stock { count: 3 }).expect("encodes");
        let back: Stock = decode::<ProtobufCodec, _>(reply.into_body()).expect("decodes");
        assert_eq!(back.count, 3);
        let failure =
            decode::<ProtobufCodec, Stock>(Bytes::from_static(b"\xff\xff\xff")).unwrap_err();
        assert_eq!(failure.error_type(), "prost::error::DecodeError");
        assert_eq!(failure.kind(), FailureKind::Decode);
    }
}
