//! The Redis store's per-instance cache and pub/sub: other instances, `cache_ttl`, resubscribing.

use std::time::Instant;

use portcullis::session::store::Store;

use super::*;

#[tokio::test]
async fn redis_revocation_reaches_other_instance_within_cache_ttl() {
    let r = Redis::start();
    let cfg = config(redis_store(&r, Duration::from_secs(60)), LONG, LONG);
    let a = Sessions::new(&cfg).await.unwrap();
    let b = Sessions::new(&cfg).await.unwrap();
    let (id, _) = a.create(login("jack", Some("sid-j"))).await.unwrap();
    let c = id.to_cookie_value();
    let on_b = b.load(&c).await.unwrap().expect("B sees A's session");

    // A token refresh on A is seen by B at once, despite B's cached copy.
    let mut s = a.load(&c).await.unwrap().unwrap();
    std::sync::Arc::make_mut(&mut s.record).access_token = Secret::new("refreshed-on-a");
    assert!(a.update(&s).await.unwrap());
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let t = b.load_without_slide(&c).await.unwrap().unwrap();
        if t.record.access_token.expose() == "refreshed-on-a" {
            break;
        }
        assert!(Instant::now() < deadline, "B kept a stale copy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Logout on A: B stops serving it at once and announces it.
    let mut rx = b.revocations();
    assert!(a.delete(&s).await.unwrap());
    let got = tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .expect("B heard the revocation")
        .unwrap();
    assert_eq!(&got, on_b.key());
    assert!(b.load(&c).await.unwrap().is_none());

    // Back-channel by sid on B reaches A too.
    let (id2, _) = a.create(login("jack", Some("sid-j2"))).await.unwrap();
    assert!(a.load(&id2.to_cookie_value()).await.unwrap().is_some());
    assert_eq!(b.delete_by_sid(ISS, "sid-j2").await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(a.load(&id2.to_cookie_value()).await.unwrap().is_none());
}

#[tokio::test]
async fn redis_local_cache_is_bounded_by_cache_ttl() {
    // A lost message (here: a deletion behind the gateway's back, no
    // publish) costs at most cache_ttl.
    let r = Redis::start();
    let cfg = config(redis_store(&r, Duration::from_millis(600)), LONG, LONG);
    let s = Sessions::new(&cfg).await.unwrap();
    let (id, created) = s.create(login("kim", None)).await.unwrap();
    let c = id.to_cookie_value();
    assert!(s.load(&c).await.unwrap().is_some());
    let mut raw = raw(&r).await;
    let n: i64 = redis::cmd("DEL")
        .arg(format!("portcullis:s:{}", created.key()))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        s.load(&c).await.unwrap().is_some(),
        "served from the local cache"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(s.load(&c).await.unwrap().is_none(), "not past cache_ttl");

    // Keys in Redis are hashes: neither the cookie nor the sub appears.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let (id2, _) = s.create(login("kim", Some("sid-k"))).await.unwrap();
    let keys2: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(keys2.len() > keys.len());
    for k in keys2 {
        assert!(
            !k.contains(&id2.to_cookie_value()) && !k.contains("kim") && !k.contains("sid-k"),
            "{k}"
        );
    }

    // A tampered record is no session.
    let key2 = portcullis::session::SessionId::parse(&id2.to_cookie_value())
        .unwrap()
        .store_key();
    let _: () = redis::cmd("HSET")
        .arg(format!("portcullis:s:{key2}"))
        .arg("b")
        .arg(b"garbage".as_slice())
        .query_async(&mut raw)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(s.load(&id2.to_cookie_value()).await.unwrap().is_none());
}

#[tokio::test]
async fn redis_subscriber_reconnects_after_restart() {
    let mut r = Redis::start();
    let cfg = config(redis_store(&r, Duration::from_secs(60)), LONG, LONG);
    let a = Sessions::new(&cfg).await.unwrap();
    let b = Sessions::new(&cfg).await.unwrap();
    r.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Same port again (Redis is empty now, like a failover to a fresh node).
    r.restart();
    let Store::Redis(bs) = b.store() else {
        panic!("redis store expected")
    };
    assert!(
        bs.wait_subscribed(Duration::from_secs(10)).await,
        "B resubscribed"
    );
    let Store::Redis(as_) = a.store() else {
        panic!("redis store expected")
    };
    assert!(as_.wait_subscribed(Duration::from_secs(10)).await);
    // The connection manager reconnects too (allow a retry or two).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (id, _) = loop {
        match a.create(login("mo", None)).await {
            Ok(x) => break x,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("A did not reconnect: {e}"),
        }
    };
    let c = id.to_cookie_value();
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        match b.load(&c).await {
            Ok(Some(s)) => break s,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("B did not reconnect: {other:?}"),
        }
    };
    let mut rx = b.revocations();
    assert!(a.delete(&s).await.unwrap());
    tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .expect("revocation after reconnect")
        .unwrap();
    assert!(b.load(&c).await.unwrap().is_none());
}

