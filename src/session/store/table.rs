//! The memory store's table of sessions: sealed records by store key, with
//! their expiry, a byte bound, and lookups by `sid` and `sub` hash.
//!
//! Why not a general-purpose cache: at a million sessions, moka's
//! bookkeeping per entry (its entry and policy records, LRU and timer-wheel
//! nodes, a shared key) plus separate `sid` and `sub` maps cost about 850
//! bytes per session, as much as the sealed record itself
//! (`bench/memory.sh`). Here a session costs a 112-byte slot and three
//! 4-byte entries in its shard's hash table.
//!
//! The table is split into shards by store key. A shard is a slab of slots
//! and one `hashbrown` table of slot numbers, each slot filed three times:
//! under the hash of its key, of its `sid` hash and of its `sub` hash (an
//! entry's top bits say which; the last two are spread over 16 hashes by
//! slot number, so one user's many sessions do not pile up on one). A
//! lookup by key probes one shard; one by `sid` or `sub` probes the 16
//! hashes in every shard, which is what back-channel and admin logouts need
//! and nothing on the request path does. Every match is checked against the
//! slot itself, so hash collisions only cost a probe.
//!
//! Every operation on a session runs under its shard's lock, so a
//! compare-and-set, a delete and a read of the same session are one step
//! each. Eviction when the byte bound is reached is least recently used:
//! exactly while the table is small, else of a few slots sampled at random
//! in a few shards, as Redis does; never the session just written, so a
//! fresh login is always admitted. Expired sessions are never served; their
//! slots are freed when met (read, write or sampled) and by a sweep that
//! checks a few slots on every write.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hashbrown::HashTable;

use super::{CasResult, IndexRefs};
use crate::session::id::StoreKey;

/// Shards: enough that the serving threads rarely meet on one lock.
const SHARDS: usize = 16;
/// Slots looked at per shard to choose one to evict.
const SAMPLES: usize = 5;
/// Shards looked at to choose one to evict.
const SHARD_SAMPLES: usize = 3;
/// Up to this many slots, eviction looks at every slot (exact LRU).
const EXACT_BELOW: usize = 4096;
/// How many hashes the slots under one `sid` or `sub` id are spread over
/// (see [`id_hash`]).
const SPREAD: usize = 16;
/// Slots checked for expiry on every write.
const SWEEP_STEP: usize = 8;
/// Bytes the bound counts per session besides its sealed record: the slot,
/// its hash-table entries and the allocator's rounding of the record,
/// rounded up (measured by `bench/memory.sh`).
pub(super) const ENTRY_OVERHEAD: u64 = 160;

/// What a hash-table entry files a slot under (the entry's top two bits).
const BY_KEY: u32 = 0;
const BY_SID: u32 = 1;
const BY_SUB: u32 = 2;
/// Slot numbers use the other 30 bits.
const SLOT_BITS: u32 = 30;
const MAX_SLOTS: usize = 1 << SLOT_BITS;

fn entry(kind: u32, slot: usize) -> u32 {
    (kind << SLOT_BITS) | (slot as u32 & (MAX_SLOTS as u32 - 1))
}

fn kind_of(e: u32) -> u32 {
    e >> SLOT_BITS
}

fn slot_of(e: u32) -> usize {
    (e & (MAX_SLOTS as u32 - 1)) as usize
}

/// An index hash as the table keeps it: 16 bytes. The store's index hashes
/// are keyed HMAC-SHA256 outputs in base64url, so their first 16 bytes are
/// as good as the whole for telling sessions apart and cannot be chosen by
/// anyone without the secret; any other string (tests) is hashed first.
type IndexId = [u8; 16];

fn index_id(hash: &str) -> IndexId {
    let mut id = [0u8; 16];
    let mut buf = [0u8; 33];
    match URL_SAFE_NO_PAD.decode_slice(hash, &mut buf) {
        Ok(32) if hash.len() == 43 => id.copy_from_slice(&buf[..16]),
        _ => {
            use sha2::Digest as _;
            id.copy_from_slice(&sha2::Sha256::digest(hash.as_bytes())[..16]);
        }
    }
    id
}

/// Folds bytes into a hash (multiply-rotate; see [`hash`] for why this is
/// enough).
fn fold(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed;
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    h ^ (h >> 29)
}

