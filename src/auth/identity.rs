//! Who the session says the user is: the route's `allow_*` rules and the
//! identity headers sent upstream.

use http::{HeaderName, HeaderValue};

use crate::config::{HeadersConfig, Route};
use crate::session::SessionRecord;

/// The verified email, lower-cased, if the IdP vouched for it.
fn verified_email(record: &SessionRecord) -> Option<String> {
    record
        .email
        .as_deref()
        .filter(|_| record.email_verified)
        .map(str::to_ascii_lowercase)
}

/// Whether the session passes the route's authorisation rules: any listed
/// group, or listed email, or email domain (verified emails only). A route
/// without rules admits every session.
pub fn allowed(route: &Route, record: &SessionRecord) -> bool {
    if !route.has_authorisation_rules() {
        return true;
    }
    if record.groups.iter().any(|g| route.allow_groups.contains(g)) {
        return true;
    }
    let Some(email) = verified_email(record) else {
        return false;
    };
    if route.allow_emails.contains(&email) {
        return true;
    }
    email
        .rsplit_once('@')
        .is_some_and(|(_, domain)| route.allow_email_domains.iter().any(|d| d == domain))
}

/// A group name with `%` and `,` percent-encoded, so the joined header
/// splits back into exactly the names the IdP sent.
fn encode_group(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['%', ',']) {
        name.replace('%', "%25").replace(',', "%2C").into()
    } else {
        name.into()
    }
}

/// The identity headers for one session. A claim that cannot be a header
/// value (control characters) is left out and logged, never sent garbled.
pub fn headers(cfg: &HeadersConfig, record: &SessionRecord) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(6);
    let mut push = |name: &HeaderName, value: &str| match HeaderValue::from_str(value) {
        Ok(v) => out.push((name.clone(), v)),
        Err(_) => {
            tracing::warn!(header = %name, "identity claim is not a valid header value; header left out")
        }
    };
    if let Some(name) = &cfg.user {
        push(name, &record.sub);
    }
    if let Some(name) = &cfg.email
        && let Some(email) = &record.email
        && (record.email_verified || !cfg.require_verified_email)
    {
        push(name, email);
    }
    if let Some(name) = &cfg.preferred_username
        && let Some(username) = &record.preferred_username
    {
        push(name, username);
    }
    if let Some(name) = &cfg.groups
        && !record.groups.is_empty()
    {
        let joined: Vec<_> = record.groups.iter().map(|g| encode_group(g)).collect();
        push(name, &joined.join(","));
    }
    if cfg.access_token {
        push(
            &HeaderName::from_static("x-forwarded-access-token"),
            &record.access_token,
        );
    }
    if cfg.authorization {
        push(
            &http::header::AUTHORIZATION,
            &format!("Bearer {}", record.access_token),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_round_trip() {
        assert_eq!(encode_group("a,b%c"), "a%2Cb%25c");
    }
}
