//! The fleet store: Redis, with a short-lived local cache per instance kept
//! honest by publish/subscribe.
//!
//! Keys (all under `portcullis:`):
//! - `s:<store key>`: hash `{b: sealed record, sub: <sub hash>, sid: <sid hash>}`, `PX` = session ttl
//! - `sid:<sid hash>`: set of store keys; `sub:<sub hash>`: sorted set, score = created_at (ms)
//! - `once:<k>`, `tmp:<k>`, `lock:<k>`: claim_once and revoke_once claims,
//!   put_temp / try_lock values
//!
//! Every deletion runs in one Lua script that removes the record and its
//! index entries and publishes the store key on [`REVOCATION_CHANNEL`]; a
//! single-use revocation (back-channel logout) checks and records its claim
//! in the same script, so one never happens without the other.
//! Every replacement publishes `u:<store key>` there, so other instances
//! drop their cached copy without treating it as a revocation.
//!
//! On a cluster the multi-key scripts are split per slot
//! (`redis_cluster.rs`); with replicas, deletions and `jti` claims wait for
//! one (`WAIT`, per shard on a cluster: `redis_replicas.rs`) before they
//! are acknowledged. Connections (one server, Sentinel, Cluster, TLS) are
//! `redis_conn.rs`; the subscription is `redis_pubsub.rs`; keys and
//! scripts are `redis_lua.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use moka::sync::Cache;
use redis::{AsyncCommands, Script};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{broadcast, watch};

use super::redis_cluster::Split;
use super::redis_conn::{Backend, CONNECT_TIMEOUT, Conn};
pub use super::redis_lua::REVOCATION_CHANNEL;
use super::redis_lua::{PREFIX, Scripts};
use super::redis_pubsub::{Shared, cache_unless_moved, subscriber};
use super::redis_replicas::{Replicas, confirm};
use super::{CasResult, IndexRefs, IndexTarget, LockToken, StoreError, ms};
use crate::config::RedisConfig;
use crate::session::id::StoreKey;
use crate::session::record::to_ms;

/// Bound of the local cache (entries).
const LOCAL_CACHE_CAPACITY: u64 = 100_000;

/// Aborts the subscriber task when the last store clone goes.
struct TaskGuard(tokio::task::JoinHandle<()>);
impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The Redis store. Cheap to clone (shared state).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    backend: Arc<Backend>,
    /// Cluster: deletions split per slot.
    split: Option<Arc<Split>>,
    /// Replicas of the master (of each master, with its slots, on a
    /// cluster), learned from `ROLE` / `CLUSTER NODES`; a deletion waits for
    /// one on each master it wrote to that has one.
    replicas: Arc<ArcSwap<Replicas>>,
    /// Bumped each time the revocation subscription comes back: messages
    /// may have been lost, so holders of long-lived admissions (WebSocket
    /// tunnels) re-check their session.
    resync: watch::Receiver<u64>,
    /// Sealed records read from Redis within `cache_ttl`.
    local: Cache<StoreKey, Arc<[u8]>>,
    /// Bumped on every invalidation, so a read racing one is not cached.
    epoch: Arc<AtomicU64>,
    /// Bumped on every deletion or foreign change, so a write racing one is
    /// not cached ([`cache_unless_moved`]).
    changes: Arc<AtomicU64>,
    /// Whether the revocation subscription is up (see `Shared::live`).
    live: Arc<AtomicBool>,
    index_ttl: Duration,
    scripts: Arc<Scripts>,
    subscribed: watch::Receiver<bool>,
    rng: SystemRandom,
    _task: Arc<TaskGuard>,
}

/// A Redis error as the store reports it.
pub(super) fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(redis_failure(&e))
}

/// What went wrong with Redis, in words safe to log and show.
pub(super) fn redis_failure(e: &redis::RedisError) -> String {
    // The kind and timeout/refused flags only: a RedisError may echo
    // arguments, and arguments are sealed records or tokens. A TLS
    // verification failure is named: it needs the operator, not a retry.
    let text = e.to_string();
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        "TLS certificate of the Redis server not trusted (check ca_file)".to_owned()
    } else if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".to_owned()
    } else {
        format!("{:?}", e.kind())
    }
}

