//! Sessions: ids, encrypted records, and the stores they live in.
//!
//! [`Sessions`] is the service the gateway calls. A session id is 256 random
//! bits ([`SessionId`]) carried in the cookie ([`cookie`]); the store keys
//! the session by a hash of it ([`StoreKey`]) and holds the record, encoded
//! compactly ([`codec`]), sealed with AES-256-GCM ([`crypto`]), so neither a
//! copy of the store nor a store operator gets a usable cookie or a token. Records are indexed by
//! the IdP's `iss`+`sid` and by `iss`+`sub` (keyed hashes), so IdP-initiated
//! logout finds them without a cookie.

pub mod codec;
pub mod cookie;
pub mod crypto;
mod id;
mod record;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::broadcast;

pub use id::{ID_BYTES, ID_COOKIE_LEN, SessionId, StoreKey};
pub use record::{NewSession, Session, SessionRecord, SessionSummary};
pub use store::{CasResult, LockToken, Store, StoreError};

use crate::config::{SessionConfig, StoreConfig};
use crypto::{CryptoError, KeyRing, Mac, Sealer};
use record::{SessionRecord as Record, to_ms};
use store::{IndexRefs, IndexTarget, MemoryStore, RedisStore};

/// Which sessions [`Sessions::revoke_once`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke<'a> {
    /// Those of one IdP session (`iss`+`sid`).
    Sid(&'a str),
    /// Those of `iss`+`sub` created strictly before the given time (every
    /// one when `None`).
    Sub(&'a str, Option<SystemTime>),
}

/// A sealed blob from the store and the record it opened to.
type Opened = (Arc<[u8]>, Arc<Record>);

/// Errors of the session layer. None carries a secret, a token or an id.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store cannot answer: the gateway answers 503, never "no session".
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealing failed (random generator) or no secret is configured.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A record could not be encoded.
    #[error("session record encoding failed")]
    Encode,
}

/// Largest slide interval: the idle timer is written at most this often.
const MAX_SLIDE_INTERVAL: Duration = Duration::from_secs(5);
/// Capacity of the revocation broadcast; a receiver that lags gets
/// `RecvError::Lagged` and should re-check its session.
const REVOCATION_CAPACITY: usize = 1024;

/// The session service. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    keys: KeyRing,
    records: Sealer,
    index_mac: Mac,
    csrf_mac: Mac,
    store: Store,
    idle_timeout: Duration,
    max_lifetime: Duration,
    revoked: broadcast::Sender<StoreKey>,
    /// The last record opened per session, with the sealed blob it came
    /// from (see [`Sessions::open`]).
    opened: moka::sync::Cache<StoreKey, Opened>,
}

/// How many decoded sessions are kept; each costs its record's size (a few
/// KiB with tokens).
const OPENED_CAPACITY: u64 = 16_384;

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

impl Sessions {
    /// Builds the service from `[session]`. For Redis it connects lazily and
    /// starts the revocation subscriber (waiting briefly for it), so it must
    /// run inside a tokio runtime; Redis being down is not an error here
    /// (see [`Sessions::ready`]), a malformed URL is.
    pub async fn new(cfg: &SessionConfig) -> Result<Sessions, SessionError> {
        let (revoked, _) = broadcast::channel(REVOCATION_CAPACITY);
        let store = match &cfg.store {
            StoreConfig::Memory => Store::Memory(MemoryStore::new(
                store::DEFAULT_SESSION_CAPACITY_BYTES,
                store::DEFAULT_AUX_CAPACITY_BYTES,
                revoked.clone(),
            )),
            StoreConfig::Redis(r) => Store::Redis(
                RedisStore::connect(
                    r,
                    cfg.max_lifetime.saturating_add(Duration::from_secs(60)),
                    revoked.clone(),
                )
                .await?,
            ),
        };
        Self::with_store(cfg, store, revoked)
    }

    /// Builds the service over a given store (tests, custom bounds).
    /// `revoked` must be the sender the store announces revocations on.
    pub fn with_store(
        cfg: &SessionConfig,
        store: Store,
        revoked: broadcast::Sender<StoreKey>,
    ) -> Result<Sessions, SessionError> {
        let keys = KeyRing::new(&cfg.secrets)?;
        Ok(Sessions {
            records: keys.sealer(crypto::PURPOSE_SESSION_RECORD),
            index_mac: keys.mac(crypto::PURPOSE_SESSION_INDEX),
            csrf_mac: keys.mac(crypto::PURPOSE_LOGOUT_CSRF),
            keys,
            store,
            idle_timeout: cfg.idle_timeout,
            max_lifetime: cfg.max_lifetime,
            revoked,
            // A new key ring starts empty: a record opened under a secret
            // that a reload removed must not be served from here.
            opened: moka::sync::Cache::builder()
                .max_capacity(OPENED_CAPACITY)
                .time_to_idle(Duration::from_secs(300))
                .build(),
        })
    }

