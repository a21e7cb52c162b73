//! What a session holds: the user's claims and tokens, and its clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::id::StoreKey;

/// What a login hands over to create a session.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NewSession {
    /// Issuer of the ID token.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// The IdP's session id (`sid` claim), when sent.
    pub sid: Option<String>,
    /// `email` claim.
    pub email: Option<String>,
    /// `email_verified` claim (false when absent).
    pub email_verified: bool,
    /// `preferred_username` claim.
    pub preferred_username: Option<String>,
    /// `groups` claim.
    pub groups: Vec<String>,
    /// The raw ID token, kept for `id_token_hint`. Never logged.
    pub id_token: String,
    /// Access token. Never logged.
    pub access_token: String,
    /// When the access token expires, if the IdP said.
    pub access_token_expires_at: Option<SystemTime>,
    /// Refresh token, when granted. Never logged.
    pub refresh_token: Option<String>,
}

/// The stored session: sealed as JSON, the store key as AAD.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Issuer of the ID token.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// The IdP's session id (`sid` claim), when sent.
    #[serde(default)]
    pub sid: Option<String>,
    /// `email` claim.
    #[serde(default)]
    pub email: Option<String>,
    /// `email_verified` claim.
    #[serde(default)]
    pub email_verified: bool,
    /// `preferred_username` claim.
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// `groups` claim.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The raw ID token, for `id_token_hint`. Never logged or shown.
    pub id_token: String,
    /// Access token. Never logged.
    pub access_token: String,
    /// When the access token expires (Unix ms), if known.
    #[serde(default)]
    pub access_token_expires_at: Option<u64>,
    /// Refresh token. Never logged.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Creation time (Unix ms).
    pub created_at: u64,
    /// Last activity written to the store (Unix ms); drives the idle timeout.
    pub last_seen: u64,
    /// Absolute end: `created_at + max_lifetime` (Unix ms). Never slides.
    pub expires_at: u64,
}

fn redact(o: &Option<String>) -> &'static str {
    if o.is_some() { "<redacted>" } else { "None" }
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("email", &self.email)
            .field("email_verified", &self.email_verified)
            .field("preferred_username", &self.preferred_username)
            .field("groups", &self.groups)
            .field("id_token", &"<redacted>")
            .field("access_token", &"<redacted>")
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("refresh_token", &redact(&self.refresh_token))
            .finish()
    }
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("email", &self.email)
            .field("email_verified", &self.email_verified)
            .field("preferred_username", &self.preferred_username)
            .field("groups", &self.groups)
            .field("id_token", &"<redacted>")
            .field("access_token", &"<redacted>")
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("refresh_token", &redact(&self.refresh_token))
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Unix milliseconds of a time (0 before the epoch).
pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time of Unix milliseconds.
pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl SessionRecord {
    /// A record for a new session created at `now`.
    pub fn new(n: NewSession, now: SystemTime, max_lifetime: Duration) -> Self {
        let created = to_ms(now);
        let life = u64::try_from(max_lifetime.as_millis()).unwrap_or(u64::MAX);
        SessionRecord {
            iss: n.iss,
            sub: n.sub,
            sid: n.sid,
            email: n.email,
            email_verified: n.email_verified,
            preferred_username: n.preferred_username,
            groups: n.groups,
            id_token: n.id_token,
            access_token: n.access_token,
            access_token_expires_at: n.access_token_expires_at.map(to_ms),
            refresh_token: n.refresh_token,
            created_at: created,
            last_seen: created,
            expires_at: created.saturating_add(life),
        }
    }
}

/// A loaded session: its record and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    key: StoreKey,
    /// The record, shared with the gateway's cache of opened records; change
    /// tokens through `Arc::make_mut`, then call `Sessions::update`.
    pub record: Arc<SessionRecord>,
    idle_timeout: Duration,
}

impl Session {
    pub(crate) fn new(key: StoreKey, record: Arc<SessionRecord>, idle_timeout: Duration) -> Self {
        Session {
            key,
            record,
            idle_timeout,
        }
    }

    /// The store key (hash of the id): safe to log, used in revocations.
    pub fn key(&self) -> &StoreKey {
        &self.key
    }

    /// When the session was created.
    pub fn created_at(&self) -> SystemTime {
        from_ms(self.record.created_at)
    }

    /// Last activity recorded in the store.
    pub fn last_seen(&self) -> SystemTime {
        from_ms(self.record.last_seen)
    }

    /// Absolute end of the session.
    pub fn expires_at(&self) -> SystemTime {
        from_ms(self.record.expires_at)
    }

    /// When the session ends if no further activity is recorded (never later
    /// than [`Session::expires_at`]).
    pub fn idle_expires_at(&self) -> SystemTime {
        let idle = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        from_ms(
            self.record
                .last_seen
                .saturating_add(idle)
                .min(self.record.expires_at),
        )
    }

    /// When the access token expires, if known.
    pub fn access_token_expires_at(&self) -> Option<SystemTime> {
        self.record.access_token_expires_at.map(from_ms)
    }
}

/// One session in an admin listing: no tokens, no cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The store key (hash of the session id).
    pub id_hash: String,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last activity recorded in the store.
    pub last_seen: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_tokens() {
        let r = SessionRecord::new(
            NewSession {
                iss: "https://idp".into(),
                sub: "alice".into(),
                id_token: "IDTOKEN-SECRET".into(),
                access_token: "ACCESS-SECRET".into(),
                refresh_token: Some("REFRESH-SECRET".into()),
                ..Default::default()
            },
            SystemTime::now(),
            Duration::from_secs(60),
        );
        let shown = format!("{r:?}");
        assert!(shown.contains("alice"));
        for secret in ["IDTOKEN-SECRET", "ACCESS-SECRET", "REFRESH-SECRET"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert_eq!(r.expires_at - r.created_at, 60_000);
    }
}
