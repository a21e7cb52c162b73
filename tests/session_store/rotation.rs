//! Secret rotation: old secrets still open sessions, writes re-seal, dropping a secret ends them.

use portcullis::session::store::{MemoryStore, Store};
use tokio::sync::broadcast;

use super::*;

#[tokio::test]
async fn memory_rotation_and_update() {
    let cfg_a = config(StoreConfig::Memory, LONG, LONG);
    let (tx, _) = broadcast::channel(16);
    let store = Store::Memory(MemoryStore::new(1 << 24, 1000, tx.clone()));
    let old = Sessions::with_store(&cfg_a, store.clone(), tx.clone()).unwrap();
    let (id, _) = old.create(login("ivy", None)).await.unwrap();

    let mut cfg_ba = cfg_a.clone();
    cfg_ba.secrets = vec![Secret::new(SECRET_B), Secret::new(SECRET_A)];
    let rotated = Sessions::with_store(&cfg_ba, store.clone(), tx.clone()).unwrap();
    let mut s = rotated
        .load(&id.to_cookie_value())
        .await
        .unwrap()
        .expect("old key opens");
    // The refresh writes it under the new key; the old key alone can no
    // longer read it, the new list can.
    std::sync::Arc::make_mut(&mut s.record).access_token = Secret::new("refreshed");
    assert!(rotated.update(&s).await.unwrap());
    let again = rotated.load(&id.to_cookie_value()).await.unwrap().unwrap();
    assert_eq!(again.record.access_token.expose(), "refreshed");
    assert!(old.load(&id.to_cookie_value()).await.unwrap().is_none());

    let mut cfg_b = cfg_a.clone();
    cfg_b.secrets = vec![Secret::new(SECRET_B)];
    let (id2, _) = old.create(login("ivy", None)).await.unwrap();
    let only_new = Sessions::with_store(&cfg_b, store, tx).unwrap();
    assert!(
        only_new
            .load(&id2.to_cookie_value())
            .await
            .unwrap()
            .is_none()
    );

    // An update after a delete does not bring the session back.
    assert!(rotated.delete(&again).await.unwrap());
    assert!(!rotated.update(&again).await.unwrap());
    assert!(rotated.load(&id.to_cookie_value()).await.unwrap().is_none());
}

