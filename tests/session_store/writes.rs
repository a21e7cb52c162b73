//! Concurrent writers: compare-and-set, slides racing a refresh, deletes racing replaces and reads.

use portcullis::session::StoreKey;
use portcullis::session::store::{MemoryStore, Store};
use tokio::sync::broadcast;

use super::*;

/// A conditional replacement writes only over the very blob it was based
/// on: never over a newer one, never a deleted session back.
async fn replace_if_is_compare_and_set(s: Sessions) {
    use portcullis::session::CasResult;
    let store = s.store();
    let key = StoreKey::from_stored(&format!("{:c>43}", "")).unwrap();
    let idx = portcullis::session::store::IndexRefs {
        sid: None,
        sub: "cas".into(),
        created_at_ms: 1,
    };
    store
        .insert(&key, b"v1".to_vec(), &idx, LONG)
        .await
        .unwrap();
    let key = &key;
    let stored = |fresh| async move { store.get(key, fresh).await.unwrap().map(|b| b.to_vec()) };
    assert_eq!(
        store
            .replace_if(key, b"v0", b"x".to_vec(), LONG, &idx)
            .await
            .unwrap(),
        CasResult::Changed
    );
    assert_eq!(stored(true).await.as_deref(), Some(&b"v1"[..]));
    assert_eq!(
        store
            .replace_if(key, b"v1", b"v2".to_vec(), LONG, &idx)
            .await
            .unwrap(),
        CasResult::Replaced
    );
    assert_eq!(stored(true).await.as_deref(), Some(&b"v2"[..]));
    assert_eq!(stored(false).await.as_deref(), Some(&b"v2"[..]));
    // Based on the old read: refused, the newer record stays.
    assert_eq!(
        store
            .replace_if(key, b"v1", b"v3".to_vec(), LONG, &idx)
            .await
            .unwrap(),
        CasResult::Changed
    );
    assert_eq!(stored(false).await.as_deref(), Some(&b"v2"[..]));
    assert!(store.delete(key).await.unwrap());
    assert_eq!(
        store
            .replace_if(key, b"v2", b"v4".to_vec(), LONG, &idx)
            .await
            .unwrap(),
        CasResult::Gone
    );
    assert_eq!(stored(true).await, None);
}
both_stores!(
    memory_replace_if_is_compare_and_set,
    redis_replace_if_is_compare_and_set,
    replace_if_is_compare_and_set,
    LONG,
    LONG
);

