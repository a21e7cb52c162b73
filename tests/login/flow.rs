//! The login round trip: identity headers, anonymous requests, two tabs, SameSite, a late IdP.

use reqwest::header::ACCEPT;

use super::*;
use crate::support::idp::IdpOptions;
use crate::support::stack::{StackOptions, new_browser, readyz_status};
use crate::support::{Gateway, TEST_CLIENT_SECRET};

#[tokio::test]
async fn login_lands_on_the_requested_page_with_identity_headers() {
    let stack = Stack::start(StackOptions::default());
    let browser = new_browser();
    let resp = stack
        .login(&browser, "alice", "/reports/q3?year=2026")
        .await;
    assert_eq!(resp.status(), 200);
    let seen = stack.app.last_request().expect("upstream reached");
    assert_eq!(seen.uri.to_string(), "/reports/q3?year=2026");
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admins,staff"));
    assert_eq!(seen.header("x-forwarded-preferred-username"), Some("alice"));
    assert!(
        seen.header("x-forwarded-access-token").is_none(),
        "tokens are not sent unless configured"
    );
    let cookie = seen.header("cookie").unwrap_or("");
    assert!(
        !cookie.contains("portcullis"),
        "gateway cookies never reach the upstream: {cookie}"
    );
    assert_eq!(
        resp.headers()["cache-control"],
        "private",
        "session routes default to private caching"
    );

    // The session endpoint describes it without sliding it.
    let info: serde_json::Value = browser
        .get(stack.gateway.url("/.portcullis/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], "alice");
    assert!(info["sid"].is_string(), "the IdP's sid is kept: {info}");
    assert!(info["expires_at"].as_u64().unwrap() > info["created_at"].as_u64().unwrap());
}

#[tokio::test]
async fn unverified_email_is_not_forwarded() {
    let stack = Stack::start(StackOptions::default());
    let resp = stack.login(&new_browser(), "carol", "/").await;
    assert_eq!(resp.status(), 200);
    let seen = stack.app.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-user"), Some("carol"));
    assert!(
        seen.header("x-forwarded-email").is_none(),
        "carol's email is not verified"
    );
}

#[tokio::test]
async fn requests_without_a_session_by_client_kind() {
    let stack = Stack::start(StackOptions::default());
    let c = new_browser();
    // JSON client: 401 with a login URL, never a redirect.
    let r = c
        .get(stack.gateway.url("/api/items"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(
        body["login_url"],
        stack
            .gateway
            .url("/.portcullis/login?return_to=%2Fapi%2Fitems")
    );
    // Neither navigation nor JSON: 401 HTML page linking to the login.
    let r = c.get(stack.gateway.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("/.portcullis/login?return_to=%2Fx")
    );
    // A POST navigation is not redirected (it would lose its body).
    let r = c
        .post(stack.gateway.url("/form"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Public routes need nothing.
    assert_eq!(
        c.get(stack.gateway.url("/public/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        stack.app.request_count(),
        1,
        "nothing unauthenticated reached the app but /public/"
    );
}

#[tokio::test]
async fn idp_unreachable_at_start_then_ready() {
    let idp_port = support::free_port();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
admin_listen = "{admin_listen}"

[oidc]
issuer = "http://127.0.0.1:{idp_port}"
client_id = "portcullis"
client_secret = "${PORTCULLIS_CLIENT_SECRET}"

[session]
secret = "${PORTCULLIS_SECRET}"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:9"
"#,
    )
    .var("idp_port", idp_port.to_string())
    .start();
    assert_eq!(
        readyz_status(&gw),
        Some(503),
        "not ready while the IdP is down"
    );
    let r = navigate(&new_browser(), &gw.url("/")).await;
    assert_eq!(
        r.status(),
        503,
        "a login cannot start without the IdP's metadata"
    );

    let client =
        support::idp::IdpClient::gateway("portcullis", TEST_CLIENT_SECRET, &gw.public_url());
    let _idp = support::idp::Idp::start(IdpOptions {
        port: Some(idp_port),
        ..IdpOptions::with_client(client)
    });
    assert!(support::stack::wait_ready(&gw), "ready once the IdP is up");
}

#[tokio::test]
async fn two_tabs_log_in_concurrently() {
    let stack = Stack::start(StackOptions::default());
    let browser = new_browser();
    let tab1 = navigate(&browser, &stack.gateway.url("/one")).await;
    let tab2 = navigate(&browser, &stack.gateway.url("/two")).await;
    let cb1 = stack.idp.login(&browser, &location(&tab1), "alice").await;
    let cb2 = stack.idp.login(&browser, &location(&tab2), "alice").await;
    let l2 = navigate(&browser, cb2.as_str()).await;
    let l1 = navigate(&browser, cb1.as_str()).await;
    assert_eq!(l1.status(), 303);
    assert_eq!(l2.status(), 303);
    assert_eq!(location(&l1).path(), "/one");
    assert_eq!(location(&l2).path(), "/two");
}

/// The callback's answer by `cookie_samesite`: lax gets a 303 to the page
/// first asked for; strict gets a 200 page that navigates there itself
/// (meta refresh and a link; no script, not cacheable, never framed, no
/// Referer), because a Strict cookie set at the end of the IdP's cross-site
/// redirect chain is not sent on a redirect that continues it.
#[tokio::test]
async fn callback_answer_by_samesite() {
    const WANTED: &str = "/reports/q3?year=2026&view=a%20b";
    for samesite in ["lax", "strict"] {
        let stack = Stack::start(StackOptions {
            session: format!("cookie_samesite = \"{samesite}\"\n"),
            ..Default::default()
        });
        let browser = new_browser();
        let to_idp = navigate(&browser, &stack.gateway.url(WANTED)).await;
        let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
        let landed = navigate(&browser, callback.as_str()).await;
        let cookies = set_cookies(&landed);
        let session = cookies
            .iter()
            .find(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
            .unwrap_or_else(|| panic!("{samesite}: session cookie set: {cookies:?}"));
        let h = landed.headers().clone();
        assert_eq!(h["cache-control"], "no-store", "{samesite}");
        if samesite == "lax" {
            assert!(session.contains("SameSite=Lax"), "{session}");
            assert_eq!(landed.status(), 303);
            assert_eq!(location(&landed).as_str(), stack.gateway.url(WANTED));
            continue;
        }
        assert!(session.contains("SameSite=Strict"), "{session}");
        assert_eq!(landed.status(), 200);
        assert!(h.get("location").is_none());
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("script-src"), "no script runs: {csp}");
        let page = landed.text().await.unwrap();
        assert!(!page.contains("<script"), "{page}");
        let target = support::stack::meta_refresh_target(&page).expect("meta refresh");
        assert_eq!(target, WANTED, "{page}");
        assert!(
            page.contains(&format!("<a href=\"{}\">", WANTED.replace('&', "&amp;"))),
            "a link for browsers without refresh: {page}"
        );
        // Following it (reqwest ignores SameSite) reaches the app signed in.
        let app = navigate(&browser, &stack.gateway.url(&target)).await;
        assert_eq!(app.status(), 200);
        let seen = stack.app.last_request().expect("upstream reached");
        assert_eq!(seen.uri.to_string(), WANTED);
        assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    }
}
