//! Procedural macros for [nats-trace](https://docs.rs/nats-trace-runtime).
//!
//! Do not depend on this crate directly: depend on `nats-trace-runtime`,
//! which re-exports these macros and documents them with examples.

mod attr;
mod expand;
mod signature;
mod validate;

use proc_macro::TokenStream;

/// Registers an `async fn` as a traced NATS message handler.
///
/// See `nats_trace_runtime::nats_subscriber` for the full documentation.
#[proc_macro_attribute]
pub fn nats_subscriber(args: TokenStream, item: TokenStream) -> TokenStream {
    subscriber(args.into(), item.into()).into()
}

/// Publishes the `Ok` value of an `async fn` to a NATS subject, traced.
///
/// See `nats_trace_runtime::nats_publisher` for the full documentation.
#[proc_macro_attribute]
pub fn nats_publisher(args: TokenStream, item: TokenStream) -> TokenStream {
    publisher(args.into(), item.into()).into()
}

fn publisher(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let attr_span = proc_macro2::Span::call_site();
    let function: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => return expand::with_errors(item, error),
    };
    let result = syn::parse2::<attr::ArgList>(args)
        .and_then(|list| attr::PublisherArgs::from_list(list, attr_span))
        .and_then(|args| {
            validate::publisher_args(&args)?;
            validate::publisher_fn(&function)?;
            let publisher = signature::PublisherFn::from_syn(&function)?;
            Ok(expand::publisher(&args, &publisher))
        });
    result.unwrap_or_else(|error| expand::with_errors(item, error))
}

fn subscriber(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let attr_span = proc_macro2::Span::call_site();
    let function: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => return expand::with_errors(item, error),
    };
    let result = syn::parse2::<attr::ArgList>(args)
        .and_then(|list| attr::SubscriberArgs::from_list(list, attr_span))
        .and_then(|args| {
            validate::subscriber_args(&args)?;
            let handler = signature::HandlerFn::from_syn(&function)?;
            validate::handler_fn(&handler, "nats_subscriber")?;
            Ok(expand::subscriber(&args, &handler))
        });
    result.unwrap_or_else(|error| expand::with_errors(item, error))
}
