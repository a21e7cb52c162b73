//! A failing Redis (down, a script failing part-way, a silent replica) never fails open.

use std::time::Instant;
use support::Signal;

use portcullis::session::Revoke;

use super::*;

/// A master (started with `master_args`) and a replica in sync with it.
async fn master_and_replica(master_args: &[String]) -> (Redis, Redis) {
    let master = Redis::start_with(master_args, None);
    let replica = Redis::start_with(
        &[
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port().to_string(),
        ],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !support::redis_ha::cli(replica.port(), &["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "replica not in sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (master, replica)
}

/// A Redis script that fails part-way (here a record of the wrong type in
/// the index) keeps no claim: the retry runs, and then a replay does not.
#[tokio::test]
async fn redis_revoke_once_that_fails_part_way_keeps_no_claim() {
    let r = Redis::start();
    let s = Sessions::new(&config(redis_store(&r, LONG), LONG, LONG))
        .await
        .unwrap();
    let (id, created) = s.create(login("kim", Some("sid-k"))).await.unwrap();
    let mut raw = raw(&r).await;
    let sid_hash: String = redis::cmd("HGET")
        .arg(format!("portcullis:s:{}", created.key()))
        .arg("sid")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("portcullis:s:trap")
        .arg("not a hash")
        .ignore()
        .cmd("SADD")
        .arg(format!("portcullis:sid:{sid_hash}"))
        .arg("trap")
        .ignore()
        .query_async(&mut raw)
        .await
        .unwrap();

    let ttl = Duration::from_secs(60);
    let what = Revoke::Sid("sid-k");
    assert!(is_store_error(s.revoke_once("jti-k", ttl, ISS, what).await));
    let kept: bool = redis::cmd("EXISTS")
        .arg("portcullis:once:jti-k")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!kept, "a failed revocation kept its claim");

    let _: () = redis::cmd("DEL")
        .arg("portcullis:s:trap")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        s.revoke_once("jti-k", ttl, ISS, what)
            .await
            .unwrap()
            .is_some(),
        "the retry is not a replay"
    );
    assert!(s.load(&id.to_cookie_value()).await.unwrap().is_none());
    assert_eq!(s.revoke_once("jti-k", ttl, ISS, what).await.unwrap(), None);
}

#[tokio::test]
async fn redis_down_is_an_error_never_no_session() {
    let mut r = Redis::start();
    let cfg = config(redis_store(&r, Duration::from_millis(300)), LONG, LONG);
    let s = Sessions::new(&cfg).await.unwrap();
    let (id, _) = s.create(login("lee", Some("sid-l"))).await.unwrap();
    s.ready().await.unwrap();
    r.stop();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let c = id.to_cookie_value();
    let res = s.load(&c).await;
    assert!(is_store_error(res), "load must fail, not say no session");
    let other = portcullis::session::SessionId::parse(&"A".repeat(43)).unwrap();
    assert!(is_store_error(s.load(&other.to_cookie_value()).await));
    assert!(
        is_store_error(s.claim_once("jti-x", LONG).await),
        "never fail open"
    );
    assert!(is_store_error(s.take_temp("state").await));
    assert!(is_store_error(s.delete_by_sid(ISS, "sid-l").await));
    assert!(
        is_store_error(
            s.revoke_once("jti-y", LONG, ISS, Revoke::Sid("sid-l"))
                .await
        ),
        "never fail open"
    );
    assert!(is_store_error(s.create(login("lee", None)).await));
    assert!(is_store_error(s.ready().await));
    // Malformed cookies need no store: still plainly "no session".
    assert!(s.load("junk").await.unwrap().is_none());
}

/// With a replica, a deletion is acknowledged only once a replica has it
/// (`WAIT 1`): while the replica is frozen (still connected, acknowledging
/// nothing) a logout fails rather than be reported done on the strength of
/// the master alone, which could die and see that replica promoted without
/// the deletion. Once the replica answers again, the retry is acknowledged.
#[tokio::test]
async fn redis_deletion_is_acknowledged_only_once_a_replica_has_it() {
    let (master, replica) = master_and_replica(&[]).await;
    let s = Sessions::new(&config(
        redis_store(&master, Duration::from_secs(5)),
        LONG,
        LONG,
    ))
    .await
    .unwrap();
    // The replica count is learned right after subscribing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, session) = s.create(login("wait", Some("sid-wait"))).await.unwrap();
    let signal = |sig| support::send_signal(replica.pid().unwrap(), sig);
    signal(Signal::Stop);
    let started = Instant::now();
    let frozen = s.delete(&session).await;
    let (_, other) = s.create(login("wait2", Some("sid-wait2"))).await.unwrap();
    let claim = s
        .revoke_once("jti-wait", LONG, ISS, Revoke::Sid("sid-wait2"))
        .await;
    signal(Signal::Cont);
    assert!(
        is_store_error(frozen),
        "a deletion no replica confirmed was acknowledged"
    );
    assert!(
        is_store_error(claim),
        "a back-channel logout (jti claim) no replica confirmed was acknowledged"
    );
    drop(other);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "WAIT timed out"
    );
    // The replica is back: retrying is safe (deleting is idempotent) and
    // acknowledged.
    assert!(s.delete(&session).await.is_ok());
    assert_eq!(s.delete_by_sid(ISS, "sid-wait").await.unwrap(), 0);
}

