//! The session table's own tests; `tests/session_store/` runs the
//! memory store as a whole, beside Redis.

use super::*;

fn key(n: u64) -> StoreKey {
    StoreKey::from_stored(&format!("{n:0>43}")).unwrap()
}

fn refs(sid: Option<&str>, sub: &str) -> IndexRefs {
    IndexRefs {
        sid: sid.map(str::to_owned),
        sub: sub.to_owned(),
        created_at_ms: 7,
    }
}

const LONG: Duration = Duration::from_secs(3600);

/// The memory figure in the README rests on this.
#[test]
fn a_slot_is_112_bytes() {
    assert!(
        std::mem::size_of::<Slot>() <= 112,
        "{}",
        std::mem::size_of::<Slot>()
    );
}

#[test]
fn expired_sessions_are_never_served_and_are_freed() {
    let t = Table::new(1 << 20);
    t.insert(
        &key(1),
        Arc::from(&b"one"[..]),
        &refs(Some("s"), "u"),
        Duration::from_millis(1),
    );
    t.insert(&key(2), Arc::from(&b"two"[..]), &refs(Some("s"), "u"), LONG);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(t.get(&key(1)), None);
    assert_eq!(t.by_sid("s"), vec![key(2)]);
    let e = refs(None, "u");
    assert_eq!(
        t.replace(&key(1), None, Arc::from(&b"x"[..]), LONG, &e),
        CasResult::Gone
    );
    assert!(!t.delete(&key(1)));
    t.sweep();
    assert_eq!(t.weight.load(Ordering::Relaxed), weight(3));
}

#[test]
fn lookups_by_sid_and_sub_find_only_their_own_live_sessions() {
    let t = Table::new(1 << 20);
    // Two base64url hashes that share their first 15 bytes.
    let (a, b) = (
        format!("{}A", "Q".repeat(42)),
        format!("{}B{}", "Q".repeat(20), "Q".repeat(22)),
    );
    assert_ne!(index_id(&a), index_id(&b));
    t.insert(&key(1), Arc::from(&b"1"[..]), &refs(Some(&a), &a), LONG);
    t.insert(&key(2), Arc::from(&b"2"[..]), &refs(Some(&b), &b), LONG);
    t.insert(&key(4), Arc::from(&b"4"[..]), &refs(None, &b), LONG);
    assert_eq!(t.by_sid(&a), vec![key(1)]);
    let mut subs = t.by_sub(&b);
    subs.sort();
    assert_eq!(subs, vec![(key(2), 7), (key(4), 7)]);
    // A freed slot reused by another session is not found under the
    // old one's hashes.
    assert!(t.delete(&key(1)));
    t.insert(
        &key(3),
        Arc::from(&b"3"[..]),
        &refs(Some("other"), "other"),
        LONG,
    );
    assert!(t.by_sid(&a).is_empty() && t.by_sub(&a).is_empty());
    assert_eq!(t.by_sid("other"), vec![key(3)]);
}

/// Many sessions under one `sub` spread over every shard, some with
/// and some without a `sid`: the hash tables' resizes keep every entry.
#[test]
fn lookups_survive_the_tables_growing() {
    let t = Table::new(u64::MAX);
    for n in 0..20_000u64 {
        let sid = (n % 3 != 0).then(|| format!("sid-{n}"));
        t.insert(
            &key(n),
            Arc::from(&b"x"[..]),
            &refs(sid.as_deref(), &format!("u{}", n % 7)),
            LONG,
        );
    }
    assert_eq!(
        t.by_sub("u3").len(),
        (0..20_000).filter(|n| n % 7 == 3).count()
    );
    assert_eq!(t.by_sid("sid-19999"), vec![key(19_999)]);
    assert!(t.by_sid("sid-19998").is_empty() || 19_998 % 3 != 0);
    for n in (0..20_000u64).step_by(2) {
        assert!(t.delete(&key(n)));
    }
    assert_eq!(
        t.by_sub("u3").len(),
        (0..20_000).filter(|n| n % 7 == 3 && n % 2 == 1).count()
    );
    assert_eq!(t.by_sid("sid-19999"), vec![key(19_999)]);
}

