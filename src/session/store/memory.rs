//! The embedded store, one instance: sessions in a table of their own
//! ([`Table`]), small values in moka caches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use tokio::sync::broadcast;

use super::table::{self, Table};
use super::{CasResult, IndexRefs, IndexTarget, LockToken, StoreError};
use crate::session::id::StoreKey;

/// Default bound of the session table, in bytes of sealed records (plus a
/// fixed per-entry overhead): 256 MiB, room for about 262,000 sessions with
/// the test IdP's tokens (`bench/memory.sh`), more with small ones.
pub const DEFAULT_SESSION_CAPACITY_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes the bound counts per session besides its sealed record.
pub const SESSION_ENTRY_OVERHEAD_BYTES: u64 = table::ENTRY_OVERHEAD;
/// Default bound, in bytes, of each of the three tables of small values:
/// the temporary values (logout states), the claims and locks (`jti`s,
/// refresh locks) and the login-state claims. 64 MiB each.
pub const DEFAULT_AUX_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;
/// Bookkeeping bytes counted per small value besides its key and value.
const AUX_OVERHEAD: u32 = 96;
/// Longest expiry the cache is given: far beyond any configured lifetime,
/// short enough that `Instant` arithmetic cannot overflow.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Clone)]
struct AuxEntry {
    value: Arc<[u8]>,
    deadline: Instant,
    ttl: Duration,
}

/// Each entry expires `ttl` after its last write; reads do not extend it
/// (the session layer decides about sliding, not the cache).
struct WriteTtl;