/// The highest `sub` index score a deletion takes: strictly below
/// `created_before_ms`, or everything.
fn max_score(created_before_ms: Option<u64>) -> String {
    match created_before_ms {
        Some(b) => format!("({b}"),
        None => "+inf".to_owned(),
    }
}

fn rkey(k: &StoreKey) -> String {
    format!("{PREFIX}s:{}", k.as_str())
}

/// The record keys of deleted sessions: what a deletion must make durable.
fn rkeys(keys: &[StoreKey]) -> Vec<String> {
    keys.iter().map(rkey).collect()
}

impl RedisStore {
    /// Connects lazily to the Redis `cfg` names (so the gateway starts
    /// while Redis is down and reports it through readiness) and starts the
    /// revocation subscriber. `index_ttl` must be at least the sessions' max
    /// lifetime. Waits briefly for the subscription so a new instance does
    /// not miss revocations right after start.
    pub async fn connect(
        cfg: &RedisConfig,
        index_ttl: Duration,
        revoked: broadcast::Sender<StoreKey>,
    ) -> Result<Self, StoreError> {
        let backend = Arc::new(Backend::open(cfg)?);
        let conn = backend.conn.clone();
        let local = Cache::builder()
            .max_capacity(LOCAL_CACHE_CAPACITY)
            .time_to_live(cfg.cache_ttl.max(Duration::from_millis(1)))
            .build();
        let epoch = Arc::new(AtomicU64::new(0));
        let changes = Arc::new(AtomicU64::new(0));
        let live = Arc::new(AtomicBool::new(false));
        // Unknown until the subscriber has asked: a deletion before that
        // waits for a replica rather than assume there is none.
        let replicas = Arc::new(ArcSwap::from_pointee(Replicas::default()));
        let (sub_tx, subscribed) = watch::channel(false);
        let (resync_tx, resync) = watch::channel(0u64);
        let task = tokio::spawn(subscriber(
            backend.clone(),
            Shared {
                local: local.clone(),
                epoch: epoch.clone(),
                changes: changes.clone(),
                live: live.clone(),
                replicas: replicas.clone(),
                revoked,
                subscribed: sub_tx,
                resync: resync_tx,
            },
        ));
        let split = backend
            .is_cluster()
            .then(|| Arc::new(Split::new(PREFIX, REVOCATION_CHANNEL)));
        let store = RedisStore {
            conn,
            backend,
            split,
            replicas,
            resync,
            local,
            epoch,
            changes,
            live,
            index_ttl,
            scripts: Arc::new(Scripts::new()),
            subscribed,
            rng: SystemRandom::new(),
            _task: Arc::new(TaskGuard(task)),
        };
        if !store.wait_subscribed(CONNECT_TIMEOUT).await
            && let Err(e) = store.ping().await
        {
            // Not fatal (Redis may come up later; readiness says so), but
            // said at once: an untrusted certificate needs the operator.
            tracing::error!(error = %e, "Redis not usable at start");
        }
        Ok(store)
    }

