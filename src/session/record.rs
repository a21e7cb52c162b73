//! What a session holds: the user's claims and tokens, and its clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::id::StoreKey;
use crate::config::Secret;
use crate::oidc::IdentityClaims;

/// What a login hands over to create a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Who logged in.
    pub claims: IdentityClaims,
    /// The raw ID token, kept for `id_token_hint`.
    pub id_token: Secret,
    /// Access token.
    pub access_token: Secret,
    /// When the access token expires, if the IdP said.
    pub access_token_expires_at: Option<SystemTime>,
    /// Refresh token, when granted.
    pub refresh_token: Option<Secret>,
}

/// The stored session: sealed as JSON, the store key as AAD. The claims
/// are flattened into the record's JSON, so the stored shape is the one
/// records have always had (`{"iss":…,"sub":…,…,"id_token":…}`). Tokens
/// are [`Secret`]s: `Debug` never shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Who the session is for.
    #[serde(flatten)]
    pub claims: IdentityClaims,
    /// The raw ID token, for `id_token_hint`. Never logged or shown.
    #[serde(with = "secret_text")]
    pub id_token: Secret,
    /// Access token. Never logged.
    #[serde(with = "secret_text")]
    pub access_token: Secret,
    /// When the access token expires (Unix ms), if known.
    #[serde(default)]
    pub access_token_expires_at: Option<u64>,
    /// Refresh token. Never logged.
    #[serde(default, with = "secret_text::option")]
    pub refresh_token: Option<Secret>,
    /// Creation time (Unix ms).
    pub created_at: u64,
    /// Last activity written to the store (Unix ms); drives the idle timeout.
    pub last_seen: u64,
    /// Absolute end: `created_at + max_lifetime` (Unix ms). Never slides.
    pub expires_at: u64,
}

/// A [`Secret`] stored as its plain text: the record is sealed as a whole,
/// and this is the one place a token is written out on purpose.
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::Secret;

    pub fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }

    /// The same for an optional secret (`null` when absent).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        use crate::config::Secret;

        pub fn serialize<S: Serializer>(secret: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
            match secret {
                Some(secret) => s.serialize_some(secret.expose()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
            Option::<String>::deserialize(d).map(|o| o.map(Secret::new))
        }
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
            claims: n.claims,
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
                claims: IdentityClaims {
                    iss: "https://idp".into(),
                    sub: "alice".into(),
                    ..Default::default()
                },
                id_token: Secret::new("IDTOKEN-SECRET"),
                access_token: Secret::new("ACCESS-SECRET"),
                access_token_expires_at: None,
                refresh_token: Some(Secret::new("REFRESH-SECRET")),
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

    /// Records are sealed JSON in the stores (memory and Redis); embedding
    /// the claims must not change that JSON, or stored sessions would not
    /// open after an upgrade.
    #[test]
    fn the_stored_json_shape_is_unchanged() {
        let stored = r#"{"iss":"https://idp","sub":"alice","sid":"s1","email":"a@x","email_verified":true,"preferred_username":"al","groups":["g"],"id_token":"i","access_token":"a","access_token_expires_at":5,"refresh_token":"r","created_at":1,"last_seen":2,"expires_at":3}"#;
        let r: SessionRecord = serde_json::from_str(stored).expect("opens");
        assert_eq!(r.claims.sid.as_deref(), Some("s1"));
        assert_eq!(r.refresh_token.as_ref().map(Secret::expose), Some("r"));
        assert_eq!(serde_json::to_string(&r).expect("encodes"), stored);
        // Optional fields may be absent, as in records of older versions.
        let minimal = r#"{"iss":"https://idp","sub":"bob","id_token":"i","access_token":"a","created_at":1,"last_seen":2,"expires_at":3}"#;
        let r: SessionRecord = serde_json::from_str(minimal).expect("opens");
        assert_eq!((r.claims.sid, r.refresh_token), (None, None));
        assert!(r.claims.groups.is_empty() && !r.claims.email_verified);
    }
}
