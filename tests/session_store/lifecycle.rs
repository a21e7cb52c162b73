//! Create, load and delete; a full memory store still admits logins; idle and absolute expiry.

use std::time::Instant;

use portcullis::session::StoreKey;
use portcullis::session::store::{MemoryStore, Store};
use tokio::sync::broadcast;

use super::*;

pub(super) async fn create_load_delete(s: Sessions) {
    let (id, created) = s.create(login("alice", Some("sid-1"))).await.unwrap();
    let cookie = id.to_cookie_value();
    let loaded = s.load(&cookie).await.unwrap().expect("session loads");
    assert_eq!(loaded.record.claims.sub, "alice");
    assert_eq!(loaded.record.claims.sid.as_deref(), Some("sid-1"));
    assert_eq!(loaded.record.id_token.expose(), "id-token-of-alice");
    assert_eq!(loaded.key(), created.key());
    assert_eq!(
        loaded
            .expires_at()
            .duration_since(loaded.created_at())
            .unwrap(),
        LONG
    );
    // The logout CSRF token belongs to this session only.
    let csrf = s.csrf_token(&loaded);
    assert!(s.verify_csrf(&loaded, &csrf));
    assert!(!s.verify_csrf(&loaded, ""));
    assert!(!s.verify_csrf(&loaded, &csrf[..csrf.len() - 1]));
    assert!(!s.verify_csrf(&loaded, "not base64 !"));
    // A second login is a new session with a new id.
    let (id2, _) = s.create(login("alice", Some("sid-1"))).await.unwrap();
    assert_ne!(id2.to_cookie_value(), cookie);
    let second = s.load(&id2.to_cookie_value()).await.unwrap().unwrap();
    assert!(!s.verify_csrf(&second, &csrf), "another session's token");

    // Garbage and unknown ids are "no session", not errors.
    for bad in [
        "",
        "x",
        "not a cookie at all",
        &"A".repeat(43),
        &"€".repeat(20),
    ] {
        assert!(s.load(bad).await.unwrap().is_none(), "{bad:?}");
    }

    let mut rx = s.revocations();
    assert!(s.delete(&loaded).await.unwrap());
    assert!(s.load(&cookie).await.unwrap().is_none());
    assert!(
        !s.delete(&loaded).await.unwrap(),
        "second delete finds nothing"
    );
    let revoked = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("revocation announced")
        .unwrap();
    assert_eq!(&revoked, loaded.key());
    assert!(s.load(&id2.to_cookie_value()).await.unwrap().is_some());
}
both_stores!(
    memory_create_load_delete,
    redis_create_load_delete,
    create_load_delete,
    LONG,
    LONG
);

async fn idle_expiry(s: Sessions) {
    // idle 1.5 s: kept alive by activity, gone after a quiet spell.
    let (id, _) = s.create(login("bob", None)).await.unwrap();
    let c = id.to_cookie_value();
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(s.load(&c).await.unwrap().is_some(), "activity keeps it");
    }
    // 2.1 s after creation, past one idle period: it slid. Now stay quiet.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(s.load(&c).await.unwrap().is_none(), "idle timeout ends it");
    assert!(s.list_by_sub(ISS, "bob").await.unwrap().is_empty());
}
both_stores!(
    memory_idle_expiry,
    redis_idle_expiry,
    idle_expiry,
    Duration::from_millis(1500),
    LONG
);

