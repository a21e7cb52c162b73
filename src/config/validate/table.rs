//! Generic table handling: deserializing one TOML table into its raw type,
//! reporting unknown keys (with a "did you mean" for likely typos) and type
//! errors, and remembering where each key was written.
//!
//! A type error drops only the offending key and deserialization is tried
//! again, so one wrong value does not hide the problems of the rest of the
//! table.

use std::collections::HashMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::{V, Val};
use crate::config::raw::*;

/// A deserialized table with the spans needed to point at its keys.
pub(super) struct Table<T> {
    pub(super) raw: T,
    /// Span of the table's name (`server` in `[server]`).
    pub(super) header: Range<usize>,
    /// Span of each key present.
    pub(super) keys: HashMap<String, Range<usize>>,
    /// Keys whose value was already reported as wrong and dropped.
    pub(super) broken: Vec<String>,
}

impl<T> Table<T> {
    /// The key's span, or the table header's when the key is absent.
    pub(super) fn key(&self, name: &str) -> Range<usize> {
        self.keys.get(name).cloned().unwrap_or(self.header.clone())
    }

    /// Whether the key was given but already reported as wrong.
    pub(super) fn is_broken(&self, name: &str) -> bool {
        self.broken.iter().any(|b| b == name)
    }
}

/// A table that was absent, broken (already reported), or read.
pub(super) enum Section<T> {
    Absent,
    Broken,
    Read(Table<T>),
}

impl V<'_> {
    /// Reports an unknown key, suggesting the closest valid one.
    pub(super) fn unknown_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        where_: &str,
        valid: &[&str],
    ) {
        let name = key.get_ref().as_ref();
        let mut msg = format!("unknown key `{name}` {where_}");
        if let Some(best) = closest(name, valid) {
            msg.push_str(&format!("; did you mean `{best}`?"));
        }
        self.sink.error(&key.span(), msg);
    }

    /// Deserializes one table, reporting unknown keys and type errors.
    /// Sub-tables named in `subs` are returned undeserialized.
    #[allow(clippy::type_complexity)]
    pub(super) fn table<'i, T: DeserializeOwned>(
        &mut self,
        label: &str,
        path: &str,
        header: Range<usize>,
        value: Val<'i>,
        subs: &[&str],
    ) -> (Section<T>, HashMap<String, (Range<usize>, Val<'i>)>) {
        let mut sub_values = HashMap::new();
        let span = value.span();
        let DeValue::Table(mut table) = value.into_inner() else {
            self.sink.error(
                &span,
                format!("{label} must be a table, not a single value"),
            );
            return (Section::Broken, sub_values);
        };
        let fields = field_names::<T>();
        let mut valid: Vec<&str> = fields.to_vec();
        valid.extend_from_slice(subs);
        let mut keys = HashMap::new();
        let names: Vec<_> = table.keys().cloned().collect();
        for key in names {
            let name: &str = key.get_ref().as_ref();
            if subs.contains(&name) {
                if let Some(v) = table.remove(&key) {
                    sub_values.insert(name.to_string(), (key.span(), v));
                }
            } else if !fields.contains(&name) {
                self.unknown_key(&key, &format!("in {label}"), &valid);
                table.remove(&key);
            } else {
                keys.insert(name.to_string(), key.span());
            }
        }
        let mut broken: Vec<String> = self
            .broken_keys
            .iter()
            .filter_map(|p| p.strip_prefix(path)?.strip_prefix('.'))
            .filter(|k| !k.contains('.'))
            .map(str::to_string)
            .collect();
        // On a type error, report it, drop that key and try again, so one
        // wrong value does not hide the problems of the rest of the table.
        loop {
            let value_spans: Vec<(String, Range<usize>)> = table
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), v.span()))
                .collect();
            let de =
                ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(table.clone())));
            let e = match T::deserialize(de) {
                Ok(raw) => {
                    let t = Table {
                        raw,
                        header,
                        keys,
                        broken,
                    };
                    return (Section::Read(t), sub_values);
                }
                Err(e) => e,
            };
            let at = e.span().unwrap_or(span.clone());
            let key = value_spans
                .iter()
                .find(|(_, s)| s.start <= at.start && at.start < s.end.max(s.start + 1))
                .map(|(k, _)| k.clone());
            let msg = without_value(e.message().trim_end());
            match key {
                Some(k) => {
                    self.sink.error(&at, format!("`{k}` in {label}: {msg}"));
                    let found = table
                        .keys()
                        .find(|n| n.get_ref().as_ref() == k.as_str())
                        .cloned();
                    if let Some(name) = found {
                        table.remove(&name);
                    }
                    broken.push(k);
                }
                None => {
                    self.sink.error(&at, format!("{label}: {msg}"));
                    return (Section::Broken, sub_values);
                }
            }
        }
    }
}

/// serde's "invalid type" and "invalid value" messages quote the value
/// found, and after `${VAR}` expansion that may be a secret (a Redis URL
/// with its password given where a list was expected; a numeric token left
/// unquoted): only the kind of value is kept. The span still points at it.
fn without_value(msg: &str) -> String {
    const KINDS: [&str; 8] = [
        "string",
        "integer",
        "floating point",
        "boolean",
        "character",
        "sequence",
        "map",
        "byte array",
    ];
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix)
            && let Some(i) = rest.rfind(", expected ")
        {
            let found = &rest[..i];
            let kind = KINDS
                .iter()
                .find(|k| found.starts_with(**k))
                .unwrap_or(&"value");
            return format!("{prefix}{kind}{}", &rest[i..]);
        }
    }
    msg.to_owned()
}

/// The closest valid name, if one is close enough to be a likely typo
/// (edit distance with transpositions, at most a third of the name).
fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (strsim::osa_distance(name, v), *v))
        .filter(|(d, v)| *d <= (v.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_typos_only() {
        assert_eq!(closest("listn", &["listen", "public_url"]), Some("listen"));
        assert_eq!(closest("zzz", &["listen", "public_url"]), None);
    }
}
