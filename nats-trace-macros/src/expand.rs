//! Code generation: the user's function unchanged, plus an adapter that fits
//! it to the runtime's per-message pipeline and a registration for it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::LitStr;
use syn::spanned::Spanned;

use crate::attr::{PublisherArgs, SubscriberArgs};
use crate::signature::{Body, HandlerFn, Output, Param, PublisherFn};

/// The item the user wrote, followed by `compile_error!`s, so one mistake
/// does not bury the rest under "cannot find function" errors.
pub fn with_errors(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote! { #item #error }
}

/// Expands `#[nats_subscriber]`.
pub fn subscriber(args: &SubscriberArgs, handler: &HandlerFn<'_>) -> TokenStream {
    let item = handler.item;
    let fn_name = &item.sig.ident;
    let rt = quote!(::nats_trace_runtime::__private);

    let mut decode = Vec::new();
    let mut call_args = Vec::new();
    for (index, (param, _)) in handler.params.iter().enumerate() {
        match param {
            Param::Payload(body) => {
                let arg = format_ident!("__nats_trace_arg{}", index);
                let value = decode_body(body);
                decode.push(quote! {
                    let #arg = match #value {
                        ::core::result::Result::Ok(value) => value,
                        ::core::result::Result::Err(failure) => {
                            return ::core::result::Result::Err(failure);
                        }
                    };
                });
                call_args.push(quote!(#arg));
            }
            Param::Context { by_ref: false } => call_args.push(quote!(__nats_trace_ctx)),
            Param::Context { by_ref: true } => call_args.push(quote!(&__nats_trace_ctx)),
        }
    }

    let finish = match &handler.output {
        Output::Value(body) => encode_body(body, quote!(__nats_trace_ret)),
        Output::Result { ok, err } => {
            let ok = encode_body(ok, quote!(__nats_trace_ok));
            let fail = match err {
                Some(err) => quote_spanned! {err.span()=>
                    #rt::Failure::handler::<#err>(__nats_trace_err)
                },
                None => quote!(#rt::Failure::handler(__nats_trace_err)),
            };
            quote! {
                match __nats_trace_ret {
                    ::core::result::Result::Ok(__nats_trace_ok) => #ok,
                    ::core::result::Result::Err(__nats_trace_err) => {
                        ::core::result::Result::Err(#fail)
                    }
                }
            }
        }
    };

    let body = quote! {
        let (__nats_trace_payload, __nats_trace_ctx) = __nats_trace_delivery.into_parts();
        #(#decode)*
        let __nats_trace_ret = #fn_name(#(#call_args),*).await;
        #finish
    };
    // Spanned on the function name, so a non-`Send` future is reported there.
    let run = quote_spanned! {fn_name.span()=>
        ::std::boxed::Box::pin(async move { #body })
    };
    let subject = &args.subject;
    let source = source(args);
    let concurrency = match &args.concurrency {
        Some((lit, n)) => {
            let lit = unsuffixed(*n as u64, lit.span());
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let name = fn_name.to_string();
    let replies = match &handler.output {
        Output::Value(body) | Output::Result { ok: body, .. } => !matches!(body, Body::Unit),
    };
    let span_name = format!("process {}", args.subject.value());

    quote! {
        #item

        const _: () = {
            fn __nats_trace_adapter(
                __nats_trace_delivery: #rt::Delivery,
            ) -> #rt::HandlerFuture {
                #run
            }

            #rt::inventory::submit! {
                #rt::Handler::__new(#rt::HandlerSpec {
                    name: ::core::concat!(::core::module_path!(), "::", #name),
                    subject: #subject,
                    span_name: #span_name,
                    source: #source,
                    replies: #replies,
                    concurrency: #concurrency,
                    call: __nats_trace_adapter,
                    file: ::core::file!(),
                    line: ::core::line!(),
                })
            }
        };
    }
}

/// Expands `#[nats_publisher]`: the function keeps its signature; its body
/// runs as an `async move` block (so `return` and `?` keep their meaning)
/// whose `Ok` value is then published, as `tracing-attributes` does.
pub fn publisher(args: &PublisherArgs, publisher: &PublisherFn<'_>) -> TokenStream {
    let rt = quote!(::nats_trace_runtime::__private);
    let item = publisher.item;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let sig = &item.sig;
    let output = match &sig.output {
        syn::ReturnType::Type(_, ty) => quote!(#ty),
        syn::ReturnType::Default => quote!(()),
    };
    let block = &item.block;
    let subject = &args.subject;
    let jetstream = args.jetstream;
    let retries = match &args.retries {
        Some((lit, n)) => {
            let lit = unsuffixed(u64::from(*n), lit.span());
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let message_id = match &args.message_id {
        Some(expr) => quote_spanned! {expr.span()=>
            #rt::message_id(&__nats_trace_value, #expr)
        },
        None => quote!(::core::option::Option::None),
    };
    let encoded = encode_body(&publisher.ok, quote!(__nats_trace_value));
    let convert = match publisher.err {
        Some(err) => quote_spanned! {err.span()=>
            #rt::publish_error_into::<#err>(__nats_trace_error)
        },
        None => quote!(#rt::publish_error_into(__nats_trace_error)),
    };

    quote! {
        #(#attrs)*
        #vis #sig {
            static __NATS_TRACE_PUBLISH: #rt::PublishSpec = #rt::PublishSpec {
                subject: #subject,
                jetstream: #jetstream,
                retries: #retries,
            };

            let __nats_trace_output: #output = async move #block.await;
            match __nats_trace_output {
                ::core::result::Result::Ok(__nats_trace_value) => {
                    let __nats_trace_id = #message_id;
                    let __nats_trace_body = #encoded;
                    match #rt::publish_output(&__NATS_TRACE_PUBLISH, __nats_trace_body, __nats_trace_id).await {
                        ::core::result::Result::Ok(()) => ::core::result::Result::Ok(__nats_trace_value),
                        ::core::result::Result::Err(__nats_trace_error) => {
                            ::core::result::Result::Err(#convert)
                        }
                    }
                }
                ::core::result::Result::Err(__nats_trace_error) => {
                    ::core::result::Result::Err(__nats_trace_error)
                }
            }
        }
    }
}

/// An expression of type `Result<T, Failure>` decoding `__nats_trace_payload`.
/// Spanned on the user's type, so a missing `Deserialize` is reported there.
fn decode_body(body: &Body) -> TokenStream {
    let rt = quote!(::nats_trace_runtime::__private);
    match body {
        Body::Unit => quote!(#rt::decode_unit(&__nats_trace_payload)),
        Body::Raw(ty) => quote_spanned! {ty.span()=>
            #rt::decode_raw::<#ty>(__nats_trace_payload)
        },
        Body::Json(ty) => quote_spanned! {ty.span()=>
            #rt::decode_json::<#ty>(&__nats_trace_payload)
        },
    }
}

/// An expression of type `Result<Reply, Failure>` encoding `value`.
/// Spanned on the user's type, so a missing `Serialize` is reported there.
fn encode_body(body: &Body, value: TokenStream) -> TokenStream {
    let rt = quote!(::nats_trace_runtime::__private);
    match body {
        Body::Unit => quote!(#rt::encode_unit(&#value)),
        Body::Raw(ty) => quote_spanned! {ty.span()=>
            #rt::encode_raw::<#ty>(&#value)
        },
        Body::Json(ty) => quote_spanned! {ty.span()=>
            #rt::encode_json::<#ty>(&#value)
        },
    }
}

/// Where the handler's messages come from: core NATS or a durable consumer.
fn source(args: &SubscriberArgs) -> TokenStream {
    let rt = quote!(::nats_trace_runtime::__private);
    let Some(js) = &args.jetstream else {
        let queue = option_str(args.queue.as_ref());
        return quote!(#rt::Source::Core { queue: #queue });
    };
    let (stream, consumer) = (&js.stream, &js.consumer);
    let max_deliver = match &js.max_deliver {
        Some((lit, n)) => {
            let lit = unsuffixed(*n as u64, lit.span());
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let ack_wait = match &js.ack_wait {
        Some((_, ms)) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let backoff = match &js.backoff {
        Some(delays) => {
            let ms = delays.iter().map(|(_, ms)| ms);
            quote!(::core::option::Option::Some(&[#(#ms),*]))
        }
        None => quote!(::core::option::Option::None),
    };
    let deliver_new = js.deliver.as_ref().is_some_and(|d| d.value() == "new");
    let dead_letter = option_str(js.dead_letter.as_ref());
    quote! {
        #rt::Source::JetStream(&#rt::JetStreamSpec {
            stream: #stream,
            consumer: #consumer,
            max_deliver: #max_deliver,
            ack_wait_ms: #ack_wait,
            backoff_ms: #backoff,
            deliver_new: #deliver_new,
            dead_letter: #dead_letter,
        })
    }
}

/// `n` as an integer literal without a suffix, so `8u8` in the attribute
/// still fits the field it fills.
fn unsuffixed(n: u64, span: proc_macro2::Span) -> syn::LitInt {
    syn::LitInt::new(&n.to_string(), span)
}

fn option_str(lit: Option<&LitStr>) -> TokenStream {
    match lit {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    }
}
