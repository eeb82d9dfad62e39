//! Protobuf, MessagePack, custom-codec and raw payloads and replies, with
//! publishers that use the same codecs.
use nats_trace_runtime::bytes::Bytes;
use nats_trace_runtime::codec::{Decoder, Encoded, Encoder};
use nats_trace_runtime::prelude::*;

#[derive(Clone, PartialEq, prost::Message)]
struct Lookup {
    #[prost(string, tag = "1")]
    sku: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Stock {
    #[prost(uint32, tag = "1")]
    count: u32,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Order {
    id: u64,
}

#[nats_subscriber(subject = "codec.protobuf")]
async fn protobuf(Protobuf(lookup): Protobuf<Lookup>) -> Result<Protobuf<Stock>, Failure> {
    Ok(Protobuf(Stock { count: lookup.sku.len() as u32 }))
}

#[nats_subscriber(subject = "codec.msgpack")]
async fn msgpack(order: MsgPack<Order>) -> MsgPack<Order> {
    order
}

/// `Vec<u8>` is raw, never JSON.
#[nats_subscriber(subject = "codec.raw")]
async fn raw(body: Vec<u8>) -> Vec<u8> {
    body
}

/// An alias of a raw type is the raw type.
type Text = String;

#[nats_subscriber(subject = "codec.text")]
async fn text(body: Text) -> Text {
    body
}

struct Lines;

impl Decoder<Vec<String>> for Lines {
    type Error = std::str::Utf8Error;
    fn decode(body: Bytes) -> Result<Vec<String>, Self::Error> {
        Ok(std::str::from_utf8(&body)?.lines().map(String::from).collect())
    }
}

impl Encoder<usize> for Lines {
    type Error = std::convert::Infallible;
    fn encode(value: &usize) -> Result<Bytes, Self::Error> {
        Ok(value.to_string().into())
    }
}

#[nats_subscriber(subject = "codec.custom")]
async fn custom(lines: Encoded<Lines, Vec<String>>) -> Encoded<Lines, usize> {
    Encoded::new(lines.len())
}

#[nats_publisher(subject = "codec.published")]
async fn publish_protobuf(count: u32) -> Result<Protobuf<Stock>, PublishError> {
    Ok(Protobuf(Stock { count }))
}

#[nats_publisher(subject = "codec.published.headers")]
async fn publish_with_headers(id: u64) -> Result<Reply, PublishError> {
    Ok(Reply::encode(&MsgPack(Order { id }))
        .expect("encodes")
        .with_header("Order-Id", id.to_string()))
}

fn main() {
    let handlers = nats_trace_runtime::registered_handlers();
    assert_eq!(handlers.len(), 5);
    assert!(handlers.iter().all(|h| h.replies()));
    let _ = (publish_protobuf(1), publish_with_headers(2));
}
