//! Where sealed session records, their indexes and the gateway's small
//! single-use values live: embedded ([`MemoryStore`]) or shared by a fleet
//! ([`RedisStore`]).
//!
//! The store never sees plaintext: records arrive sealed, index keys arrive
//! hashed. Every operation reports store trouble as an error, never as
//! "absent" or "refused", so callers can tell "no session" from "cannot
//! tell" (the gateway answers 503 for the latter).

mod memory;
mod redis;
mod redis_cluster;
mod redis_conn;
mod redis_lua;
mod redis_pubsub;
mod redis_replicas;
mod table;

use std::sync::Arc;
use std::time::Duration;

pub use memory::{
    DEFAULT_AUX_CAPACITY_BYTES, DEFAULT_SESSION_CAPACITY_BYTES, MemoryStore,
    SESSION_ENTRY_OVERHEAD_BYTES,
};
pub use redis::{REVOCATION_CHANNEL, RedisStore};

use super::id::StoreKey;

/// Errors of the store. Messages name the kind of failure only (no URL, no
/// value, no key material).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this code does not understand.
    #[error("session store answered unexpectedly: {0}")]
    Protocol(String),
    /// The store's configuration is unusable (e.g. a malformed URL).
    #[error("session store misconfigured: {0}")]
    Config(String),
    /// A value longer than the store keeps was offered (its length).
    #[error("value of {0} bytes refused: longer than the store keeps")]
    TooLarge(usize),
}

/// Longest value [`Store::put_temp`] keeps: a sealed logout state holds a
/// destination of at most 2 KiB (as emitted) and the IdP end-session URL
/// with its ID token hint.
pub const MAX_TEMP_VALUE: usize = 32 * 1024;

/// The index entries of one session: hashed keys, never plaintext claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRefs {
    /// Hash of `iss`+`sid`, when the IdP sent a `sid`.
    pub sid: Option<String>,
    /// Hash of `iss`+`sub`.
    pub sub: String,
    /// Session creation time (Unix ms), the score for `created_before`.
    pub created_at_ms: u64,
}

/// What a conditional replacement ([`Store::replace_if`]) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasResult {
    /// The stored record was the expected one and is now the new one.
    Replaced,
    /// Someone wrote the record since it was read: nothing was written.
    Changed,
    /// The session no longer exists: nothing was written.
    Gone,
}

