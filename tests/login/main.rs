//! Login and sessions end to end: the real IdP (oidc-provider), the real
//! gateway binary and a real upstream, driven like a browser over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

use reqwest::header::SET_COOKIE;
use support::stack::{Stack, location, navigate};

#[path = "../support/mod.rs"]
mod support;

mod access;
mod cookies;
mod flow;
mod forgery;
mod lifetime;

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
