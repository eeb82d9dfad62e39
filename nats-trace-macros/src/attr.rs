//! Parsing of macro arguments into typed structs.
//!
//! Arguments are first read into a generic [`ArgList`] (`name = value` or a bare
//! `flag`), which rejects unknown and duplicate names in one place. The typed
//! structs then take their fields out of it, keeping the original tokens so
//! that later errors can point at them.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitInt, LitStr, Token};

/// The largest `concurrency`, `max_deliver` or `retries` accepted: far more
/// than any real use, and safely below every limit of the runtime.
pub const MAX_COUNT: usize = 1_000_000;

/// One `name = value` or bare `name` argument.
pub struct Arg {
    pub name: Ident,
    pub value: Option<Expr>,
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // `parse_any` accepts keywords too, so `type = ...` gets the
        // "unknown argument" error instead of "expected identifier".
        let name = Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Arg { name, value })
    }
}

/// The raw argument list of an attribute, before it is given meaning.
pub struct ArgList {
    args: Vec<Arg>,
}

impl Parse for ArgList {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let args = Punctuated::<Arg, Token![,]>::parse_terminated(input)?;
        Ok(ArgList {
            args: args.into_iter().collect(),
        })
    }
}

impl ArgList {
    /// Rejects names outside `known` and names given twice, reporting every
    /// offending argument at once.
    pub fn check_names(&self, macro_name: &str, known: &[&str]) -> syn::Result<()> {
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        for (i, arg) in self.args.iter().enumerate() {
            let name = arg.name.to_string();
            if !known.contains(&name.as_str()) {
                let list = known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                push(syn::Error::new(
                    arg.name.span(),
                    format!(
                        "unknown argument `{name}` for #[{macro_name}]; expected one of: {list}"
                    ),
                ));
            } else if self.args[..i]
                .iter()
                .any(|earlier| earlier.name == arg.name)
            {
                push(syn::Error::new(
                    arg.name.span(),
                    format!("duplicate argument `{name}`; give it only once"),
                ));
            }
        }
        errors.map_or(Ok(()), Err)
    }

    fn take(&mut self, name: &str) -> Option<Arg> {
        let index = self.args.iter().position(|a| a.name == name)?;
        Some(self.args.remove(index))
    }

