//! Generated code must not depend on names the user can shadow.
#![deny(unused_qualifications)]
#![no_implicit_prelude]

use ::nats_trace_runtime::prelude::*;

#[allow(dead_code)]
type Result<T> = ::core::result::Result<T, ()>;
#[allow(dead_code)]
type Option = ();
#[allow(dead_code)]
struct Box;
#[allow(dead_code, non_snake_case)]
fn Ok() {}
#[allow(dead_code, non_snake_case)]
fn Err() {}
#[allow(dead_code, non_snake_case)]
fn Some() {}
#[allow(unused_macros)]
macro_rules! concat {
    () => {};
}
#[allow(unused_macros)]
macro_rules! module_path {
    () => {};
}

mod inventory {}

/// An extension trait for every type, as `tap`-style crates have, whose
/// method names the generated code must not collide with.
#[allow(dead_code)]
trait Everything {
    fn kind(&self) -> u8 {
        0
    }
    fn extract(&self) -> u8 {
        0
    }
    fn requirements(&self) -> u8 {
        0
    }
    fn split(&self) -> u8 {
        0
    }
    fn ok(&self) -> u8 {
        0
    }
    fn encode(&self) -> u8 {
        0
    }
    fn convert(&self) -> u8 {
        0
    }
    fn replies(&self) -> u8 {
        0
    }
}

impl<T: ?::core::marker::Sized> Everything for T {}

#[nats_subscriber(subject = "hygiene.check", queue = "q", concurrency = 2)]
async fn check(body: ::std::string::String) -> ::core::result::Result<::std::string::String, ::std::io::Error> {
    ::core::result::Result::Ok(body)
}

#[nats_publisher(subject = "hygiene.out", jetstream, message_id = |s: &::std::string::String| ::std::clone::Clone::clone(s), retries = 1)]
#[nats_subscriber(subject = "hygiene.in")]
async fn forward(
    body: ::std::string::String,
) -> ::core::result::Result<::std::string::String, ::nats_trace_runtime::PublishError> {
    ::core::result::Result::Ok(body)
}

#[derive(::serde::Serialize)]
struct Out {
    n: u8,
}

#[nats_publisher(subject = "hygiene.json")]
async fn json(n: u8) -> ::core::result::Result<Out, ::nats_trace_runtime::PublishError> {
    ::core::result::Result::Ok(Out { n })
}

fn main() {}
