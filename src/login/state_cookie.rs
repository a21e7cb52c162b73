//! The login-state cookie: a short-lived, encrypted, `SameSite=Lax` cookie
//! carrying state, nonce, PKCE verifier and return URL from the redirect to
//! the IdP until the callback.
//!
//! Its name is derived from the state, so several tabs can log in at once
//! and each callback finds its own cookie; a handful may exist at a time and
//! starting another drops the oldest. The sealed value is bound to the
//! cookie name (AEAD associated data), so a value cannot be moved to
//! another state's cookie.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::COOKIE;

use crate::config::SessionConfig;
use crate::oidc::LoginState;
use crate::session::cookie::helper_cookie;
use crate::session::crypto::{self, KeyRing};

/// Login-state cookie names are `<session cookie name>-login-<tag>`.
pub const COOKIE_INFIX: &str = "-login-";

/// How long a login may take (README "Sessions": at most 10 minutes).
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// How many logins may be in flight in one browser.
pub const MAX_IN_FLIGHT: usize = 4;

/// The cookie name for a state.
pub fn cookie_name(cfg: &SessionConfig, state: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
    format!("{}{COOKIE_INFIX}{tag}", cfg.cookie_name)
}

/// Seals a login state into a cookie value.
pub fn seal(keys: &KeyRing, name: &str, state: &LoginState) -> Option<String> {
    let json = serde_json::to_vec(state).ok()?;
    let sealed = keys
        .sealer(crypto::PURPOSE_LOGIN_STATE)
        .seal(name.as_bytes(), &json)
        .ok()?;
    Some(URL_SAFE_NO_PAD.encode(sealed))
}

/// Opens a cookie value; `None` when forged, tampered, moved or undecodable.
pub fn open(keys: &KeyRing, name: &str, value: &str) -> Option<LoginState> {
    let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
    let json = keys
        .sealer(crypto::PURPOSE_LOGIN_STATE)
        .open(name.as_bytes(), &sealed)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// `Set-Cookie` for a new login state.
pub fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    helper_cookie(name, value, MAX_AGE, secure)
}

/// `Set-Cookie` that removes a login-state cookie.
pub fn expire_cookie(name: &str, secure: bool) -> String {
    helper_cookie(name, "", Duration::ZERO, secure)
}

/// The login-state cookies the browser sent: `(name, value)`.
pub fn present(cfg: &SessionConfig, headers: &HeaderMap) -> Vec<(String, String)> {
    let prefix = format!("{}{COOKIE_INFIX}", cfg.cookie_name);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// Names of login cookies to drop so that, with the one being added, at
/// most [`MAX_IN_FLIGHT`] remain: unreadable ones first, then the oldest.
pub fn to_evict(keys: &KeyRing, present: &[(String, String)]) -> Vec<String> {
    if present.len() < MAX_IN_FLIGHT {
        return Vec::new();
    }
    let mut aged: Vec<(u64, &str)> = present
        .iter()
        .map(|(name, value)| {
            (
                open(keys, name, value).map_or(0, |s| s.created_at),
                name.as_str(),
            )
        })
        .collect();
    aged.sort_unstable();
    let excess = present.len() + 1 - MAX_IN_FLIGHT;
    aged.into_iter()
        .take(excess)
        .map(|(_, n)| n.to_owned())
        .collect()
}
