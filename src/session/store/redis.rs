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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use moka::future::Cache;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{broadcast, watch};

use super::{CasResult, IndexRefs, IndexTarget, LockToken, StoreError, ms};
use crate::session::id::StoreKey;
use crate::session::record::to_ms;

/// Pub/sub channel that carries revocations and cache invalidations.
pub const REVOCATION_CHANNEL: &str = "portcullis:revoked";
const PREFIX: &str = "portcullis:";
/// Bound of the local cache (entries).
const LOCAL_CACHE_CAPACITY: u64 = 100_000;
/// How long a Redis command may take before it counts as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the subscriber checks its connection is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);

const DEL_FN: &str = r#"
local prefix, channel = ARGV[1], ARGV[2]
local function del(k)
  local rk = prefix .. 's:' .. k
  local v = redis.call('HMGET', rk, 'sid', 'sub')
  if redis.call('DEL', rk) == 0 then return 0 end
  if v[1] then redis.call('SREM', prefix .. 'sid:' .. v[1], k) end
  if v[2] then redis.call('ZREM', prefix .. 'sub:' .. v[2], k) end
  redis.call('PUBLISH', channel, k)
  return 1
end
local function del_sid(h, out)
  local ik = prefix .. 'sid:' .. h
  for _, k in ipairs(redis.call('SMEMBERS', ik)) do
    if del(k) == 1 then table.insert(out, k) end
  end
  redis.call('DEL', ik)
end
local function del_sub(h, max, out)
  local ik = prefix .. 'sub:' .. h
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', ik, '-inf', max)) do
    if del(k) == 1 then table.insert(out, k) end
    redis.call('ZREM', ik, k)
  end
end
"#;

const DEL_ONE: &str = "return del(ARGV[3])";

const DEL_SID: &str = "local out = {} del_sid(ARGV[3], out) return out";

const DEL_SUB: &str = "local out = {} del_sub(ARGV[3], ARGV[4], out) return out";

/// ARGV[3]: claim key, ARGV[4]: its ttl (ms), ARGV[5]: `sid` or `sub`,
/// ARGV[6]: highest creation score (`sub`), ARGV[7..]: index hashes.
/// Answers nil when the claim exists (nothing deleted). The claim is written
/// last: a script that stops part-way keeps no claim, so a retry runs again
/// (deleting is idempotent), and one that completes kept both.
const DEL_ONCE: &str = r#"
if redis.call('EXISTS', ARGV[3]) == 1 then return false end
local out = {}
for i = 7, #ARGV do
  if ARGV[5] == 'sid' then del_sid(ARGV[i], out) else del_sub(ARGV[i], ARGV[6], out) end
end
redis.call('SET', ARGV[3], '1', 'PX', ARGV[4])
return out
"#;

const REPLACE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'b', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'u:' .. ARGV[4])
return 1
"#;

/// Compare-and-set on the record: ARGV[5] is the SHA-1 (hex) of the blob
/// the caller read, so the expected record is not sent back over the wire.
/// SHA-1 because it is the digest Redis scripts have; it only tells one
/// sealed record from another (each has a random nonce, and nobody but the
/// gateway writes them), no collision resistance is relied on.
/// 0: gone, 1: replaced, 2: changed meanwhile.
const REPLACE_IF: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'b')
if not cur then return 0 end
if redis.sha1hex(cur) ~= ARGV[5] then return 2 end
redis.call('HSET', KEYS[1], 'b', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'u:' .. ARGV[4])
return 1
"#;

const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

struct Scripts {
    del_one: Script,
    del_sid: Script,
    del_sub: Script,
    del_once: Script,
    replace: Script,
    replace_if: Script,
    unlock: Script,
}

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
    conn: ConnectionManager,
    /// Sealed records read from Redis within `cache_ttl`.
    local: Cache<StoreKey, Arc<[u8]>>,
    /// Bumped on every invalidation, so a read racing one is not cached.
    epoch: Arc<AtomicU64>,
    index_ttl: Duration,
    scripts: Arc<Scripts>,
    subscribed: watch::Receiver<bool>,
    rng: SystemRandom,
    _task: Arc<TaskGuard>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    // The kind and timeout/refused flags only: a RedisError may echo
    // arguments, and arguments are sealed records or tokens.
    let what = if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".to_owned()
    } else {
        format!("{:?}", e.kind())
    };
    StoreError::Unavailable(what)
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

