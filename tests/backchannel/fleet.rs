//! With a Redis store: a fleet shares logouts and spent `jti`s; an outage mid-logout loses nothing.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::support::idp::browser;
use crate::support::setup::*;
use crate::support::signing::*;
use crate::support::{Cut, Partition};

/// With `store = "redis"`, a fleet shares the outcome: a logout token
/// delivered to one instance ends the session on another at once (the
/// revocation is broadcast: the other instance had the session cached for
/// up to 60 s), and its `jti` is spent for all of them.
#[tokio::test(flavor = "multi_thread")]
async fn redis_fleet_shares_logouts_and_replay_cache() {
    let redis = support::Redis::start();
    let session = format!(
        "store = \"redis\"\n[session.redis]\nurl = \"{}\"\ncache_ttl = \"60s\"",
        redis.url()
    );
    let one = start_gateway_on(support::free_port(), true, "", &session);
    let two = start_gateway_on(one.idp_port, true, "", &session);
    let idp = start_idp(&one, vec![]).await;
    wait_ready(&two.gw).await;
    let iss = idp.issuer().to_owned();

    // The browser's cookie for 127.0.0.1 reaches both instances; both have
    // the session in their local cache now.
    let b = browser();
    login(&one.gw, &idp, &b, "alice").await;
    assert!(support::setup::session(&one.gw, &b).await.is_some());
    let sid = support::setup::session(&two.gw, &b)
        .await
        .expect("the other instance sees the session")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();

    let token = sign_rs256(
        &logout_header(),
        &logout_claims(&iss, Some(&sid), None),
        &idp_key_pem(),
    );
    assert_eq!(post_token(&two.gw, &token).await.status(), 200);
    // Well inside cache_ttl: only the broadcast can have reached instance one.
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    while support::setup::session(&one.gw, &b).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "instance one still serves the session: the revocation was not broadcast"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replay = post_token(&one.gw, &token).await;
    assert_eq!(replay.status(), 400, "jti spent fleet-wide");
    let check = one
        .gw
        .wait_for_log("check", "jti_replay", Duration::from_secs(5));
    assert!(check.is_some(), "replay logged as such");
}

/// A Redis outage in the middle of a back-channel logout never loses the
/// logout. The link to Redis is cut while Redis keeps its data (a network
/// partition, or a failover that kept it), at two points:
/// - before the request reaches Redis: 400 and nothing written; once the
///   link is back, the IdP's retry of the very same token is accepted and
///   ends the session, and a replay after that is refused;
/// - after Redis ran it, before the reply: 400 (the gateway cannot tell),
///   yet the logout happened. Recording the `jti` in a step of its own
///   fails here: the `jti` is kept, the session lives, and every retry is
///   refused as a replay.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_mid_logout_never_loses_the_logout() {
    let redis = support::Redis::start();
    let link = Partition::start(redis.addr()).await;
    let session_cfg = format!(
        "store = \"redis\"\n[session.redis]\nurl = \"{}\"\ncache_ttl = \"60s\"",
        link.redis_url()
    );
    let setup = start_gateway_on(support::free_port(), true, "", &session_cfg);
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let iss = idp.issuer().to_owned();

    let (b1, b2) = (browser(), browser());
    login(gw, &idp, &b1, "alice").await;
    login(gw, &idp, &b2, "alice").await;
    let sid_of = |s: Option<Value>| -> String {
        s.expect("logged in")["sid"]
            .as_str()
            .expect("sid")
            .to_owned()
    };
    let sid1 = sid_of(session(gw, &b1).await);
    let sid2 = sid_of(session(gw, &b2).await);
    let token_for = |sid: &str| {
        let claims = logout_claims(&iss, Some(sid), None);
        let jti = claims["jti"].as_str().expect("jti").to_owned();
        (sign_rs256(&logout_header(), &claims, &idp_key_pem()), jti)
    };

    // 1. The link goes down as the logout is on its way to Redis.
    let (t1, jti1) = token_for(&sid1);
    link.cut_at(jti1.as_bytes(), Cut::BeforeRequest);
    let resp = post_token(gw, &t1).await;
    assert_eq!(resp.status(), 400, "never acknowledged without the store");
    assert!(link.is_down(), "the link went down during this logout");
    assert!(
        gw.wait_for_log("check", "store", Duration::from_secs(5))
            .is_some(),
        "store failure logged"
    );
    link.heal();
    wait_ready(gw).await;
    assert!(session(gw, &b1).await.is_some(), "nothing happened yet");
    // The IdP retries the very same token: accepted, and the session ends.
    assert_eq!(
        post_token(gw, &t1).await.status(),
        200,
        "the IdP's retry was taken for a replay"
    );
    assert_eq!(session(gw, &b1).await, None);
    assert!(!reaches_upstream(gw, &b1).await);
    // A replay after that success is refused.
    assert_eq!(post_token(gw, &t1).await.status(), 400);
    assert!(
        gw.wait_for_log("check", "jti_replay", Duration::from_secs(5))
            .is_some()
    );

    // 2. The link goes down after Redis ran the logout, before its reply.
    assert!(session(gw, &b2).await.is_some());
    let (t2, jti2) = token_for(&sid2);
    link.cut_at(jti2.as_bytes(), Cut::BeforeReply);
    assert_eq!(post_token(gw, &t2).await.status(), 400);
    assert!(link.is_down(), "the link went down during this logout");
    link.heal();
    wait_ready(gw).await;
    // The logout happened all the same. (The instance's revocation
    // subscription went down with the link and may have missed the
    // broadcast; it drops its local cache when it resubscribes, within its
    // reconnect backoff of at most 2 s.)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while session(gw, &b2).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived its logout: the jti was kept without it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!reaches_upstream(gw, &b2).await);
    // The IdP's retry finds the jti spent, along with the session.
    assert_eq!(post_token(gw, &t2).await.status(), 400);
}
