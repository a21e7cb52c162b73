//! Login and sessions end to end: the real IdP (oidc-provider), the real
//! gateway binary and a real upstream, driven like a browser over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::time::Duration;

use reqwest::header::{ACCEPT, SET_COOKIE};
use support::idp::IdpOptions;
use support::stack::{
    DEFAULT_ROUTES, Stack, StackOptions, location, navigate, new_browser, readyz_status,
};
use support::{Gateway, Signal, TEST_CLIENT_SECRET};

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn session_cookie_value(set_cookies: &[String]) -> Option<String> {
    set_cookies
        .iter()
        .find(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
        .map(|c| {
            c["portcullis=".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
}

/// Logs in and returns the session cookie value (read from the callback).
async fn login_cookie(stack: &Stack, browser: &reqwest::Client, user: &str) -> String {
    let to_idp = navigate(
        browser,
        &stack.gateway.url("/.portcullis/login?return_to=/"),
    )
    .await;
    assert_eq!(to_idp.status(), 302);
    let callback = stack.idp.login(browser, &location(&to_idp), user).await;
    let landed = navigate(browser, callback.as_str()).await;
    assert_eq!(landed.status(), 303);
    session_cookie_value(&set_cookies(&landed)).expect("session cookie set at callback")
}

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
async fn spoofed_identity_headers_never_reach_the_upstream_with_a_session() {
    let stack = Stack::start(StackOptions::default());
    let browser = new_browser();
    stack.login(&browser, "bob", "/").await;
    browser
        .get(stack.gateway.url("/x"))
        .header("X-Forwarded-User", "alice")
        .header("x_forwarded_user", "alice")
        .header("X-Forwarded-Groups", "admins")
        .header("X_FORWARDED_EMAIL", "alice@example.com")
        .send()
        .await
        .unwrap();
    let seen = stack.app.last_request().unwrap();
    assert_eq!(seen.header_all("x-forwarded-user"), vec!["bob".to_string()]);
    assert_eq!(
        seen.header_all("x-forwarded-groups"),
        vec!["staff".to_string()]
    );
    assert_eq!(
        seen.header_all("x-forwarded-email"),
        vec!["bob@example.org".to_string()]
    );
    assert!(
        !seen.headers.keys().any(|k| k.as_str().contains('_')),
        "underscore variants are dropped"
    );
}

#[tokio::test]
async fn session_cookie_flags_size_and_freshness() {
    let stack = Stack::start(StackOptions::default());
    let browser = new_browser();
    let to_idp = navigate(&browser, &stack.gateway.url("/")).await;
    let login_cookies = set_cookies(&to_idp);
    assert!(
        login_cookies
            .iter()
            .any(|c| c.starts_with("portcullis-login-")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Max-Age=600")),
        "{login_cookies:?}"
    );
    let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
    let landed = navigate(&browser, callback.as_str()).await;
    let cookies = set_cookies(&landed);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("portcullis="))
        .expect("session cookie");
    for attr in ["HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(session.contains(attr), "{attr} missing: {session}");
    }
    assert!(!session.contains("Secure"), "http public URL: no Secure");
    assert!(
        !session.contains("Max-Age") && !session.contains("Expires"),
        "not persistent: {session}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("portcullis-login-") && c.contains("Max-Age=0")),
        "the used login cookie is removed: {cookies:?}"
    );
    let first = session_cookie_value(&cookies).unwrap();
    // 256 bits base64url-encoded without padding is 43 characters.
    assert!(first.len() >= 43, "cookie value too short: {first}");
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    // A second login (same browser) gets a different cookie and ends the first session.
    let second = login_cookie(&stack, &browser, "alice").await;
    assert_ne!(first, second);
    let replay = reqwest::Client::new()
        .get(stack.gateway.url("/x"))
        .header("cookie", format!("portcullis={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.status(),
        401,
        "the previous session was ended by the new login"
    );
}

#[tokio::test]
async fn tampered_unknown_or_doubled_cookies_are_no_session() {
    let stack = Stack::start(StackOptions::default());
    let cookie = login_cookie(&stack, &new_browser(), "alice").await;
    let c = reqwest::Client::new();
    let get = |value: String| {
        c.get(stack.gateway.url("/x"))
            .header("cookie", value)
            .send()
    };
    assert_eq!(
        get(format!("portcullis={cookie}")).await.unwrap().status(),
        200
    );
    let mut tampered = cookie.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for value in [
        format!("portcullis={tampered}"),
        "portcullis=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "portcullis=short".to_string(),
        format!("portcullis={cookie}; portcullis={cookie}"),
        format!("portcullis={cookie}; portcullis=other"),
    ] {
        let r = get(value.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{value}");
    }
    assert_eq!(
        get(format!("portcullis={cookie}")).await.unwrap().status(),
        200,
        "the real session is intact"
    );
}

#[tokio::test]
async fn idle_and_absolute_expiry() {
    let stack = Stack::start(StackOptions {
        session: "idle_timeout = \"2s\"\nmax_lifetime = \"5s\"".into(),
        ..Default::default()
    });
    let c = reqwest::Client::new();
    // Idle: no activity for longer than idle_timeout ends the session.
    let idle = login_cookie(&stack, &new_browser(), "alice").await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let r = c
        .get(stack.gateway.url("/x"))
        .header("cookie", format!("portcullis={idle}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "idle session ended");

    // Absolute: activity slides the idle timer, never the lifetime.
    let busy = login_cookie(&stack, &new_browser(), "alice").await;
    let started = std::time::Instant::now();
    let mut last_ok = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(8) {
        let r = c
            .get(stack.gateway.url("/x"))
            .header("cookie", format!("portcullis={busy}"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            last_ok = started.elapsed();
        } else {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        last_ok > Duration::from_secs(3),
        "activity kept the session past the idle timeout ({last_ok:?})"
    );
    assert!(
        last_ok < Duration::from_secs(6),
        "the absolute lifetime ended it ({last_ok:?})"
    );
}

#[tokio::test]
async fn refresh_happens_once_for_many_concurrent_requests() {
    let stack = Stack::start(StackOptions {
        idp: IdpOptions {
            access_token_ttl: Some(2),
            log_requests: true,
            ..Default::default()
        },
        rest: Some(format!(
            "{DEFAULT_ROUTES}\n[headers]\naccess_token = true\n"
        )),
        ..Default::default()
    });
    let cookie = login_cookie(&stack, &new_browser(), "alice").await;
    let c = reqwest::Client::new();
    c.get(stack.gateway.url("/before"))
        .header("cookie", format!("portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    let before = stack
        .app
        .last_request()
        .unwrap()
        .header("x-forwarded-access-token")
        .unwrap()
        .to_owned();
    assert!(
        stack
            .idp
            .introspect("portcullis", TEST_CLIENT_SECRET, &before)
            .await
    );
    let token_calls = stack.idp.requests("POST", "/token");

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let c = c.clone();
        let url = stack.gateway.url(&format!("/after/{i}"));
        let cookie = format!("portcullis={cookie}");
        tasks.push(tokio::spawn(async move {
            c.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    assert_eq!(
        stack.idp.requests("POST", "/token") - token_calls,
        1,
        "exactly one refresh for twelve concurrent requests"
    );
    let after: Vec<String> = stack
        .app
        .requests()
        .iter()
        .filter(|r| r.path().starts_with("/after/"))
        .map(|r| r.header("x-forwarded-access-token").unwrap().to_owned())
        .collect();
    assert_eq!(after.len(), 12);
    assert!(
        after.iter().all(|t| t == &after[0] && t != &before),
        "all requests carried the one new token"
    );
    assert!(
        stack
            .idp
            .introspect("portcullis", TEST_CLIENT_SECRET, &after[0])
            .await
    );
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session() {
    // The refresh token outlives the access token by a little, then the
    // IdP answers invalid_grant to it.
    let stack = Stack::start(StackOptions {
        idp: IdpOptions {
            access_token_ttl: Some(2),
            refresh_token_ttl: Some(3),
            log_requests: true,
            ..Default::default()
        },
        ..Default::default()
    });
    let cookie = format!(
        "portcullis={}",
        login_cookie(&stack, &new_browser(), "alice").await
    );
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let info = |c: reqwest::Client| {
        let (url, cookie) = (stack.gateway.url("/.portcullis/session"), cookie.clone());
        async move {
            let r = c.get(url).header("cookie", cookie).send().await.unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(info(c.clone()).await, 200, "logged in");
    let token_calls = stack.idp.requests("POST", "/token");

    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r = c
        .get(stack.gateway.url("/later"))
        .header("cookie", &cookie)
        .header(ACCEPT, "text/html")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "sent to log in again");
    assert!(
        location(&r).as_str().starts_with(stack.idp.issuer()),
        "{}",
        location(&r)
    );
    assert_eq!(
        stack.idp.requests("POST", "/token") - token_calls,
        1,
        "one refresh was tried"
    );
    assert!(
        stack
            .gateway
            .wait_for_log(
                "message",
                "refresh refused; ending the session",
                Duration::from_secs(2)
            )
            .is_some(),
        "the IdP refused it"
    );
    assert_eq!(info(c.clone()).await, 401, "the session is gone");
    assert!(
        stack.app.requests().iter().all(|r| r.path() != "/later"),
        "nothing reached the upstream without a session"
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

#[tokio::test]
async fn callback_replay_and_forgery_are_rejected() {
    let stack = Stack::start(StackOptions {
        idp: IdpOptions {
            log_requests: true,
            ..Default::default()
        },
        ..Default::default()
    });
    let browser = new_browser();
    let to_idp = navigate(&browser, &stack.gateway.url("/")).await;
    let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
    // Keep the login cookie to replay it by hand.
    let login_cookie = set_cookies(&to_idp)
        .into_iter()
        .find(|c| c.starts_with("portcullis-login-"))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(navigate(&browser, callback.as_str()).await.status(), 303);

    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The login-state cookie is sent again, valid as ever: only the
    // gateway's own single-use record of the state can refuse the replay,
    // and it must do so before the code reaches the IdP (whose single-use
    // code would refuse it too, with another message).
    let token_calls = stack.idp.requests("POST", "/token");
    let r = replay
        .get(callback.as_str())
        .header("cookie", &login_cookie)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a used state is refused even with its cookie"
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("This sign-in was already used."),
        "the gateway says why: {page}"
    );
    assert!(
        page.contains("/.portcullis/login"),
        "the 400 page links to a fresh start"
    );
    assert_eq!(
        stack.idp.requests("POST", "/token"),
        token_calls,
        "the replayed code never reached the IdP"
    );

    // No cookie for the state at all.
    let r = replay.get(callback.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A forged state.
    let r = replay
        .get(
            stack
                .gateway
                .url("/.portcullis/callback?code=x&state=forged"),
        )
        .header("cookie", &login_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn issuer_mismatch_on_the_callback_is_rejected() {
    let stack = Stack::start(StackOptions::default());
    let browser = new_browser();
    let to_idp = navigate(&browser, &stack.gateway.url("/")).await;
    let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
    let mut forged = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            if k == "iss" {
                (k.into_owned(), "http://evil.example".to_owned())
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let r = navigate(&browser, forged.as_str()).await;
    assert_eq!(r.status(), 400);
    assert!(
        !set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
    );
}

#[tokio::test]
async fn secret_rotation_keeps_sessions() {
    let stack = Stack::start(StackOptions::default());
    let cookie = login_cookie(&stack, &new_browser(), "alice").await;
    let c = reqwest::Client::new();
    let config = std::fs::read_to_string(stack.gateway.config_path()).unwrap();
    let rotated = config.replace(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = [\"a-brand-new-secret-that-is-long-enough-0123456789\", \"${PORTCULLIS_SECRET}\"]",
    );
    assert_ne!(config, rotated);
    std::fs::write(stack.gateway.config_path(), rotated).unwrap();
    stack.gateway.send_signal(Signal::Hup);
    assert!(
        stack
            .gateway
            .wait_for_log("message", "configuration reloaded", Duration::from_secs(5))
            .is_some()
    );
    let r = c
        .get(stack.gateway.url("/x"))
        .header("cookie", format!("portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a session sealed with the old secret still opens"
    );
    // New logins use the new secret and work too.
    assert_eq!(stack.login(&new_browser(), "bob", "/").await.status(), 200);
}

#[tokio::test]
async fn allow_rules_admit_only_the_listed() {
    let stack = Stack::start(StackOptions {
        rest: Some(
            r#"
[[route]]
prefix = "/admins/"
upstream = "{app}"
allow_groups = ["admins"]

[[route]]
prefix = "/by-email/"
upstream = "{app}"
allow_emails = ["bob@example.org"]

[[route]]
prefix = "/by-domain/"
upstream = "{app}"
allow_email_domains = ["example.net", "example.org"]

[[route]]
prefix = "/"
upstream = "{app}"
"#
            .into(),
        ),
        ..Default::default()
    });
    let alice = new_browser();
    let bob = new_browser();
    let carol = new_browser(); // carol@example.net, unverified
    stack.login(&alice, "alice", "/").await;
    stack.login(&bob, "bob", "/").await;
    stack.login(&carol, "carol", "/").await;
    let status = |b: &reqwest::Client, path: &str| {
        let url = stack.gateway.url(path);
        let b = b.clone();
        async move { b.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&alice, "/admins/x").await, 200);
    assert_eq!(status(&bob, "/admins/x").await, 403);
    assert_eq!(status(&bob, "/by-email/x").await, 200);
    assert_eq!(status(&alice, "/by-email/x").await, 403);
    assert_eq!(
        status(&bob, "/by-domain/x").await,
        200,
        "a verified email of a listed domain"
    );
    assert_eq!(
        status(&carol, "/by-domain/x").await,
        403,
        "unverified emails never match"
    );
    assert_eq!(
        status(&alice, "/by-domain/x").await,
        403,
        "example.com is not listed"
    );
    assert_eq!(status(&carol, "/anything").await, 200);
}

#[tokio::test]
async fn an_upstream_cannot_set_the_gateway_cookie() {
    let stack = Stack::start(StackOptions::default());
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    let r = browser
        .get(
            stack
                .gateway
                .url("/set-cookie?name=portcullis&name=portcullis-login-x&name=app_pref"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with("app_pref="));

    // A line with a non-ASCII byte anywhere (here in a trailing attribute)
    // is not text to a `to_str()` reader; the name must still be seen.
    let r = browser
        .get(
            stack
                .gateway
                .url("/set-cookie?name=portcullis&name=portcullis-login-x&name=app_pref&obs=1"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    assert_eq!(
        cookies,
        ["app_pref=upstream; Path=/; a=\u{fffd}"],
        "only the app's own cookie is left"
    );
    // The session survived: the upstream did not replace the cookie.
    let r = browser
        .get(stack.gateway.url("/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn https_cookies_are_secure_and_host_prefixed() {
    let port = support::free_port();
    let origin = format!("https://localhost:{port}");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let idp = support::idp::Idp::start(IdpOptions::with_client(support::idp::IdpClient::gateway(
        "portcullis",
        TEST_CLIENT_SECRET,
        &origin,
    )));
    let app = support::Upstream::start();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = "https://localhost:{port}"
admin_listen = "{admin_listen}"
[server.tls]
cert = "{dir}/cert.pem"
key = "{dir}/key.pem"

[oidc]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "${PORTCULLIS_CLIENT_SECRET}"

[session]
secret = "${PORTCULLIS_SECRET}"

[[route]]
prefix = "/"
upstream = "{app}"
"#,
    )
    .port(port)
    .var("issuer", idp.issuer())
    .var("app", app.url())
    .file("cert.pem", cert.cert.pem())
    .file("key.pem", cert.signing_key.serialize_pem())
    .start();
    assert!(support::stack::wait_ready(&gw));
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", gw.addr())
        .build()
        .unwrap();
    let to_idp = navigate(&browser, &format!("{origin}/secure")).await;
    assert_eq!(to_idp.status(), 302);
    let login = set_cookies(&to_idp);
    assert!(
        login
            .iter()
            .any(|c| c.starts_with("__Host-portcullis-login-")
                && c.contains("Secure")
                && c.contains("Path=/")),
        "{login:?}"
    );
    let callback = idp.login(&browser, &location(&to_idp), "alice").await;
    assert!(callback.as_str().starts_with(&origin));
    let landed = navigate(&browser, callback.as_str()).await;
    assert_eq!(landed.status(), 303);
    let cookies = set_cookies(&landed);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-portcullis="))
        .expect("__Host- session cookie");
    for attr in ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"] {
        assert!(session.contains(attr), "{attr} missing: {session}");
    }
    assert!(
        !session.contains("Domain"),
        "__Host- cookies carry no Domain"
    );
    let page = navigate(&browser, &format!("{origin}/secure")).await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        app.last_request().unwrap().header("x-forwarded-proto"),
        Some("https")
    );
}

#[tokio::test]
async fn protected_routes_cannot_be_bypassed_by_parameters_or_a_host_port() {
    let stack = Stack::start(StackOptions {
        rest: Some(
            r#"
[[route]]
prefix = "/admin"
host = "127.0.0.1:{port}"
upstream = "{app}"
allow_groups = ["admins"]

[[route]]
prefix = "/"
upstream = "{app}"
auth = "none"
"#
            .into(),
        ),
        ..Default::default()
    });
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/admin/panel",
        "/admin;x/panel",
        "/admin;jsessionid=1",
        "/admin/;x/panel",
    ] {
        let r = c
            .get(stack.gateway.url(path))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} must need a session");
    }
    assert_eq!(
        stack.app.request_count(),
        0,
        "nothing reached the app without a session"
    );
    assert_eq!(
        c.get(stack.gateway.url("/other"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // With alice's session (group admins) the parameters are passed on unchanged.
    let alice = new_browser();
    stack.login(&alice, "alice", "/admin/home").await;
    assert_eq!(
        alice
            .get(stack.gateway.url("/admin;x/panel"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(stack.app.last_request().unwrap().path(), "/admin;x/panel");
}