impl RedisStore {
    /// Connects lazily to `url` (so the gateway starts while Redis is down
    /// and reports it through readiness) and starts the revocation
    /// subscriber. `index_ttl` must be at least the sessions' max lifetime.
    /// Waits briefly for the subscription so a new instance does not miss
    /// revocations right after start.
    pub async fn connect(
        url: &str,
        cache_ttl: Duration,
        index_ttl: Duration,
        revoked: broadcast::Sender<StoreKey>,
    ) -> Result<Self, StoreError> {
        let client =
            redis::Client::open(url).map_err(|e| StoreError::Config(format!("{:?}", e.kind())))?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg)
            .map_err(|e| StoreError::Config(format!("{:?}", e.kind())))?;
        let local = Cache::builder()
            .max_capacity(LOCAL_CACHE_CAPACITY)
            .time_to_live(cache_ttl.max(Duration::from_millis(1)))
            .build();
        let epoch = Arc::new(AtomicU64::new(0));
        let (sub_tx, subscribed) = watch::channel(false);
        let task = tokio::spawn(subscriber(
            client,
            local.clone(),
            epoch.clone(),
            revoked,
            sub_tx,
        ));
        let prefixed = |body: &str| Script::new(&format!("{DEL_FN}\n{body}"));
        let store = RedisStore {
            conn,
            local,
            epoch,
            index_ttl,
            scripts: Arc::new(Scripts {
                del_one: prefixed(DEL_ONE),
                del_sid: prefixed(DEL_SID),
                del_sub: prefixed(DEL_SUB),
                del_once: prefixed(DEL_ONCE),
                replace: Script::new(REPLACE),
                replace_if: Script::new(REPLACE_IF),
                unlock: Script::new(UNLOCK),
            }),
            subscribed,
            rng: SystemRandom::new(),
            _task: Arc::new(TaskGuard(task)),
        };
        store.wait_subscribed(CONNECT_TIMEOUT).await;
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

    pub(super) async fn insert(
        &self,
        key: &StoreKey,
        blob: Vec<u8>,
        idx: &IndexRefs,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let rk = rkey(key);
        let sub_key = format!("{PREFIX}sub:{}", idx.sub);
        let idx_ms = ms(self.index_ttl);
        let mut p = redis::pipe();
        p.atomic();
        p.hset(&rk, "b", blob.as_slice()).ignore();
        p.hset(&rk, "sub", idx.sub.as_str()).ignore();
        p.pexpire(&rk, i64::try_from(ms(ttl)).unwrap_or(i64::MAX))
            .ignore();
        p.zadd(&sub_key, key.as_str(), idx.created_at_ms).ignore();
        // Members older than any session can live are dead: trim them so a
        // user who logs in daily does not grow the set forever.
        let horizon = to_ms(SystemTime::now()).saturating_sub(idx_ms);
        p.cmd("ZREMRANGEBYSCORE")
            .arg(&sub_key)
            .arg("-inf")
            .arg(format!("({horizon}"))
            .ignore();
        p.cmd("PEXPIRE").arg(&sub_key).arg(idx_ms).ignore();
        if let Some(sid) = &idx.sid {
            let sid_key = format!("{PREFIX}sid:{sid}");
            p.hset(&rk, "sid", sid.as_str()).ignore();
            p.sadd(&sid_key, key.as_str()).ignore();
            p.cmd("PEXPIRE").arg(&sid_key).arg(idx_ms).ignore();
        }
        let mut c = self.conn.clone();
        p.query_async::<()>(&mut c).await.map_err(unavailable)?;
        self.local.insert(key.clone(), blob.into()).await;
        Ok(())
    }

    pub(super) async fn get(
        &self,
        key: &StoreKey,
        fresh: bool,
    ) -> Result<Option<Arc<[u8]>>, StoreError> {
        if !fresh && let Some(b) = self.local.get(key).await {
            return Ok(Some(b));
        }
        let before = self.epoch.load(Ordering::SeqCst);
        let mut c = self.conn.clone();
        let v: Option<Vec<u8>> = c.hget(rkey(key), "b").await.map_err(unavailable)?;
        let v: Option<Arc<[u8]>> = v.map(Arc::from);
        match &v {
            Some(b) if self.epoch.load(Ordering::SeqCst) == before => {
                self.local.insert(key.clone(), b.clone()).await;
                // An invalidation that landed between the check and the
                // insert must still win.
                if self.epoch.load(Ordering::SeqCst) != before {
                    self.local.invalidate(key).await;
                }
            }
            Some(_) => {}
            None => self.local.invalidate(key).await,
        }
        Ok(v)
    }

    pub(super) async fn replace(
        &self,
        key: &StoreKey,
        blob: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = self
            .scripts
            .replace
            .key(rkey(key))
            .arg(blob.as_slice())
            .arg(ms(ttl))
            .arg(REVOCATION_CHANNEL)
            .arg(key.as_str())
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        if n == 1 {
            self.local.insert(key.clone(), blob.into()).await;
        } else {
            self.local.invalidate(key).await;
        }
        Ok(n == 1)
    }

