//! Reading a handler's signature: which parameter is the payload, which is the
//! message context, and what the return type means.
//!
//! The classification is syntactic, because a macro only sees tokens. The
//! rules are documented on `#[nats_subscriber]`:
//! - a parameter whose type is `MessageContext` (or `&MessageContext`) is the
//!   context, every other parameter is a payload;
//! - `Bytes` and `String` bodies are raw, every other type is JSON;
//! - a return type whose last path segment is `Result` is fallible.

use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Type};

/// How a message body maps to a Rust type.
pub enum Body<'a> {
    /// `()`: no body (an empty reply).
    Unit,
    /// `bytes::Bytes` or `String`, taken as-is.
    Raw(&'a Type),
    /// Anything else, through serde JSON.
    Json(&'a Type),
}

impl<'a> Body<'a> {
    fn of(ty: &'a Type) -> Body<'a> {
        if is_unit(ty) {
            Body::Unit
        } else if last_segment_is(ty, &["Bytes", "String"]) {
            Body::Raw(ty)
        } else {
            Body::Json(ty)
        }
    }
}

/// One parameter of the handler, in declaration order.
pub enum Param<'a> {
    /// The decoded message body.
    Payload(Body<'a>),
    /// `MessageContext`, by value or by reference.
    Context { by_ref: bool },
}

/// What the handler returns.
pub enum Output<'a> {
    /// The value itself is the reply body (`()` means an empty reply).
    Value(Body<'a>),
    /// `Result<T, E>`: `Ok` is the reply body, `Err` fails the message.
    /// `err` is `None` for aliases such as `anyhow::Result<T>`.
    Result { ok: Body<'a>, err: Option<&'a Type> },
}

/// A handler function, read but not yet validated.
pub struct HandlerFn<'a> {
    pub item: &'a ItemFn,
    pub params: Vec<(Param<'a>, &'a Type)>,
    pub output: Output<'a>,
}

impl<'a> HandlerFn<'a> {
    pub fn from_syn(item: &'a ItemFn) -> syn::Result<Self> {
        let mut params = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(receiver) => {
                    return Err(syn::Error::new(
                        receiver.span(),
                        "handlers must be free functions, not methods; \
                         move this function out of the `impl` block",
                    ));
                }
                FnArg::Typed(pat_type) => {
                    let ty = &*pat_type.ty;
                    params.push((classify_param(ty), ty));
                }
            }
        }
        let output = classify_output(&item.sig.output)?;
        Ok(HandlerFn {
            item,
            params,
            output,
        })
    }
}

/// A publisher function: its `Ok` type is published, its `Err` type must
/// carry a failed publish.
pub struct PublisherFn<'a> {
    pub item: &'a ItemFn,
    pub ok: Body<'a>,
    pub err: Option<&'a Type>,
}

impl<'a> PublisherFn<'a> {
    pub fn from_syn(item: &'a ItemFn) -> syn::Result<Self> {
        let fix = "#[nats_publisher] needs a `Result<T, E>` return type: `T` is published, \
                   and a failed publish reaches the caller as `E`, which must implement \
                   `From<nats_trace_runtime::PublishError>` (`anyhow::Error` does)";
        let span = match &item.sig.output {
            ReturnType::Default => item.sig.paren_token.span.close(),
            ReturnType::Type(_, ty) => ty.span(),
        };
        match classify_output(&item.sig.output)? {
            Output::Result { ok, err } => Ok(PublisherFn { item, ok, err }),
            Output::Value(_) => Err(syn::Error::new(span, fix)),
        }
    }
}

fn classify_param(ty: &Type) -> Param<'_> {
    match ty {
        Type::Reference(reference) if last_segment_is(&reference.elem, &["MessageContext"]) => {
            Param::Context { by_ref: true }
        }
        _ if last_segment_is(ty, &["MessageContext"]) => Param::Context { by_ref: false },
        _ => Param::Payload(Body::of(ty)),
    }
}

fn classify_output(output: &ReturnType) -> syn::Result<Output<'_>> {
    let ty = match output {
        ReturnType::Default => return Ok(Output::Value(Body::Unit)),
        ReturnType::Type(_, ty) => &**ty,
    };
    if let Type::ImplTrait(_) = ty {
        return Err(syn::Error::new(
            ty.span(),
            "handlers cannot return `impl Trait`; name the concrete type, \
             e.g. `Result<Quote, QuoteError>`",
        ));
    }
    let Some(segment) = last_segment(ty) else {
        return Ok(Output::Value(Body::of(ty)));
    };
    if segment.ident != "Result" {
        return Ok(Output::Value(Body::of(ty)));
    }
    let mut types = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect::<Vec<_>>()
            .into_iter(),
        _ => Vec::new().into_iter(),
    };
    let ok = types.next().ok_or_else(|| {
        syn::Error::new(
            ty.span(),
            "cannot see the `Ok` type of this `Result`; write it out, e.g. `Result<(), MyError>`",
        )
    })?;
    Ok(Output::Result {
        ok: Body::of(ok),
        err: types.next(),
    })
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Paren(inner) => last_segment(&inner.elem),
        Type::Group(inner) => last_segment(&inner.elem),
        _ => None,
    }
}

fn last_segment_is(ty: &Type, names: &[&str]) -> bool {
    last_segment(ty).is_some_and(|segment| {
        segment.arguments.is_none() && names.iter().any(|name| segment.ident == name)
    })
}
