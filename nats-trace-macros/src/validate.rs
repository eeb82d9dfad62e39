//! Checks that turn misuse into errors spanned on the user's tokens.

use syn::spanned::Spanned;
use syn::{ItemFn, LitStr, ReturnType, Signature};

use crate::attr::{JetStreamArgs, PublisherArgs, SubscriberArgs};
use crate::signature::{self, HandlerFn};

/// Whether a subject may contain `*` and `>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wildcards {
    /// A subscription subject: `orders.*`, `orders.>`.
    Allowed,
    /// A publish subject: must be concrete.
    Forbidden,
}

/// Validates a NATS subject literal, e.g. `orders.*.created`.
pub fn subject(lit: &LitStr, wildcards: Wildcards) -> syn::Result<()> {
    match subject_problem(&lit.value(), wildcards) {
        Some(problem) => Err(syn::Error::new(lit.span(), problem)),
        None => Ok(()),
    }
}

/// Explains what is wrong with `subject`, or `None` if it is valid.
fn subject_problem(subject: &str, wildcards: Wildcards) -> Option<String> {
    if subject.is_empty() {
        return Some("subject must not be empty; write e.g. `subject = \"orders.created\"`".into());
    }
    if subject.chars().any(char::is_whitespace) {
        return Some(format!(
            "subject `{}` contains whitespace; NATS subjects are dot-separated tokens without spaces",
            subject.escape_debug()
        ));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let last = tokens.len() - 1;
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Some(format!(
                "subject `{subject}` has an empty token; remove the extra `.` \
                 (subjects look like `orders.created`)"
            ));
        }
        let wildcard = *token == "*" || *token == ">";
        if wildcard && wildcards == Wildcards::Forbidden {
            return Some(format!(
                "cannot publish to the wildcard subject `{subject}`; \
                 a publish subject must be concrete, e.g. `orders.created`"
            ));
        }
        if *token == ">" && i != last {
            return Some(format!(
                "`>` must be the last token of the subject, e.g. `orders.>`; \
                 use `*` to match a single token in `{subject}`"
            ));
        }
        if !wildcard && token.contains(['*', '>']) {
            return Some(format!(
                "wildcard inside the token `{token}` of `{subject}`; \
                 `*` and `>` must stand alone between dots, e.g. `orders.*`"
            ));
        }
    }
    None
}

