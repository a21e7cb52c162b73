//! Deletions on a Redis Cluster. A session's record and its `sid`/`sub`
//! index entries hash to different slots (an index holds many sessions, a
//! user's sessions spread over slots), so the one-script deletions of a
//! single server would fail with `CROSSSLOT`. Here each record is deleted
//! by a script on its own key (which publishes the revocation; a cluster
//! forwards every classic `PUBLISH` to all nodes), and the index entries
//! are removed by single-key commands after it.
//!
//! What a single script gave atomically is kept where it matters: a record
//! is gone before its index entry is removed (an index entry without a
//! record is harmless, a record without one could not be found again), and
//! a single-use claim is written only after every deletion it stands for,
//! so a claim never exists for a deletion that did not happen.

use super::redis_conn::Conn;
use redis::{AsyncCommands, RedisResult, Script, Value};

/// KEYS[1]: the record; ARGV[1]: channel, ARGV[2]: store key. Answers
/// `{sid hash, sub hash}` ("" when absent), or false when already gone.
const DEL_RECORD: &str = r#"
local v = redis.call('HMGET', KEYS[1], 'sid', 'sub')
if redis.call('DEL', KEYS[1]) == 0 then return false end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {v[1] or '', v[2] or ''}
"#;

/// The split deletions, for one key prefix and revocation channel.
pub(super) struct Split {
    del_record: Script,
    prefix: &'static str,
    channel: &'static str,
}

impl Split {
    /// Deletions under `prefix`, announced on `channel`.
    pub(super) fn new(prefix: &'static str, channel: &'static str) -> Split {
        Split {
            del_record: Script::new(DEL_RECORD),
            prefix,
            channel,
        }
    }

    /// Deletes one session and its index entries; `true` if it existed.
    pub(super) async fn delete_one(&self, c: &mut Conn, key: &str) -> RedisResult<bool> {
        let v: Value = self
            .del_record
            .key(format!("{}s:{key}", self.prefix))
            .arg(self.channel)
            .arg(key)
            .invoke_async(c)
            .await?;
        let Ok((sid, sub)) = redis::from_redis_value::<(String, String)>(v) else {
            return Ok(false);
        };
        if !sid.is_empty() {
            c.srem::<_, _, ()>(format!("{}sid:{sid}", self.prefix), key)
                .await?;
        }
        if !sub.is_empty() {
            c.zrem::<_, _, ()>(format!("{}sub:{sub}", self.prefix), key)
                .await?;
        }
        Ok(true)
    }

    /// Deletes every session under a `sid` hash; returns those deleted.
    pub(super) async fn delete_sid(&self, c: &mut Conn, hash: &str) -> RedisResult<Vec<String>> {
        let ik = format!("{}sid:{hash}", self.prefix);
        let members: Vec<String> = c.smembers(&ik).await?;
        let mut out = Vec::new();
        for k in members {
            if self.delete_one(c, &k).await? {
                out.push(k);
            }
        }
        c.del::<_, ()>(&ik).await?;
        Ok(out)
    }

    /// Deletes the sessions under a `sub` hash scored at most `max` (a
    /// `ZRANGEBYSCORE` bound); returns those deleted.
    pub(super) async fn delete_sub(
        &self,
        c: &mut Conn,
        hash: &str,
        max: &str,
    ) -> RedisResult<Vec<String>> {
        let ik = format!("{}sub:{hash}", self.prefix);
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&ik)
            .arg("-inf")
            .arg(max)
            .query_async(c)
            .await?;
        let mut out = Vec::new();
        for k in members {
            let deleted = self.delete_one(c, &k).await?;
            c.zrem::<_, _, ()>(&ik, &k).await?;
            if deleted {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// A single-use revocation: `None` when `claim` exists (nothing is
    /// deleted), else the deletions, then the claim. Two racing first
    /// claims may both delete (harmless: deleting is idempotent); only the
    /// one whose claim is written first reports them.
    pub(super) async fn revoke_once(
        &self,
        c: &mut Conn,
        claim: &str,
        ttl_ms: u64,
        by_sid: bool,
        max: &str,
        hashes: &[String],
    ) -> RedisResult<Option<Vec<String>>> {
        if c.exists::<_, bool>(claim).await? {
            return Ok(None);
        }
        let mut out = Vec::new();
        for h in hashes {
            if by_sid {
                out.extend(self.delete_sid(c, h).await?);
            } else {
                out.extend(self.delete_sub(c, h, max).await?);
            }
        }
        let set: Option<String> = redis::cmd("SET")
            .arg(claim)
            .arg("1")
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(c)
            .await?;
        Ok(set.map(|_| out))
    }
}