    /// Waits up to `limit` for the revocation subscription to be live;
    /// returns whether it is.
    pub async fn wait_subscribed(&self, limit: Duration) -> bool {
        let mut rx = self.subscribed.clone();
        tokio::time::timeout(limit, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the revocation subscription is live now.
    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }

    /// For tests only: lets a store that cannot subscribe use its local
    /// cache as if it heard revocations, so that what a race leaves in the
    /// cache can be observed without a pub/sub message repairing it.
    #[doc(hidden)]
    pub fn cache_without_subscription_for_tests(&self) {
        self.live.store(true, Ordering::SeqCst);
    }

    /// Changes each time the revocation subscription comes back after a
    /// loss (see the field); the memory store has no such event.
    pub fn resyncs(&self) -> watch::Receiver<u64> {
        self.resync.clone()
    }

    pub(super) async fn insert(
        &self,
        key: &StoreKey,
        blob: Vec<u8>,
        idx: &IndexRefs,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let before = self.changes.load(Ordering::SeqCst);
        let rk = rkey(key);
        let sub_key = format!("{PREFIX}sub:{}", idx.sub);
        let idx_ms = ms(self.index_ttl);
        // Three groups of single-key commands: one atomic pipeline on a
        // server; on a cluster (three slots) one after the other, the index
        // entries first, so a record never exists that its index misses.
        let mut record = redis::pipe();
        record.atomic();
        record.hset(&rk, "b", blob.as_slice()).ignore();
        record.hset(&rk, "sub", idx.sub.as_str()).ignore();
        record
            .pexpire(&rk, i64::try_from(ms(ttl)).unwrap_or(i64::MAX))
            .ignore();
        let mut sub = redis::pipe();
        sub.zadd(&sub_key, key.as_str(), idx.created_at_ms).ignore();
        // Members older than any session can live are dead: trim them so a
        // user who logs in daily does not grow the set forever.
        let horizon = to_ms(SystemTime::now()).saturating_sub(idx_ms);
        sub.cmd("ZREMRANGEBYSCORE")
            .arg(&sub_key)
            .arg("-inf")
            .arg(format!("({horizon}"))
            .ignore();
        sub.cmd("PEXPIRE").arg(&sub_key).arg(idx_ms).ignore();
        let mut sid = redis::pipe();
        if let Some(h) = &idx.sid {
            let sid_key = format!("{PREFIX}sid:{h}");
            record.hset(&rk, "sid", h.as_str()).ignore();
            sid.sadd(&sid_key, key.as_str()).ignore();
            sid.cmd("PEXPIRE").arg(&sid_key).arg(idx_ms).ignore();
        }
        let mut c = self.conn.clone();
        if self.split.is_some() {
            sub.query_async::<()>(&mut c).await.map_err(unavailable)?;
            if idx.sid.is_some() {
                sid.query_async::<()>(&mut c).await.map_err(unavailable)?;
            }
            record
                .query_async::<()>(&mut c)
                .await
                .map_err(unavailable)?;
        } else {
            for cmd in sub.cmd_iter().chain(sid.cmd_iter()) {
                record.add_command(cmd.clone()).ignore();
            }
            record
                .query_async::<()>(&mut c)
                .await
                .map_err(unavailable)?;
        }
        self.cache_written(key, blob.into(), before);
        Ok(())
    }

    pub(super) async fn get(
        &self,
        key: &StoreKey,
        fresh: bool,
    ) -> Result<Option<Arc<[u8]>>, StoreError> {
        // While revocations are not heard, every read goes to Redis.
        if !fresh
            && self.live.load(Ordering::SeqCst)
            && let Some(b) = self.local.get(key)
        {
            return Ok(Some(b));
        }
        let before = self.epoch.load(Ordering::SeqCst);
        let mut c = self.conn.clone();
        let v: Option<Vec<u8>> = c.hget(rkey(key), "b").await.map_err(unavailable)?;
        let v: Option<Arc<[u8]>> = v.map(Arc::from);
        match &v {
            Some(b) => {
                cache_unless_moved(&self.local, &self.live, &self.epoch, key, b.clone(), before)
            }
            None => self.local.invalidate(key),
        }
        Ok(v)
    }

    /// Caches a record this instance has just written, unless a deletion
    /// or foreign change arrived since `before` (see [`cache_unless_moved`]).
    fn cache_written(&self, key: &StoreKey, blob: Arc<[u8]>, before: u64) {
        cache_unless_moved(&self.local, &self.live, &self.changes, key, blob, before);
    }

    /// Drops a cached copy so that no read in flight puts it back: the
    /// epoch moves first, so a read that began before (and may have seen
    /// the old value) does not cache what it read.
    fn drop_local(&self, key: &StoreKey) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.local.invalidate(key);
    }

