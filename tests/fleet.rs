//! A fleet: two gateway instances sharing one real Redis. A session made on
//! one is served by the other; a logout on one ends it on the other at once
//! (pub/sub, well inside `cache_ttl`); a WebSocket tunnel on the other closes;
//! Redis unreachable means 503, never a login redirect and never a pass.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::ACCEPT;
use support::idp::{Idp, IdpClient, IdpOptions};
use support::stack::{location, navigate, new_browser, wait_ready};
use support::{Gateway, Redis, TEST_CLIENT_SECRET, Upstream, free_port};

const CONFIG: &str = r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
admin_listen = "{admin_listen}"

[oidc]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "${PORTCULLIS_CLIENT_SECRET}"

[session]
secret = "${PORTCULLIS_SECRET}"
store = "redis"

[session.redis]
url = "{redis}"
cache_ttl = "60s"

[[route]]
prefix = "/"
upstream = "{app}"
"#;

struct Fleet {
    idp: Idp,
    app: Upstream,
    redis: Redis,
    a: Gateway,
    b: Gateway,
}

fn fleet() -> Fleet {
    let (port_a, port_b) = (free_port(), free_port());
    let client = IdpClient::gateway(
        "portcullis",
        TEST_CLIENT_SECRET,
        &format!("http://127.0.0.1:{port_a}"),
    )
    .with_origin(&format!("http://127.0.0.1:{port_b}"));
    let idp = Idp::start(IdpOptions::with_client(client));
    let app = Upstream::start();
    let redis = Redis::start();
    let start = |port| {
        Gateway::builder(CONFIG)
            .port(port)
            .var("issuer", idp.issuer())
            .var("app", app.url())
            .var("redis", redis.url())
            .start()
    };
    let (a, b) = (start(port_a), start(port_b));
    assert!(wait_ready(&a) && wait_ready(&b));
    Fleet {
        idp,
        app,
        redis,
        a,
        b,
    }
}

async fn login(f: &Fleet, browser: &reqwest::Client) {
    let to_idp = navigate(browser, &f.a.url("/")).await;
    let callback = f.idp.login(browser, &location(&to_idp), "alice").await;
    assert_eq!(navigate(browser, callback.as_str()).await.status(), 303);
}

async fn status(browser: &reqwest::Client, url: String) -> u16 {
    browser
        .get(url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_logout_on_one_instance_ends_the_session_on_the_other_at_once() {
    let f = fleet();
    let browser = new_browser();
    login(&f, &browser).await;
    // The cookie is per host, so the same browser reaches instance B with it.
    assert_eq!(status(&browser, f.a.url("/x")).await, 200);
    assert_eq!(
        status(&browser, f.b.url("/x")).await,
        200,
        "B serves A's session from Redis"
    );
    assert_eq!(
        f.app.last_request().unwrap().header("x-forwarded-user"),
        Some("alice")
    );

    let resp = browser
        .post(f.a.url("/logout?mode=local"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    // B had the session cached for up to 60 s; the revocation reached it now.
    let started = std::time::Instant::now();
    let mut code = status(&browser, f.b.url("/x")).await;
    while code != 401 && started.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        code = status(&browser, f.b.url("/x")).await;
    }
    assert_eq!(code, 401, "B still served a revoked session");
}

#[tokio::test]
async fn a_websocket_on_another_instance_closes_when_the_session_is_revoked() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let f = fleet();
    let browser = new_browser();
    // The WebSocket client needs the cookie value by hand: take it from the callback.
    let to_idp = navigate(&browser, &f.a.url("/")).await;
    let callback = f.idp.login(&browser, &location(&to_idp), "alice").await;
    let landed = navigate(&browser, callback.as_str()).await;
    let cookie = landed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
        .unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();

    let mut req = format!("ws://127.0.0.1:{}/ws", f.b.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", f.b.public_url().parse().unwrap());
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("handshake with a session");
    assert_eq!(resp.status(), 101);

    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(f.a.url("/logout?mode=local"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(msg) = ws.next().await {
            if msg.is_err() || msg.is_ok_and(|m| m.is_close()) {
                return;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the tunnel on instance B stayed open after logout on A"
    );
}

#[tokio::test]
async fn redis_down_means_503_never_a_redirect_or_a_pass() {
    let mut f = fleet();
    let browser = new_browser();
    login(&f, &browser).await;
    f.redis.stop();
    // A session no instance has cached: the store must be asked, and cannot answer.
    let unknown = "portcullis=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for gw in [&f.a, &f.b] {
        let nav = c
            .get(gw.url("/x"))
            .header("cookie", unknown)
            .header(ACCEPT, "text/html")
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .unwrap();
        assert_eq!(
            nav.status(),
            503,
            "a navigation is not sent to login when the store is down"
        );
        let api = c
            .get(gw.url("/x"))
            .header("cookie", unknown)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 503);
    }
    let ready = c.get(f.b.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without the store");
    // Redis back: the gateway is ready again without a restart.
    f.redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c
        .get(f.b.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