/// The idle-timer slide and a token refresh both write the record. A slide
/// that read the record before a refresh wrote it must not write the old
/// tokens back after: the IdP may have rotated the refresh token, and the
/// next refresh with the old one would end the session.
async fn slides_never_undo_a_refresh(s: Sessions) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // idle 400 ms → a slide every 40 ms, about one per round.
    assert_eq!(s.slide_interval(), Duration::from_millis(40));
    let (id, _) = s.create(login("lou", None)).await.unwrap();
    let cookie = id.to_cookie_value();
    let mut slid = 0usize;
    for round in 0..80 {
        let stop = Arc::new(AtomicBool::new(false));
        let sliders: Vec<_> = (0..3)
            .map(|_| {
                let (s, cookie, stop) = (s.clone(), cookie.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut last = std::time::UNIX_EPOCH;
                    while !stop.load(Ordering::Relaxed) {
                        let got = s.load(&cookie).await.unwrap().expect("session alive");
                        last = last.max(got.last_seen());
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    last
                })
            })
            .collect();
        // A refresh: read fresh, ask the IdP (time passes), write.
        let mut session = s.load_fresh(&cookie).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
        let token = format!("rotated-{round}");
        Arc::make_mut(&mut session.record).refresh_token = Some(Secret::new(token.clone()));
        assert!(s.update(&session).await.unwrap());
        tokio::time::sleep(Duration::from_millis(25)).await;
        stop.store(true, Ordering::Relaxed);
        let mut seen = std::time::UNIX_EPOCH;
        for t in sliders {
            seen = seen.max(t.await.unwrap());
        }
        let stored = s.load_fresh(&cookie).await.unwrap().unwrap();
        assert_eq!(
            stored.record.refresh_token.as_ref().map(Secret::expose),
            Some(token.as_str()),
            "round {round}: a slide wrote the old refresh token back"
        );
        assert!(
            stored.last_seen() >= seen,
            "round {round}: the refresh moved last_seen back"
        );
        slid += usize::from(stored.last_seen() > session.last_seen());
    }
    assert!(slid > 0, "the sliders never slid: the test tested nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_slides_never_undo_a_refresh() {
    let cfg = config(StoreConfig::Memory, Duration::from_millis(400), LONG);
    slides_never_undo_a_refresh(Sessions::new(&cfg).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_slides_never_undo_a_refresh() {
    let r = Redis::start();
    let cfg = config(
        redis_store(&r, Duration::from_secs(5)),
        Duration::from_millis(400),
        LONG,
    );
    slides_never_undo_a_refresh(Sessions::new(&cfg).await.unwrap()).await;
}

/// moka serialises a key only among its compute calls: a plain `remove`
/// landing between a replace's read and its write was undone, bringing a
/// deleted session back without its index entries. Deletes race replaces
/// on several threads here; a deleted session must stay deleted, be
/// reported deleted once, and be announced once.
#[test]
fn memory_store_delete_is_never_undone_by_a_concurrent_replace() {
    let (tx, mut rx) = broadcast::channel(1 << 14);
    let m = MemoryStore::new(1 << 26, 1000, tx);
    let store = Store::Memory(m);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for round in 0..300u64 {
        let key = StoreKey::from_stored(&format!("{round:0>43}")).unwrap();
        let sub = format!("user-{round}");
        let idx = portcullis::session::store::IndexRefs {
            sid: Some(format!("sid-{round}")),
            sub: sub.clone(),
            created_at_ms: round,
        };
        rt.block_on(store.insert(&key, vec![1; 64], &idx, LONG))
            .unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let spawn = |deleter: bool| {
            let (store, barrier, key, idx) =
                (store.clone(), barrier.clone(), key.clone(), idx.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                barrier.wait();
                rt.block_on(async {
                    if deleter {
                        usize::from(store.delete(&key).await.unwrap())
                    } else {
                        for i in 0..50u8 {
                            let _ = store.replace(&key, vec![i; 64], LONG, &idx).await.unwrap();
                        }
                        0
                    }
                })
            })
        };
        let threads = [spawn(false), spawn(true), spawn(true)];
        let deleted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(deleted, 1, "round {round}: exactly one delete saw it");
        rt.block_on(async {
            assert!(
                store.get(&key, true).await.unwrap().is_none(),
                "round {round}: the deleted session came back"
            );
            assert!(!store.replace(&key, vec![9; 64], LONG, &idx).await.unwrap());
            assert!(store.find_by_sub(&sub).await.unwrap().is_empty());
        });
        let mut announced = 0;
        while let Ok(k) = rx.try_recv() {
            assert_eq!(k, key);
            announced += 1;
        }
        assert_eq!(announced, 1, "round {round}: one revocation");
    }
}

on_cluster!(
    cluster_replace_if_is_compare_and_set,
    replace_if_is_compare_and_set,
    LONG,
    LONG
);

/// A local delete is never undone in the instance's cache by a read that
/// raced it (the read's Redis answer predates the delete, its cache insert
/// comes after the delete's invalidation). The store here may not
/// subscribe (ACL), so no pub/sub message repairs the cache afterwards:
/// what is cached is what the race left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_a_read_racing_a_delete_never_caches_the_deleted_record() {
    let r = Redis::start();
    let mut admin = raw(&r).await;
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "racer",
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            "-subscribe",
        ])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://racer:pw@127.0.0.1:{}/0", r.port());
    let (tx, _) = broadcast::channel(16);
    let store = portcullis::session::store::RedisStore::connect(
        &RedisConfig::server(url, Duration::from_secs(60)),
        LONG,
        tx,
    )
    .await
    .unwrap();
    assert!(!store.is_subscribed());
    // Without a subscription the store caches nothing at all; this test
    // is about what the race leaves in the cache when it does.
    store.cache_without_subscription_for_tests();
    let store = Store::Redis(store);
    let idx = portcullis::session::store::IndexRefs {
        sid: None,
        sub: "racer".into(),
        created_at_ms: 1,
    };
    for round in 0..1500u32 {
        let key = StoreKey::from_stored(&format!("{round:r>43}")).unwrap();
        store.insert(&key, b"v".to_vec(), &idx, LONG).await.unwrap();
        let (s1, k1) = (store.clone(), key.clone());
        let read = tokio::spawn(async move { s1.get(&k1, true).await.unwrap() });
        let (s2, k2) = (store.clone(), key.clone());
        let delete = tokio::spawn(async move { s2.delete(&k2).await.unwrap() });
        let (_, deleted) = (read.await.unwrap(), delete.await.unwrap());
        assert!(deleted);
        assert_eq!(
            store.get(&key, false).await.unwrap(),
            None,
            "round {round}: the deleted record came back from the local cache"
        );
    }
}