    /// Runs a replacement script and moves the index entries when the
    /// record's index hashes changed. The first reply element is the
    /// script's status.
    async fn write(
        &self,
        script: &Script,
        key: &StoreKey,
        blob: &[u8],
        ttl: Duration,
        expected_sha1: Option<String>,
        idx: &IndexRefs,
    ) -> Result<i64, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = script.key(rkey(key));
        inv.arg(blob)
            .arg(ms(ttl))
            .arg(REVOCATION_CHANNEL)
            .arg(key.as_str())
            .arg(expected_sha1.unwrap_or_default())
            .arg(idx.sid.as_deref().unwrap_or(""))
            .arg(idx.sub.as_str());
        let reply: Vec<redis::Value> = inv.invoke_async(&mut c).await.map_err(unavailable)?;
        let field = |i: usize| -> Option<String> {
            reply
                .get(i)
                .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
        };
        let status = reply
            .first()
            .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok())
            .ok_or_else(|| StoreError::Protocol("unexpected reply".into()))?;
        if let (Some(old_sid), Some(old_sub)) = (field(1), field(2)) {
            // The record is written; it names its index hashes only once
            // the entries are there, so a failed move is retried by the
            // next write, and meanwhile the old entries still find it
            // (while the old secret is configured).
            let moved = match self.move_index(key, &old_sid, &old_sub, idx).await {
                Ok(()) => self.set_index_fields(key, idx).await,
                Err(e) => Err(e),
            };
            if let Err(e) = moved {
                tracing::warn!(error = %e, "session index entries not moved; the next write retries");
            }
        }
        Ok(status)
    }

    /// Writes the record's `sid`/`sub` fields (see `SET_INDEX`).
    async fn set_index_fields(&self, key: &StoreKey, idx: &IndexRefs) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.scripts
            .set_index
            .key(rkey(key))
            .arg(idx.sub.as_str())
            .arg(idx.sid.as_deref().unwrap_or(""))
            .invoke_async::<i64>(&mut c)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// Re-files a session's index entries under its new hashes (single-key
    /// commands, so this works on a cluster too).
    async fn move_index(
        &self,
        key: &StoreKey,
        old_sid: &str,
        old_sub: &str,
        idx: &IndexRefs,
    ) -> Result<(), StoreError> {
        let idx_ms = ms(self.index_ttl);
        let mut c = self.conn.clone();
        let k = key.as_str();
        if let Some(h) = &idx.sid {
            let ik = format!("{PREFIX}sid:{h}");
            redis::pipe()
                .sadd(&ik, k)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&ik)
                .arg(idx_ms)
                .ignore()
                .query_async::<()>(&mut c)
                .await
                .map_err(unavailable)?;
        }
        let ik = format!("{PREFIX}sub:{}", idx.sub);
        redis::pipe()
            .zadd(&ik, k, idx.created_at_ms)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&ik)
            .arg(idx_ms)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)?;
        if !old_sid.is_empty() && Some(old_sid) != idx.sid.as_deref() {
            c.srem::<_, _, ()>(format!("{PREFIX}sid:{old_sid}"), k)
                .await
                .map_err(unavailable)?;
        }
        if !old_sub.is_empty() && old_sub != idx.sub {
            c.zrem::<_, _, ()>(format!("{PREFIX}sub:{old_sub}"), k)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) async fn replace(
        &self,
        key: &StoreKey,
        blob: Vec<u8>,
        ttl: Duration,
        idx: &IndexRefs,
    ) -> Result<bool, StoreError> {
        let before = self.changes.load(Ordering::SeqCst);
        let n = self
            .write(&self.scripts.replace, key, &blob, ttl, None, idx)
            .await?;
        self.drop_local(key);
        if n == 1 {
            self.cache_written(key, blob.into(), before);
        }
        Ok(n == 1)
    }

    pub(super) async fn replace_if(
        &self,
        key: &StoreKey,
        expected: &[u8],
        blob: Vec<u8>,
        ttl: Duration,
        idx: &IndexRefs,
    ) -> Result<CasResult, StoreError> {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, expected);
        let expected_sha1: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let before = self.changes.load(Ordering::SeqCst);
        let n = self
            .write(
                &self.scripts.replace_if,
                key,
                &blob,
                ttl,
                Some(expected_sha1),
                idx,
            )
            .await?;
        // The local copy is stale whatever happened (or the session gone):
        // a read racing this one must not put the old blob back.
        self.drop_local(key);
        match n {
            1 => {
                self.cache_written(key, blob.into(), before);
                Ok(CasResult::Replaced)
            }
            2 => Ok(CasResult::Changed),
            0 => Ok(CasResult::Gone),
            _ => Err(StoreError::Protocol("unexpected reply".into())),
        }
    }

    /// Runs one of the deletion scripts (they all begin with [`DEL_FN`],
    /// which takes the prefix and the channel first) with `args` after.
    async fn run_delete(&self, script: &Script, args: &[&str]) -> Result<redis::Value, StoreError> {
        let mut c = self.conn.clone();
        let mut inv = script.arg(PREFIX);
        inv.arg(REVOCATION_CHANNEL);
        for a in args {
            inv.arg(*a);
        }
        inv.invoke_async(&mut c).await.map_err(unavailable)
    }

    /// Makes an acknowledged deletion or claim survive a failover: waits
    /// until a replica has it, on each master it wrote to that has one
    /// ([`confirm`]), else fails. `written` are the keys whose loss a
    /// failover must not bring about: the deleted records and the claim.
    /// Index entries are left out: one brought back without its record is
    /// harmless (the record is what admits a request), and waiting on their
    /// shards would fail a logout over a shard that holds nothing of it.
    async fn durable(&self, written: &[String]) -> Result<(), StoreError> {
        confirm(&self.backend, &self.replicas, written).await
    }

    /// Drops deleted sessions from the local cache (the published
    /// revocation does too, but may come later or be lost).
    fn forget(&self, keys: &[StoreKey]) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.changes.fetch_add(1, Ordering::SeqCst);
        for k in keys {
            self.local.invalidate(k);
        }
    }

    fn keys_of(v: redis::Value) -> Result<Vec<StoreKey>, StoreError> {
        let raw: Vec<String> = redis::from_redis_value(v)
            .map_err(|_| StoreError::Protocol("unexpected reply type".into()))?;
        Ok(Self::parse_keys(&raw))
    }

    fn parse_keys(raw: &[String]) -> Vec<StoreKey> {
        raw.iter()
            .filter_map(|s| StoreKey::from_stored(s))
            .collect()
    }

    pub(super) async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let existed = if let Some(split) = &self.split {
            let mut c = self.conn.clone();
            split
                .delete_one(&mut c, key.as_str())
                .await
                .map_err(unavailable)?
        } else {
            let v = self
                .run_delete(&self.scripts.del_one, &[key.as_str()])
                .await?;
            let n: i64 = redis::from_redis_value(v)
                .map_err(|_| StoreError::Protocol("unexpected reply type".into()))?;
            n == 1
        };
        // Before the cache: a read that raced the deletion must not cache
        // what it read before it, nor a write what it wrote.
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.drop_local(key);
        self.durable(&[rkey(key)]).await?;
        Ok(existed)
    }

    pub(super) async fn find_by_sid(&self, sid: &str) -> Result<Vec<StoreKey>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Vec<String> = c
            .smembers(format!("{PREFIX}sid:{sid}"))
            .await
            .map_err(unavailable)?;
        Ok(Self::parse_keys(&raw))
    }

    pub(super) async fn find_by_sub(&self, sub: &str) -> Result<Vec<(StoreKey, u64)>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(format!("{PREFIX}sub:{sub}"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(raw
            .iter()
            .filter_map(|(s, score)| Some((StoreKey::from_stored(s)?, *score as u64)))
            .collect())
    }

    pub(super) async fn delete_by_sid(&self, sid: &str) -> Result<Vec<StoreKey>, StoreError> {
        let keys = if let Some(split) = &self.split {
            let mut c = self.conn.clone();
            let raw = split.delete_sid(&mut c, sid).await.map_err(unavailable)?;
            Self::parse_keys(&raw)
        } else {
            Self::keys_of(self.run_delete(&self.scripts.del_sid, &[sid]).await?)?
        };
        self.forget(&keys);
        self.durable(&rkeys(&keys)).await?;
        Ok(keys)
    }

    pub(super) async fn delete_by_sub(
        &self,
        sub: &str,
        created_before_ms: Option<u64>,
    ) -> Result<Vec<StoreKey>, StoreError> {
        let max = max_score(created_before_ms);
        let keys = if let Some(split) = &self.split {
            let mut c = self.conn.clone();
            let raw = split
                .delete_sub(&mut c, sub, &max)
                .await
                .map_err(unavailable)?;
            Self::parse_keys(&raw)
        } else {
            Self::keys_of(self.run_delete(&self.scripts.del_sub, &[sub, &max]).await?)?
        };
        self.forget(&keys);
        self.durable(&rkeys(&keys)).await?;
        Ok(keys)
    }

    pub(super) async fn revoke_once(
        &self,
        claim: &str,
        ttl: Duration,
        target: &IndexTarget<'_>,
    ) -> Result<Option<Vec<StoreKey>>, StoreError> {
        let (kind, max, hashes) = match target {
            IndexTarget::Sid(h) => ("sid", String::new(), *h),
            IndexTarget::Sub(h, before) => ("sub", max_score(*before), *h),
        };
        let claim = format!("{PREFIX}once:{claim}");
        let keys = if let Some(split) = &self.split {
            let mut c = self.conn.clone();
            let r = split
                .revoke_once(&mut c, &claim, ms(ttl), kind == "sid", &max, hashes)
                .await
                .map_err(unavailable)?;
            r.map(|raw| Self::parse_keys(&raw))
        } else {
            let ttl = ms(ttl).to_string();
            let mut args = vec![claim.as_str(), ttl.as_str(), kind, max.as_str()];
            args.extend(hashes.iter().map(String::as_str));
            let v = self.run_delete(&self.scripts.del_once, &args).await?;
            // Lua's false is nil in RESP2 and a boolean in RESP3
            // (`?protocol=resp3`): both mean "claimed before".
            if matches!(v, redis::Value::Nil | redis::Value::Boolean(false)) {
                None
            } else {
                Some(Self::keys_of(v)?)
            }
        };
        let mut written = vec![claim];
        if let Some(keys) = &keys {
            self.forget(keys);
            written.extend(rkeys(keys));
        }
        // A replay claim must outlive a failover as much as the deletion.
        self.durable(&written).await?;
        Ok(keys)
    }

    async fn set_nx(&self, key: String, value: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(r.is_some())
    }

    /// Single-use login states. Not made durable with `WAIT` (unlike the
    /// `jti` claims of `revoke_once`): a failover that loses one lets a
    /// callback through twice at most, and the IdP's authorization code is
    /// single-use anyway.
    pub(super) async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.set_nx(format!("{PREFIX}once:{key}"), b"1", ttl).await
    }

    /// Login states: as [`RedisStore::claim_once`] (and its keys, so that
    /// instances of both versions agree during a rolling upgrade).
    pub(super) async fn claim_login_state(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.claim_once(key, ttl).await
    }

    pub(super) async fn put_temp(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(format!("{PREFIX}tmp:{key}"))
            .arg(value.as_slice())
            .arg("PX")
            .arg(ms(ttl))
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn take_temp(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("GETDEL")
            .arg(format!("{PREFIX}tmp:{key}"))
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn get_temp(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("GET")
            .arg(format!("{PREFIX}tmp:{key}"))
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn replace_temp(&self, key: &str, value: Vec<u8>) -> Result<bool, StoreError> {
        // XX: only while it exists (a value taken meanwhile stays taken);
        // KEEPTTL: a rewrite never extends it.
        let mut c = self.conn.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(format!("{PREFIX}tmp:{key}"))
            .arg(value.as_slice())
            .arg("XX")
            .arg("KEEPTTL")
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(r.is_some())
    }

    pub(super) async fn try_lock(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, StoreError> {
        let mut b = [0u8; 16];
        self.rng
            .fill(&mut b)
            .map_err(|_| StoreError::Protocol("random generator failed".into()))?;
        let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let got = self
            .set_nx(format!("{PREFIX}lock:{key}"), token.as_bytes(), ttl)
            .await?;
        Ok(got.then_some(LockToken(token)))
    }

    pub(super) async fn unlock(&self, key: &str, token: &LockToken) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.scripts
            .unlock
            .key(format!("{PREFIX}lock:{key}"))
            .arg(token.0.as_str())
            .invoke_async::<i64>(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
