//! The session layer against real stores: the embedded memory store and a
//! real `redis-server` started per test on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use portcullis::config::{RedisConfig, SameSite, Secret, SessionConfig, StoreConfig};
use portcullis::oidc::IdentityClaims;
use portcullis::session::store::{MemoryStore, Store};
use portcullis::session::{NewSession, Revoke, SessionError, Sessions, StoreKey};
use tokio::sync::broadcast;

mod support;
use support::Redis;

const SECRET_A: &str = "test-secret-A-0123456789abcdef0123456789";
const SECRET_B: &str = "test-secret-B-0123456789abcdef0123456789";
const ISS: &str = "https://idp.example";

/// A raw connection to a test's redis-server, to change data behind the
/// gateway's back.
async fn raw(r: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(r.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn config(store: StoreConfig, idle: Duration, max: Duration) -> SessionConfig {
    SessionConfig {
        secrets: vec![Secret::new(SECRET_A)],
        cookie_name: "portcullis".into(),
        cookie_domain: None,
        cookie_samesite: SameSite::Lax,
        persistent: false,
        idle_timeout: idle,
        max_lifetime: max,
        store,
    }
}

fn redis_store(r: &Redis, cache_ttl: Duration) -> StoreConfig {
    StoreConfig::Redis(RedisConfig::server(r.url(), cache_ttl))
}

fn login(sub: &str, sid: Option<&str>) -> NewSession {
    NewSession {
        claims: IdentityClaims {
            iss: ISS.into(),
            sub: sub.into(),
            sid: sid.map(Into::into),
            email: Some(format!("{sub}@example.com")),
            email_verified: true,
            preferred_username: Some(sub.into()),
            groups: vec!["staff".into()],
        },
        id_token: Secret::new(format!("id-token-of-{sub}")),
        access_token: Secret::new(format!("access-token-of-{sub}")),
        access_token_expires_at: Some(SystemTime::now() + Duration::from_secs(300)),
        refresh_token: Some(Secret::new("refresh")),
    }
}

const LONG: Duration = Duration::from_secs(3600);

/// Runs one async test body over the memory store and over a fresh Redis.
macro_rules! both_stores {
    ($mem:ident, $red:ident, $body:ident, $idle:expr, $max:expr) => {
        #[tokio::test]
        async fn $mem() {
            let s = Sessions::new(&config(StoreConfig::Memory, $idle, $max))
                .await
                .unwrap();
            $body(s).await;
        }
        #[tokio::test]
        async fn $red() {
            let r = Redis::start();
            let s = Sessions::new(&config(
                redis_store(&r, Duration::from_secs(5)),
                $idle,
                $max,
            ))
            .await
            .unwrap();
            $body(s).await;
        }
    };
}

async fn create_load_delete(s: Sessions) {
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

async fn indexes_follow_sessions(s: Sessions) {
    let (a1, _) = s.create(login("erin", Some("idp-sid-1"))).await.unwrap();
    let (a2, _) = s.create(login("erin", Some("idp-sid-2"))).await.unwrap();
    let (other, _) = s.create(login("frank", Some("idp-sid-3"))).await.unwrap();
    let listed = s.list_by_sub(ISS, "erin").await.unwrap();
    assert_eq!(listed.len(), 2);
    // Index keys are keyed hashes: a sub in another issuer is another user.
    assert!(
        s.list_by_sub("https://other.idp", "erin")
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting one session removes it from both indexes.
    let s1 = s.load(&a1.to_cookie_value()).await.unwrap().unwrap();
    assert!(s.delete(&s1).await.unwrap());
    let listed = s.list_by_sub(ISS, "erin").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(s.delete_by_sid(ISS, "idp-sid-1").await.unwrap(), 0);

    // Back-channel by sid ends exactly that IdP session.
    assert_eq!(s.delete_by_sid(ISS, "idp-sid-2").await.unwrap(), 1);
    assert!(s.load(&a2.to_cookie_value()).await.unwrap().is_none());
    assert!(s.list_by_sub(ISS, "erin").await.unwrap().is_empty());
    assert_eq!(s.delete_by_sid(ISS, "idp-sid-2").await.unwrap(), 0);
    assert!(s.load(&other.to_cookie_value()).await.unwrap().is_some());
    assert_eq!(
        s.delete_by_sid("https://other.idp", "idp-sid-3")
            .await
            .unwrap(),
        0
    );
    assert!(s.load(&other.to_cookie_value()).await.unwrap().is_some());
}
both_stores!(
    memory_indexes_follow_sessions,
    redis_indexes_follow_sessions,
    indexes_follow_sessions,
    LONG,
    LONG
);

async fn delete_by_sub_created_before(s: Sessions) {
    let (old, _) = s.create(login("gina", None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let iat = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (new, _) = s.create(login("gina", None)).await.unwrap();
    let (bystander, _) = s.create(login("hank", None)).await.unwrap();

    assert_eq!(s.delete_by_sub(ISS, "gina", Some(iat)).await.unwrap(), 1);
    assert!(s.load(&old.to_cookie_value()).await.unwrap().is_none());
    assert!(s.load(&new.to_cookie_value()).await.unwrap().is_some());
    assert_eq!(s.delete_by_sub(ISS, "gina", None).await.unwrap(), 1);
    assert!(s.load(&new.to_cookie_value()).await.unwrap().is_none());
    assert!(
        s.load(&bystander.to_cookie_value())
            .await
            .unwrap()
            .is_some()
    );
}
both_stores!(
    memory_delete_by_sub_created_before,
    redis_delete_by_sub_created_before,
    delete_by_sub_created_before,
    LONG,
    LONG
);

/// The back-channel step: a claim and a deletion together, once.
async fn revoke_once_claims_and_deletes_together(s: Sessions) {
    let ttl = Duration::from_secs(60);
    let (a1, _) = s.create(login("ida", Some("idp-1"))).await.unwrap();
    let (a2, _) = s.create(login("ida", Some("idp-1"))).await.unwrap();
    let (bob, _) = s.create(login("bob", Some("idp-2"))).await.unwrap();
    let alive = |id: &portcullis::session::SessionId| {
        let (s, c) = (s.clone(), id.to_cookie_value());
        async move { s.load(&c).await.unwrap().is_some() }
    };

    let sid = Revoke::Sid("idp-1");
    assert_eq!(
        s.revoke_once("jti-a", ttl, ISS, sid).await.unwrap(),
        Some(2)
    );
    assert!(!alive(&a1).await && !alive(&a2).await);
    assert!(alive(&bob).await, "another IdP session survives");
    // A replay ends nothing, not even a session made since under that sid.
    let (a3, _) = s.create(login("ida", Some("idp-1"))).await.unwrap();
    assert_eq!(s.revoke_once("jti-a", ttl, ISS, sid).await.unwrap(), None);
    assert!(alive(&a3).await, "a replay deleted a session");
    assert!(
        !s.claim_once("jti-a", ttl).await.unwrap(),
        "the same claim as claim_once"
    );
    // No session matched: still claimed.
    let nobody = Revoke::Sid("nobody");
    assert_eq!(
        s.revoke_once("jti-b", ttl, ISS, nobody).await.unwrap(),
        Some(0)
    );
    assert_eq!(
        s.revoke_once("jti-b", ttl, ISS, nobody).await.unwrap(),
        None
    );

    // By sub: only sessions created before the cut-off.
    let (old, _) = s.create(login("gus", None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let iat = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (new, _) = s.create(login("gus", None)).await.unwrap();
    let sub = Revoke::Sub("gus", Some(iat));
    assert_eq!(
        s.revoke_once("jti-c", ttl, ISS, sub).await.unwrap(),
        Some(1)
    );
    assert!(!alive(&old).await && alive(&new).await);
    assert_eq!(s.revoke_once("jti-c", ttl, ISS, sub).await.unwrap(), None);

    // After a secret rotation, sessions indexed under the old secret are
    // found too (every hash in the same step). `reconfigure` keeps the
    // store, so only the secrets of this config matter.
    let mut rotated = config(StoreConfig::Memory, LONG, LONG);
    rotated.secrets = vec![Secret::new(SECRET_B), Secret::new(SECRET_A)];
    let r = s.reconfigure(&rotated).unwrap();
    let all = Revoke::Sub("ida", None);
    assert_eq!(
        r.revoke_once("jti-d", ttl, ISS, all).await.unwrap(),
        Some(1)
    );
    assert!(!alive(&a3).await);
    assert!(alive(&bob).await);
}
both_stores!(
    memory_revoke_once_claims_and_deletes_together,
    redis_revoke_once_claims_and_deletes_together,
    revoke_once_claims_and_deletes_together,
    LONG,
    LONG
);

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

async fn single_use_values(s: Sessions) {
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

fn is_store_error<T: std::fmt::Debug>(r: Result<T, SessionError>) -> bool {
    matches!(r, Err(SessionError::Store(_)))
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

/// `rediss://`: the gateway talks TLS to Redis and verifies the server
/// against the system roots. The trusted run happens in a child process of
/// this test binary with `SSL_CERT_FILE` naming the test CA, so no test
/// mutates its own environment.
#[tokio::test]
async fn redis_over_tls_verifies_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = dir.path().join("redis.crt");
    let key = dir.path().join("redis.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let server = Redis::start_tls(&cert, &key);
    let port = server.port();
    let url = format!("rediss://127.0.0.1:{port}/0");

    // Untrusted server certificate: an error, never a session.
    let cfg = config(
        StoreConfig::Redis(RedisConfig::server(url.clone(), Duration::from_secs(5))),
        LONG,
        LONG,
    );
    let s = Sessions::new(&cfg).await.unwrap();
    assert!(is_store_error(s.create(login("pat", None)).await));
    assert!(is_store_error(s.ready().await));

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "redis_over_tls_child",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", &cert)
        .env("PORTCULLIS_TEST_REDISS_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "trusted TLS run failed:\n{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[tokio::test]
#[ignore = "run by redis_over_tls_verifies_the_server in a child process"]
async fn redis_over_tls_child() {
    let url = std::env::var("PORTCULLIS_TEST_REDISS_URL").unwrap();
    let cfg = config(
        StoreConfig::Redis(RedisConfig::server(url, Duration::from_secs(5))),
        LONG,
        LONG,
    );
    let s = Sessions::new(&cfg).await.unwrap();
    let Store::Redis(r) = s.store() else {
        panic!("redis store expected")
    };
    assert!(r.is_subscribed(), "subscription over TLS");
    create_load_delete(s).await;
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

fn cluster_store(c: &support::redis_ha::Cluster) -> StoreConfig {
    use portcullis::config::RedisTopology;
    StoreConfig::Redis(RedisConfig {
        url: None,
        topology: RedisTopology::Cluster {
            nodes: c.urls().into_iter().map(Secret::new).collect(),
        },
        ca_file: None,
        cache_ttl: Duration::from_secs(5),
    })
}

/// The store suite again on a three-master Redis Cluster: a session's
/// record, its `sid` and `sub` index entries, claims and locks hash to
/// different slots, and every path must work without `CROSSSLOT`.
macro_rules! on_cluster {
    ($name:ident, $body:ident, $idle:expr, $max:expr) => {
        #[tokio::test]
        async fn $name() {
            let c = support::redis_ha::Cluster::start();
            let s = Sessions::new(&config(cluster_store(&c), $idle, $max))
                .await
                .unwrap();
            $body(s).await;
        }
    };
}

on_cluster!(cluster_create_load_delete, create_load_delete, LONG, LONG);
on_cluster!(
    cluster_idle_expiry,
    idle_expiry,
    Duration::from_millis(1500),
    LONG
);
on_cluster!(
    cluster_indexes_follow_sessions,
    indexes_follow_sessions,
    LONG,
    LONG
);
on_cluster!(
    cluster_delete_by_sub_created_before,
    delete_by_sub_created_before,
    LONG,
    LONG
);
on_cluster!(
    cluster_revoke_once_claims_and_deletes_together,
    revoke_once_claims_and_deletes_together,
    LONG,
    LONG
);
on_cluster!(cluster_single_use_values, single_use_values, LONG, LONG);
on_cluster!(
    cluster_replace_if_is_compare_and_set,
    replace_if_is_compare_and_set,
    LONG,
    LONG
);

/// The suite's basic paths over rediss:// with `ca_file` naming a test CA
/// (no system roots involved).
#[tokio::test]
async fn tls_ca_file_create_load_delete() {
    let dir = tempfile::tempdir().unwrap();
    let ca = support::redis_ha::TestCa::new(dir.path(), "suite");
    let r = Redis::start_tls(&ca.cert, &ca.key);
    let mut rc = RedisConfig::server(
        format!("rediss://127.0.0.1:{}/0", r.port()),
        Duration::from_secs(5),
    );
    rc.ca_file = Some(ca.ca.clone());
    let s = Sessions::new(&config(StoreConfig::Redis(rc), LONG, LONG))
        .await
        .unwrap();
    let Store::Redis(store) = s.store() else {
        panic!("redis store expected")
    };
    assert!(store.is_subscribed(), "subscription over TLS");
    create_load_delete(s.clone()).await;
    revoke_once_claims_and_deletes_together(s.clone()).await;
    single_use_values(s).await;
}

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

/// Sentinel with separate credentials: the sentinels require one password
/// (in their URLs), master and replica another (in `url`, whose host is
/// ignored). A wrong master password is an error, never a session.
#[tokio::test]
async fn sentinel_authenticates_to_sentinels_and_master_separately() {
    use portcullis::config::RedisTopology;
    use support::redis_ha::{MASTER_NAME, SentinelOptions, SentinelSet};
    let set = SentinelSet::start_with(
        Duration::from_secs(5),
        &SentinelOptions {
            master_password: Some("master-pw"),
            sentinel_password: Some("sentinel-pw"),
            tls: None,
        },
    );
    let store = |data_pw: &str| {
        StoreConfig::Redis(RedisConfig {
            url: Some(Secret::new(format!("redis://:{data_pw}@ignored.invalid/0"))),
            topology: RedisTopology::Sentinel {
                sentinels: set
                    .urls_with(":sentinel-pw@")
                    .into_iter()
                    .map(Secret::new)
                    .collect(),
                master: MASTER_NAME.into(),
            },
            ca_file: None,
            cache_ttl: Duration::from_secs(5),
        })
    };
    let s = Sessions::new(&config(store("master-pw"), LONG, LONG))
        .await
        .unwrap();
    let Store::Redis(r) = s.store() else {
        panic!("redis store expected")
    };
    assert!(r.is_subscribed(), "subscribed on the master");
    create_load_delete(s).await;

    let wrong = Sessions::new(&config(store("not-the-password"), LONG, LONG))
        .await
        .unwrap();
    assert!(is_store_error(wrong.create(login("pat", None)).await));
}

/// Sentinel over TLS end to end (sentinels, master, replication), verified
/// against `ca_file`.
#[tokio::test]
async fn sentinel_over_tls_with_ca_file() {
    use portcullis::config::RedisTopology;
    use support::redis_ha::{MASTER_NAME, SentinelOptions, SentinelSet, TestCa};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "sentinel");
    let set = SentinelSet::start_with(
        Duration::from_secs(5),
        &SentinelOptions {
            tls: Some(&ca),
            ..Default::default()
        },
    );
    let cfg = StoreConfig::Redis(RedisConfig {
        url: Some(Secret::new("rediss://ignored.invalid/0")),
        topology: RedisTopology::Sentinel {
            sentinels: set.urls().into_iter().map(Secret::new).collect(),
            master: MASTER_NAME.into(),
        },
        ca_file: Some(ca.ca.clone()),
        cache_ttl: Duration::from_secs(5),
    });
    let s = Sessions::new(&config(cfg, LONG, LONG)).await.unwrap();
    create_load_delete(s.clone()).await;
    revoke_once_claims_and_deletes_together(s).await;
}

/// A cluster over TLS (clients and bus), verified against `ca_file`.
#[tokio::test]
async fn cluster_over_tls_with_ca_file() {
    use portcullis::config::RedisTopology;
    use support::redis_ha::{Cluster, TestCa};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster");
    let c = Cluster::start_with(Some(&ca));
    let cfg = StoreConfig::Redis(RedisConfig {
        url: None,
        topology: RedisTopology::Cluster {
            nodes: c.urls().into_iter().map(Secret::new).collect(),
        },
        ca_file: Some(ca.ca.clone()),
        cache_ttl: Duration::from_secs(5),
    });
    let s = Sessions::new(&config(cfg, LONG, LONG)).await.unwrap();
    create_load_delete(s.clone()).await;
    indexes_follow_sessions(s).await;
}

/// With a replica, a deletion is acknowledged only once a replica has it
/// (`WAIT 1`): while the replica is frozen (still connected, acknowledging
/// nothing) a logout fails rather than be reported done on the strength of
/// the master alone, which could die and see that replica promoted without
/// the deletion. Once the replica answers again, the retry is acknowledged.
#[tokio::test]
async fn redis_deletion_is_acknowledged_only_once_a_replica_has_it() {
    let master = Redis::start();
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
    let signal = |sig: &str| {
        let pid = replica.pid().unwrap().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let started = Instant::now();
    let frozen = s.delete(&session).await;
    let (_, other) = s.create(login("wait2", Some("sid-wait2"))).await.unwrap();
    let claim = s
        .revoke_once("jti-wait", LONG, ISS, Revoke::Sid("sid-wait2"))
        .await;
    signal("-CONT");
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