/// The hash of a store key. A store key is SHA-256 of a session id, and
/// only ids the gateway generated are ever stored, so the stored keys are
/// uniform and a cheap mix of its characters is enough: a client's made-up
/// cookie can only make its own lookup probe a little longer. The index
/// hashes are keyed HMACs, uniform as well.
fn hash(k: &StoreKey) -> u64 {
    fold(k.as_str().as_bytes(), 0)
}

/// The hash a slot is filed under for its `sid` or `sub` id. The slot
/// number's low bits are mixed in: one user with thousands of sessions (a
/// shared or service account) would otherwise put thousands of equal hashes
/// in each shard, and every write to one of them, and every probe that
/// crosses them, would walk the lot. A lookup by id probes all [`SPREAD`]
/// hashes.
fn id_hash(kind: u32, id: &IndexId, slot: usize) -> u64 {
    fold(id, u64::from(kind) << 8 | (slot % SPREAD) as u64)
}

/// Bits 32–35 pick the shard: hashbrown uses the low bits for the bucket
/// and the top seven for its tags, which must stay spread within a shard.
fn shard_of(h: u64) -> usize {
    usize::try_from((h >> 32) & (SHARDS as u64 - 1)).unwrap_or(0)
}

/// What the byte bound counts for a record of `len` bytes.
pub(super) fn weight(len: usize) -> u64 {
    u64::try_from(len)
        .unwrap_or(u64::MAX)
        .saturating_add(ENTRY_OVERHEAD)
}

struct Slot {
    key: StoreKey,
    /// `None`: the slot is empty (free, or being rewritten).
    blob: Option<Arc<[u8]>>,
    sid: Option<IndexId>,
    sub: IndexId,
    created_ms: u64,
    /// Milliseconds after the table's start at which the session expires.
    deadline: u64,
    /// Last read or write, in milliseconds after the start, wrapping: only
    /// ages are compared, and one beyond 24 days looks young (as does one
    /// stamped by another thread after the evicting thread read the clock).
    used: u32,
}

impl Slot {
    fn live(&self, now: u64) -> bool {
        self.blob.is_some() && self.deadline > now
    }

    /// Holds a session whose time is up (to be freed).
    fn expired(&self, now: u64) -> bool {
        self.blob.is_some() && self.deadline <= now
    }
}

/// The hash an entry is filed under, from the slot it names.
fn entry_hash(slots: &[Slot], e: u32) -> u64 {
    let Some(slot) = slots.get(slot_of(e)) else {
        return 0;
    };
    match kind_of(e) {
        BY_KEY => hash(&slot.key),
        BY_SID => slot.sid.map_or(0, |id| id_hash(BY_SID, &id, slot_of(e))),
        _ => id_hash(BY_SUB, &slot.sub, slot_of(e)),
    }
}

#[derive(Default)]
struct Shard {
    slots: Vec<Slot>,
    free: Vec<u32>,
    table: HashTable<u32>,
    /// Where the expiry sweep goes on.
    sweep: usize,
    /// State of the sampling generator (xorshift).
    rng: u64,
}

impl Shard {
    fn find(&self, h: u64, key: &StoreKey) -> Option<usize> {
        let slots = &self.slots;
        self.table
            .find(h, |&e| {
                kind_of(e) == BY_KEY && slots.get(slot_of(e)).is_some_and(|s| s.key == *key)
            })
            .map(|&e| slot_of(e))
    }

    fn file(&mut self, h: u64, e: u32) {
        let Shard { slots, table, .. } = self;
        table.insert_unique(h, e, |&x| entry_hash(slots, x));
    }