/// Validates a queue group name.
pub fn queue(lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    let problem = if name.is_empty() {
        Some("queue group name must not be empty; remove `queue` or name the group, e.g. `queue = \"billing\"`".to_string())
    } else if name.contains(['*', '>']) {
        Some(format!(
            "queue group `{name}` contains a wildcard; a queue group is a plain name, e.g. `queue = \"billing\"`"
        ))
    } else if name.chars().any(char::is_whitespace) {
        Some(format!(
            "queue group `{}` contains whitespace; use a plain name, e.g. `queue = \"billing\"`",
            name.escape_debug()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(syn::Error::new(lit.span(), problem)),
        None => Ok(()),
    }
}

/// Validates the arguments of `#[nats_subscriber]`.
pub fn subscriber_args(args: &SubscriberArgs) -> syn::Result<()> {
    subject(&args.subject, Wildcards::Allowed)?;
    if let Some(queue_name) = &args.queue {
        queue(queue_name)?;
    }
    if let Some(jetstream) = &args.jetstream {
        jetstream_args(jetstream, args.queue.as_ref())?;
    }
    Ok(())
}

fn jetstream_args(args: &JetStreamArgs, queue: Option<&LitStr>) -> syn::Result<()> {
    jetstream_name(&args.stream, "stream", "ORDERS")?;
    jetstream_name(&args.consumer, "consumer", "shipper")?;
    if let Some(queue) = queue {
        return Err(syn::Error::new(
            queue.span(),
            format!(
                "`queue` cannot be combined with `stream`: every instance bound to the durable \
                 consumer `{}` already shares its messages, each going to one instance; remove `queue`",
                args.consumer.value()
            ),
        ));
    }
    if let Some(deliver) = &args.deliver
        && !matches!(deliver.value().as_str(), "all" | "new")
    {
        return Err(syn::Error::new(
            deliver.span(),
            "`deliver` is \"all\" (start with the oldest message in the stream) \
             or \"new\" (only messages published from now on)",
        ));
    }
    if let Some(dead_letter) = &args.dead_letter {
        subject(dead_letter, Wildcards::Forbidden)?;
    }
    Ok(())
}

/// Validates a stream or consumer name: NATS forbids `.`, `*`, `>`, path
/// separators, whitespace and control characters in them.
fn jetstream_name(lit: &LitStr, what: &str, example: &str) -> syn::Result<()> {
    let name = lit.value();
    let bad = name
        .chars()
        .find(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control());
    let problem = if name.is_empty() {
        format!("the {what} name must not be empty; write e.g. `{what} = \"{example}\"`")
    } else if let Some(bad) = bad {
        format!(
            "the {what} name `{}` contains {bad:?}; {what} names cannot contain `.`, `*`, `>`, \
             slashes or whitespace, e.g. `{what} = \"{example}\"`",
            name.escape_debug()
        )
    } else {
        return Ok(());
    };
    Err(syn::Error::new(lit.span(), problem))
}

/// Validates the arguments of `#[nats_publisher]`.
pub fn publisher_args(args: &PublisherArgs) -> syn::Result<()> {
    subject(&args.subject, Wildcards::Forbidden)
}

/// Validates a publisher function: async and safe. Methods, generics and
/// `impl Trait` arguments are fine: the body runs where it was written.
pub fn publisher_fn(item: &ItemFn) -> syn::Result<()> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[nats_publisher] needs an `async fn`; add `async` before `fn`",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span(),
            "#[nats_publisher] cannot be used on an `unsafe fn`",
        ));
    }
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            sig.paren_token.span.close(),
            "#[nats_publisher] needs a `Result<T, E>` return type: `T` is published, \
             and a failed publish reaches the caller as `E`, which must implement \
             `From<nats_trace_runtime::PublishError>` (`anyhow::Error` does)",
        ));
    }
    signature::nameable_output(&sig.output)
}

fn common_fn_shape(sig: &Signature, macro_name: &str) -> syn::Result<()> {
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            format!("#[{macro_name}] needs an `async fn`; add `async` before `fn`"),
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span(),
            format!("#[{macro_name}] cannot be used on an `unsafe fn`"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!(
                "#[{macro_name}] functions cannot be generic: messages are encoded and decoded \
                 as one concrete type; remove the type parameters"
            ),
        ));
    }
    Ok(())
}

/// Validates the shape of a handler function. How many payloads it takes,
/// and whether each parameter and its return type can be used, is checked
/// by the compiler on the generated code, from the traits the types
/// implement.
pub fn handler_fn(handler: &HandlerFn<'_>, macro_name: &str) -> syn::Result<()> {
    let sig = &handler.item.sig;
    common_fn_shape(sig, macro_name)?;
    signature::nameable_output(&sig.output)
}

#[cfg(test)]
mod tests {
    use super::{Wildcards, subject_problem};

    fn ok(subject: &str) -> bool {
        subject_problem(subject, Wildcards::Allowed).is_none()
    }

    #[test]
    fn accepts_valid_subjects() {
        for s in [
            "orders",
            "orders.created",
            "orders.*",
            "orders.>",
            "*.*.x",
            ">",
            "a-b_c.d$e",
        ] {
            assert!(ok(s), "{s} should be valid");
        }
    }

    #[test]
    fn rejects_invalid_subjects() {
        for s in [
            "", "a..b", ".a", "a.", "a b", "a.>.b", "or*ders", "a.b>", "\ta", "a.**",
        ] {
            assert!(!ok(s), "{s:?} should be invalid");
        }
    }

    #[test]
    fn publish_subjects_must_be_concrete() {
        assert!(subject_problem("orders.*", Wildcards::Forbidden).is_some());
        assert!(subject_problem("orders.>", Wildcards::Forbidden).is_some());
        assert!(subject_problem("orders.created", Wildcards::Forbidden).is_none());
    }
}