    /// Takes `name = "..."`.
    pub fn take_str(&mut self, name: &str) -> syn::Result<Option<LitStr>> {
        let Some(arg) = self.take(name) else {
            return Ok(None);
        };
        match arg.value {
            Some(Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            })) => Ok(Some(s)),
            Some(other) => Err(syn::Error::new(
                other.span(),
                format!("`{name}` takes a string literal, e.g. `{name} = \"...\"`"),
            )),
            None => Err(syn::Error::new(
                arg.name.span(),
                format!("`{name}` needs a value, e.g. `{name} = \"...\"`"),
            )),
        }
    }

    /// Takes a bare `name` flag.
    pub fn take_flag(&mut self, name: &str) -> syn::Result<Option<Ident>> {
        let Some(arg) = self.take(name) else {
            return Ok(None);
        };
        match arg.value {
            None => Ok(Some(arg.name)),
            Some(value) => Err(syn::Error::new(
                value.span(),
                format!("`{name}` is a flag and takes no value; write just `{name}`"),
            )),
        }
    }

    /// Takes `name = <expression>`.
    pub fn take_expr(&mut self, name: &str, example: &str) -> syn::Result<Option<Expr>> {
        let Some(arg) = self.take(name) else {
            return Ok(None);
        };
        arg.value.map(Some).ok_or_else(|| {
            syn::Error::new(
                arg.name.span(),
                format!("`{name}` needs a value, e.g. `{name} = {example}`"),
            )
        })
    }

    /// Takes `name = N` for an integer `N` that may be zero.
    pub fn take_count(&mut self, name: &str) -> syn::Result<Option<(LitInt, u32)>> {
        let Some(arg) = self.take(name) else {
            return Ok(None);
        };
        let fix = format!("`{name}` takes a whole number from 0 to {MAX_COUNT}, e.g. `{name} = 3`");
        match arg.value {
            Some(Expr::Lit(syn::ExprLit {
                lit: Lit::Int(int), ..
            })) => match int.base10_parse::<u32>() {
                Ok(n) if n as usize <= MAX_COUNT => Ok(Some((int, n))),
                _ => Err(syn::Error::new(int.span(), fix)),
            },
            Some(other) => Err(syn::Error::new(other.span(), fix)),
            None => Err(syn::Error::new(arg.name.span(), fix)),
        }
    }

    /// The name of the first argument among `names` still present.
    pub fn first_of(&self, names: &[&str]) -> Option<&Ident> {
        self.args
            .iter()
            .map(|arg| &arg.name)
            .find(|name| names.iter().any(|n| *name == n))
    }

    /// Takes `name = "<duration>"`, e.g. `ack_wait = "30s"`.
    pub fn take_duration(&mut self, name: &str) -> syn::Result<Option<(LitStr, u64)>> {
        let Some(lit) = self.take_str(name)? else {
            return Ok(None);
        };
        duration(&lit, name).map(Some)
    }

    /// Takes `name = ["<duration>", ...]`, e.g. `backoff = ["1s", "10s"]`.
    pub fn take_durations(&mut self, name: &str) -> syn::Result<Option<Vec<(LitStr, u64)>>> {
        let Some(arg) = self.take(name) else {
            return Ok(None);
        };
        let fix = format!(
            "`{name}` takes a list of durations, e.g. `{name} = [\"1s\", \"10s\", \"1m\"]`"
        );
        let array = match arg.value {
            Some(Expr::Array(array)) if !array.elems.is_empty() => array,
            Some(other) => return Err(syn::Error::new(other.span(), fix)),
            None => return Err(syn::Error::new(arg.name.span(), fix)),
        };
        array
            .elems
            .iter()
            .map(|elem| match elem {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(lit), ..
                }) => duration(lit, name),
                other => Err(syn::Error::new(other.span(), fix.clone())),
            })
            .collect::<syn::Result<Vec<_>>>()
            .map(Some)
    }

    /// Takes `name = N` for an integer `N` from 1 to [`MAX_COUNT`].
    pub fn take_positive_int(&mut self, name: &str) -> syn::Result<Option<(LitInt, usize)>> {
        let Some(arg) = self.take(name) else {
            return Ok(None);
        };
        let fix =
            format!("`{name}` takes a whole number from 1 to {MAX_COUNT}, e.g. `{name} = 16`");
        match arg.value {
            Some(Expr::Lit(syn::ExprLit {
                lit: Lit::Int(int), ..
            })) => match int.base10_parse::<usize>() {
                Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(Some((int, n))),
                _ => Err(syn::Error::new(int.span(), fix)),
            },
            Some(other) => Err(syn::Error::new(other.span(), fix)),
            None => Err(syn::Error::new(arg.name.span(), fix)),
        }
    }
}

/// Arguments of `#[nats_subscriber(...)]`.
pub struct SubscriberArgs {
    pub subject: LitStr,
    pub queue: Option<LitStr>,
    pub concurrency: Option<(LitInt, usize)>,
    pub jetstream: Option<JetStreamArgs>,
}

/// The JetStream part of `#[nats_subscriber(stream = ..., consumer = ...)]`.
pub struct JetStreamArgs {
    pub stream: LitStr,
    pub consumer: LitStr,
    pub max_deliver: Option<(LitInt, usize)>,
    pub ack_wait: Option<(LitStr, u64)>,
    pub backoff: Option<Vec<(LitStr, u64)>>,
    pub deliver: Option<LitStr>,
    pub dead_letter: Option<LitStr>,
}

