//! Refused: replayed or forged callbacks, a wrong issuer, spoofed identity headers, bad cookies.

use reqwest::header::ACCEPT;

use super::*;
use crate::support::idp::IdpOptions;
use crate::support::stack::{StackOptions, new_browser};

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
