//! Keys and Lua scripts of the Redis store (see `redis.rs` for the key
//! layout). The deletion scripts touch several keys and so run only on a
//! single server (or a Sentinel master); a cluster uses `redis_cluster.rs`.

use redis::Script;

/// Pub/sub channel that carries revocations and cache invalidations.
pub const REVOCATION_CHANNEL: &str = "portcullis:revoked";
pub(super) const PREFIX: &str = "portcullis:";

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

/// Shared by both replacements: writes the record and its index hashes
/// (ARGV[6]: sid hash or "", ARGV[7]: sub hash) and answers
/// `{1, old sid, old sub}` when the hashes changed (the record was re-sealed
/// under a rotated secret, so the caller moves its index entries), else `{1}`.
const WRITE_FN: &str = r#"
local function write()
  local old = redis.call('HMGET', KEYS[1], 'sid', 'sub')
  redis.call('HSET', KEYS[1], 'b', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PUBLISH', ARGV[3], 'u:' .. ARGV[4])
  if (old[2] or '') == ARGV[7] and (old[1] or '') == ARGV[6] then return {1} end
  return {1, old[1] or '', old[2] or ''}
end
"#;

/// Records the index hashes a session's entries are now filed under, once
/// they have been moved there (`redis.rs`, `move_index`). Until then the
/// record keeps the old ones, so a move that failed is tried again by the
/// next write. A session deleted meanwhile is not brought back as a bare
/// hash. ARGV[1]: `sub` hash, ARGV[2]: `sid` hash or "".
const SET_INDEX: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'sub', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'sid', ARGV[2])
else
  redis.call('HDEL', KEYS[1], 'sid')
end
return 1
"#;

const REPLACE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
return write()
"#;

/// Compare-and-set on the record: ARGV[5] is the SHA-1 (hex) of the blob
/// the caller read, so the expected record is not sent back over the wire.
/// SHA-1 because it is the digest Redis scripts have; it only tells one
/// sealed record from another (each has a random nonce, and nobody but the
/// gateway writes them), no collision resistance is relied on.
/// 0: gone, 1: replaced, 2: changed meanwhile (first element).
const REPLACE_IF: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'b')
if not cur then return {0} end
if redis.sha1hex(cur) ~= ARGV[5] then return {2} end
return write()
"#;

const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// The store's scripts, each loaded once per server.
pub(super) struct Scripts {
    pub(super) del_one: Script,
    pub(super) del_sid: Script,
    pub(super) del_sub: Script,
    pub(super) del_once: Script,
    pub(super) replace: Script,
    pub(super) replace_if: Script,
    pub(super) unlock: Script,
    pub(super) set_index: Script,
}

impl Scripts {
    /// Builds every script (their SHA-1 is computed here, once).
    pub(super) fn new() -> Scripts {
        let prefixed = |body: &str| Script::new(&format!("{DEL_FN}\n{body}"));
        let write = |body: &str| Script::new(&format!("{WRITE_FN}\n{body}"));
        Scripts {
            del_one: prefixed(DEL_ONE),
            del_sid: prefixed(DEL_SID),
            del_sub: prefixed(DEL_SUB),
            del_once: prefixed(DEL_ONCE),
            replace: write(REPLACE),
            replace_if: write(REPLACE_IF),
            unlock: Script::new(UNLOCK),
            set_index: Script::new(SET_INDEX),
        }
    }
}
