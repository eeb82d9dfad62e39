//! Turning message bodies into handler arguments and handler outputs into
//! reply bodies: JSON through serde, or raw `Bytes` / `String` as-is.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::outcome::{Failure, Reply};

/// Decodes a JSON body.
///
/// The failure says where the JSON went wrong but not what it contained:
/// serde's own message quotes payload values, which must not reach spans,
/// logs or replies. That message is logged at debug level only.
pub fn decode_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|error| {
        tracing::debug!(%error, "payload did not decode");
        let what = match error.classify() {
            serde_json::error::Category::Syntax => "is not valid JSON",
            serde_json::error::Category::Eof => "is truncated or empty JSON",
            serde_json::error::Category::Data => "does not match the handler's payload type",
            serde_json::error::Category::Io => "could not be read",
        };
        Failure::decode_described::<serde_json::Error>(format!(
            "the payload {what} (line {}, column {})",
            error.line(),
            error.column()
        ))
    })
}

/// Encodes a value as a JSON reply body.
pub fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<Reply, Failure> {
    serde_json::to_vec(value)
        .map(Reply::new)
        .map_err(Failure::encode)
}

/// Accepts any body for a `()` payload.
pub fn decode_unit(_body: &Bytes) -> Result<(), Failure> {
    Ok(())
}

/// An empty reply for a `()` output.
pub fn encode_unit(_value: &()) -> Result<Reply, Failure> {
    Ok(Reply::empty())
}

/// A body type taken as-is, without serde: `bytes::Bytes` or `String`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a raw body type",
    label = "raw bodies must be `bytes::Bytes` or `String`",
    note = "for JSON, use a type that derives `serde::Deserialize` / `serde::Serialize`"
)]
pub trait RawBody: Sized {
    /// Takes the body of an incoming message.
    fn from_body(body: Bytes) -> Result<Self, Failure>;
    /// Gives the body of an outgoing message.
    fn to_body(&self) -> Bytes;
}

impl RawBody for Bytes {
    fn from_body(body: Bytes) -> Result<Self, Failure> {
        Ok(body)
    }

    fn to_body(&self) -> Bytes {
        self.clone()
    }
}

impl RawBody for String {
    fn from_body(body: Bytes) -> Result<Self, Failure> {
        String::from_utf8(body.to_vec()).map_err(Failure::decode)
    }

    fn to_body(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

/// Takes a raw body.
pub fn decode_raw<T: RawBody>(body: Bytes) -> Result<T, Failure> {
    T::from_body(body)
}

/// Gives a raw reply body.
pub fn encode_raw<T: RawBody>(value: &T) -> Result<Reply, Failure> {
    Ok(Reply::new(value.to_body()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailureKind;

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Order {
        id: u32,
    }

    #[test]
    fn json_round_trip() {
        let reply = encode_json(&Order { id: 7 }).expect("encodes");
        let back: Order = decode_json(reply.body()).expect("decodes");
        assert_eq!(back, Order { id: 7 });
    }

    #[test]
    fn bad_json_is_a_decode_failure_named_after_the_codec_error() {
        let failure = decode_json::<Order>(&Bytes::from_static(b"{not json")).unwrap_err();
        assert_eq!(failure.kind(), FailureKind::Decode);
        assert_eq!(failure.error_type(), "serde_json::error::Error");
        assert_eq!(failure.service_code(), 400);
    }

    #[test]
    fn decode_failures_never_quote_the_payload() {
        let body = Bytes::from_static(br#"{"id": "secret-card-number"}"#);
        let failure = decode_json::<Order>(&body).unwrap_err();
        assert_eq!(
            failure.message(),
            "the payload does not match the handler's payload type (line 1, column 27)"
        );
        assert!(!failure.message().contains("secret"));
    }

    #[test]
    fn raw_bodies_are_taken_as_is() {
        let body = Bytes::from_static(b"\xff\x00raw");
        assert_eq!(decode_raw::<Bytes>(body.clone()).expect("bytes"), body);
        assert!(
            decode_raw::<String>(body).is_err(),
            "invalid UTF-8 is a decode failure"
        );
        assert_eq!(encode_raw(&String::from("hi")).expect("raw").body(), "hi");
    }
}
