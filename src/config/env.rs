//! `${ENV_VAR}` expansion in string values.
//!
//! Rules: `${NAME}` (NAME = letters, digits, `_`, not starting with a digit)
//! is replaced by the variable's value; a variable that is not set is an
//! error naming it. `$${` is a literal `${`. Any other `$` is kept as is,
//! so secrets that contain `$` need no escaping. Expanded values are not
//! expanded again.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::Sink;

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `${NAME}` where NAME is not set.
    #[error("environment variable `{0}` is not set")]
    Missing(String),
    /// `${` without a closing `}`.
    #[error("unterminated `${{` (write `$${{` for a literal `${{`)")]
    Unterminated,
    /// `${...}` whose content is not a variable name.
    #[error(
        "`${{{0}}}` is not a valid environment variable name (letters, digits and `_`; write `$${{` for a literal `${{`)"
    )]
    BadName(String),
}

/// Expands one string. Returns `None` when there is nothing to expand, so
/// callers can keep borrowed strings.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, EnvError> {
    if !s.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or(EnvError::Unterminated)?;
            let name = &tail[..end];
            if !is_name(name) {
                return Err(EnvError::BadName(name.to_string()));
            }
            let value = env(name).ok_or_else(|| EnvError::Missing(name.to_string()))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Expands every string value in the document, recording an error at each
/// string that cannot be expanded. A key whose value (or any item of its
/// list) cannot be expanded is removed, and its dotted path (`server.listen`,
/// `route.0.prefix`) is pushed to `broken`, so later checks neither judge the
/// unexpanded text nor call the key missing. `path` is the table's own path
/// (empty for the document).
pub(crate) fn expand_table(
    table: &mut DeTable<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    sink: &mut Sink<'_>,
    path: &str,
    broken: &mut Vec<String>,
) {
    let mut failed = Vec::new();
    for (key, value) in table.iter_mut() {
        let key_path = join(path, key.get_ref());
        if !expand_value(value, env, sink, &key_path, broken) {
            failed.push(key.clone());
        }
    }
    for key in failed {
        broken.push(join(path, key.get_ref()));
        table.remove(&key);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Returns false when a string in `value` (outside nested tables) failed.
fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
    sink: &mut Sink<'_>,
    path: &str,
    broken: &mut Vec<String>,
) -> bool {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => match expand(s, env) {
            Ok(Some(expanded)) => *s = Cow::Owned(expanded),
            Ok(None) => {}
            Err(e) => {
                sink.error(&span, e.to_string());
                return false;
            }
        },
        DeValue::Array(items) => {
            let mut ok = true;
            for (i, item) in items.iter_mut().enumerate() {
                ok &= expand_value(item, env, sink, &join(path, &i.to_string()), broken);
            }
            return ok;
        }
        DeValue::Table(t) => expand_table(t, env, sink, path, broken),
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B_2" => Some("${A}".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_and_escapes() {
        assert_eq!(expand("plain", &env), Ok(None));
        assert_eq!(expand("x${A}y", &env), Ok(Some("xalphay".into())));
        assert_eq!(expand("$${A}", &env), Ok(Some("${A}".into())));
        assert_eq!(expand("p$ss$", &env), Ok(Some("p$ss$".into())));
        // values are not expanded again
        assert_eq!(expand("${B_2}", &env), Ok(Some("${A}".into())));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            expand("${NOPE}", &env),
            Err(EnvError::Missing("NOPE".into()))
        );
        assert_eq!(expand("${A", &env), Err(EnvError::Unterminated));
        assert_eq!(expand("${1A}", &env), Err(EnvError::BadName("1A".into())));
        assert_eq!(expand("${}", &env), Err(EnvError::BadName(String::new())));
    }
}