impl SubscriberArgs {
    pub const KNOWN: &'static [&'static str] = &[
        "subject",
        "queue",
        "concurrency",
        "stream",
        "consumer",
        "max_deliver",
        "ack_wait",
        "backoff",
        "deliver",
        "dead_letter",
    ];
    const JETSTREAM_ONLY: &'static [&'static str] = &[
        "max_deliver",
        "ack_wait",
        "backoff",
        "deliver",
        "dead_letter",
    ];

    pub fn from_list(mut list: ArgList, attr_span: Span) -> syn::Result<Self> {
        list.check_names("nats_subscriber", Self::KNOWN)?;
        let subject = list.take_str("subject")?;
        let queue = list.take_str("queue")?;
        let concurrency = list.take_positive_int("concurrency")?;
        let stream = list.take_str("stream")?;
        let consumer = list.take_str("consumer")?;
        let subject = subject.ok_or_else(|| {
            syn::Error::new(
                attr_span,
                "missing `subject`; write e.g. #[nats_subscriber(subject = \"orders.created\")]",
            )
        })?;
        let jetstream = match (stream, consumer) {
            (Some(stream), Some(consumer)) => Some(JetStreamArgs {
                stream,
                consumer,
                max_deliver: list.take_positive_int("max_deliver")?,
                ack_wait: list.take_duration("ack_wait")?,
                backoff: list.take_durations("backoff")?,
                deliver: list.take_str("deliver")?,
                dead_letter: list.take_str("dead_letter")?,
            }),
            (Some(stream), None) => {
                return Err(syn::Error::new(
                    stream.span(),
                    "a JetStream handler needs a durable consumer name too; \
                     add e.g. `consumer = \"shipper\"`",
                ));
            }
            (None, Some(consumer)) => {
                return Err(syn::Error::new(
                    consumer.span(),
                    "`consumer` needs the stream it reads from; add e.g. `stream = \"ORDERS\"`",
                ));
            }
            (None, None) => {
                if let Some(arg) = list.first_of(Self::JETSTREAM_ONLY) {
                    return Err(syn::Error::new(
                        arg.span(),
                        format!(
                            "`{arg}` applies to JetStream handlers only; add \
                             `stream = \"...\", consumer = \"...\"` or remove it"
                        ),
                    ));
                }
                None
            }
        };
        Ok(SubscriberArgs {
            subject,
            queue,
            concurrency,
            jetstream,
        })
    }
}

/// Parses a duration literal such as `500ms`, `30s`, `2m` or `1h` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn duration(lit: &LitStr, name: &str) -> syn::Result<(LitStr, u64)> {
    match parse_duration_ms(&lit.value()) {
        Some(ms) if ms > 0 => Ok((lit.clone(), ms)),
        _ => Err(syn::Error::new(
            lit.span(),
            format!(
                "`{name}` durations look like \"500ms\", \"30s\", \"2m\" or \"1h\" \
                 (a positive whole number and a unit), not {:?}",
                lit.value()
            ),
        )),
    }
}

/// Arguments of `#[nats_publisher(...)]`.
pub struct PublisherArgs {
    pub subject: LitStr,
    pub jetstream: bool,
    pub message_id: Option<Expr>,
    pub retries: Option<(LitInt, u32)>,
}

impl PublisherArgs {
    pub const KNOWN: &'static [&'static str] = &["subject", "jetstream", "message_id", "retries"];

    pub fn from_list(mut list: ArgList, attr_span: Span) -> syn::Result<Self> {
        list.check_names("nats_publisher", Self::KNOWN)?;
        let subject = list.take_str("subject")?;
        let jetstream = list.take_flag("jetstream")?.is_some();
        let message_id = list.take_expr("message_id", "|order: &Order| order.id.to_string()")?;
        let retries = list.take_count("retries")?;
        let subject = subject.ok_or_else(|| {
            syn::Error::new(
                attr_span,
                "missing `subject`; write e.g. #[nats_publisher(subject = \"orders.created\")]",
            )
        })?;
        Ok(PublisherArgs {
            subject,
            jetstream,
            message_id,
            retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        for bad in [
            "",
            "s",
            "10",
            "1.5s",
            "10 s",
            "-1s",
            "5sec",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
    }
}