/// A Redis user that may not run `ROLE` (a least-privilege ACL) hides how
/// many replicas the master has. The store must not take that for "none":
/// a deletion no replica confirmed is refused, with or without a replica,
/// rather than acknowledged on the master alone.
#[tokio::test]
async fn redis_deletion_waits_for_a_replica_when_role_is_refused() {
    let acl = |r: &Redis| format!("redis://app:app-pw@127.0.0.1:{}/0", r.port());
    let no_role: Vec<String> = [
        "--user", "app", "on", ">app-pw", "~*", "&*", "+@all", "-role",
    ]
    .map(String::from)
    .into();
    let (master, replica) = master_and_replica(&no_role).await;
    let store = StoreConfig::Redis(RedisConfig::server(acl(&master), LONG));
    let s = Sessions::new(&config(store, LONG, LONG)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, session) = s.create(login("acl", Some("sid-acl"))).await.unwrap();
    let signal = |sig| support::send_signal(replica.pid().unwrap(), sig);
    signal(Signal::Stop);
    let frozen = s.delete(&session).await;
    signal(Signal::Cont);
    assert!(
        is_store_error(frozen),
        "a deletion no replica confirmed was acknowledged because ROLE was refused"
    );
    // With the replica answering, WAIT confirms and the retry is acknowledged.
    assert!(s.delete(&session).await.is_ok());

    // Without any replica the store cannot tell "none" from "hidden": the
    // deletion fails (loudly) instead of going unconfirmed.
    let alone = Redis::start_with(&no_role, None);
    let store = StoreConfig::Redis(RedisConfig::server(acl(&alone), LONG));
    let s = Sessions::new(&config(store, LONG, LONG)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, session) = s.create(login("acl2", Some("sid-acl2"))).await.unwrap();
    assert!(is_store_error(s.delete(&session).await));
}

/// On a cluster a deletion waits for a replica of the shard it wrote,
/// whatever the other shards have: with one master without a replica (as
/// right after a failover promoted one) the others still wait. Master 1 has
/// a replica, the others none. While that replica is frozen a deletion
/// (and a back-channel one, by `sid`) of a session held by master 1 fails
/// after the `WAIT` (master 1 could die and see the replica promoted
/// without it), and one of a session held by another master is
/// acknowledged at once (nothing there could be promoted).
#[tokio::test]
async fn cluster_deletion_waits_for_a_replica_of_its_own_shard() {
    let mut c = support::redis_ha::Cluster::start();
    let replica = c.add_replica(1);
    let s = Sessions::new(&config(cluster_store(&c), LONG, LONG))
        .await
        .unwrap();
    // The topology is learned right after subscribing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Sessions until two are held by master 1 and one by another master.
    let (mut replicated, mut alone) = (Vec::new(), None);
    for i in 0..200 {
        if replicated.len() >= 2 && alone.is_some() {
            break;
        }
        let sid = format!("sid-shard-{i}");
        let (_, session) = s
            .create(login(&format!("shard{i}"), Some(&sid)))
            .await
            .unwrap();
        match c.master_of(&format!("portcullis:s:{}", session.key())) {
            Some(1) => replicated.push((session, sid)),
            Some(_) => alone = Some(session),
            None => panic!("no master holds the session"),
        }
    }
    let mut replicated = replicated.into_iter();
    let (by_key, _) = replicated.next().expect("no session on master 1");
    let (_, by_sid) = replicated.next().expect("one session only on master 1");
    let alone = alone.expect("no session on a master without a replica");
    let signal = |sig| support::send_signal(c.replicas[replica].pid().unwrap(), sig);
    signal(Signal::Stop);
    let started = Instant::now();
    let unreplicated = s.delete(&alone).await;
    let unreplicated_took = started.elapsed();
    let started = Instant::now();
    let frozen = s.delete(&by_key).await;
    let frozen_sid = s.delete_by_sid(ISS, &by_sid).await;
    let frozen_took = started.elapsed();
    signal(Signal::Cont);
    assert!(
        unreplicated.unwrap(),
        "a deletion on a master without a replica failed"
    );
    assert!(
        unreplicated_took < Duration::from_millis(500),
        "a deletion on a master without a replica waited ({unreplicated_took:?})"
    );
    assert!(
        is_store_error(frozen),
        "a deletion no replica of its shard confirmed was acknowledged"
    );
    assert!(
        is_store_error(frozen_sid),
        "a back-channel deletion no replica of its shard confirmed was acknowledged"
    );
    assert!(
        frozen_took >= Duration::from_millis(1800),
        "WAIT timed out ({frozen_took:?})"
    );
    // The replica is back: the retries are acknowledged.
    assert!(s.delete(&by_key).await.is_ok());
    assert_eq!(s.delete_by_sid(ISS, &by_sid).await.unwrap(), 0);
}
