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

#[nats_subscriber(subject = "hygiene.check", queue = "q", concurrency = 2)]
async fn check(body: ::std::string::String) -> ::core::result::Result<::std::string::String, ::std::io::Error> {
    ::core::result::Result::Ok(body)
}

fn main() {}
