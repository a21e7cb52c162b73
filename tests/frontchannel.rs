//! Front-Channel Logout end to end: driven by the real
//! `oidc-provider@6.31.1` (which renders the iframes), plus the receiver's
//! own rules checked against a gateway wired to the 9.x test IdP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::time::Duration;

use url::Url;

use support::TEST_CLIENT_SECRET;
use support::idp::browser;
use support::idp_legacy::{self, LegacyIdp, iframe_srcs};
use support::setup::*;

/// Logs in through the gateway with the legacy IdP's login form.
async fn legacy_login(gw: &support::Gateway, idp: &LegacyIdp, b: &reqwest::Client, user: &str) {
    let resp = b
        .get(gw.url("/app/page"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("GET protected page");
    assert_eq!(resp.status(), 302);
    let to_idp = Url::parse(
        resp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location"),
    )
    .expect("IdP URL");
    let callback = idp.login(b, &to_idp, user).await;
    let resp = b.get(callback).send().await.expect("GET callback");
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The IdP's logout page loads the gateway's front-channel URL in an
/// iframe; fetched without any cookie (as a third-party frame would be),
/// it still ends the gateway session, found by `sid`.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_idp_frontchannel_logout_ends_the_session_without_cookies() {
    let setup = start_gateway(true, "");
    let gw = &setup.gw;
    let idp = LegacyIdp::start(
        setup.idp_port,
        vec![idp_legacy::gateway_client(
            CLIENT_ID,
            TEST_CLIENT_SECRET,
            &gw.public_url(),
        )],
    );
    wait_ready(gw).await;

    let b = browser();
    legacy_login(gw, &idp, &b, "alice").await;
    let s = session(gw, &b).await.expect("logged in");
    let sid = s["sid"].as_str().expect("sid in the session").to_owned();
    assert!(reaches_upstream(gw, &b).await);

    let page = idp.logout_page(&b, &[]).await;
    let frames = iframe_srcs(&page);
    assert_eq!(frames.len(), 1, "one front-channel iframe:\n{page}");
    let frame = &frames[0];
    assert_eq!(frame.path(), "/.portcullis/frontchannel-logout");
    let q = |k: &str| {
        frame
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(q("sid").as_deref(), Some(sid.as_str()));
    assert_eq!(q("iss").as_deref(), Some(idp.issuer()));

    // The frame, with no cookie at all.
    let resp = reqwest::Client::new()
        .get(frame.clone())
        .send()
        .await
        .expect("GET front-channel URL");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "cache-control").as_deref(),
        Some("no-cache, no-store")
    );
    assert_eq!(header(&resp, "pragma").as_deref(), Some("no-cache"));
    assert_eq!(header(&resp, "x-frame-options"), None);
    let csp = header(&resp, "content-security-policy").expect("CSP");
    assert!(
        csp.contains(&format!("frame-ancestors {}", idp.issuer())),
        "the IdP may frame it: {csp}"
    );
    assert_eq!(
        header(&resp, "set-cookie"),
        None,
        "no cookie came, none to expire"
    );

    assert_eq!(session(gw, &b).await, None, "gateway session ended");
    assert!(!reaches_upstream(gw, &b).await);
    let event = gw
        .wait_for_log("kind", "frontchannel", Duration::from_secs(5))
        .expect("logout event");
    assert_eq!(support::log_field(&event, "outcome"), Some("ok"));
}

/// The receiver's rules: `sid` required (never "everyone"), `iss` must be
/// the issuer when present, a missing `iss` is accepted (Entra), a cookie
/// that comes along is expired, only GET.
#[tokio::test(flavor = "multi_thread")]
async fn frontchannel_request_rules() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let (b1, b2) = (browser(), browser());
    login(gw, &idp, &b1, "alice").await;
    login(gw, &idp, &b2, "alice").await;
    let sid =
        |s: Option<serde_json::Value>| s.expect("session")["sid"].as_str().expect("sid").to_owned();
    let sid1 = sid(session(gw, &b1).await);
    let sid2 = sid(session(gw, &b2).await);
    assert_ne!(sid1, sid2);

    let fc = |query: &str| gw.url(&format!("/.portcullis/frontchannel-logout{query}"));
    let iss = urlencode(idp.issuer());
    let no_cookie = reqwest::Client::new();

    for (what, query) in [
        ("no parameters", String::new()),
        ("iss only", format!("?iss={iss}")),
        ("empty sid", format!("?iss={iss}&sid=")),
        (
            "wrong iss",
            format!("?iss={}&sid={sid1}", urlencode("http://127.0.0.1:1")),
        ),
        ("empty iss", format!("?iss=&sid={sid1}")),
        ("two sids", format!("?iss={iss}&sid={sid1}&sid={sid2}")),
    ] {
        let resp = no_cookie.get(fc(&query)).send().await.expect("GET");
        assert_eq!(resp.status(), 400, "{what}");
    }
    let post = no_cookie
        .post(fc(&format!("?iss={iss}&sid={sid1}")))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 405);
    assert!(session(gw, &b1).await.is_some(), "nothing ended so far");
    assert!(session(gw, &b2).await.is_some(), "nothing ended so far");

    // No iss (Microsoft Entra's form), no cookie: ends that sid only.
    let resp = no_cookie
        .get(fc(&format!("?sid={sid1}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(session(gw, &b1).await, None);
    assert!(session(gw, &b2).await.is_some(), "another sid survives");

    // From the browser itself: its cookie is expired too.
    let resp = b2
        .get(fc(&format!("?iss={iss}&sid={sid2}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    let cookie = header(&resp, "set-cookie").expect("cookie expired");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    let csp = header(&resp, "content-security-policy").expect("CSP");
    assert!(
        csp.contains(&format!("frame-ancestors {}", idp.issuer())),
        "{csp}"
    );
    assert_eq!(session(gw, &b2).await, None);
}

/// `oidc.frontchannel_frame_ancestors` replaces the default sources.
#[tokio::test(flavor = "multi_thread")]
async fn configured_frame_ancestors() {
    let setup = start_gateway(
        true,
        r#"frontchannel_frame_ancestors = ["https://idp.example.com", "https://login.example.com"]"#,
    );
    let _idp = start_idp(&setup, vec![]).await;
    let resp = reqwest::get(setup.gw.url("/.portcullis/frontchannel-logout?sid=unknown"))
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200, "an unknown sid is not an error");
    let csp = header(&resp, "content-security-policy").expect("CSP");
    assert!(
        csp.contains("frame-ancestors https://idp.example.com https://login.example.com"),
        "{csp}"
    );
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