#[tokio::test]
async fn redis_resubscribe_clears_local_cache() {
    // Messages sent while the subscription was down are lost, so a
    // resubscription must forget everything cached.
    let r = Redis::start();
    let cfg = config(redis_store(&r, Duration::from_secs(60)), LONG, LONG);
    let s = Sessions::new(&cfg).await.unwrap();
    let (id, created) = s.create(login("nell", None)).await.unwrap();
    let c = id.to_cookie_value();
    assert!(s.load(&c).await.unwrap().is_some());
    let mut raw = raw(&r).await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("portcullis:s:{}", created.key()))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(s.load(&c).await.unwrap().is_some(), "cached, message lost");
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut raw)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.load(&c).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "cache survived a resubscription");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With Redis, a read may come from the instance's cache (up to
/// `cache_ttl` old when an invalidation was lost); `load_fresh`, which the
/// refresh uses once it holds the lock, must see the store's current
/// record.
#[tokio::test]
async fn redis_load_fresh_sees_a_write_the_cache_missed() {
    let r = Redis::start();
    let cfg = config(redis_store(&r, Duration::from_secs(60)), LONG, LONG);
    let s = Sessions::new(&cfg).await.unwrap();
    let other = Sessions::new(&cfg).await.unwrap();
    let (id, created) = s.create(login("max", None)).await.unwrap();
    let c = id.to_cookie_value();
    let rkey = format!("portcullis:s:{}", created.key());
    let mut raw = raw(&r).await;
    let blob = |raw: &mut redis::aio::MultiplexedConnection| {
        let rkey = rkey.clone();
        let mut raw = raw.clone();
        async move {
            redis::cmd("HGET")
                .arg(rkey)
                .arg("b")
                .query_async::<Vec<u8>>(&mut raw)
                .await
                .unwrap()
        }
    };
    let set = |raw: &mut redis::aio::MultiplexedConnection, b: Vec<u8>| {
        let rkey = rkey.clone();
        let mut raw = raw.clone();
        async move {
            redis::cmd("HSET")
                .arg(rkey)
                .arg("b")
                .arg(b)
                .query_async::<()>(&mut raw)
                .await
                .unwrap()
        }
    };
    let v1 = blob(&mut raw).await;
    // Another instance refreshes: the record in Redis is v2.
    let mut refreshed = other.load_fresh(&c).await.unwrap().unwrap();
    std::sync::Arc::make_mut(&mut refreshed.record).refresh_token = Some(Secret::new("rotated"));
    assert!(other.update(&refreshed).await.unwrap());
    let v2 = blob(&mut raw).await;
    // Behind the gateway's back (no invalidation message): this instance
    // caches v1, then Redis holds v2 again.
    set(&mut raw, v1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cached = s.load_without_slide(&c).await.unwrap().unwrap();
    assert_eq!(
        cached.record.refresh_token.as_ref().map(Secret::expose),
        Some("refresh")
    );
    set(&mut raw, v2).await;
    let stale = s.load_without_slide(&c).await.unwrap().unwrap();
    assert_eq!(
        stale.record.refresh_token.as_ref().map(Secret::expose),
        Some("refresh"),
        "the setup: the cache is stale"
    );
    let fresh = s.load_fresh(&c).await.unwrap().unwrap();
    assert_eq!(
        fresh.record.refresh_token.as_ref().map(Secret::expose),
        Some("rotated")
    );
}

/// An instance that cannot hear revocations (its subscription is gone and
/// cannot come back: here its Redis user lost the channel) serves no
/// session from its cache: another instance's deletion is seen at the next
/// read, not after `cache_ttl`. During a failover this is the moment
/// between the new master taking writes and the subscription reaching it.
#[tokio::test]
async fn redis_an_instance_that_cannot_hear_revocations_reads_redis() {
    let r = Redis::start();
    let mut admin = raw(&r).await;
    redis::cmd("ACL")
        .arg(&["SETUSER", "deaf", "on", ">pw", "~*", "&*", "+@all"])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://deaf:pw@127.0.0.1:{}/0", r.port());
    let store = StoreConfig::Redis(RedisConfig::server(url, LONG));
    let deaf = Sessions::new(&config(store, LONG, LONG)).await.unwrap();
    let other = Sessions::new(&config(redis_store(&r, LONG), LONG, LONG))
        .await
        .unwrap();
    let (id, _) = deaf.create(login("deaf", None)).await.unwrap();
    let cookie = id.to_cookie_value();
    assert!(
        deaf.load(&cookie).await.unwrap().is_some(),
        "read (and cached)"
    );

    // Redis drops subscribers of channels their user may no longer use.
    redis::cmd("ACL")
        .arg(&["SETUSER", "deaf", "resetchannels"])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let Store::Redis(store) = deaf.store() else {
        panic!("redis store expected")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.is_subscribed() {
        assert!(Instant::now() < deadline, "still subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let session = other.load(&cookie).await.unwrap().unwrap();
    assert!(other.delete(&session).await.unwrap());
    assert!(
        deaf.load(&cookie).await.unwrap().is_none(),
        "an instance deaf to revocations served a deleted session from its cache"
    );
}
