//! Secrets of the connectors file (connectors.md §2.3): only `"${NAME}"` from the
//! environment or a `*_file`, held in memory, never printed, and redacted from text Rolegate
//! did not write itself.

use crate::config::Doc;
use std::fmt;
use std::ops::Range;

/// Where `${NAME}` is looked up: the process environment, or a fixed map in tests.
pub trait Environment {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The server's own environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<const N: usize> Environment for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// A secret value. Its `Debug` shows `***`; it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it to the target.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces every secret of four characters or more in `text` by `***` (§2.3's second line
/// of defence, for errors of a database, a directory or a program).
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.0.chars().count() >= 4 {
            out = out.replace(&s.0, "***");
        }
    }
    out
}

/// `"${NAME}"`, whole-value, from the environment.
pub(crate) fn from_env(
    doc: &mut Doc<'_>,
    span: Range<usize>,
    field: &str,
    text: &str,
) -> Option<Secret> {
    let name = text
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    let Some(name) = name else {
        doc.problem(
            span,
            field,
            format!(
                "a secret may not be written in the file; use {}_file or \"${{NAME}}\"",
                field.rsplit('.').next().unwrap_or(field)
            ),
        );
        return None;
    };
    match doc.env().var(name) {
        Some(v) if !v.is_empty() => Some(Secret(v)),
        _ => {
            doc.problem(
                span,
                field,
                format!("the environment variable {name} is not set or empty"),
            );
            None
        }
    }
}

/// The content of a secret file: regular, readable, non-empty; one trailing newline removed.
pub(crate) fn from_file(
    doc: &mut Doc<'_>,
    span: Range<usize>,
    field: &str,
    path: &str,
) -> Option<Secret> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            doc.problem(span, field, format!("cannot read {path}: {e}"));
            return None;
        }
    };
    if !meta.is_file() {
        doc.problem(span, field, format!("{path} is not a regular file"));
        return None;
    }
    let text = match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(t)) => t,
        Ok(Err(_)) => {
            doc.problem(span, field, format!("{path} is not UTF-8 text"));
            return None;
        }
        Err(e) => {
            doc.problem(span, field, format!("cannot read {path}: {e}"));
            return None;
        }
    };
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.is_empty() {
        doc.problem(span, field, format!("{path} is empty"));
        return None;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o044 != 0 {
            doc.warn(format!(
                "{field}: {path} is readable by group or others; make it 0600"
            ));
        }
    }
    Some(Secret(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_and_is_redacted_from_foreign_text() {
        let s = Secret("hunter2-pass".into());
        assert_eq!(format!("{s:?}"), "***");
        let short = Secret("abc".into());
        assert_eq!(
            redact("FATAL: password hunter2-pass rejected; abc", [&s, &short]),
            "FATAL: password *** rejected; abc"
        );
    }
}
