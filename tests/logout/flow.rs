//! The flow by mode: the redirect chain via the IdP, local and JSON logouts, fallback, IdP outages.

use std::time::Duration;

use reqwest::header::LOCATION;

use super::*;
use crate::support::stack::new_browser;

#[tokio::test]
async fn redirect_chain_ends_the_gateway_and_idp_sessions() {
    let stack = stack();
    let browser = new_browser();
    assert_eq!(stack.login(&browser, "alice", "/").await.status(), 200);
    let session = browser
        .get(stack.gateway.url("/.portcullis/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    let upstream_cookies = stack
        .app
        .last_request()
        .unwrap()
        .header("cookie")
        .unwrap_or("")
        .to_owned();
    assert!(
        !upstream_cookies.contains("portcullis"),
        "the app never sees the session cookie: {upstream_cookies:?}"
    );

    let resp = logout_same_origin(&stack, &browser, "?return_to=/after").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(expires_session_cookie(&resp), "{:?}", set_cookies(&resp));
    assert!(
        resp.headers().get("clear-site-data").is_none(),
        "never on the way to the IdP"
    );
    let to_idp = location(&resp);
    assert!(to_idp.as_str().starts_with(stack.idp.issuer()), "{to_idp}");
    let q: std::collections::HashMap<_, _> = to_idp.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q["client_id"], "portcullis");
    assert_eq!(
        q["post_logout_redirect_uri"],
        stack.gateway.url("/.portcullis/logout/done")
    );
    assert!(q["state"].len() >= 43);

    // The IdP's confirmation, then back to /logout/done, then the destination.
    let params: Vec<(String, String)> = to_idp.query_pairs().into_owned().collect();
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = stack
        .idp
        .logout(&browser, &params)
        .await
        .expect("IdP redirects back");
    assert_eq!(back.path(), "/.portcullis/logout/done");
    let done = navigate(&browser, back.as_str()).await;
    assert_done_redirect_headers(&done);
    assert_eq!(done.headers()[LOCATION], "/after");
    assert_eq!(done.headers()["clear-site-data"], "\"storage\", \"cache\"");

    // The state is single-use: a second visit goes to the default.
    let again = navigate(&browser, back.as_str()).await;
    assert_done_redirect_headers(&again);
    assert_eq!(again.headers()[LOCATION], "/goodbye");
    assert!(again.headers().get("clear-site-data").is_none());

    assert!(!has_access(&stack, &browser).await);
    assert!(
        !idp_session_alive(&stack, &browser).await,
        "a new visit must log in again at the IdP"
    );
}

#[tokio::test]
async fn replaying_a_captured_cookie_after_logout_fails() {
    let stack = stack();
    let browser = new_browser();
    let to_idp = navigate(&browser, &stack.gateway.url("/")).await;
    let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
    let landed = navigate(&browser, callback.as_str()).await;
    let captured = set_cookies(&landed)
        .into_iter()
        .find(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let raw = no_redirects();
    assert_eq!(
        raw.get(stack.gateway.url("/x"))
            .header("cookie", &captured)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    logout_same_origin(&stack, &browser, "?mode=local").await;
    let r = raw
        .get(stack.gateway.url("/x"))
        .header("cookie", &captured)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the captured cookie is dead server-side");
}

#[tokio::test]
async fn local_mode_keeps_the_idp_session() {
    let stack = stack();
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    let resp = logout_same_origin(&stack, &browser, "?mode=local").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/goodbye");
    assert_eq!(
        resp.headers()["clear-site-data"],
        "\"storage\", \"cache\"",
        "a local logout ends the flow"
    );
    assert!(expires_session_cookie(&resp));
    assert!(!has_access(&stack, &browser).await);
    assert!(
        idp_session_alive(&stack, &browser).await,
        "local logout leaves the IdP session alone"
    );
}

#[tokio::test]
async fn json_clients_get_a_continue_url_and_never_the_id_token() {
    let stack = stack();
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    let resp = browser
        .post(stack.gateway.url("/logout?return_to=/spa"))
        .header("origin", stack.gateway.public_url())
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "cors")
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(expires_session_cookie(&resp));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert!(
        resp.headers().get("clear-site-data").is_none(),
        "the flow goes on at the IdP"
    );
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("id_token") && !text.contains("eyJ"),
        "no ID token in JSON: {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["logged_out"], true);
    let continue_url = body["continue_url"].as_str().unwrap();
    assert!(continue_url.starts_with(&stack.gateway.url("/.portcullis/logout/continue?state=")));
    let to_idp = no_redirects().get(continue_url).send().await.unwrap();
    assert_eq!(to_idp.status(), 303);
    let idp_url = location(&to_idp);
    assert!(idp_url.as_str().starts_with(stack.idp.issuer()));
    assert!(idp_url.query_pairs().any(|(k, _)| k == "id_token_hint"));
    assert!(!has_access(&stack, &browser).await);
}

#[tokio::test]
async fn idp_down_during_logout_still_ends_the_session() {
    let mut stack = stack();
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    stack.idp.kill();
    let resp = logout_same_origin(&stack, &browser, "?return_to=/after").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()[LOCATION],
        "/after",
        "straight to the destination"
    );
    assert!(expires_session_cookie(&resp));
    assert!(resp.headers().get("clear-site-data").is_some());
    assert!(!has_access(&stack, &browser).await);
    let event = stack
        .gateway
        .wait_for_log("outcome", "idp_unreachable", Duration::from_secs(5))
        .expect("the event says the IdP was unreachable");
    assert_eq!(support::log_field(&event, "event"), Some("logout"));
}

#[tokio::test]
async fn logout_without_a_session_still_visits_the_idp() {
    let stack = stack();
    let resp = no_redirects()
        .post(stack.gateway.url("/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(expires_session_cookie(&resp));
    let to_idp = location(&resp);
    assert!(to_idp.as_str().starts_with(stack.idp.issuer()));
    let q: std::collections::HashMap<_, _> = to_idp.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "portcullis");
    assert!(!q.contains_key("id_token_hint"));
}

/// A logout's state is no secret of one browser: an anonymous logout's is
/// sealed and good for ten minutes, and anyone can stop short of the IdP
/// with their own. Sent to another browser, `/logout/done` must not make
/// that browser wipe its site data (its cookies, when so configured): that
/// would be a logout forced past the CSRF rules. The browser that started
/// the logout still gets it.
#[tokio::test]
async fn clear_site_data_only_for_the_browser_that_started_the_logout() {
    let stack = stack();
    let attacker = new_browser();
    let resp = attacker
        .post(stack.gateway.url("/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let state = location(&resp)
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let done = stack
        .gateway
        .url(&format!("/.portcullis/logout/done?state={state}"));
    for _ in 0..2 {
        let victim = navigate(&new_browser(), &done).await;
        assert_eq!(victim.status(), 303);
        assert!(
            victim.headers().get("clear-site-data").is_none(),
            "another browser was made to clear its site data"
        );
    }
    let own = navigate(&attacker, &done).await;
    assert!(own.headers().get("clear-site-data").is_some());
}

/// A second value of the session cookie — planted with a longer `Path` by a
/// sibling domain, or over http — must not hide the session a logout ends.
/// Before, two values read as no session: the logout ended nothing and
/// still reported success.
#[tokio::test]
async fn a_planted_second_session_cookie_does_not_hide_the_session_to_end() {
    let stack = stack();
    let browser = new_browser();
    let to_idp = navigate(
        &browser,
        &stack.gateway.url("/.portcullis/login?return_to=/"),
    )
    .await;
    let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
    let landed = navigate(&browser, callback.as_str()).await;
    let real = set_cookies(&landed)
        .into_iter()
        .find_map(|c| {
            c.strip_prefix("portcullis=")
                .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        })
        .filter(|v| !v.is_empty())
        .expect("session cookie");
    let client = no_redirects();
    let with = |cookie: String| {
        client
            .get(stack.gateway.url("/private"))
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(
        with(format!("portcullis={real}")).await.unwrap().status(),
        200
    );

    // The planted value comes first: the browser sends the longer path first.
    let resp = client
        .post(stack.gateway.url("/logout"))
        .header("cookie", format!("portcullis=planted; portcullis={real}"))
        .header("origin", stack.gateway.public_url())
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "navigate")
        .header(reqwest::header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_ne!(
        with(format!("portcullis={real}")).await.unwrap().status(),
        200,
        "the session outlived its logout"
    );
}

/// A `?mode=` that is unknown or not in `allowed_modes` is ignored: the
/// configured `mode` (which `check` requires to be allowed) applies, so a
/// request can never pick a weaker logout than the operator allows.
#[tokio::test]
async fn a_mode_not_in_allowed_modes_falls_back_to_the_configured_mode() {
    let stack = stack_with(
        IdpOptions::default(),
        "mode = \"redirect\"\nallowed_modes = [\"redirect\", \"silent\"]\n",
    );
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    let resp = logout_same_origin(&stack, &browser, "?mode=local&return_to=/after").await;
    assert_eq!(resp.status(), 303);
    assert!(
        location(&resp).as_str().starts_with(stack.idp.issuer()),
        "not local: to the IdP, as mode = redirect says"
    );
    assert!(resp.headers().get("clear-site-data").is_none());
    assert!(expires_session_cookie(&resp));
    assert!(!has_access(&stack, &browser).await);
    let event = stack
        .gateway
        .wait_for_log("event", "logout", Duration::from_secs(5))
        .expect("logout event");
    assert_eq!(support::log_field(&event, "mode"), Some("redirect"));

    // An unknown mode, without a session, as a JSON client: the same.
    let resp = no_redirects()
        .post(
            stack
                .gateway
                .url("/logout?mode=everywhere&return_to=/after"),
        )
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["mode"], "redirect",
        "the answer says which mode ran, so logout.js can follow it"
    );
    let continue_url = body["continue_url"].as_str().expect("an IdP leg");
    let to_idp = no_redirects().get(continue_url).send().await.unwrap();
    assert!(location(&to_idp).as_str().starts_with(stack.idp.issuer()));
}

/// An IdP that publishes no `end_session_endpoint`: the logout completes
/// locally, the user lands on the final destination, the event says so.
#[tokio::test]
async fn idp_without_end_session_endpoint_logs_out_locally() {
    let stack = stack_with(
        IdpOptions {
            no_end_session: true,
            ..Default::default()
        },
        "",
    );
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    let resp = logout_same_origin(&stack, &browser, "?return_to=/after").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()[LOCATION],
        "/after",
        "straight to the destination"
    );
    assert_eq!(
        resp.headers()["clear-site-data"],
        "\"storage\", \"cache\"",
        "this response ends the flow"
    );
    assert!(expires_session_cookie(&resp));
    assert!(!has_access(&stack, &browser).await);
    let event = stack
        .gateway
        .wait_for_log("event", "logout", Duration::from_secs(5))
        .expect("logout event");
    assert_eq!(support::log_field(&event, "mode"), Some("redirect"));
    assert_eq!(
        support::log_field(&event, "outcome"),
        Some("ok_local_only"),
        "the event says the IdP session was not ended"
    );
    assert!(
        idp_session_alive(&stack, &browser).await,
        "nothing could end the IdP session"
    );

    // A JSON client (logout.js) gets no continue_url: there is no IdP leg.
    let json = new_browser();
    stack.login(&json, "alice", "/").await;
    let resp = json
        .post(stack.gateway.url("/logout?mode=popup&return_to=/after"))
        .header("sec-fetch-site", "same-origin")
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("clear-site-data").is_some());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"logged_out": true, "mode": "popup", "return_to": "/after"})
    );
}
