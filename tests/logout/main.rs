//! `/logout` end to end with the real IdP: the full redirect chain, CSRF
//! rules, open-redirect refusal, modes, JSON clients, scope=all,
//! Clear-Site-Data placement, the IdP down, token revocation, the event.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

use reqwest::header::{ACCEPT, SET_COOKIE};
use support::idp::IdpOptions;
use support::stack::{DEFAULT_ROUTES, Stack, StackOptions, location, navigate};

#[path = "../support/mod.rs"]
mod support;

mod csrf;
mod flow;
mod landing;
mod revocation;

const LOGOUT: &str = r#"
[logout]
default_return_to = "/goodbye"
allowed_return_to = ["https://www.example.com/signed-out"]
clear_site_data = ["storage", "cache"]
"#;

fn stack() -> Stack {
    stack_with(IdpOptions::default(), "")
}

/// `extra` is appended right after the `[logout]` section: more
/// `[logout]` keys, or further sections.
fn stack_with(idp: IdpOptions, extra: &str) -> Stack {
    Stack::start(StackOptions {
        idp: IdpOptions {
            log_requests: true,
            ..idp
        },
        rest: Some(format!("{DEFAULT_ROUTES}{LOGOUT}{extra}")),
        ..Default::default()
    })
}

/// SPEC's Content-Security-Policy of `/logout/done`, for a page with
/// `nonce`, or for a redirect (`None`: no script, so no script source).
fn done_csp(nonce: Option<&str>) -> String {
    match nonce {
        Some(n) => format!("default-src 'none'; script-src 'nonce-{n}'; frame-ancestors 'self'"),
        None => "default-src 'none'; frame-ancestors 'self'".to_owned(),
    }
}

/// Asserts SPEC's `/logout/done` headers on one of its redirects.
fn assert_done_redirect_headers(resp: &reqwest::Response) {
    let h = resp.headers();
    assert_eq!(resp.status(), 303);
    assert_eq!(h["content-security-policy"], done_csp(None).as_str());
    assert!(h.get("x-frame-options").is_none());
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn expires_session_cookie(resp: &reqwest::Response) -> bool {
    set_cookies(resp).iter().any(|c| {
        c.starts_with("portcullis=;")
            && c.contains("Max-Age=0")
            && c.contains("Path=/")
            && c.contains("HttpOnly")
    })
}

/// Whether a protected page still works with this browser's cookies.
async fn has_access(stack: &Stack, browser: &reqwest::Client) -> bool {
    browser
        .get(stack.gateway.url("/private"))
        .send()
        .await
        .unwrap()
        .status()
        == 200
}

/// Whether the IdP still has a session in this browser: a new login round
/// trip comes straight back with a code instead of showing the login form.
async fn idp_session_alive(stack: &Stack, browser: &reqwest::Client) -> bool {
    let to_idp = navigate(
        browser,
        &stack.gateway.url("/.portcullis/login?return_to=/"),
    )
    .await;
    let mut url = location(&to_idp);
    for _ in 0..10 {
        let resp = browser.get(url.clone()).send().await.unwrap();
        if !resp.status().is_redirection() {
            return false; // a login form
        }
        url = location(&resp);
        if url.path() == "/.portcullis/callback" {
            return true;
        }
    }
    panic!("IdP redirect loop");
}

/// POST /logout from the app's own page (same-origin), as a navigation.
async fn logout_same_origin(
    stack: &Stack,
    browser: &reqwest::Client,
    query: &str,
) -> reqwest::Response {
    browser
        .post(stack.gateway.url(&format!("/logout{query}")))
        .header("origin", stack.gateway.public_url())
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "navigate")
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