    pub(super) async fn replace_if(
        &self,
        key: &StoreKey,
        expected: &[u8],
        blob: Vec<u8>,
        ttl: Duration,
    ) -> Result<CasResult, StoreError> {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, expected);
        let expected_sha1: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let mut c = self.conn.clone();
        let n: i64 = self
            .scripts
            .replace_if
            .key(rkey(key))
            .arg(blob.as_slice())
            .arg(ms(ttl))
            .arg(REVOCATION_CHANNEL)
            .arg(key.as_str())
            .arg(expected_sha1)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        match n {
            1 => {
                self.local.insert(key.clone(), blob.into()).await;
                Ok(CasResult::Replaced)
            }
            // The local copy is stale (or the session gone): the next read
            // goes to Redis.
            2 => {
                self.local.invalidate(key).await;
                Ok(CasResult::Changed)
            }
            0 => {
                self.local.invalidate(key).await;
                Ok(CasResult::Gone)
            }
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

    /// Drops deleted sessions from the local cache (the published
    /// revocation does too, but may come later or be lost).
    async fn forget(&self, keys: &[StoreKey]) {
        for k in keys {
            self.local.invalidate(k).await;
        }
    }

    fn keys_of(v: redis::Value) -> Result<Vec<StoreKey>, StoreError> {
        let raw: Vec<String> = redis::from_redis_value(v)
            .map_err(|_| StoreError::Protocol("unexpected reply type".into()))?;
        Ok(raw
            .iter()
            .filter_map(|s| StoreKey::from_stored(s))
            .collect())
    }

    pub(super) async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let v = self
            .run_delete(&self.scripts.del_one, &[key.as_str()])
            .await?;
        self.local.invalidate(key).await;
        let n: i64 = redis::from_redis_value(v)
            .map_err(|_| StoreError::Protocol("unexpected reply type".into()))?;
        Ok(n == 1)
    }

    pub(super) async fn find_by_sid(&self, sid: &str) -> Result<Vec<StoreKey>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Vec<String> = c
            .smembers(format!("{PREFIX}sid:{sid}"))
            .await
            .map_err(unavailable)?;
        Ok(raw
            .iter()
            .filter_map(|s| StoreKey::from_stored(s))
            .collect())
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
        let v = self.run_delete(&self.scripts.del_sid, &[sid]).await?;
        let keys = Self::keys_of(v)?;
        self.forget(&keys).await;
        Ok(keys)
    }

    pub(super) async fn delete_by_sub(
        &self,
        sub: &str,
        created_before_ms: Option<u64>,
    ) -> Result<Vec<StoreKey>, StoreError> {
        let max = max_score(created_before_ms);
        let v = self.run_delete(&self.scripts.del_sub, &[sub, &max]).await?;
        let keys = Self::keys_of(v)?;
        self.forget(&keys).await;
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
        let ttl = ms(ttl).to_string();
        let mut args = vec![claim.as_str(), ttl.as_str(), kind, max.as_str()];
        args.extend(hashes.iter().map(String::as_str));
        let v = self.run_delete(&self.scripts.del_once, &args).await?;
        // Lua's false is nil in RESP2 and a boolean in RESP3
        // (`?protocol=resp3`): both mean "claimed before".
        if matches!(v, redis::Value::Nil | redis::Value::Boolean(false)) {
            return Ok(None);
        }
        let keys = Self::keys_of(v)?;
        self.forget(&keys).await;
        Ok(Some(keys))
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

    pub(super) async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.set_nx(format!("{PREFIX}once:{key}"), b"1", ttl).await
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

/// Keeps a subscription to [`REVOCATION_CHANNEL`] alive. Messages may have
/// been lost while it was down, so every (re)subscription clears the local
/// cache.
async fn subscriber(
    client: redis::Client,
    local: Cache<StoreKey, Arc<[u8]>>,
    epoch: Arc<AtomicU64>,
    revoked: broadcast::Sender<StoreKey>,
    subscribed: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await;
        if let Ok(Ok(mut ps)) = conn
            && ps.subscribe(REVOCATION_CHANNEL).await.is_ok()
        {
            epoch.fetch_add(1, Ordering::SeqCst);
            local.invalidate_all();
            subscribed.send_replace(true);
            tracing::debug!("session revocation subscription live");
            backoff = Duration::from_millis(50);
            let (mut sink, mut stream) = ps.split();
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            heartbeat.reset();
            loop {
                tokio::select! {
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        handle_message(msg.get_payload_bytes(), &local, &epoch, &revoked).await;
                    }
                    _ = heartbeat.tick() => {
                        // A silently dead link (no FIN) would otherwise look
                        // like a quiet channel forever.
                        let pong = tokio::time::timeout(
                            RESPONSE_TIMEOUT,
                            sink.ping::<redis::Value>(),
                        )
                        .await;
                        if !matches!(pong, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            subscribed.send_replace(false);
            epoch.fetch_add(1, Ordering::SeqCst);
            tracing::warn!("session revocation subscription lost; reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Applies one message: `u:<key>` drops a cached copy (the record changed),
/// `<key>` is a revocation (dropped and announced).
async fn handle_message(
    payload: &[u8],
    local: &Cache<StoreKey, Arc<[u8]>>,
    epoch: &AtomicU64,
    revoked: &broadcast::Sender<StoreKey>,
) {
    let Ok(payload) = std::str::from_utf8(payload) else {
        return;
    };
    let (revocation, key) = match payload.strip_prefix("u:") {
        Some(k) => (false, k),
        None => (true, payload),
    };
    let Some(key) = StoreKey::from_stored(key) else {
        return;
    };
    epoch.fetch_add(1, Ordering::SeqCst);
    local.invalidate(&key).await;
    if revocation {
        // Nobody listening is fine.
        let _ = revoked.send(key);
    }
}