/// The decoded-record cache never outlives the key ring it was filled under:
/// after a reload drops the secret a session was sealed with, that session
/// no longer opens, even though it was just served.
#[tokio::test]
async fn a_reload_that_drops_a_secret_stops_its_sessions_despite_the_cache() {
    let cfg = config(
        StoreConfig::Memory,
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    let sessions = Sessions::new(&cfg).await.unwrap();
    let (id, _) = sessions.create(login("alice", None)).await.unwrap();
    let cookie = id.to_cookie_value();
    assert!(sessions.load(&cookie).await.unwrap().is_some());
    assert!(
        sessions.load(&cookie).await.unwrap().is_some(),
        "served twice (the second from the cache)"
    );

    let mut rotated = cfg.clone();
    rotated.secrets = vec![Secret::new(SECRET_B)];
    let reloaded = sessions.reconfigure(&rotated).unwrap();
    assert!(
        reloaded.load(&cookie).await.unwrap().is_none(),
        "sealed under a removed secret"
    );

    let mut kept = cfg.clone();
    kept.secrets = vec![Secret::new(SECRET_B), Secret::new(SECRET_A)];
    let reloaded = sessions.reconfigure(&kept).unwrap();
    assert!(
        reloaded.load(&cookie).await.unwrap().is_some(),
        "still opens while the old secret is listed"
    );
}

/// Index entries follow a record re-sealed under a rotated secret: after
/// the rotation ([B, A]) the next write seals under B and moves the `sid`
/// and `sub` entries to B's hashes, so once A is dropped ([B]) back-channel
/// (by `sid`) and admin (by `sub`) logout still find the session. Before,
/// the entries stayed under A's hashes and both found nothing.
async fn indexes_follow_a_rotated_secret(s: Sessions) {
    let (id, _) = s.create(login("rot", Some("sid-rot"))).await.unwrap();
    let (id2, _) = s.create(login("rot2", None)).await.unwrap();
    let mut cfg = config(StoreConfig::Memory, LONG, LONG);
    cfg.secrets = vec![Secret::new(SECRET_B), Secret::new(SECRET_A)];
    let both = s.reconfigure(&cfg).unwrap();
    for id in [&id, &id2] {
        let session = both
            .load(&id.to_cookie_value())
            .await
            .unwrap()
            .expect("opens under [B, A]");
        assert!(both.update(&session).await.unwrap(), "re-sealed under B");
    }
    cfg.secrets = vec![Secret::new(SECRET_B)];
    let only_b = s.reconfigure(&cfg).unwrap();
    assert!(
        only_b.load(&id.to_cookie_value()).await.unwrap().is_some(),
        "the re-sealed record opens under B alone"
    );
    assert_eq!(
        only_b.delete_by_sid(ISS, "sid-rot").await.unwrap(),
        1,
        "found by sid"
    );
    assert_eq!(
        only_b.delete_by_sub(ISS, "rot2", None).await.unwrap(),
        1,
        "found by sub"
    );
    assert!(only_b.load(&id2.to_cookie_value()).await.unwrap().is_none());
}
both_stores!(
    memory_indexes_follow_a_rotated_secret,
    redis_indexes_follow_a_rotated_secret,
    indexes_follow_a_rotated_secret,
    LONG,
    LONG
);
on_cluster!(
    cluster_indexes_follow_a_rotated_secret,
    indexes_follow_a_rotated_secret,
    LONG,
    LONG
);

/// A move of the index entries that fails (here the new `sub` entry's key
/// holds a value of the wrong type) is tried again by the session's next
/// write: the record keeps naming its old hashes until the move succeeds.
/// Before, the record named the new hashes at once, so no later write moved
/// anything, and once the old secret was dropped a logout by `sub` found
/// nothing (the session lived on).
#[tokio::test]
async fn redis_a_failed_index_move_is_retried_by_the_next_write() {
    let r = Redis::start();
    let s = Sessions::new(&config(redis_store(&r, LONG), LONG, LONG))
        .await
        .unwrap();
    let (id, _) = s.create(login("mover", None)).await.unwrap();
    let mut raw = raw(&r).await;
    let sub_field = |key: String| redis::cmd("HGET").arg(key).arg("sub").clone();

    // Where B files "mover": a throwaway session of the same user under B.
    let mut cfg = config(redis_store(&r, LONG), LONG, LONG);
    cfg.secrets = vec![Secret::new(SECRET_B)];
    let only_b = s.reconfigure(&cfg).unwrap();
    let (_, probe) = only_b.create(login("mover", None)).await.unwrap();
    let b_hash: String = sub_field(format!("portcullis:s:{}", probe.key()))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(only_b.delete(&probe).await.unwrap());
    let trap = format!("portcullis:sub:{b_hash}");
    let _: () = redis::cmd("SET")
        .arg(&trap)
        .arg("not a sorted set")
        .query_async(&mut raw)
        .await
        .unwrap();

    cfg.secrets = vec![Secret::new(SECRET_B), Secret::new(SECRET_A)];
    let both = s.reconfigure(&cfg).unwrap();
    let session = both.load(&id.to_cookie_value()).await.unwrap().unwrap();
    assert!(both.update(&session).await.unwrap(), "re-sealed under B");
    let _: () = redis::cmd("DEL")
        .arg(&trap)
        .query_async(&mut raw)
        .await
        .unwrap();
    let session = both.load(&id.to_cookie_value()).await.unwrap().unwrap();
    assert!(both.update(&session).await.unwrap(), "written again");

    assert_eq!(
        only_b.delete_by_sub(ISS, "mover", None).await.unwrap(),
        1,
        "found by sub under B alone"
    );
    assert!(only_b.load(&id.to_cookie_value()).await.unwrap().is_none());
}