    fn unfile(&mut self, h: u64, e: u32) {
        if let Ok(found) = self.table.find_entry(h, |&x| x == e) {
            found.remove();
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// The sessions of one memory store.
pub(super) struct Table {
    shards: Box<[Mutex<Shard>]>,
    /// What the bound counts of every live slot, in bytes.
    weight: AtomicU64,
    /// Slots in all shards, free or not.
    slots: AtomicUsize,
    /// The eviction's shard sampling state.
    rng: AtomicU64,
    capacity: u64,
    start: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update here is completed before anything can panic, so a
    // poisoned lock holds consistent data: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Table {
    /// An empty table bounded to `capacity` bytes (see [`weight`]).
    pub(super) fn new(capacity: u64) -> Self {
        let shards = (0..SHARDS)
            .map(|i| {
                Mutex::new(Shard {
                    rng: 0x2545_F491_4F6C_DD1D ^ (i as u64).wrapping_mul(0x9E37_79B9),
                    ..Shard::default()
                })
            })
            .collect();
        Table {
            shards,
            weight: AtomicU64::new(0),
            slots: AtomicUsize::new(0),
            rng: AtomicU64::new(0),
            capacity,
            start: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A live slot for a session written at `now`.
    fn slot(
        &self,
        key: &StoreKey,
        blob: Arc<[u8]>,
        idx: &IndexRefs,
        created_ms: u64,
        now: u64,
        ttl: Duration,
    ) -> Slot {
        Slot {
            key: key.clone(),
            blob: Some(blob),
            sid: idx.sid.as_deref().map(index_id),
            sub: index_id(&idx.sub),
            created_ms,
            deadline: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            used: now as u32,
        }
    }

    /// Stores a new session (or overwrites one under the same key).
    pub(super) fn insert(&self, key: &StoreKey, blob: Arc<[u8]>, idx: &IndexRefs, ttl: Duration) {
        let (h, now) = (hash(key), self.now());
        let s = shard_of(h);
        let slot = self.slot(key, blob, idx, idx.created_at_ms, now, ttl);
        let mut shard = lock(&self.shards[s]);
        if let Some(i) = shard.find(h, key) {
            self.empty(&mut shard, i);
            return self.settle(shard, s, i, slot, now);
        }
        if shard.free.is_empty() && shard.slots.len() >= MAX_SLOTS {
            // A billion sessions in one shard: make room in it.
            if let Some((i, _)) = Self::oldest(&mut shard, s, (s, usize::MAX), now, false) {
                self.remove(&mut shard, i);
            }
        }
        let i = match shard.free.pop() {
            Some(i) => i as usize,
            None if shard.slots.len() < MAX_SLOTS => {
                shard.slots.push(Slot {
                    key: key.clone(),
                    blob: None,
                    sid: None,
                    sub: [0; 16],
                    created_ms: 0,
                    deadline: 0,
                    used: 0,
                });
                self.slots.fetch_add(1, Ordering::Relaxed);
                shard.slots.len() - 1
            }
            None => return,
        };
        if let Some(free) = shard.slots.get_mut(i) {
            free.key = key.clone();
        }
        shard.file(h, entry(BY_KEY, i));
        self.settle(shard, s, i, slot, now);
    }

    /// Puts `slot` into the empty slot `i` of a locked shard (filed under
    /// its key already), sweeps a few slots, then (the shard unlocked)
    /// evicts down to the bound.
    fn settle(&self, mut shard: MutexGuard<'_, Shard>, s: usize, i: usize, slot: Slot, now: u64) {
        self.fill(&mut shard, i, slot);
        self.sweep_step(&mut shard, now);
        drop(shard);
        self.evict((s, i));
    }

    /// The sealed record of a live session.
    pub(super) fn get(&self, key: &StoreKey) -> Option<Arc<[u8]>> {
        let (h, now) = (hash(key), self.now());
        let mut shard = lock(&self.shards[shard_of(h)]);
        let i = shard.find(h, key)?;
        let slot = shard.slots.get_mut(i)?;
        if slot.live(now) {
            slot.used = now as u32;
            return slot.blob.clone();
        }
        self.remove(&mut shard, i);
        None
    }

    /// Replaces the record of a live session when its current record is
    /// `expected` (always when `None`); it is filed under the hashes `idx`
    /// names (they change when a record is re-sealed under a rotated
    /// secret).
    pub(super) fn replace(
        &self,
        key: &StoreKey,
        expected: Option<&[u8]>,
        blob: Arc<[u8]>,
        ttl: Duration,
        idx: &IndexRefs,
    ) -> CasResult {
        let (h, now) = (hash(key), self.now());
        let s = shard_of(h);
        let mut shard = lock(&self.shards[s]);
        let Some(i) = shard.find(h, key) else {
            return CasResult::Gone;
        };
        let Some(slot) = shard.slots.get(i) else {
            return CasResult::Gone;
        };
        if !slot.live(now) {
            self.remove(&mut shard, i);
            return CasResult::Gone;
        }
        if let (Some(x), Some(cur)) = (expected, &slot.blob)
            && **cur != *x
        {
            return CasResult::Changed;
        }
        let slot = self.slot(key, blob, idx, slot.created_ms, now, ttl);
        self.empty(&mut shard, i);
        self.settle(shard, s, i, slot, now);
        CasResult::Replaced
    }

    /// Removes a live session; `false` when there was none.
    pub(super) fn delete(&self, key: &StoreKey) -> bool {
        let (h, now) = (hash(key), self.now());
        let mut shard = lock(&self.shards[shard_of(h)]);
        let Some(i) = shard.find(h, key) else {
            return false;
        };
        let live = shard.slots.get(i).is_some_and(|slot| slot.live(now));
        self.remove(&mut shard, i);
        live
    }

    /// The live sessions filed under a `sid` hash.
    pub(super) fn by_sid(&self, sid: &str) -> Vec<StoreKey> {
        let id = index_id(sid);
        self.lookup(BY_SID, &id, |slot| slot.sid == Some(id))
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The live sessions filed under a `sub` hash, with their creation
    /// times.
    pub(super) fn by_sub(&self, sub: &str) -> Vec<(StoreKey, u64)> {
        let id = index_id(sub);
        self.lookup(BY_SUB, &id, |slot| slot.sub == id)
    }

    /// The live slots of every shard filed as `kind` under `id` that
    /// `matches` accepts (two ids may share a hash).
    fn lookup(
        &self,
        kind: u32,
        id: &IndexId,
        matches: impl Fn(&Slot) -> bool,
    ) -> Vec<(StoreKey, u64)> {
        let now = self.now();
        let hashes: Vec<u64> = (0..SPREAD)
            .map(|spread| id_hash(kind, id, spread))
            .collect();
        let mut out = Vec::new();
        for shard in &*self.shards {
            let shard = lock(shard);
            for &h in &hashes {
                // `iter_hash` yields every entry whose short tag matches, so
                // an entry filed under another of the hashes could come up
                // twice: keep those filed under exactly this one.
                for &e in shard.table.iter_hash(h) {
                    if kind_of(e) == kind
                        && entry_hash(&shard.slots, e) == h
                        && let Some(slot) = shard.slots.get(slot_of(e))
                        && slot.live(now)
                        && matches(slot)
                    {
                        out.push((slot.key.clone(), slot.created_ms));
                    }
                }
            }
        }
        out
    }

    /// Frees every expired slot now (the sweep otherwise goes a few slots
    /// per write); for tests that check bounds.
    pub(super) fn sweep(&self) {
        let now = self.now();
        for shard in &*self.shards {
            let mut shard = lock(shard);
            for i in 0..shard.slots.len() {
                if shard.slots[i].expired(now) {
                    self.remove(&mut shard, i);
                }
            }
        }
    }

    /// Puts `slot` into the empty slot `i`: counts its weight and files it
    /// under its `sid` and `sub` hashes.
    fn fill(&self, shard: &mut Shard, i: usize, slot: Slot) {
        let (sid, sub) = (slot.sid, slot.sub);
        let w = slot.blob.as_ref().map_or(0, |b| weight(b.len()));
        match shard.slots.get_mut(i) {
            Some(place) => *place = slot,
            None => return,
        }
        self.weight.fetch_add(w, Ordering::Relaxed);
        // Filed after the slot holds the ids: a resize rehashes every entry
        // from its slot.
        if let Some(sid) = sid {
            shard.file(id_hash(BY_SID, &sid, i), entry(BY_SID, i));
        }
        shard.file(id_hash(BY_SUB, &sub, i), entry(BY_SUB, i));
    }

    /// Empties slot `i` (it stays filed under its key): uncounts its weight
    /// and takes its `sid` and `sub` entries out.
    fn empty(&self, shard: &mut Shard, i: usize) {
        let Some(slot) = shard.slots.get_mut(i) else {
            return;
        };
        let Some(blob) = slot.blob.take() else {
            return;
        };
        self.weight.fetch_sub(weight(blob.len()), Ordering::Relaxed);
        let (sid, sub) = (slot.sid.take(), slot.sub);
        if let Some(sid) = sid {
            shard.unfile(id_hash(BY_SID, &sid, i), entry(BY_SID, i));
        }
        shard.unfile(id_hash(BY_SUB, &sub, i), entry(BY_SUB, i));
    }

    /// Empties slot `i` and frees it.
    fn remove(&self, shard: &mut Shard, i: usize) {
        self.empty(shard, i);
        let Some(h) = shard.slots.get(i).map(|slot| hash(&slot.key)) else {
            return;
        };
        if let Ok(found) = shard.table.find_entry(h, |&e| e == entry(BY_KEY, i)) {
            found.remove();
            shard.free.push(i as u32);
        }
    }

    /// Frees the expired slots among the next few of the shard.
    fn sweep_step(&self, shard: &mut Shard, now: u64) {
        for _ in 0..SWEEP_STEP.min(shard.slots.len()) {
            let i = shard.sweep % shard.slots.len();
            shard.sweep = i + 1;
            if shard.slots[i].expired(now) {
                self.remove(shard, i);
            }
        }
    }

    /// Evicts sessions until the table is within its bound; never slot
    /// `keep` (shard, slot: the one just written). The victim is the least
    /// recently used of every slot while the table is small (tests, tiny
    /// bounds), else of [`SAMPLES`] slots in each of [`SHARD_SAMPLES`]
    /// shards taken at random.
    fn evict(&self, keep: (usize, usize)) {
        let mut rounds = 0;
        while self.weight.load(Ordering::Relaxed) > self.capacity && rounds < 64 {
            rounds += 1;
            // Read each round: other threads stamp their slots meanwhile.
            let now = self.now();
            let small = self.slots.load(Ordering::Relaxed) <= EXACT_BELOW;
            let mut best: Option<(usize, usize, StoreKey, u32, u32)> = None;
            for n in 0..if small { SHARDS } else { SHARD_SAMPLES } {
                let s = if small { n } else { self.random_shard() };
                let mut shard = lock(&self.shards[s]);
                if let Some((i, age)) = Self::oldest(&mut shard, s, keep, now, small)
                    && best.as_ref().is_none_or(|b| age > b.4)
                {
                    best = Some((s, i, shard.slots[i].key.clone(), shard.slots[i].used, age));
                }
            }
            let Some((s, i, key, used, _)) = best else {
                // Nothing but `keep` in the shards looked at.
                if small {
                    return;
                }
                continue;
            };
            let mut shard = lock(&self.shards[s]);
            // Still the same session, not used since (it may have gone,
            // or been read or rewritten meanwhile: then look again).
            if shard
                .slots
                .get(i)
                .is_some_and(|x| x.blob.is_some() && x.key == key && x.used == used)
            {
                self.remove(&mut shard, i);
            }
        }
    }

    fn random_shard(&self) -> usize {
        // A Weyl sequence, mixed: concurrent callers just get other shards.
        let x = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        usize::try_from((x >> 59) & (SHARDS as u64 - 1)).unwrap_or(0)
    }

    /// The least recently used slot of a shard and its age (an expired one
    /// counts as the oldest), among all its slots when `all`, else among
    /// [`SAMPLES`] taken at random; never `keep`.
    fn oldest(
        shard: &mut Shard,
        s: usize,
        keep: (usize, usize),
        now: u64,
        all: bool,
    ) -> Option<(usize, u32)> {
        let len = shard.slots.len();
        let now32 = now as u32;
        let age = |shard: &Shard, i: usize| {
            let slot = &shard.slots[i];
            if slot.blob.is_none() || (s, i) == keep {
                None
            } else if !slot.live(now) {
                Some(u32::MAX)
            } else {
                // Stamped after this `now` by another thread: the youngest.
                let age = now32.wrapping_sub(slot.used);
                Some(if age > u32::MAX / 2 { 0 } else { age })
            }
        };
        let mut best: Option<(usize, u32)> = None;
        let mut consider = |i: usize, a: u32| {
            if best.is_none_or(|(_, b)| a > b) {
                best = Some((i, a));
            }
        };
        if all || len <= SAMPLES {
            for i in 0..len {
                if let Some(a) = age(shard, i) {
                    consider(i, a);
                }
            }
            return best;
        }
        let mut seen = 0;
        for _ in 0..SAMPLES * 4 {
            let i = usize::try_from(shard.next_random() % len as u64).unwrap_or(0);
            if let Some(a) = age(shard, i) {
                consider(i, a);
                seen += 1;
                if seen == SAMPLES {
                    return best;
                }
            }
        }
        if best.is_none() {
            // Mostly free slots: any occupied one will do.
            for i in 0..len {
                if let Some(a) = age(shard, i) {
                    return Some((i, a));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests;