    /// The same store under a new `[session]` configuration (a reload that
    /// rotates secrets or changes timeouts keeps every session). The store
    /// settings themselves must be unchanged; the caller checks that.
    pub fn reconfigure(&self, cfg: &SessionConfig) -> Result<Sessions, SessionError> {
        Self::with_store(cfg, self.store.clone(), self.revoked.clone())
    }

    /// The key ring, for other parts' sealed cookies and MACs (login state,
    /// logout state, CSRF).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How often at most the idle timer is written: the smaller of 5 s and a
    /// tenth of the idle timeout.
    pub fn slide_interval(&self) -> Duration {
        (self.idle_timeout / 10).min(MAX_SLIDE_INTERVAL)
    }

    fn index_hashes(&self, kind: &str, iss: &str, value: &str) -> Vec<String> {
        // Length-prefixed parts, so ("a","bc") and ("ab","c") differ.
        let msg = format!("{kind}\n{}\n{iss}{value}", iss.len());
        self.index_mac
            .sign_all(msg.as_bytes())
            .iter()
            .map(|t| URL_SAFE_NO_PAD.encode(t))
            .collect()
    }

    fn index_refs(&self, r: &Record) -> IndexRefs {
        let first = |v: Vec<String>| v.into_iter().next().unwrap_or_default();
        IndexRefs {
            sid: r
                .claims
                .sid
                .as_ref()
                .map(|sid| first(self.index_hashes("sid", &r.claims.iss, sid))),
            sub: first(self.index_hashes("sub", &r.claims.iss, &r.claims.sub)),
            created_at_ms: r.created_at,
        }
    }

    fn seal(&self, key: &StoreKey, r: &Record) -> Result<Vec<u8>, SessionError> {
        let bytes = codec::encode(r).map_err(|_| SessionError::Encode)?;
        Ok(self.records.seal(key.as_str().as_bytes(), &bytes)?)
    }

    /// Opens a stored blob. Decrypting and decoding a record on every
    /// request was the largest cost of a session route; a record only
    /// changes when its blob does (slide, refresh), so the last record
    /// opened per session is reused while the store returns the very same
    /// blob. The blob is still read from the store every time, so a deleted
    /// session is never served from here.
    fn open(&self, key: &StoreKey, blob: &Arc<[u8]>) -> Option<Arc<Record>> {
        // The memory store hands out the very blob it holds (same pointer);
        // Redis reads are compared byte for byte.
        if let Some(hit) = self.opened.get(key)
            && (Arc::ptr_eq(&hit.0, blob) || *hit.0 == **blob)
        {
            return Some(hit.1.clone());
        }
        let bytes = self.records.open(key.as_str().as_bytes(), blob).ok()?;
        let record: Arc<Record> = Arc::new(codec::decode(&bytes).ok()?);
        self.opened
            .insert(key.clone(), (blob.clone(), record.clone()));
        Some(record)
    }

    /// Time the record may still live in the store: until the idle or the
    /// absolute deadline, whichever is first. `None` when already past.
    fn remaining(&self, r: &Record, now_ms: u64) -> Option<Duration> {
        let idle = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let end = r.last_seen.saturating_add(idle).min(r.expires_at);
        (end > now_ms).then(|| Duration::from_millis(end - now_ms))
    }

    /// Creates a session (always a new id) and returns the id for the
    /// cookie with the session.
    pub async fn create(&self, new: NewSession) -> Result<(SessionId, Session), SessionError> {
        let id = SessionId::generate(&self.keys)?;
        let key = id.store_key();
        let record = Record::new(new, now(), self.max_lifetime);
        let ttl = self
            .remaining(&record, record.created_at)
            .unwrap_or(Duration::from_millis(1));
        let blob = self.seal(&key, &record)?;
        self.store
            .insert(&key, blob, &self.index_refs(&record), ttl)
            .await?;
        Ok((id, Session::new(key, Arc::new(record), self.idle_timeout)))
    }

    /// The session of a cookie value, sliding the idle timer (written at
    /// most every [`Sessions::slide_interval`]). `Ok(None)`: no valid session
    /// (malformed, unknown, tampered, expired). `Err`: the store cannot
    /// tell — never treat that as "no session" nor as "session ok".
    pub async fn load(&self, cookie_value: &str) -> Result<Option<Session>, SessionError> {
        crate::telemetry::otel::traced!(
            "session.lookup",
            self.load_inner(cookie_value, true, false)
        )
    }