#[test]
fn a_rewrite_moves_its_index_entries_and_honours_the_expected_record() {
    let t = Table::new(1 << 20);
    t.insert(
        &key(1),
        Arc::from(&b"v1"[..]),
        &refs(Some("old"), "old"),
        LONG,
    );
    let moved = refs(Some("new"), "new");
    assert_eq!(
        t.replace(&key(1), Some(b"v0"), Arc::from(&b"v2"[..]), LONG, &moved),
        CasResult::Changed
    );
    assert_eq!(
        t.replace(&key(1), Some(b"v1"), Arc::from(&b"v2"[..]), LONG, &moved),
        CasResult::Replaced
    );
    assert_eq!(t.get(&key(1)).as_deref(), Some(&b"v2"[..]));
    assert!(t.by_sid("old").is_empty());
    assert_eq!(t.by_sub("new"), vec![(key(1), 7)]);
}

/// A slot another thread stamped after the evicting thread read the
/// clock is the youngest, not (by a wrapped age) the oldest.
#[test]
fn a_slot_used_after_the_evictors_clock_is_not_the_victim() {
    let t = Table::new(u64::MAX);
    t.insert(&key(1), Arc::from(&b"1"[..]), &refs(None, "u"), LONG);
    t.insert(&key(2), Arc::from(&b"2"[..]), &refs(None, "u"), LONG);
    let now = 1_000_000u64;
    for shard in &*t.shards {
        let mut shard = lock(shard);
        for slot in shard.slots.iter_mut().filter(|s| s.blob.is_some()) {
            // Key 1 stamped 5 ms after `now`, key 2 used 50 ms before.
            slot.used = if slot.key == key(1) {
                now as u32 + 5
            } else {
                now as u32 - 50
            };
        }
    }
    let mut victims = Vec::new();
    for (s, shard) in t.shards.iter().enumerate() {
        let mut shard = lock(shard);
        if let Some((i, age)) = Table::oldest(&mut shard, s, (usize::MAX, 0), now, true) {
            victims.push((shard.slots[i].key.clone(), age));
        }
    }
    victims.sort_by_key(|(_, age)| std::cmp::Reverse(*age));
    assert_eq!(
        victims.first().map(|v| v.0.clone()),
        Some(key(2)),
        "{victims:?}"
    );
}

/// One user with thousands of sessions must not pile thousands of equal
/// hashes into a shard's table (every write near them would walk them).
#[test]
fn one_users_many_sessions_are_spread_over_hashes() {
    let t = Table::new(u64::MAX);
    for n in 0..4096u64 {
        t.insert(
            &key(n),
            Arc::from(&b"x"[..]),
            &refs(None, "service-account"),
            LONG,
        );
    }
    assert_eq!(t.by_sub("service-account").len(), 4096);
    let mut most = 0;
    for shard in &*t.shards {
        let shard = lock(shard);
        let mut counts = std::collections::HashMap::new();
        for &e in shard.table.iter() {
            if kind_of(e) == BY_SUB {
                *counts.entry(entry_hash(&shard.slots, e)).or_insert(0) += 1;
            }
        }
        most = most.max(counts.values().copied().max().unwrap_or(0));
    }
    // 4,096 over 16 shards and 16 hashes: 16 each on average.
    assert!(most <= 48, "{most} equal hashes in one shard");
}

/// Sampled eviction (a table beyond the exact size): the bound holds,
/// and the session just written is always there.
#[test]
fn a_large_table_stays_within_its_bound() {
    let blob: Arc<[u8]> = Arc::from(vec![0u8; 64]);
    let t = Table::new(weight(64) * 1000);
    for n in 0..(EXACT_BELOW as u64 * 3) {
        t.insert(
            &key(n),
            blob.clone(),
            &refs(None, &format!("u{}", n % 50)),
            LONG,
        );
        assert!(t.get(&key(n)).is_some(), "session {n} not admitted");
        assert!(t.weight.load(Ordering::Relaxed) <= weight(64) * 1000);
    }
    let alive = (0..EXACT_BELOW as u64 * 3)
        .filter(|n| t.get(&key(*n)).is_some())
        .count();
    assert_eq!(alive, 1000);
}
