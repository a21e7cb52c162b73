//! A session after login: idle and absolute expiry, token refresh, secret rotation.

use std::time::Duration;

use reqwest::header::ACCEPT;

use super::*;
use crate::support::idp::IdpOptions;
use crate::support::stack::{DEFAULT_ROUTES, StackOptions, new_browser};
use crate::support::{Signal, TEST_CLIENT_SECRET};

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

/// The refresh a request starts finishes, is stored and frees its lock even
/// when that request goes away while the IdP is slow (its client gave up).
/// Before, dropping the request dropped the refresh with it: the IdP's
/// answer (a rotated refresh token, maybe) was lost and the lock stayed held
/// for 30 s, so the user's next requests each waited 10 s for it.
#[tokio::test]
async fn a_refresh_whose_request_goes_away_still_finishes() {
    let stack = Stack::start(StackOptions {
        idp: IdpOptions {
            access_token_ttl: Some(1),
            ..Default::default()
        },
        ..Default::default()
    });
    let cookie = format!(
        "portcullis={}",
        login_cookie(&stack, &new_browser(), "alice").await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signal = |sig| crate::support::send_signal(stack.idp.pid(), sig);
    // The IdP hangs: the request that refreshes gives up first.
    signal(Signal::Stop);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(stack.gateway.url("/first"))
        .header("cookie", &cookie)
        .send()
        .await;
    signal(Signal::Cont);
    assert!(gave_up.is_err(), "the first request should have timed out");
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let c = reqwest::Client::new();
    let started = std::time::Instant::now();
    let r = c
        .get(stack.gateway.url("/second"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?} for a refresh lock left held",
        started.elapsed()
    );
}
