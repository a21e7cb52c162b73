//! Single-use values: one-time claims, temporary values taken once, and locks.

use portcullis::session::Revoke;
use portcullis::session::store::{MemoryStore, Store};
use tokio::sync::broadcast;

use super::*;

pub(super) async fn single_use_values(s: Sessions) {
    let ttl = Duration::from_secs(60);
    assert!(s.claim_once("jti-1", ttl).await.unwrap());
    assert!(!s.claim_once("jti-1", ttl).await.unwrap(), "replay refused");
    assert!(s.claim_once("jti-2", ttl).await.unwrap());
    assert!(!s.claim_once("jti-1", ttl).await.unwrap(), "others stay");
    // A short claim lapses.
    assert!(
        s.claim_once("jti-3", Duration::from_millis(100))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(s.claim_once("jti-3", ttl).await.unwrap());
    // Extreme durations are clamped, not a panic or a store error.
    assert!(s.claim_once("jti-4", Duration::MAX).await.unwrap());
    assert!(!s.claim_once("jti-4", Duration::ZERO).await.unwrap());
    // Login states are single-use too.
    assert!(s.claim_login_state("st-1", ttl).await.unwrap());
    assert!(!s.claim_login_state("st-1", ttl).await.unwrap(), "used");

    s.put_temp("state-1", b"/return".to_vec(), ttl)
        .await
        .unwrap();
    assert_eq!(
        s.take_temp("state-1").await.unwrap().as_deref(),
        Some(&b"/return"[..])
    );
    assert_eq!(s.take_temp("state-1").await.unwrap(), None, "single use");
    assert_eq!(s.take_temp("never-put").await.unwrap(), None);
    s.put_temp("state-2", b"x".to_vec(), Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(s.take_temp("state-2").await.unwrap(), None, "time-limited");

    // Concurrent takes: exactly one wins.
    s.put_temp("state-3", b"y".to_vec(), ttl).await.unwrap();
    let takes: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.take_temp("state-3").await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in takes {
        won += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(won, 1);

    let t = s
        .try_lock("refresh:k", ttl)
        .await
        .unwrap()
        .expect("free lock");
    assert!(
        s.try_lock("refresh:k", ttl).await.unwrap().is_none(),
        "held"
    );
    s.unlock("refresh:k", &t).await.unwrap();
    let t2 = s
        .try_lock("refresh:k", Duration::from_millis(100))
        .await
        .unwrap();
    assert!(t2.is_some(), "free after unlock");
    // An expired holder's unlock does not release the next holder's lock.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let _t3 = s.try_lock("refresh:k", ttl).await.unwrap().expect("lapsed");
    s.unlock("refresh:k", &t2.unwrap()).await.unwrap();
    assert!(s.try_lock("refresh:k", ttl).await.unwrap().is_none());
    s.ready().await.unwrap();
}
both_stores!(
    memory_single_use_values,
    redis_single_use_values,
    single_use_values,
    LONG,
    LONG
);

/// Locks and single-use claims must be exact when callers race on several
/// threads at once (the serving threads): exactly one winner per key. A
/// refresh ran twice under the serving threads when the memory store's
/// set-if-absent was not serialised.
#[test]
fn memory_store_locks_and_claims_have_one_winner_across_threads() {
    let (tx, _) = broadcast::channel(16);
    let store = Store::Memory(MemoryStore::new(1 << 24, 100_000, tx));
    for round in 0..200 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    barrier.wait();
                    rt.block_on(async {
                        let lock = store
                            .try_lock(&format!("refresh:{round}"), LONG)
                            .await
                            .unwrap()
                            .is_some();
                        let claim = store
                            .claim_once(&format!("jti-{round}"), LONG)
                            .await
                            .unwrap();
                        (usize::from(lock), usize::from(claim))
                    })
                })
            })
            .collect();
        let (locks, claims) = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!(
            (locks, claims),
            (1, 1),
            "round {round}: winners (locks, claims)"
        );
    }
}

on_cluster!(cluster_single_use_values, single_use_values, LONG, LONG);

/// Anonymous visitors make login-state claims (each callback, valid or not,
/// claims its state before the IdP is asked). However many they make, the
/// claims that must hold still can be made: back-channel `jti`s and the
/// refresh lock. Before, all shared one table that refuses new claims when
/// full, so a flood of callbacks stopped back-channel logout and token
/// refresh (and logins).
#[tokio::test]
async fn memory_login_state_claims_cannot_crowd_out_the_claims_that_must_hold() {
    let (tx, _) = broadcast::channel(16);
    let store = Store::Memory(MemoryStore::new(1 << 24, 8 * 1024, tx.clone()));
    let s =
        Sessions::with_store(&config(StoreConfig::Memory, LONG, LONG), store.clone(), tx).unwrap();
    for i in 0..2_000 {
        assert!(
            s.claim_login_state(&format!("flood-{i}"), LONG)
                .await
                .unwrap(),
            "login state {i} refused"
        );
    }
    let Store::Memory(m) = &store else {
        unreachable!()
    };
    m.run_pending_tasks().await;
    assert!(s.claim_once("jti-after-flood", LONG).await.unwrap());
    assert_eq!(
        s.revoke_once("jti-2-after-flood", LONG, ISS, Revoke::Sid("nobody"))
            .await
            .unwrap(),
        Some(0)
    );
    assert!(
        store
            .try_lock("refresh:after-flood", LONG)
            .await
            .unwrap()
            .is_some(),
        "the refresh lock"
    );
}