impl<K> Expiry<K, AuxEntry> for WriteTtl {
    fn expire_after_create(&self, _: &K, v: &AuxEntry, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _: &K,
        v: &AuxEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The embedded store. Sessions live in a table of their own ([`Table`]),
/// bounded in bytes with approximately least-recently-used eviction that
/// always admits a fresh login, its `sid` and `sub` indexes updated in the
/// same step as every write, delete, expiry and eviction. The small values
/// live in moka caches. Cheap to clone (shared state).
#[derive(Clone)]
pub struct MemoryStore {
    sessions: Arc<Table>,
    /// Temporary values (`put_temp`): evicted least recently used first
    /// when full; losing one only sends a user to the default page.
    temp: Cache<String, AuxEntry>,
    /// Claims and locks, in a table of their own so that no flood of
    /// temporary values can evict one (an evicted claim is a replay
    /// accepted). When it is full a new claim is refused (an error, so the
    /// caller answers 503) rather than evicting an old one.
    claims: Cache<String, AuxEntry>,
    /// The byte bound of `claims` at which new claims are refused.
    claims_capacity: u64,
    /// Login-state claims, which anonymous visitors create: evicted least
    /// recently used first when full, never refused, and apart from
    /// `claims` so that a flood of them cannot fill that table.
    login_claims: Cache<String, AuxEntry>,
    revoked: broadcast::Sender<StoreKey>,
    lock_seq: Arc<AtomicU64>,
}

impl MemoryStore {
    /// A store bounded to `session_capacity_bytes` of records and
    /// `aux_capacity_bytes` for each of its three tables of small values
    /// (temporary values; claims and locks; login-state claims);
    /// revocations go to `revoked`.
    pub fn new(
        session_capacity_bytes: u64,
        aux_capacity_bytes: u64,
        revoked: broadcast::Sender<StoreKey>,
    ) -> Self {
        let sessions = Arc::new(Table::new(session_capacity_bytes));
        let temp = Cache::builder()
            .max_capacity(aux_capacity_bytes)
            .weigher(|k: &String, v: &AuxEntry| aux_weight(k, v))
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(WriteTtl)
            .build();
        // Twice the refusal bound: the cache's size is only brought up to
        // date by its maintenance, so the refusal check runs on a slightly
        // old figure; the headroom keeps eviction from ever being reached.
        let claims = Cache::builder()
            .max_capacity(aux_capacity_bytes.saturating_mul(2))
            .weigher(|k: &String, v: &AuxEntry| aux_weight(k, v))
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(WriteTtl)
            .build();
        let login_claims = Cache::builder()
            .max_capacity(aux_capacity_bytes)
            .weigher(|k: &String, v: &AuxEntry| aux_weight(k, v))
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(WriteTtl)
            .build();
        MemoryStore {
            sessions,
            temp,
            claims,
            claims_capacity: aux_capacity_bytes,
            login_claims,
            revoked,
            lock_seq: Arc::new(AtomicU64::new(1)),
        }
    }

    pub(super) async fn insert(
        &self,
        key: &StoreKey,
        blob: Vec<u8>,
        idx: &IndexRefs,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.sessions
            .insert(key, blob.into(), idx, ttl.min(MAX_TTL));
        Ok(())
    }

    pub(super) async fn get(
        &self,
        key: &StoreKey,
        _fresh: bool,
    ) -> Result<Option<Arc<[u8]>>, StoreError> {
        Ok(self.sessions.get(key))
    }

    pub(super) async fn replace(
        &self,
        key: &StoreKey,
        blob: Vec<u8>,
        ttl: Duration,
        idx: &IndexRefs,
    ) -> Result<bool, StoreError> {
        let res = self
            .sessions
            .replace(key, None, blob.into(), ttl.min(MAX_TTL), idx);
        Ok(res == CasResult::Replaced)
    }

    pub(super) async fn replace_if(
        &self,
        key: &StoreKey,
        expected: &[u8],
        blob: Vec<u8>,
        ttl: Duration,
        idx: &IndexRefs,
    ) -> Result<CasResult, StoreError> {
        Ok(self
            .sessions
            .replace(key, Some(expected), blob.into(), ttl.min(MAX_TTL), idx))
    }

    pub(super) async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        if !self.sessions.delete(key) {
            return Ok(false);
        }
        // Nobody listening is fine.
        let _ = self.revoked.send(key.clone());
        Ok(true)
    }

    pub(super) async fn find_by_sid(&self, sid: &str) -> Result<Vec<StoreKey>, StoreError> {
        Ok(self.sessions.by_sid(sid))
    }

    pub(super) async fn find_by_sub(&self, sub: &str) -> Result<Vec<(StoreKey, u64)>, StoreError> {
        Ok(self.sessions.by_sub(sub))
    }

    pub(super) async fn delete_by_sid(&self, sid: &str) -> Result<Vec<StoreKey>, StoreError> {
        let mut out = Vec::new();
        for k in self.find_by_sid(sid).await? {
            if self.delete(&k).await? {
                out.push(k);
            }
        }
        Ok(out)
    }

    pub(super) async fn delete_by_sub(
        &self,
        sub: &str,
        created_before_ms: Option<u64>,
    ) -> Result<Vec<StoreKey>, StoreError> {
        let mut out = Vec::new();
        for (k, created) in self.find_by_sub(sub).await? {
            if created_before_ms.is_none_or(|b| created < b) && self.delete(&k).await? {
                out.push(k);
            }
        }
        Ok(out)
    }

    fn aux_entry(value: Vec<u8>, ttl: Duration) -> AuxEntry {
        let ttl = ttl.min(MAX_TTL);
        AuxEntry {
            value: value.into(),
            deadline: Instant::now() + ttl,
            ttl,
        }
    }

    /// Set-if-absent on the claims table: true when this call stored `value`.
    async fn set_if_absent(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        if self.claims.weighted_size() >= self.claims_capacity {
            // Maybe only stale: bring the figure up to date once.
            self.claims.run_pending_tasks().await;
            if self.claims.weighted_size() >= self.claims_capacity {
                return Err(StoreError::Unavailable("claim table full".into()));
            }
        }
        Ok(Self::put_if_absent(&self.claims, key, value, ttl).await)
    }

    /// Set-if-absent on `table`. moka's `entry().or_insert` is a read
    /// followed by a separate insert, so two threads can both see "absent"
    /// and both win; `and_compute_with` runs under the entry's lock, which
    /// makes the check and the write one step.
    async fn put_if_absent(
        table: &Cache<String, AuxEntry>,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> bool {
        let res = table
            .entry(key)
            .and_compute_with(|cur| {
                std::future::ready(match cur {
                    Some(_) => Op::Nop,
                    None => Op::Put(Self::aux_entry(value, ttl)),
                })
            })
            .await;
        matches!(res, CompResult::Inserted(_))
    }

    pub(super) async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.set_if_absent(format!("once:{key}"), Vec::new(), ttl)
            .await
    }

    pub(super) async fn claim_login_state(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(Self::put_if_absent(&self.login_claims, format!("once:{key}"), Vec::new(), ttl).await)
    }

    pub(super) async fn revoke_once(
        &self,
        claim: &str,
        ttl: Duration,
        target: &IndexTarget<'_>,
    ) -> Result<Option<Vec<StoreKey>>, StoreError> {
        // Deleting from memory cannot fail, so claiming first and deleting
        // next is as good as one step — as long as nothing stops in between.
        // The caller's future is dropped if the IdP hangs up mid-request,
        // so both steps run in a task of their own that finishes anyway.
        let this = self.clone();
        let claim = claim.to_owned();
        let (by_sid, hashes, before) = match target {
            IndexTarget::Sid(h) => (true, h.to_vec(), None),
            IndexTarget::Sub(h, before) => (false, h.to_vec(), *before),
        };
        let task = tokio::spawn(async move {
            if !this.claim_once(&claim, ttl).await? {
                return Ok(None);
            }
            let mut out = Vec::new();
            for h in &hashes {
                if by_sid {
                    out.extend(this.delete_by_sid(h).await?);
                } else {
                    out.extend(this.delete_by_sub(h, before).await?);
                }
            }
            Ok(Some(out))
        });
        task.await
            .map_err(|_| StoreError::Protocol("revocation task did not finish".into()))?
    }

    pub(super) async fn put_temp(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.temp
            .insert(format!("tmp:{key}"), Self::aux_entry(value, ttl))
            .await;
        Ok(())
    }

    pub(super) async fn take_temp(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // Through the entry's compute, not a plain `remove`: moka serialises
        // a key only among compute calls, so a `replace_temp` between its
        // read and its put would otherwise bring a taken value back.
        let res = self
            .temp
            .entry(format!("tmp:{key}"))
            .and_compute_with(|cur| {
                std::future::ready(match cur {
                    Some(_) => Op::Remove,
                    None => Op::Nop,
                })
            })
            .await;
        Ok(match res {
            CompResult::Removed(e) => {
                let e = e.into_value();
                (e.deadline > Instant::now()).then(|| e.value.to_vec())
            }
            _ => None,
        })
    }

    pub(super) async fn get_temp(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .temp
            .get(&format!("tmp:{key}"))
            .await
            .filter(|e| e.deadline > Instant::now())
            .map(|e| e.value.to_vec()))
    }

