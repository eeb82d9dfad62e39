//! Procedural macros for [nats-trace](https://docs.rs/nats-trace-runtime).
//!
//! Do not depend on this crate directly: depend on `nats-trace-runtime`,
//! which re-exports these macros and documents them with examples.

mod attr;
mod expand;
mod signature;
mod validate;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use syn::ItemFn;

use attr::{ArgList, PublisherArgs, SubscriberArgs};

/// Registers an `async fn` as a traced NATS message handler.
///
/// See `nats_trace_runtime::nats_subscriber` for the full documentation.
#[proc_macro_attribute]
pub fn nats_subscriber(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(args, item, |args, function| {
        let args = SubscriberArgs::from_list(args, Span::call_site())?;
        validate::subscriber_args(&args)?;
        let handler = signature::HandlerFn::from_syn(function)?;
        validate::handler_fn(&handler, "nats_subscriber")?;
        Ok(expand::subscriber(&args, &handler))
    })
}

/// Publishes the `Ok` value of an `async fn` to a NATS subject, traced.
///
/// See `nats_trace_runtime::nats_publisher` for the full documentation.
#[proc_macro_attribute]
pub fn nats_publisher(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(args, item, |args, function| {
        let args = PublisherArgs::from_list(args, Span::call_site())?;
        validate::publisher_args(&args)?;
        validate::publisher_fn(function)?;
        Ok(expand::publisher(&args, function))
    })
}

/// Parses the item and the arguments, then runs `expand`. On any error the
/// item is emitted unchanged next to the error, so the user sees one precise
/// message instead of a cascade.
fn attribute(
    args: TokenStream,
    item: TokenStream,
    expand: impl FnOnce(ArgList, &ItemFn) -> syn::Result<TokenStream2>,
) -> TokenStream {
    let item = TokenStream2::from(item);
    let result = syn::parse2::<ItemFn>(item.clone()).and_then(|function| {
        let args = syn::parse2::<ArgList>(args.into())?;
        expand(args, &function)
    });
    result
        .unwrap_or_else(|error| expand::with_errors(item, error))
        .into()
}