    /// Like [`Sessions::load`] but never slides (for `/.portcullis/session`).
    pub async fn load_without_slide(
        &self,
        cookie_value: &str,
    ) -> Result<Option<Session>, SessionError> {
        crate::telemetry::otel::traced!(
            "session.lookup",
            self.load_inner(cookie_value, false, false)
        )
    }

    /// Like [`Sessions::load_without_slide`], but read from the store itself,
    /// never from an instance-local cache (Redis): for decisions that must
    /// see another instance's write at once, such as whether a token refresh
    /// is still needed once the refresh lock is held.
    pub async fn load_fresh(&self, cookie_value: &str) -> Result<Option<Session>, SessionError> {
        crate::telemetry::otel::traced!(
            "session.lookup",
            self.load_inner(cookie_value, false, true)
        )
    }

    async fn load_inner(
        &self,
        cookie_value: &str,
        slide: bool,
        fresh: bool,
    ) -> Result<Option<Session>, SessionError> {
        let Some(id) = SessionId::parse(cookie_value) else {
            return Ok(None);
        };
        let key = id.store_key();
        let Some((mut blob, mut record)) = self.fetch(&key, fresh).await? else {
            return Ok(None);
        };
        let t = to_ms(now());
        if self.remaining(&record, t).is_none() {
            // A cached copy may predate another instance's slide: decide on
            // a fresh read before ending anything.
            match self.fetch(&key, true).await? {
                Some((b, r)) if self.remaining(&r, t).is_some() => (blob, record) = (b, r),
                Some(_) => {
                    self.store.delete(&key).await?;
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
        let interval = u64::try_from(self.slide_interval().as_millis()).unwrap_or(u64::MAX);
        if slide && t.saturating_sub(record.last_seen) >= interval {
            record = match self.slide(&key, &blob, &record, t).await? {
                Some(r) => r,
                None => return Ok(None),
            };
        }
        Ok(Some(Session::new(key, record, self.idle_timeout)))
    }

    /// Writes `last_seen = t` back, conditionally on the stored blob still
    /// being `blob`: a slide based on a read that a token refresh has since
    /// superseded must not put the old tokens back (the IdP may have rotated
    /// the refresh token, and the old one would end the session). The
    /// condition also makes a stale cached copy harmless, so the slide needs
    /// no extra read on the hot path. Returns the record to serve; `None`
    /// when the session has gone.
    async fn slide(
        &self,
        key: &StoreKey,
        blob: &[u8],
        record: &Arc<Record>,
        t: u64,
    ) -> Result<Option<Arc<Record>>, SessionError> {
        let mut slid = record.clone();
        Arc::make_mut(&mut slid).last_seen = t.max(record.last_seen);
        let Some(ttl) = self.remaining(&slid, t) else {
            self.store.delete(key).await?;
            return Ok(None);
        };
        let sealed = self.seal(key, &slid)?;
        match self
            .store
            .replace_if(key, blob, sealed, ttl, &self.index_refs(&slid))
            .await
        {
            Ok(CasResult::Replaced) => Ok(Some(slid)),
            Ok(CasResult::Gone) => Ok(None),
            // Written meanwhile (a refresh, or another request's slide):
            // serve what is stored now; a later request slides it.
            Ok(CasResult::Changed) => match self.fetch(key, true).await {
                Ok(now_stored) => Ok(now_stored.map(|(_, r)| r)),
                Err(e) => {
                    tracing::warn!(error = %e, "session re-read after a concurrent write failed");
                    Ok(Some(record.clone()))
                }
            },
            // The session is valid; a failed slide only shortens its idle
            // window, so serve it and try again next time.
            Err(e) => {
                tracing::warn!(error = %e, "session slide not written");
                Ok(Some(record.clone()))
            }
        }
    }

    async fn fetch(&self, key: &StoreKey, fresh: bool) -> Result<Option<Opened>, SessionError> {
        let Some(blob) = self.store.get(key, fresh).await? else {
            return Ok(None);
        };
        let Some(rec) = self.open(key, &blob) else {
            tracing::debug!(session = %key, "stored session does not open (tampered or unknown key)");
            return Ok(None);
        };
        Ok(Some((blob, rec)))
    }

    /// Writes a changed session (after a token refresh): its tokens and
    /// claims replace the stored ones, but `last_seen` never goes back (a
    /// slide may have landed since the session was read). `false` when the
    /// session was deleted meanwhile (it is not brought back) or has expired.
    pub async fn update(&self, session: &Session) -> Result<bool, SessionError> {
        // Compare-and-set against a fresh read, again if a slide got in
        // between; slides are rate-limited, so this ends within a round or
        // two, and the bound only guards against a pathological store.
        const ATTEMPTS: usize = 4;
        let key = session.key();
        for _ in 0..ATTEMPTS {
            let Some((blob, stored)) = self.fetch(key, true).await? else {
                return Ok(false);
            };
            let mut record = session.record.clone();
            if stored.last_seen > record.last_seen {
                Arc::make_mut(&mut record).last_seen = stored.last_seen;
            }
            let Some(ttl) = self.remaining(&record, to_ms(now())) else {
                return Ok(false);
            };
            let sealed = self.seal(key, &record)?;
            match self
                .store
                .replace_if(key, &blob, sealed, ttl, &self.index_refs(&record))
                .await?
            {
                CasResult::Replaced => return Ok(true),
                CasResult::Gone => return Ok(false),
                CasResult::Changed => {}
            }
        }
        // Still racing: the new tokens matter more than a slide.
        let Some(ttl) = self.remaining(&session.record, to_ms(now())) else {
            return Ok(false);
        };
        let sealed = self.seal(key, &session.record)?;
        Ok(self
            .store
            .replace(key, sealed, ttl, &self.index_refs(&session.record))
            .await?)
    }

    /// Deletes a session and its index entries and tells the other
    /// instances. `true` if it existed.
    pub async fn delete(&self, session: &Session) -> Result<bool, SessionError> {
        self.opened.invalidate(session.key());
        Ok(self.store.delete(session.key()).await?)
    }

    /// Ends every session of an IdP session (`iss`+`sid`); the count ended.
    pub async fn delete_by_sid(&self, iss: &str, sid: &str) -> Result<usize, SessionError> {
        let mut n = 0;
        for h in self.index_hashes("sid", iss, sid) {
            n += self.store.delete_by_sid(&h).await?.len();
        }
        Ok(n)
    }

    /// Ends the sessions of `iss`+`sub` created strictly before
    /// `created_before` (every one when `None`); the count ended.
    pub async fn delete_by_sub(
        &self,
        iss: &str,
        sub: &str,
        created_before: Option<SystemTime>,
    ) -> Result<usize, SessionError> {
        let before = created_before.map(to_ms);
        let mut n = 0;
        for h in self.index_hashes("sub", iss, sub) {
            n += self.store.delete_by_sub(&h, before).await?.len();
        }
        Ok(n)
    }

    /// Ends every session of `iss`+`sub` like [`Sessions::delete_by_sub`],
    /// and returns the count ended with those ended sessions that were read
    /// just before (fresh from the store, at most `read_limit`), so their
    /// tokens can be revoked. A session that could not be read, or was
    /// created between the read and the deletion, is ended but not returned.
    pub async fn take_by_sub(
        &self,
        iss: &str,
        sub: &str,
        read_limit: usize,
    ) -> Result<(usize, Vec<Session>), SessionError> {
        let mut ended = 0;
        let mut out = Vec::new();
        for h in self.index_hashes("sub", iss, sub) {
            let mut read = Vec::new();
            // Reading is best effort: only the deletion decides the answer.
            match self.store.find_by_sub(&h).await {
                Ok(found) => {
                    for (key, _) in found {
                        if out.len() + read.len() >= read_limit {
                            break;
                        }
                        match self.fetch(&key, true).await {
                            Ok(Some((_, r))) => read.push((key, r)),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "session not read before ending it")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "sessions not listed before ending them"),
            }
            for key in self.store.delete_by_sub(&h, None).await? {
                ended += 1;
                if let Some(i) = read.iter().position(|(k, _)| *k == key) {
                    let (key, record) = read.swap_remove(i);
                    out.push(Session::new(key, record, self.idle_timeout));
                }
            }
        }
        Ok((ended, out))
    }

    /// The live sessions of `iss`+`sub`, oldest first (no tokens, no ids).
    pub async fn list_by_sub(
        &self,
        iss: &str,
        sub: &str,
    ) -> Result<Vec<SessionSummary>, SessionError> {
        let mut out = Vec::new();
        let t = to_ms(now());
        for h in self.index_hashes("sub", iss, sub) {
            for (key, _) in self.store.find_by_sub(&h).await? {
                if let Some((_, r)) = self.fetch(&key, false).await?
                    && self.remaining(&r, t).is_some()
                {
                    out.push(SessionSummary {
                        id_hash: key.as_str().to_owned(),
                        created_at: record::from_ms(r.created_at),
                        last_seen: record::from_ms(r.last_seen),
                    });
                }
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    /// Store keys of revoked sessions, as they are revoked on this or (Redis)
    /// any instance: close upgraded connections of those sessions. On
    /// `Lagged`, re-check each open connection's session.
    pub fn revocations(&self) -> broadcast::Receiver<StoreKey> {
        self.revoked.subscribe()
    }

    /// Set-if-absent (back-channel `jti` replay cache). `Err` when the store
    /// cannot tell: never accept on error.
    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, SessionError> {
        Ok(self.store.claim_once(key, ttl).await?)
    }

    /// Marks the login state `name` used: `true` the first time within
    /// `ttl`. Anonymous visitors create these, so they are kept apart from
    /// the claims that must hold (see [`Store::claim_login_state`]). `Err`
    /// when the store cannot tell: never accept on error.
    pub async fn claim_login_state(&self, name: &str, ttl: Duration) -> Result<bool, SessionError> {
        let key = format!("login-state:{name}");
        Ok(self.store.claim_login_state(&key, ttl).await?)
    }

    /// Back-channel logout: claims `claim` (set-if-absent for `ttl`, the
    /// `jti` replay cache) and ends the sessions of `iss` that `what` names,
    /// as one step. `Ok(None)`: claimed before, nothing ended (a replay).
    /// `Ok(Some(n))`: `n` sessions ended. `Err`: the store could not
    /// complete it, and the claim is not kept unless the sessions were
    /// ended too (a lost reply), so the IdP's retry is never refused while
    /// the sessions live. Never treat `Err` as success.
    pub async fn revoke_once(
        &self,
        claim: &str,
        ttl: Duration,
        iss: &str,
        what: Revoke<'_>,
    ) -> Result<Option<usize>, SessionError> {
        let done = match what {
            Revoke::Sid(sid) => {
                let hashes = self.index_hashes("sid", iss, sid);
                let target = IndexTarget::Sid(&hashes);
                self.store.revoke_once(claim, ttl, &target).await?
            }
            Revoke::Sub(sub, before) => {
                let hashes = self.index_hashes("sub", iss, sub);
                let target = IndexTarget::Sub(&hashes, before.map(to_ms));
                self.store.revoke_once(claim, ttl, &target).await?
            }
        };
        Ok(done.map(|keys| keys.len()))
    }

    /// Stores a single-use value (logout `state`).
    pub async fn put_temp(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), SessionError> {
        Ok(self.store.put_temp(key, value, ttl).await?)
    }

    /// Reads a single-use value without using it up.
    pub async fn get_temp(&self, key: &str) -> Result<Option<Vec<u8>>, SessionError> {
        Ok(self.store.get_temp(key).await?)
    }

    /// Rewrites a single-use value only while it is unused, keeping its
    /// expiry (one step); `false` when it was used or expired meanwhile.
    pub async fn replace_temp(&self, key: &str, value: Vec<u8>) -> Result<bool, SessionError> {
        Ok(self.store.replace_temp(key, value).await?)
    }

    /// Takes a single-use value; a second take gets `None`.
    pub async fn take_temp(&self, key: &str) -> Result<Option<Vec<u8>>, SessionError> {
        Ok(self.store.take_temp(key).await?)
    }

    /// Takes a fleet-wide lock (one token refresh per session in flight).
    pub async fn try_lock(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, SessionError> {
        Ok(self.store.try_lock(key, ttl).await?)
    }

    /// Releases a lock taken by [`Sessions::try_lock`].
    pub async fn unlock(&self, key: &str, token: &LockToken) -> Result<(), SessionError> {
        Ok(self.store.unlock(key, token).await?)
    }

    /// The session's logout CSRF token: base64url HMAC-SHA256 of its store
    /// key under the "logout-csrf" key. Stable for the session's life, so
    /// `/.portcullis/logout/flow` can hand it out any number of times.
    pub fn csrf_token(&self, session: &Session) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_mac.sign(session.key().as_str().as_bytes()))
    }

    /// Whether `token` is this session's CSRF token (constant-time compare;
    /// tokens made under an older secret still verify).
    pub fn verify_csrf(&self, session: &Session, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        self.csrf_mac
            .verify(session.key().as_str().as_bytes(), &tag)
    }

    /// Whether the store answers (`/readyz`).
    pub async fn ready(&self) -> Result<(), SessionError> {
        Ok(self.store.ping().await?)
    }
}
