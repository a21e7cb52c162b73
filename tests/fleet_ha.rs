//! A fleet on highly available Redis, end to end with real processes:
//! Sentinel (a master killed under load, its replica promoted), Cluster
//! (sessions and their indexes spread over three masters) and TLS with an
//! operator-named CA.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::TEST_ADMIN_TOKEN;
use support::idp::{Idp, browser};
use support::redis_ha::{Cluster, MASTER_NAME, SentinelSet, TestCa};
use support::setup::*;
use support::signing::*;

fn quoted(urls: &[String]) -> String {
    urls.iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Logs in like [`login`] but says whether it worked instead of failing
/// the test (while Redis fails over, a login may get 503).
async fn try_login(gw: &support::Gateway, idp: &Idp, b: &reqwest::Client, user: &str) -> bool {
    let Ok(resp) = b
        .get(gw.url("/app/page"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
    else {
        return false;
    };
    if resp.status() != 302 {
        return false;
    }
    let Some(to_idp) = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .and_then(|l| url::Url::parse(l).ok())
    else {
        return false;
    };
    let callback = idp.login(b, &to_idp, user).await;
    matches!(b.get(callback).send().await, Ok(r) if r.status() == 303)
}

/// The status of a protected JSON request with this browser's cookie.
async fn status(gw: &support::Gateway, b: &reqwest::Client) -> u16 {
    b.get(gw.url("/app/data"))
        .header("accept", "application/json")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits (up to 500 ms, well inside the 60 s `cache_ttl`: only the
/// broadcast can end it there) until `gw` refuses this browser's session.
async fn refused_soon(gw: &support::Gateway, b: &reqwest::Client) -> u16 {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let s = status(gw, b).await;
        if s == 401 || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn local_logout(gw: &support::Gateway, b: &reqwest::Client) -> u16 {
    b.post(gw.url("/logout?mode=local"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A client with a cookie that names no session.
fn unknown_session() -> reqwest::Client {
    let jar = reqwest::cookie::Jar::default();
    jar.add_cookie_str(
        "portcullis=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &"http://127.0.0.1/".parse().unwrap(),
    );
    reqwest::Client::builder()
        .cookie_provider(Arc::new(jar))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Sentinel: three instances under continuous load with live, revoked and
/// unknown cookies; the master is killed and the replica promoted. No
/// revoked or unknown session is ever proxied, a logout acknowledged just
/// before the kill stays a logout, and logins work again soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failover_undoes_no_logout_and_logins_resume() {
    let mut set = SentinelSet::start(Duration::from_millis(1000));
    let session = format!(
        "store = \"redis\"\n[session.redis]\nsentinels = [{}]\nsentinel_master = \"{MASTER_NAME}\"\ncache_ttl = \"60s\"",
        quoted(&set.urls())
    );
    let one = start_gateway_on(support::free_port(), true, "", &session);
    let two = start_gateway_on(one.idp_port, true, "", &session);
    let three = start_gateway_on(one.idp_port, true, "", &session);
    let idp = start_idp(&one, vec![]).await;
    wait_ready(&two.gw).await;
    wait_ready(&three.gw).await;

    let mut live = Vec::new();
    let mut revoked = Vec::new();
    for i in 0..6 {
        let b = browser();
        login(&one.gw, &idp, &b, &format!("user{i}")).await;
        if i % 2 == 0 {
            assert_eq!(local_logout(&two.gw, &b).await, 303);
            revoked.push(b);
        } else {
            live.push(b);
        }
    }
    // Propagated to every instance before the load starts (the load then
    // asserts they stay refused through the failover).
    for b in &revoked {
        for gw in [&one.gw, &two.gw, &three.gw] {
            assert_eq!(refused_soon(gw, b).await, 401);
        }
    }
    revoked.push(unknown_session());
    let last = browser();
    login(&one.gw, &idp, &last, "last").await;
    for gw in [&one.gw, &two.gw, &three.gw] {
        assert_eq!(status(gw, &last).await, 200, "shared session");
    }

    let gws = Arc::new([one.gw, two.gw, three.gw]);
    let stop = Arc::new(AtomicBool::new(false));
    let proxied_revoked = Arc::new(AtomicUsize::new(0));
    let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for w in 0..8usize {
        let (gws, stop, bad) = (gws.clone(), stop.clone(), proxied_revoked.clone());
        let (served, refused) = (served.clone(), refused.clone());
        let (live, revoked) = (live.clone(), revoked.clone());
        load.push(tokio::spawn(async move {
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let gw = &gws[n % 3];
                if n % 2 == 0 {
                    let s = status(gw, &revoked[n % revoked.len()]).await;
                    if s == 200 {
                        bad.fetch_add(1, Ordering::SeqCst);
                    }
                } else if status(gw, &live[n % live.len()]).await == 200 {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Acknowledged, then the master dies at once.
    assert_eq!(local_logout(&gws[0], &last).await, 303);
    let old_master = set.master.port();
    let killed = Instant::now();
    set.master.stop();

    let fresh = browser();
    let mut attempts = 0;
    while !try_login(&gws[0], &idp, &fresh, "after").await {
        attempts += 1;
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "no login within 40 s of the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gap = killed.elapsed();
    println!(
        "failover: new logins work {:.2} s after the master was killed ({attempts} refused attempts; sentinel down-after 1 s)",
        gap.as_secs_f64()
    );
    assert_ne!(set.master_port(), Some(old_master), "replica promoted");
    // Let the load run on the promoted master for a moment.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    println!(
        "load: {} live requests served, {} refused (503 while failing over)",
        served.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(
        proxied_revoked.load(Ordering::SeqCst),
        0,
        "a revoked or unknown session was proxied"
    );
    assert!(served.load(Ordering::Relaxed) > 0);
    for gw in gws.iter() {
        assert_eq!(
            status(gw, &last).await,
            401,
            "the logout acknowledged before the kill was undone"
        );
        assert_eq!(status(gw, &fresh).await, 200, "the new login is shared");
        assert_eq!(status(gw, &live[0]).await, 200, "live sessions survive");
    }
}

/// Cluster: two instances on three masters. Sessions, their `sid` and
/// `sub` index entries and the claims land in different slots; every path
/// works and revocations reach the other instance at once.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_fleet_shares_logins_logouts_and_revocations() {
    let cluster = Cluster::start();
    let redis_cfg = format!(
        "store = \"redis\"\n[session.redis]\ncluster = [{}]\ncache_ttl = \"60s\"",
        quoted(&cluster.urls())
    );
    let one = start_gateway_on(support::free_port(), true, "", &redis_cfg);
    let two = start_gateway_on(one.idp_port, true, "", &redis_cfg);
    let idp = start_idp(&one, vec![]).await;
    wait_ready(&two.gw).await;
    let (one, two) = (&one.gw, &two.gw);
    let iss = idp.issuer().to_owned();

    // Login on one, logout on the other.
    let a1 = browser();
    login(one, &idp, &a1, "alice").await;
    assert_eq!(status(two, &a1).await, 200);
    assert_eq!(local_logout(two, &a1).await, 303);
    assert_eq!(
        refused_soon(one, &a1).await,
        401,
        "logout on two ends it on one"
    );

    // Back-channel by sid, then its replay.
    let a2 = browser();
    login(one, &idp, &a2, "alice").await;
    let sid = session(two, &a2).await.expect("a2")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let token = sign_rs256(
        &logout_header(),
        &logout_claims(&iss, Some(&sid), None),
        &idp_key_pem(),
    );
    assert_eq!(post_token(two, &token).await.status(), 200);
    assert_eq!(refused_soon(one, &a2).await, 401, "back-channel by sid");
    assert_eq!(post_token(one, &token).await.status(), 400, "jti replay");

    // Back-channel by sub: every session of alice, whichever slot it is in.
    let alice: Vec<_> = (0..4).map(|_| browser()).collect();
    for b in &alice {
        login(one, &idp, b, "alice").await;
    }
    let bob = browser();
    login(one, &idp, &bob, "bob").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut claims = logout_claims(&iss, None, Some("alice"));
    claims["iat"] = json!(now());
    let resp = post_token(two, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
    assert_eq!(resp.status(), 200);
    for b in &alice {
        assert_eq!(refused_soon(one, b).await, 401, "back-channel by sub");
    }
    assert_eq!(status(one, &bob).await, 200, "bob survives");

    // Admin revoke on two ends bob on one.
    let resp = reqwest::Client::new()
        .post(two.admin_url("/admin/sessions/revoke"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .json(&json!({"sub": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["revoked"],
        1
    );
    assert_eq!(refused_soon(one, &bob).await, 401, "admin revoke");
    for gw in [one, two] {
        assert!(
            !gw.logs().iter().any(|l| l.contains("CROSSSLOT")),
            "a CROSSSLOT error was logged"
        );
    }
}

/// TLS with `ca_file`: the fleet works over rediss:// against a server
/// whose certificate a test CA signed; another CA is refused, said clearly
/// in the log at start and in `/readyz`.
#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_named_ca_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let right = TestCa::new(dir.path(), "right");
    let wrong = TestCa::new(dir.path(), "wrong");
    let redis = support::Redis::start_tls(&right.cert, &right.key);
    let session = |ca: &std::path::Path| {
        format!(
            "store = \"redis\"\n[session.redis]\nurl = \"rediss://127.0.0.1:{}/0\"\nca_file = \"{}\"\ncache_ttl = \"60s\"",
            redis.port(),
            ca.display()
        )
    };
    let one = start_gateway_on(support::free_port(), true, "", &session(&right.ca));
    let bad = start_gateway_on(one.idp_port, true, "", &session(&wrong.ca));
    let idp = start_idp(&one, vec![]).await;

    let b = browser();
    login(&one.gw, &idp, &b, "alice").await;
    assert_eq!(status(&one.gw, &b).await, 200);
    assert_eq!(local_logout(&one.gw, &b).await, 303);
    assert_eq!(status(&one.gw, &b).await, 401);

    let ready = reqwest::get(bad.gw.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    let why = body["errors"]["session_store"].as_str().unwrap_or_default();
    assert!(why.contains("certificate"), "readyz says why: {body}");
    assert!(
        bad.gw
            .logs()
            .iter()
            .any(|l| l.contains("Redis not usable at start") && l.contains("certificate")),
        "start-up log names the certificate problem:\n{}",
        bad.gw.logs().join("\n")
    );
}

/// Logs in on `gw` and returns the session cookie (`name=value`), for
/// clients without a cookie jar (WebSocket).
async fn login_cookie(gw: &support::Gateway, idp: &Idp, user: &str) -> String {
    let b = browser();
    let resp = b
        .get(gw.url("/app/page"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    let to_idp = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let callback = idp.login(&b, &to_idp, user).await;
    let landed = b.get(callback).send().await.unwrap();
    let cookie = landed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
        .expect("session cookie");
    cookie.split(';').next().unwrap().to_owned()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(gw: &support::Gateway, cookie: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{}/ws", gw.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", gw.public_url().parse().unwrap());
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("handshake with a session");
    assert_eq!(resp.status(), 101);
    ws
}

/// Waits up to `limit` for the tunnel to close; returns when it did.
async fn closes_within(ws: &mut Ws, limit: Duration) -> Option<Duration> {
    use futures_util::StreamExt;
    let started = Instant::now();
    tokio::time::timeout(limit, async {
        while let Some(msg) = ws.next().await {
            if msg.is_err() || msg.is_ok_and(|m| m.is_close()) {
                return;
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// A tunnel closes when its session reaches the idle timeout (nothing slid
/// it), not only at the absolute lifetime.
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_closes_at_its_sessions_idle_timeout() {
    let setup = start_gateway_on(support::free_port(), false, "", "idle_timeout = \"3s\"");
    let idp = start_idp(&setup, vec![]).await;
    let cookie = login_cookie(&setup.gw, &idp, "alice").await;
    let mut ws = open_ws(&setup.gw, &cookie).await;
    let closed = closes_within(&mut ws, Duration::from_secs(8)).await;
    assert!(
        closed.is_some(),
        "the tunnel outlived its session's idle timeout"
    );
}

/// Revocations missed while the subscription was down are caught when it
/// comes back: Redis restarts empty (the session is gone, no message was
/// ever published), and the tunnel on the other instance closes once its
/// subscription is live again instead of staying open up to max_lifetime.
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_is_rechecked_when_the_subscription_comes_back() {
    let mut redis = support::Redis::start();
    let session = format!(
        "store = \"redis\"\n[session.redis]\nurl = \"{}\"\ncache_ttl = \"60s\"",
        redis.url()
    );
    let one = start_gateway_on(support::free_port(), false, "", &session);
    let two = start_gateway_on(one.idp_port, false, "", &session);
    let idp = start_idp(&one, vec![]).await;
    wait_ready(&two.gw).await;
    let cookie = login_cookie(&one.gw, &idp, "alice").await;
    let mut ws = open_ws(&two.gw, &cookie).await;
    redis.restart();
    let closed = closes_within(&mut ws, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "the tunnel of a session lost with Redis stayed open after the subscription came back"
    );
}

/// A revocation that lands while a WebSocket handshake is being admitted
/// still closes its tunnel. Here the handshake refreshes the expired access
/// token at an IdP that hangs (SIGSTOP); meanwhile an admin revokes the
/// user; then the IdP dies, the refresh fails transiently and the handshake
/// is admitted on the session as it was read. Before, the tunnel listened
/// for revocations only from then on and stayed open until the idle
/// timeout (30 minutes by default).
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_during_a_websocket_admission_closes_the_tunnel() {
    let setup = start_gateway_on(support::free_port(), true, "", "");
    let mut idp = Idp::start(support::idp::IdpOptions {
        port: Some(setup.idp_port),
        clients: vec![gateway_client(&setup.gw)],
        signing_jwks: Some(idp_jwks()),
        access_token_ttl: Some(1),
        ..Default::default()
    });
    wait_ready(&setup.gw).await;
    let cookie = login_cookie(&setup.gw, &idp, "alice").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    support::send_signal(idp.pid(), support::Signal::Stop);
    let gw_port = setup.gw.port();
    let public = setup.gw.public_url().to_owned();
    let handshake = tokio::spawn({
        let cookie = cookie.clone();
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = format!("ws://127.0.0.1:{gw_port}/ws")
                .into_client_request()
                .unwrap();
            req.headers_mut().insert("origin", public.parse().unwrap());
            req.headers_mut().insert("cookie", cookie.parse().unwrap());
            tokio_tungstenite::connect_async(req).await
        }
    });
    // The handshake is now waiting on the frozen IdP.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let resp = reqwest::Client::new()
        .post(setup.gw.admin_url("/admin/sessions/revoke"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    idp.kill();
    match handshake.await.unwrap() {
        // Refused at once is fine too; admitted, the tunnel must close.
        Err(_) => {}
        Ok((mut ws, resp)) => {
            assert_eq!(resp.status(), 101);
            assert!(
                closes_within(&mut ws, Duration::from_secs(3))
                    .await
                    .is_some(),
                "the tunnel of a session revoked during its admission stayed open"
            );
        }
    }
    assert!(
        setup
            .gw
            .logs()
            .iter()
            .any(|l| l.contains("refresh failed transiently")),
        "the handshake did not go through the failed refresh:\n{}",
        setup.gw.logs().join("\n")
    );
}
