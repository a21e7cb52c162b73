//! Who the session says the user is: the route's `allow_*` rules and the
//! identity headers sent upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use http::{HeaderName, HeaderValue};

use crate::config::{HeadersConfig, Route};
use crate::session::SessionRecord;

/// Identity headers for the upstream, shared between requests.
pub type IdentityHeaders = Arc<[(HeaderName, HeaderValue)]>;

/// Most records whose headers are kept: as many as the session layer keeps
/// opened records. Past it, entries of records that are gone are dropped
/// first, then every other entry, so a busy gateway keeps half its hits
/// instead of starting from nothing.
const HEADER_CACHE_CAPACITY: usize = 16_384;

/// The identity headers of each opened session record, computed once per
/// record instead of on every request (encoding the claims was about 3% of
/// a session route's instructions). One cache per gateway, so a reload
/// that changes `[headers]` starts afresh.
///
/// Entries are keyed by the record's address and hold a `Weak` to it. The
/// `Weak` keeps that address from being reused while the entry exists, and
/// a record is never changed in place while one exists (`Arc::make_mut`
/// then moves or copies it to a new address), so a key that matches is the
/// very record the headers were computed from.
#[derive(Default)]
pub struct HeaderCache {
    entries: Mutex<HashMap<usize, (Weak<SessionRecord>, IdentityHeaders)>>,
}

impl HeaderCache {
    /// The identity headers for `record` under `cfg` (the configuration of
    /// the gateway this cache belongs to).
    pub fn get(&self, cfg: &HeadersConfig, record: &Arc<SessionRecord>) -> IdentityHeaders {
        let key = Arc::as_ptr(record) as usize;
        if let Some((_, hit)) = self.lock().get(&key) {
            return hit.clone();
        }
        let computed: IdentityHeaders = headers(cfg, record).into();
        let mut entries = self.lock();
        if entries.len() >= HEADER_CACHE_CAPACITY {
            entries.retain(|_, (weak, _)| weak.strong_count() > 0);
            if entries.len() >= HEADER_CACHE_CAPACITY / 2 {
                let mut keep = false;
                entries.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        entries.insert(key, (Arc::downgrade(record), computed.clone()));
        computed
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<usize, (Weak<SessionRecord>, IdentityHeaders)>> {
        // Only a cache: a panic elsewhere leaves at worst entries to recompute.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The verified email, lower-cased, if the IdP vouched for it.
fn verified_email(record: &SessionRecord) -> Option<String> {
    record
        .claims
        .email
        .as_deref()
        .filter(|_| record.claims.email_verified)
        .map(str::to_ascii_lowercase)
}

/// Whether the session passes the route's authorisation rules: any listed
/// group, or listed email, or email domain (verified emails only). A route
/// without rules admits every session.
pub fn allowed(route: &Route, record: &SessionRecord) -> bool {
    if !route.has_authorisation_rules() {
        return true;
    }
    if record
        .claims
        .groups
        .iter()
        .any(|g| route.allow_groups.contains(g))
    {
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
    let claims = &record.claims;
    if let Some(name) = &cfg.user {
        push(name, &claims.sub);
    }
    if let Some(name) = &cfg.email
        && let Some(email) = &claims.email
        && (claims.email_verified || !cfg.require_verified_email)
    {
        push(name, email);
    }
    if let Some(name) = &cfg.preferred_username
        && let Some(username) = &claims.preferred_username
    {
        push(name, username);
    }
    if let Some(name) = &cfg.groups
        && !claims.groups.is_empty()
    {
        let joined: Vec<_> = claims.groups.iter().map(|g| encode_group(g)).collect();
        push(name, &joined.join(","));
    }
    if cfg.access_token {
        push(
            &HeaderName::from_static("x-forwarded-access-token"),
            record.access_token.expose(),
        );
    }
    if cfg.authorization {
        push(
            &http::header::AUTHORIZATION,
            &format!("Bearer {}", record.access_token.expose()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::oidc::IdentityClaims;
    use crate::session::NewSession;

    fn record(groups: &[&str]) -> Arc<SessionRecord> {
        Arc::new(SessionRecord::new(
            NewSession {
                claims: IdentityClaims {
                    iss: "https://idp".into(),
                    sub: "alice".into(),
                    groups: groups.iter().map(|g| g.to_string()).collect(),
                    ..Default::default()
                },
                id_token: Secret::new("id"),
                access_token: Secret::new("at"),
                access_token_expires_at: None,
                refresh_token: None,
            },
            std::time::SystemTime::now(),
            std::time::Duration::from_secs(60),
        ))
    }

    fn config() -> HeadersConfig {
        HeadersConfig {
            user: Some(HeaderName::from_static("x-forwarded-user")),
            email: None,
            require_verified_email: true,
            preferred_username: None,
            groups: Some(HeaderName::from_static("x-forwarded-groups")),
            access_token: false,
            authorization: false,
            jwt_assertion: None,
            jwt_signing_key: None,
        }
    }

    fn groups_of(h: &IdentityHeaders) -> Option<&str> {
        h.iter()
            .find(|(n, _)| n == "x-forwarded-groups")
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn cached_headers_follow_every_change_of_the_record() {
        let cfg = config();
        let cache = HeaderCache::default();
        let mut rec = record(&["a"]);
        let first = cache.get(&cfg, &rec);
        assert_eq!(groups_of(&first), Some("a"));
        assert!(Arc::ptr_eq(&first, &cache.get(&cfg, &rec)), "computed once");

        // Changed through make_mut while the cache holds a Weak: the record
        // moves, so the old headers are not served for it.
        Arc::make_mut(&mut rec).claims.groups = vec!["b".into()];
        assert_eq!(groups_of(&cache.get(&cfg, &rec)), Some("b"));

        // Shared (as the gateway's record cache shares it): make_mut copies.
        let shared = rec.clone();
        Arc::make_mut(&mut rec).claims.groups = vec!["c".into()];
        assert_eq!(groups_of(&cache.get(&cfg, &rec)), Some("c"));
        assert_eq!(groups_of(&cache.get(&cfg, &shared)), Some("b"));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cfg = config();
        let cache = HeaderCache::default();
        let kept: Vec<_> = (0..HEADER_CACHE_CAPACITY * 2)
            .map(|_| {
                let r = record(&["g"]);
                cache.get(&cfg, &r);
                r
            })
            .collect();
        assert!(cache.lock().len() <= HEADER_CACHE_CAPACITY);
        drop(kept);
    }

    #[test]
    fn group_names_round_trip() {
        assert_eq!(encode_group("a,b%c"), "a%2Cb%25c");
    }
}