async fn absolute_expiry(s: Sessions) {
    // max 2 s, idle long: activity does not extend the absolute lifetime.
    let (id, _) = s.create(login("carol", None)).await.unwrap();
    let c = id.to_cookie_value();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1300) {
        assert!(s.load(&c).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(s.load(&c).await.unwrap().is_none(), "max_lifetime ends it");
}
both_stores!(
    memory_absolute_expiry,
    redis_absolute_expiry,
    absolute_expiry,
    LONG,
    Duration::from_millis(2000)
);

async fn sliding_is_throttled(s: Sessions) {
    // idle 20 s → written at most every 2 s.
    assert_eq!(s.slide_interval(), Duration::from_secs(2));
    let (id, created) = s.create(login("dave", None)).await.unwrap();
    let c = id.to_cookie_value();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let a = s.load(&c).await.unwrap().unwrap();
    assert_eq!(a.last_seen(), created.last_seen(), "no write within 2 s");
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let peek = s.load_without_slide(&c).await.unwrap().unwrap();
    assert_eq!(peek.last_seen(), created.last_seen(), "peek never slides");
    let b = s.load(&c).await.unwrap().unwrap();
    assert!(b.last_seen() > created.last_seen(), "slid after 2 s");
    let stored = s.load_without_slide(&c).await.unwrap().unwrap();
    assert_eq!(stored.last_seen(), b.last_seen(), "slide reached the store");
    assert!(stored.idle_expires_at() > created.idle_expires_at());
    assert_eq!(
        stored.expires_at(),
        created.expires_at(),
        "absolute never slides"
    );
}
both_stores!(
    memory_sliding_is_throttled,
    redis_sliding_is_throttled,
    sliding_is_throttled,
    Duration::from_secs(20),
    LONG
);

/// moka's default admission (TinyLFU) can refuse a new key when the cache is
/// full of popular ones; the memory store uses LRU so a login never vanishes.
#[tokio::test]
async fn memory_store_always_admits_new_sessions() {
    let (tx, _) = broadcast::channel(16);
    // Weighs 1 KiB with the table's bookkeeping.
    let blob = vec![7u8; 1024 - portcullis::session::store::SESSION_ENTRY_OVERHEAD_BYTES as usize];
    let m = MemoryStore::new(64 * 1024, 1000, tx.clone());
    let store = Store::Memory(m.clone());
    let idx = |i: u64| portcullis::session::store::IndexRefs {
        sid: None,
        sub: format!("user-{i}"),
        created_at_ms: i,
    };
    let keys: Vec<StoreKey> = (0..64)
        .map(|i| StoreKey::from_stored(&format!("{:0>43}", i)).unwrap())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        store
            .insert(k, blob.clone(), &idx(i as u64), LONG)
            .await
            .unwrap();
    }
    // Make the old entries popular.
    for _ in 0..20 {
        for k in &keys {
            let _ = store.get(k, false).await.unwrap();
        }
    }
    m.run_pending_tasks().await;
    // Recency is kept to the millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    for n in 0..20u64 {
        let fresh = StoreKey::from_stored(&format!("{:z>42}{}", "", n % 10)).unwrap();
        let fresh = if n < 10 {
            fresh
        } else {
            StoreKey::from_stored(&format!("{:y>42}{}", "", n % 10)).unwrap()
        };
        store
            .insert(&fresh, blob.clone(), &idx(1000 + n), LONG)
            .await
            .unwrap();
        m.run_pending_tasks().await;
        assert!(
            store.get(&fresh, false).await.unwrap().is_some(),
            "new session {n} was refused"
        );
    }
    // Still bounded: the least recently used went.
    let mut alive = 0;
    for k in &keys {
        alive += usize::from(store.get(k, false).await.unwrap().is_some());
    }
    assert!(alive <= 64 - 20, "{alive} old entries alive");
}

#[tokio::test]
async fn redis_record_ttl_follows_the_idle_timer() {
    // The store itself forgets an idle session: its PTTL is the idle
    // window, refreshed only when a slide is written (every 2 s here).
    let r = Redis::start();
    let cfg = config(
        redis_store(&r, Duration::from_secs(5)),
        Duration::from_secs(20),
        LONG,
    );
    let s = Sessions::new(&cfg).await.unwrap();
    let (id, created) = s.create(login("olga", None)).await.unwrap();
    let c = id.to_cookie_value();
    let raw = raw(&r).await;
    let rk = format!("portcullis:s:{}", created.key());
    let pttl = |mut raw: redis::aio::MultiplexedConnection, rk: String| async move {
        redis::cmd("PTTL")
            .arg(rk)
            .query_async::<i64>(&mut raw)
            .await
            .unwrap()
    };
    let t0 = pttl(raw.clone(), rk.clone()).await;
    assert!((19_000..=20_000).contains(&t0), "{t0}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for _ in 0..10 {
        s.load(&c).await.unwrap().unwrap();
    }
    let t1 = pttl(raw.clone(), rk.clone()).await;
    assert!(t1 <= 19_100, "loads within 2 s wrote nothing: {t1}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.load_without_slide(&c).await.unwrap().unwrap();
    let t2 = pttl(raw.clone(), rk.clone()).await;
    assert!(t2 <= 18_000, "a peek wrote nothing: {t2}");
    s.load(&c).await.unwrap().unwrap();
    let t3 = pttl(raw.clone(), rk.clone()).await;
    assert!(t3 >= 19_500, "the slide reset the idle window: {t3}");
}

on_cluster!(cluster_create_load_delete, create_load_delete, LONG, LONG);
on_cluster!(
    cluster_idle_expiry,
    idle_expiry,
    Duration::from_millis(1500),
    LONG
);
