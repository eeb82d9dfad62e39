//! Subjects and span names of publishes, made `'static` once per subject.
//!
//! A span name must be `Cow<'static, str>` and a subject is copied into the
//! client's command, so without this every publish would format its span
//! name and copy its subject. The table keeps the first [`LIMIT`] distinct
//! (operation, subject) pairs for the life of the process; past that, names
//! are built per call.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use async_nats::Subject;

/// Most (operation, subject) pairs kept.
pub(crate) const LIMIT: usize = 4096;

/// The names one publish uses.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The subject.
    pub(crate) subject: Cow<'static, str>,
    /// `{operation} {subject}`.
    pub(crate) span_name: Cow<'static, str>,
}

impl Names {
    /// The subject as the client takes it, without a copy when interned.
    pub(crate) fn nats_subject(&self) -> Subject {
        match &self.subject {
            Cow::Borrowed(subject) => Subject::from_static(subject),
            Cow::Owned(subject) => Subject::from(subject.as_str()),
        }
    }
}

type Table = HashMap<(&'static str, &'static str), (&'static str, &'static str)>;

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(RwLock::default);

/// The names of an `operation` (`publish`, `request`, ..) on `subject`.
pub(crate) fn names(operation: &'static str, subject: &str) -> Names {
    let borrowed = |(subject, span_name): (&'static str, &'static str)| Names {
        subject: Cow::Borrowed(subject),
        span_name: Cow::Borrowed(span_name),
    };
    let full = {
        let table = read();
        if let Some(found) = lookup(&table, operation, subject) {
            return borrowed(found);
        }
        table.len() >= LIMIT
    };
    let span_name = format!("{operation} {subject}");
    let owned = |span_name| Names {
        subject: Cow::Owned(subject.to_string()),
        span_name: Cow::Owned(span_name),
    };
    // Past the limit, publishes never wait for the write lock.
    if full {
        return owned(span_name);
    }
    let mut table = TABLE.write().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = lookup(&table, operation, subject) {
        return borrowed(found);
    }
    if table.len() >= LIMIT {
        return owned(span_name);
    }
    let subject: &'static str = Box::leak(subject.into());
    let span_name: &'static str = Box::leak(span_name.into_boxed_str());
    table.insert((operation, subject), (subject, span_name));
    borrowed((subject, span_name))
}

fn read() -> std::sync::RwLockReadGuard<'static, Table> {
    TABLE.read().unwrap_or_else(|e| e.into_inner())
}

fn lookup<'a>(
    table: &'a HashMap<(&'a str, &'a str), (&'static str, &'static str)>,
    operation: &'a str,
    subject: &'a str,
) -> Option<(&'static str, &'static str)> {
    table.get(&(operation, subject)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_built_once_per_subject() {
        let first = names("publish", "names.test.once");
        let second = names("publish", &String::from("names.test.once"));
        assert_eq!(first.span_name, "publish names.test.once");
        assert_eq!(first.subject, "names.test.once");
        let (Cow::Borrowed(a), Cow::Borrowed(b)) = (&first.span_name, &second.span_name) else {
            panic!("interned names are borrowed");
        };
        assert!(
            std::ptr::eq(*a, *b),
            "the second call reuses the first's name"
        );
        assert_eq!(
            names("request", "names.test.once").span_name,
            "request names.test.once"
        );
        assert_eq!(first.nats_subject().as_str(), "names.test.once");
    }
}
