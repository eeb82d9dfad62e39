//! Code generation: the user's function unchanged, plus an adapter that fits
//! it to the runtime's per-message pipeline and a registration for it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr};

use crate::attr::{PublisherArgs, SubscriberArgs};
use crate::signature::{HandlerFn, written_error_type, written_ok_type};

/// The item the user wrote, followed by `compile_error!`s, so one mistake
/// does not bury the rest under "cannot find function" errors.
pub fn with_errors(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote! { #item #error }
}

/// Expands `#[nats_subscriber]`: the function as written, an adapter from a
/// message to its parameters and from its output to a reply, and a
/// registration. Every type-driven choice is a method call on a probe of
/// the user's type (`&&&&Param::<T>`), spanned on that type, so the
/// compiler picks the extractor or codec and reports problems there.
pub fn subscriber(args: &SubscriberArgs, handler: &HandlerFn<'_>) -> TokenStream {
    let item = handler.item;
    let fn_name = &item.sig.ident;
    let rt = quote!(::nats_trace_runtime::__private);

    let mut tally = Vec::new();
    let mut extract = Vec::new();
    let mut arg_names = Vec::new();
    let mut call_args = Vec::new();
    let mut requirements = Vec::new();
    for (index, param) in handler.params.iter().enumerate() {
        let ty = param.ty;
        let probe = quote_spanned! {ty.span()=> (&&&&#rt::Param::<#ty>::new()) };
        tally.push(quote_spanned! {ty.span()=>
            let __nats_trace_count = #rt::Tally::tally(__nats_trace_count, #probe.__nats_trace_kind());
        });
        let arg = format_ident!("__nats_trace_arg{}", index);
        extract.push(quote_spanned! {ty.span()=>
            let #arg = match #probe.__nats_trace_extract(__nats_trace_ctx, &mut __nats_trace_body).await {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(failure) => return ::core::result::Result::Err(failure),
            };
        });
        call_args.push(if param.by_ref {
            quote!(&#arg)
        } else {
            quote!(#arg)
        });
        arg_names.push(arg);
        requirements.push(quote_spanned! {ty.span()=>
            #probe.__nats_trace_requirements(__nats_trace_requirements);
        });
    }
    let count = quote_spanned! {item.sig.paren_token.span.join()=>
        #rt::exactly_one_payload(__nats_trace_count);
    };
    let output_span = match &item.sig.output {
        syn::ReturnType::Default => fn_name.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    let ok_span = written_ok_type(&item.sig.output).map_or(output_span, |ty| ty.span());
    let err_span = written_error_type(&item.sig.output).map_or(output_span, |ty| ty.span());
    let encode = quote_spanned! {ok_span=>
        (&&#rt::Probe::of(&__nats_trace_ok)).__nats_trace_encode(&__nats_trace_ok)
    };
    let convert = quote_spanned! {err_span=>
        (&&&#rt::ErrorProbe::of(&__nats_trace_err)).__nats_trace_convert(__nats_trace_err)
    };
    let finish = quote_spanned! {output_span=>
        match (&#rt::Output::of(&__nats_trace_ret)).__nats_trace_split(__nats_trace_ret) {
            ::core::result::Result::Ok(__nats_trace_ok) => #encode,
            ::core::result::Result::Err(__nats_trace_err) => ::core::result::Result::Err(#convert),
        }
    };
    let unreachable_args = handler
        .params
        .iter()
        .map(|_| quote!(::core::unreachable!()));
    let replies = quote_spanned! {output_span=>
        (&&(&__nats_trace_output).__nats_trace_ok()).__nats_trace_replies()
    };

    let body = quote! {
        #[allow(unused_imports)]
        use #rt::prelude::*;
        let __nats_trace_count = #rt::NoPayload;
        #(#tally)*
        #count
        // In a block, so that the delivery is dropped where it is, not kept
        // in the run's state while the handler runs.
        let (#(#arg_names,)*) = {
            let mut __nats_trace_delivery = __nats_trace_delivery;
            #[allow(unused_mut, unused_variables)]
            let (__nats_trace_ctx, mut __nats_trace_body) = __nats_trace_delivery.parts();
            #(#extract)*
            (#(#arg_names,)*)
        };
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
    let span_name = format!("process {}", args.subject.value());

    quote! {
        #item

        const _: () = {
            fn __nats_trace_adapter(
                __nats_trace_delivery: #rt::Delivery,
            ) -> #rt::HandlerFuture {
                #run
            }

            // Whether the handler's `Ok` type answers requests: the output
            // type is found by inference, from a call that never runs.
            fn __nats_trace_replies() -> bool {
                #[allow(unused_imports)]
                use #rt::prelude::*;
                let __nats_trace_output = #rt::Output::new();
                #[allow(unreachable_code, unused_must_use, clippy::diverging_sub_expression)]
                if false {
                    let _ = async {
                        __nats_trace_output.observe(#fn_name(#(#unreachable_args),*).await)
                    };
                }
                #replies
            }

            #[allow(unused_variables)]
            fn __nats_trace_requirements(__nats_trace_requirements: &mut #rt::Requirements) {
                #[allow(unused_imports)]
                use #rt::prelude::*;
                #(#requirements)*
            }

            #rt::inventory::submit! {
                #rt::Handler::__new(#rt::HandlerSpec {
                    name: ::core::concat!(::core::module_path!(), "::", #name),
                    subject: #subject,
                    span_name: #span_name,
                    source: #source,
                    replies: __nats_trace_replies,
                    requirements: __nats_trace_requirements,
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
/// whose `Ok` value is then encoded as a handler's reply would be, and
/// published, as `tracing-attributes` does.
pub fn publisher(args: &PublisherArgs, item: &ItemFn) -> TokenStream {
    let rt = quote!(::nats_trace_runtime::__private);
    let attrs = &item.attrs;
    let vis = &item.vis;
    let sig = &item.sig;
    let output = match &sig.output {
        syn::ReturnType::Type(_, ty) => quote!(#ty),
        syn::ReturnType::Default => quote!(()),
    };
    let output_span = sig.output.span();
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
    let into_result = quote_spanned! {output_span=>
        <#output as #rt::PublisherOutput>::into_result
    };
    let from_result = quote_spanned! {output_span=>
        <#output as #rt::PublisherOutput>::from_result
    };
    let ok_span = written_ok_type(&sig.output).map_or(output_span, |ty| ty.span());
    let encoded = quote_spanned! {ok_span=>
        (&&#rt::Probe::of(&__nats_trace_value)).__nats_trace_encode(&__nats_trace_value)
    };
    let error_span = written_error_type(&sig.output).map_or(output_span, |err| err.span());
    let convert = quote_spanned! {error_span=>
        #rt::publish_error_into(__nats_trace_error)
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
            #from_result(match #into_result(__nats_trace_output) {
                ::core::result::Result::Ok(__nats_trace_value) => {
                    let __nats_trace_id = #message_id;
                    let __nats_trace_body = {
                        #[allow(unused_imports)]
                        use #rt::prelude::*;
                        #encoded
                    };
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
            })
        }
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