    pub(super) async fn replace_temp(&self, key: &str, value: Vec<u8>) -> Result<bool, StoreError> {
        // Under the entry's lock, like the takes' removal: a value taken
        // meanwhile stays taken.
        let res = self
            .temp
            .entry(format!("tmp:{key}"))
            .and_compute_with(|cur| {
                let op = match cur {
                    Some(cur) => {
                        let now = Instant::now();
                        let old = cur.into_value();
                        match old.deadline.checked_duration_since(now) {
                            Some(left) if !left.is_zero() => Op::Put(AuxEntry {
                                value: value.into(),
                                deadline: old.deadline,
                                ttl: left,
                            }),
                            _ => Op::Nop,
                        }
                    }
                    None => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        Ok(matches!(res, CompResult::ReplacedWith(_)))
    }

    pub(super) async fn try_lock(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, StoreError> {
        let token = self.lock_seq.fetch_add(1, Ordering::Relaxed).to_string();
        let won = self
            .set_if_absent(format!("lock:{key}"), token.clone().into_bytes(), ttl)
            .await?;
        Ok(won.then_some(LockToken(token)))
    }

    pub(super) async fn unlock(&self, key: &str, token: &LockToken) -> Result<(), StoreError> {
        let want = token.0.as_bytes().to_vec();
        self.claims
            .entry(format!("lock:{key}"))
            .and_compute_with(|cur| {
                let op = match cur {
                    Some(e) if *e.value().value == *want => Op::Remove,
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Runs the pending maintenance now (expired sessions freed, the small
    /// values' caches brought up to date); for tests that check bounds.
    pub async fn run_pending_tasks(&self) {
        self.sessions.sweep();
        self.temp.run_pending_tasks().await;
        self.claims.run_pending_tasks().await;
        self.login_claims.run_pending_tasks().await;
    }

    /// Bytes held by the temporary values and by the claims and locks (as
    /// of the last maintenance), for tests that check bounds.
    pub fn aux_weights(&self) -> (u64, u64) {
        (self.temp.weighted_size(), self.claims.weighted_size())
    }
}

/// What a small value weighs against its table's bound.
fn aux_weight(k: &str, v: &AuxEntry) -> u32 {
    u32::try_from(k.len().saturating_add(v.value.len()))
        .unwrap_or(u32::MAX)
        .saturating_add(AUX_OVERHEAD)
}