/// The index entries whose sessions a single-use revocation
/// ([`Store::revoke_once`]) ends: one hash per session secret in use.
#[derive(Debug, Clone, Copy)]
pub enum IndexTarget<'a> {
    /// Every session under these `sid` hashes.
    Sid(&'a [String]),
    /// The sessions under these `sub` hashes created strictly before the
    /// given Unix ms (every one when `None`).
    Sub(&'a [String], Option<u64>),
}

/// Proof of holding a lock; only its holder can release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(pub(crate) String);

/// One of the two stores. An enum rather than a trait object: there are two
/// and the set is closed.
#[derive(Clone)]
pub enum Store {
    /// Embedded, one instance.
    Memory(MemoryStore),
    /// Redis, a fleet.
    Redis(RedisStore),
}

/// Calls the same method on whichever store this is, inside a
/// `store.<method>` span when spans are exported.
macro_rules! each {
    ($self:ident, $s:ident => $recv:ident . $m:ident ( $($arg:expr),* ) . await) => {
        crate::telemetry::otel::traced!(
            concat!("store.", stringify!($m)),
            async {
                match $self {
                    Store::Memory($s) => $recv.$m($($arg),*).await,
                    Store::Redis($s) => $recv.$m($($arg),*).await,
                }
            },
            otel.kind = "client"
        )
    };
}

impl Store {
    /// Stores a new session record with its index entries; it expires
    /// after `ttl` unless replaced.
    pub async fn insert(
        &self,
        key: &StoreKey,
        blob: Vec<u8>,
        idx: &IndexRefs,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        each!(self, s => s.insert(key, blob, idx, ttl).await)
    }

    /// The sealed record. `fresh` bypasses an instance-local cache (Redis).
    pub async fn get(&self, key: &StoreKey, fresh: bool) -> Result<Option<Arc<[u8]>>, StoreError> {
        each!(self, s => s.get(key, fresh).await)
    }

    /// Replaces the record of an existing session and sets its expiry to
    /// `ttl`; its index entries move to `idx` if those hashes changed (a
    /// record re-sealed under a rotated secret stays findable after the old
    /// secret is dropped). `false` if the session no longer exists, so a
    /// late write never brings a deleted session back.
    pub async fn replace(
        &self,
        key: &StoreKey,
        blob: Vec<u8>,
        ttl: Duration,
        idx: &IndexRefs,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.replace(key, blob, ttl, idx).await)
    }

    /// Compare-and-set: replaces the record (as [`Store::replace`]) only if
    /// the stored blob is still `expected`, so a write based on an old read
    /// (an idle-timer slide) never clobbers a newer record (a refresh's
    /// rotated tokens).
    pub async fn replace_if(
        &self,
        key: &StoreKey,
        expected: &[u8],
        blob: Vec<u8>,
        ttl: Duration,
        idx: &IndexRefs,
    ) -> Result<CasResult, StoreError> {
        each!(self, s => s.replace_if(key, expected, blob, ttl, idx).await)
    }

    /// Deletes a session and its index entries and announces the
    /// revocation. `true` if it existed.
    pub async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        each!(self, s => s.delete(key).await)
    }

    /// Keys of the sessions indexed under a `sid` hash.
    pub async fn find_by_sid(&self, sid: &str) -> Result<Vec<StoreKey>, StoreError> {
        each!(self, s => s.find_by_sid(sid).await)
    }

    /// Keys and creation times (Unix ms) of the sessions under a `sub` hash.
    pub async fn find_by_sub(&self, sub: &str) -> Result<Vec<(StoreKey, u64)>, StoreError> {
        each!(self, s => s.find_by_sub(sub).await)
    }

    /// Deletes every session under a `sid` hash; returns those deleted.
    pub async fn delete_by_sid(&self, sid: &str) -> Result<Vec<StoreKey>, StoreError> {
        each!(self, s => s.delete_by_sid(sid).await)
    }

    /// Deletes the sessions under a `sub` hash created strictly before
    /// `created_before_ms` (all when `None`); returns those deleted.
    pub async fn delete_by_sub(
        &self,
        sub: &str,
        created_before_ms: Option<u64>,
    ) -> Result<Vec<StoreKey>, StoreError> {
        each!(self, s => s.delete_by_sub(sub, created_before_ms).await)
    }

    /// Set-if-absent: `true` the first time `key` is claimed within `ttl`,
    /// `false` after. A store failure is an error, never `true`.
    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        each!(self, s => s.claim_once(key, ttl).await)
    }

    /// [`Store::claim_once`] for login states, which anonymous visitors
    /// create: the memory store keeps them in a table of their own that,
    /// when full, forgets its least recently used claims instead of
    /// refusing new ones. A flood of callbacks then cannot shut out the
    /// claims that must hold (back-channel `jti`s, refresh locks), and a
    /// forgotten login-state claim costs little: the IdP accepts its
    /// authorization code once anyway. (Redis: as `claim_once`; the claims
    /// expire after `ttl`.)
    pub async fn claim_login_state(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        each!(self, s => s.claim_login_state(key, ttl).await)
    }

    /// Claims `claim` as [`Store::claim_once`] does and deletes the sessions
    /// `target` names, as one step: `None` when the claim was made before
    /// (nothing is deleted), else the sessions deleted. Never one without
    /// the other: on an error nothing happened — or, when only the reply
    /// was lost, both did — so a claim is never kept for a deletion that did
    /// not complete (a back-channel logout's retry is not a replay).
    pub async fn revoke_once(
        &self,
        claim: &str,
        ttl: Duration,
        target: &IndexTarget<'_>,
    ) -> Result<Option<Vec<StoreKey>>, StoreError> {
        each!(self, s => s.revoke_once(claim, ttl, target).await)
    }

    /// Stores a value that [`Store::take_temp`] returns at most once. A
    /// value over [`MAX_TEMP_VALUE`] bytes is refused (an error): every
    /// kept value has a length limit.
    pub async fn put_temp(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if value.len() > MAX_TEMP_VALUE {
            return Err(StoreError::TooLarge(value.len()));
        }
        each!(self, s => s.put_temp(key, value, ttl).await)
    }

    /// A value stored by [`Store::put_temp`], left in place.
    pub async fn get_temp(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, s => s.get_temp(key).await)
    }

    /// Rewrites a value stored by [`Store::put_temp`] only while it is still
    /// there, keeping its expiry, as one step: a value taken meanwhile is
    /// never brought back. `false` when it was gone.
    pub async fn replace_temp(&self, key: &str, value: Vec<u8>) -> Result<bool, StoreError> {
        if value.len() > MAX_TEMP_VALUE {
            return Err(StoreError::TooLarge(value.len()));
        }
        each!(self, s => s.replace_temp(key, value).await)
    }

    /// Returns and removes a value stored by [`Store::put_temp`] (atomic:
    /// two concurrent takes never both get it).
    pub async fn take_temp(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, s => s.take_temp(key).await)
    }

    /// Takes a lock for `ttl` unless someone holds it; `None` if held.
    pub async fn try_lock(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, StoreError> {
        each!(self, s => s.try_lock(key, ttl).await)
    }

    /// Releases a lock if `token` still holds it (after its ttl someone
    /// else may).
    pub async fn unlock(&self, key: &str, token: &LockToken) -> Result<(), StoreError> {
        each!(self, s => s.unlock(key, token).await)
    }

    /// Changes each time revocations may have been missed (Redis: the
    /// subscription came back after a loss), so holders of long-lived
    /// admissions re-check their session. `None`: never (memory store).
    pub fn resyncs(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self {
            Store::Memory(_) => None,
            Store::Redis(r) => Some(r.resyncs()),
        }
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        each!(self, s => s.ping().await)
    }
}

/// A duration in whole milliseconds, at least 1 (Redis refuses `PX 0`) and
/// at most ten years (Redis refuses expiries that overflow its clock).
pub(crate) fn ms(d: Duration) -> u64 {
    const TEN_YEARS_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, TEN_YEARS_MS)
}
