//! The logout `state`: a single-use, time-limited record of a logout in
//! progress, kept in the session store (so any instance of a fleet can
//! finish it) and sealed (it holds the IdP end-session URL, whose
//! `id_token_hint` must never appear in a page or JSON).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::clock::unix_now;
use crate::config::LogoutMode;
use crate::session::crypto::{self, KeyRing};
use crate::session::{SessionError, Sessions};

/// How long a logout may take at the IdP.
pub const TTL: Duration = Duration::from_secs(600);

/// What the state remembers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutState {
    /// Where the user lands in the end (already validated).
    pub destination: String,
    /// `redirect`, `silent` or `popup`.
    pub mode: String,
    /// The IdP end-session URL (with `id_token_hint`).
    pub end_session_url: String,
    /// When the state stops being accepted (Unix seconds), fixed when it is
    /// first saved: visiting `/logout/continue` again never extends it.
    #[serde(default)]
    pub expires_at: u64,
}

impl LogoutState {
    /// The logout mode.
    pub fn mode(&self) -> LogoutMode {
        LogoutMode::parse(&self.mode).unwrap_or(LogoutMode::Redirect)
    }
}

/// A fresh state value: 256 random bits.
pub fn new_state(keys: &KeyRing) -> Option<String> {
    let mut bytes = [0u8; 32];
    keys.fill_random(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

fn store_key(state: &str) -> String {
    // The state travels in URLs; the store key is its hash.
    let digest = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
    format!("logout-state:{}", URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// A state value is 43 base64url characters; anything else is unknown.
fn well_formed(state: &str) -> bool {
    state.len() == 43
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Keeps a state for [`TTL`].
pub async fn save(
    sessions: &Sessions,
    state: &str,
    record: &LogoutState,
) -> Result<(), SessionError> {
    save_at(sessions, state, record, unix_now()).await
}

/// [`save`] as of `now` (Unix seconds), so tests can move the clock.
async fn save_at(
    sessions: &Sessions,
    state: &str,
    record: &LogoutState,
    now: u64,
) -> Result<(), SessionError> {
    let key = store_key(state);
    let mut record = record.clone();
    if record.expires_at == 0 {
        record.expires_at = now.saturating_add(TTL.as_secs());
    }
    let Some(left) = record.expires_at.checked_sub(now).filter(|s| *s > 0) else {
        return Ok(());
    };
    let json = serde_json::to_vec(&record).map_err(|_| SessionError::Encode)?;
    let sealed = sessions
        .keys()
        .sealer(crypto::PURPOSE_LOGOUT_STATE)
        .seal(key.as_bytes(), &json)?;
    sessions
        .put_temp(&key, sealed, std::time::Duration::from_secs(left))
        .await
}

/// Takes a state (single use): `None` when unknown, used, expired or
/// tampered with.
pub async fn take(sessions: &Sessions, state: &str) -> Result<Option<LogoutState>, SessionError> {
    take_at(sessions, state, unix_now()).await
}

/// [`take`] as of `now` (Unix seconds). The record's own `expires_at` is
/// checked, not only the store's expiry: a store may keep an entry a little
/// longer than asked.
async fn take_at(
    sessions: &Sessions,
    state: &str,
    now: u64,
) -> Result<Option<LogoutState>, SessionError> {
    if !well_formed(state) {
        return Ok(None);
    }
    let key = store_key(state);
    let Some(sealed) = sessions.take_temp(&key).await? else {
        return Ok(None);
    };
    Ok(open(sessions, &key, &sealed, now))
}

/// Reads a state without using it up (for `/logout/continue`, which a
/// silent logout may visit twice: once in its iframe, once in the fallback).
/// Only a read: a `/logout/done` racing it uses the state up for good.
pub async fn peek(sessions: &Sessions, state: &str) -> Result<Option<LogoutState>, SessionError> {
    if !well_formed(state) {
        return Ok(None);
    }
    let key = store_key(state);
    let Some(sealed) = sessions.get_temp(&key).await? else {
        return Ok(None);
    };
    Ok(open(sessions, &key, &sealed, unix_now()))
}

/// Rewrites a state that is still unused (its deadline unchanged); a state
/// used meanwhile stays used. `false` when it was gone.
pub async fn update(
    sessions: &Sessions,
    state: &str,
    record: &LogoutState,
) -> Result<bool, SessionError> {
    let key = store_key(state);
    let json = serde_json::to_vec(record).map_err(|_| SessionError::Encode)?;
    let sealed = sessions
        .keys()
        .sealer(crypto::PURPOSE_LOGOUT_STATE)
        .seal(key.as_bytes(), &json)?;
    sessions.replace_temp(&key, sealed).await
}

fn open(sessions: &Sessions, key: &str, sealed: &[u8], now: u64) -> Option<LogoutState> {
    sessions
        .keys()
        .sealer(crypto::PURPOSE_LOGOUT_STATE)
        .open(key.as_bytes(), sealed)
        .ok()
        .and_then(|json| serde_json::from_slice::<LogoutState>(&json).ok())
        .filter(|r| r.expires_at > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SameSite, Secret, SessionConfig, StoreConfig};

    async fn sessions() -> Sessions {
        let cfg = SessionConfig {
            secrets: vec![Secret::new("0123456789abcdef0123456789abcdef")],
            cookie_name: "portcullis".into(),
            cookie_domain: None,
            cookie_samesite: SameSite::Lax,
            persistent: false,
            idle_timeout: Duration::from_secs(1800),
            max_lifetime: Duration::from_secs(43200),
            store: StoreConfig::Memory,
        };
        Sessions::new(&cfg).await.unwrap()
    }

    fn record() -> LogoutState {
        LogoutState {
            destination: "/after".into(),
            mode: "redirect".into(),
            end_session_url: "https://idp.example/end?state=x".into(),
            expires_at: 0,
        }
    }

    #[tokio::test]
    async fn a_state_is_accepted_once_within_its_time_limit() {
        let sessions = sessions().await;
        let now = unix_now();
        let fresh = new_state(sessions.keys()).unwrap();
        save_at(&sessions, &fresh, &record(), now).await.unwrap();
        let got = take_at(&sessions, &fresh, now + TTL.as_secs() - 1)
            .await
            .unwrap();
        assert_eq!(got.map(|r| r.destination).as_deref(), Some("/after"));
        assert!(
            take_at(&sessions, &fresh, now).await.unwrap().is_none(),
            "single use"
        );
    }

    #[tokio::test]
    async fn a_state_past_its_time_limit_is_unknown() {
        let sessions = sessions().await;
        let now = unix_now();
        let old = new_state(sessions.keys()).unwrap();
        save_at(&sessions, &old, &record(), now).await.unwrap();
        // Still in the store (its expiry runs on the real clock), but the
        // record's own deadline has passed.
        assert!(
            take_at(&sessions, &old, now + TTL.as_secs())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn peeking_never_extends_the_time_limit() {
        let sessions = sessions().await;
        let now = unix_now();
        let state = new_state(sessions.keys()).unwrap();
        save_at(&sessions, &state, &record(), now - 100)
            .await
            .unwrap();
        let peeked = peek(&sessions, &state).await.unwrap().unwrap();
        assert_eq!(peeked.expires_at, now - 100 + TTL.as_secs());
        assert!(
            take_at(&sessions, &state, now - 100 + TTL.as_secs())
                .await
                .unwrap()
                .is_none()
        );
    }

    /// `/logout/continue` (read, then rewrite for a fallback) racing
    /// `/logout/done` (take): `/done` always gets the state and nothing
    /// brings it back afterwards. A take-then-save `peek` lost both ways.
    #[test]
    fn continue_racing_done_never_revives_a_used_state() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sessions = rt.block_on(sessions());
        for _ in 0..300 {
            let state = new_state(sessions.keys()).unwrap();
            let mut rec = record();
            rec.mode = "popup".into();
            rt.block_on(save(&sessions, &state, &rec)).unwrap();
            let (s1, st1) = (sessions.clone(), state.clone());
            let cont = rt.spawn(async move {
                if let Some(mut r) = peek(&s1, &st1).await.unwrap() {
                    r.mode = "redirect".into();
                    let _ = update(&s1, &st1, &r).await.unwrap();
                }
            });
            let (s2, st2) = (sessions.clone(), state.clone());
            let done = rt.spawn(async move { take(&s2, &st2).await.unwrap() });
            let got = rt.block_on(done).unwrap();
            rt.block_on(cont).unwrap();
            assert!(got.is_some(), "/done lost the state to /continue");
            assert!(
                rt.block_on(take(&sessions, &state)).unwrap().is_none(),
                "a used state came back"
            );
        }
    }

    #[tokio::test]
    async fn malformed_states_are_unknown() {
        let sessions = sessions().await;
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", "a".repeat(42)),
        ] {
            assert!(take(&sessions, bad).await.unwrap().is_none(), "{bad:?}");
        }
    }
}
