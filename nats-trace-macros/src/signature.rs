//! Reading a handler's signature: its parameter types and its return type.
//!
//! Nothing here depends on a type's name. Which extractor, codec or error
//! conversion a type gets is chosen by the compiler from the traits it
//! implements (see the runtime's `adapter` module); the macro only names
//! the types, so that errors land on them.

use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Type};

/// One parameter of the handler, in declaration order.
pub struct Param<'a> {
    /// The type extracted: `T` for both `T` and `&T`.
    pub ty: &'a Type,
    /// Whether the handler takes it by reference (`&MessageContext`).
    pub by_ref: bool,
}

/// A handler function, read but not yet validated.
pub struct HandlerFn<'a> {
    pub item: &'a ItemFn,
    pub params: Vec<Param<'a>>,
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
                FnArg::Typed(pat_type) => params.push(param(&pat_type.ty)?),
            }
        }
        Ok(HandlerFn { item, params })
    }
}

fn param(ty: &Type) -> syn::Result<Param<'_>> {
    match ty {
        Type::Reference(reference) if reference.mutability.is_some() => Err(syn::Error::new(
            ty.span(),
            "handler parameters cannot be `&mut`; take the value itself, e.g. `order: Order`",
        )),
        Type::Reference(reference)
            if matches!(*reference.elem, Type::Slice(_))
                || matches!(&*reference.elem, Type::Path(path) if path.path.is_ident("str")) =>
        {
            Err(syn::Error::new(
                ty.span(),
                "a handler cannot borrow the message body; take it owned: `String` for text, \
                 `bytes::Bytes` or `Vec<u8>` for raw bytes",
            ))
        }
        Type::Reference(reference) => Ok(Param {
            ty: &reference.elem,
            by_ref: true,
        }),
        Type::ImplTrait(_) => Err(syn::Error::new(
            ty.span(),
            "a handler parameter cannot be `impl Trait`: the runtime extracts one concrete type; \
             name it, e.g. `order: Order`",
        )),
        _ => Ok(Param { ty, by_ref: false }),
    }
}

/// The error type written in a `Result<T, E>` return type, when it is
/// spelled out: only to point compile errors at it.
pub fn written_error_type(output: &ReturnType) -> Option<&Type> {
    written_result_types(output).map(|(_, err)| err)
}

/// The `Ok` type written in a `Result<T, E>` return type, or the whole
/// return type: only to point compile errors at it.
pub fn written_ok_type(output: &ReturnType) -> Option<&Type> {
    match written_result_types(output) {
        Some((ok, _)) => Some(ok),
        None => match output {
            ReturnType::Type(_, ty) => Some(ty),
            ReturnType::Default => None,
        },
    }
}

fn written_result_types(output: &ReturnType) -> Option<(&Type, &Type)> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(path) = &**ty else {
        return None;
    };
    let segment = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    Some((types.next()?, types.next()?))
}

/// Fails for an `impl Trait` return type, whose type no registration can name.
pub fn nameable_output(output: &ReturnType) -> syn::Result<()> {
    match output {
        ReturnType::Type(_, ty) if matches!(**ty, Type::ImplTrait(_)) => Err(syn::Error::new(
            ty.span(),
            "cannot return `impl Trait` here; name the concrete type, e.g. `Result<Quote, QuoteError>`",
        )),
        _ => Ok(()),
    }
}
