//! `scope=all` and token revocation at the IdP, with the logout event and metric.

use std::time::Duration;

use super::*;
use crate::support::TEST_CLIENT_SECRET;
use crate::support::stack::new_browser;

#[tokio::test]
async fn scope_all_ends_every_session_of_the_user() {
    let stack = stack();
    let a1 = new_browser();
    let a2 = new_browser();
    let bob = new_browser();
    stack.login(&a1, "alice", "/").await;
    stack.login(&a2, "alice", "/").await;
    stack.login(&bob, "bob", "/").await;
    let resp = logout_same_origin(&stack, &a1, "?mode=local&scope=all").await;
    assert_eq!(resp.status(), 303);
    assert!(!has_access(&stack, &a1).await);
    assert!(
        !has_access(&stack, &a2).await,
        "alice's other session ended too"
    );
    assert!(has_access(&stack, &bob).await, "bob's session is untouched");
}

/// `?scope=all` revokes the tokens of every session it ends, not only the
/// current one: after it, the refresh token of alice's other browser is
/// inactive at the IdP, and bob's is not.
#[tokio::test]
async fn scope_all_revokes_the_tokens_of_every_session_it_ends() {
    let stack = stack_with(
        IdpOptions {
            log_tokens: true,
            ..Default::default()
        },
        "\n[headers]\naccess_token = true\n",
    );
    // Logs in and returns (refresh, access) as the IdP issued them.
    let login = async |browser: &reqwest::Client, user: &str| {
        stack.login(browser, user, "/").await;
        let access = stack
            .app
            .last_request()
            .unwrap()
            .header("x-forwarded-access-token")
            .unwrap()
            .to_owned();
        let refresh = stack.idp.issued_refresh_tokens().pop().unwrap();
        (refresh, access)
    };
    let (a, b, bob) = (new_browser(), new_browser(), new_browser());
    let tokens_a = login(&a, "alice").await;
    let tokens_b = login(&b, "alice").await;
    let tokens_bob = login(&bob, "bob").await;
    let active = |token: String| {
        let idp = &stack.idp;
        async move {
            idp.introspect("portcullis", TEST_CLIENT_SECRET, &token)
                .await
        }
    };
    for (refresh, _) in [&tokens_a, &tokens_b, &tokens_bob] {
        assert!(active(refresh.clone()).await);
    }

    let resp = logout_same_origin(&stack, &a, "?mode=local&scope=all").await;
    assert_eq!(resp.status(), 303);
    assert!(!has_access(&stack, &b).await, "B's session ended");
    // Revocation runs in the background: wait for both sessions' tokens.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.idp.revocations().len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "not every revocation was sent: {:?}",
            stack.idp.revocations()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let revoked = stack.idp.revocations();
    let at = |hint: &str, token: &str| {
        revoked
            .iter()
            .position(|(h, t)| h == hint && t == token)
            .unwrap_or_else(|| panic!("{hint} {token} not revoked: {revoked:?}"))
    };
    for (refresh, access) in [&tokens_a, &tokens_b] {
        assert!(
            at("refresh_token", refresh) < at("access_token", access),
            "per session, the refresh token first"
        );
    }
    assert_eq!(
        revoked.len(),
        4,
        "bob's tokens are not touched: {revoked:?}"
    );
    assert!(
        !active(tokens_b.0.clone()).await,
        "browser B's refresh token is inactive at the IdP"
    );
    assert!(!active(tokens_b.1.clone()).await);
    assert!(!active(tokens_a.0.clone()).await);
    assert!(
        active(tokens_bob.0.clone()).await,
        "bob's refresh token is still active"
    );
    assert!(has_access(&stack, &bob).await);
}

#[tokio::test]
async fn revocation_reaches_the_idp_and_the_event_is_recorded() {
    let stack = stack_with(
        IdpOptions {
            log_tokens: true,
            ..Default::default()
        },
        "\n[headers]\naccess_token = true\n",
    );
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    let access = stack
        .app
        .last_request()
        .unwrap()
        .header("x-forwarded-access-token")
        .unwrap()
        .to_owned();
    let refresh = stack
        .idp
        .issued_refresh_tokens()
        .pop()
        .expect("the IdP issued the gateway a refresh token");
    let active = |token: String| {
        let idp = &stack.idp;
        async move {
            idp.introspect("portcullis", TEST_CLIENT_SECRET, &token)
                .await
        }
    };
    assert!(active(access.clone()).await);
    assert!(active(refresh.clone()).await);
    let resp = logout_same_origin(&stack, &browser, "?mode=local").await;
    assert_eq!(resp.status(), 303);
    // Revocation runs in the background: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.idp.revocations().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "refresh and access token revocations were not sent: {:?}",
            stack.idp.revocations()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stack.idp.revocations(),
        [
            ("refresh_token".to_owned(), refresh.clone()),
            ("access_token".to_owned(), access.clone()),
        ],
        "the refresh token first (it ends the grant), then the access token"
    );
    assert!(
        !active(refresh).await,
        "the refresh token is revoked at the IdP"
    );
    assert!(!active(access.clone()).await, "the access token is revoked");

    let event = stack
        .gateway
        .wait_for_log("event", "logout", Duration::from_secs(5))
        .expect("logout event");
    assert_eq!(support::log_field(&event, "kind"), Some("rp_initiated"));
    assert_eq!(support::log_field(&event, "mode"), Some("local"));
    assert_eq!(support::log_field(&event, "outcome"), Some("ok"));
    let line = event.to_string();
    assert!(!line.contains(&access), "no token in the event");
    let metrics = reqwest::get(stack.gateway.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"portcullis_logouts_total{kind="rp_initiated",mode="local",outcome="ok"} 1"#
        ),
        "{metrics}"
    );
}
