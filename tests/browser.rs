//! Logout (silent, popup, …) and a Strict-cookie login in a real browser:
//! headless Debian Chromium, driven by `playwright-core` scenarios in
//! `tests/browser/*.mjs`, against the real IdP (oidc-provider, end-session
//! page set to confirm itself), the test upstream's app page (`/app.html`,
//! which loads `logout.js`) and the gateway binary. One stack and one
//! browser per scenario.
//!
//! Scenarios (`tests/browser/<name>.mjs`): `silent`, `popup`,
//! `silent-timeout` (the IdP refuses framing), `forged` (announcements from
//! the wrong window, origin or state), `popup-coop` (the IdP cuts the
//! opener link; a popup the user closes), `popup-blocked`,
//! `popup-no-idp-leg` (the IdP publishes no end-session endpoint), `modes`
//! (local, redirect, the confirmation page), `strict-cross-site` (login with
//! a `SameSite=Strict` cookie from an IdP on another site). Each prints its
//! steps; run with `--nocapture` to see them. Screenshots of every step:
//! `target/browser-artifacts/<scenario>/NN-step.png`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::time::Duration;

use serde_json::json;
use support::browser::{self, ScenarioOutput};
use support::idp::IdpOptions;
use support::stack::{DEFAULT_ROUTES, Stack, StackOptions};

/// A stack whose IdP confirms logouts by itself (a real browser has no
/// test to click "Yes, sign me out") and logs its requests.
fn stack(idp: IdpOptions, silent_timeout: &str) -> Stack {
    Stack::start(StackOptions {
        idp: IdpOptions {
            auto_submit_logout: true,
            log_requests: true,
            ..idp
        },
        rest: Some(format!(
            "{DEFAULT_ROUTES}\n[logout]\ndefault_return_to = \"/public/goodbye\"\n\
             silent_timeout = \"{silent_timeout}\"\n"
        )),
        ..Default::default()
    })
}

fn run(name: &str, stack: &Stack) -> ScenarioOutput {
    let out = browser::run(name, stack);
    browser::assert_passed(name, &out, stack);
    out
}

/// The `mode` and `outcome` of every RP-initiated `logout` event the
/// gateway logged.
fn logout_events(stack: &Stack) -> Vec<(String, String)> {
    stack
        .gateway
        .json_logs()
        .iter()
        .filter(|l| support::log_field(l, "event") == Some("logout"))
        .filter(|l| support::log_field(l, "kind") == Some("rp_initiated"))
        .map(|l| {
            (
                support::log_field(l, "mode").unwrap_or("").to_owned(),
                support::log_field(l, "outcome").unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Waits briefly for the IdP to have confirmed `n` logouts (its
/// `/session/end/confirm` ends the IdP session).
fn idp_confirmed_logouts(stack: &Stack, n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let seen = stack.idp.requests("POST", "/session/end/confirm");
        if seen >= n || std::time::Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn silent_logout_ends_both_sessions_without_leaving_the_app() {
    let stack = stack(IdpOptions::default(), "5s");
    let out = run("silent", &stack);

    let resolved = out.app_reports("resolved");
    assert_eq!(
        resolved.first(),
        Some(
            &json!({"gateway": true, "idp": "unknown", "mode": "silent", "returnTo": "/public/signed-out"})
        ),
        "logout.js resolves with what the browser can know"
    );
    assert_eq!(out.app_reports("event").first(), resolved.first());
    // Through logout.js, then through the gateway's own silent page.
    assert_eq!(
        logout_events(&stack),
        [
            ("silent".into(), "ok".into()),
            ("silent".into(), "ok".into())
        ]
    );
    assert_eq!(
        idp_confirmed_logouts(&stack, 2),
        2,
        "the IdP ended its session both times"
    );
}

#[test]
fn popup_logout_ends_both_sessions_and_the_popup_closes() {
    let stack = stack(IdpOptions::default(), "5s");
    let out = run("popup", &stack);

    let resolved = out.app_reports("resolved");
    assert_eq!(
        resolved.first(),
        Some(
            &json!({"gateway": true, "idp": "unknown", "mode": "popup", "returnTo": "/public/signed-out"})
        )
    );
    assert_eq!(out.app_reports("event").first(), resolved.first());
    assert_eq!(
        logout_events(&stack),
        [("popup".into(), "ok".into()), ("popup".into(), "ok".into())]
    );
    assert_eq!(idp_confirmed_logouts(&stack, 2), 2);
}

#[test]
fn popup_logout_survives_an_idp_that_cuts_the_opener_link_and_a_closed_popup() {
    let stack = stack(
        IdpOptions {
            isolate_opener: true,
            ..Default::default()
        },
        "4s",
    );
    run("popup-coop", &stack);
    assert_eq!(
        logout_events(&stack),
        [("popup".into(), "ok".into()), ("popup".into(), "ok".into())]
    );
    assert_eq!(
        idp_confirmed_logouts(&stack, 2),
        2,
        "through the cut-off popup, then at the top level after the user closed one"
    );
}

#[test]
fn popup_logout_without_an_idp_leg_closes_the_popup_and_finishes() {
    let stack = stack(
        IdpOptions {
            no_end_session: true,
            ..Default::default()
        },
        "5s",
    );
    let out = run("popup-no-idp-leg", &stack);

    assert_eq!(
        out.app_reports("resolved").first(),
        Some(
            &json!({"gateway": true, "idp": "kept", "mode": "popup", "returnTo": "/public/signed-out"})
        )
    );
    assert_eq!(
        logout_events(&stack),
        [("popup".into(), "ok_local_only".into())],
        "the event says the IdP session was not ended"
    );
    assert_eq!(stack.idp.requests("GET", "/session/end"), 0);
}

#[test]
fn a_blocked_popup_falls_back_to_a_redirect() {
    let stack = stack(IdpOptions::default(), "5s");
    run("popup-blocked", &stack);
    assert_eq!(logout_events(&stack), [("redirect".into(), "ok".into())]);
    assert_eq!(idp_confirmed_logouts(&stack, 1), 1);
}

#[test]
fn silent_logout_falls_back_to_a_redirect_when_the_idp_refuses_framing() {
    let stack = stack(
        IdpOptions {
            refuse_framing: true,
            ..Default::default()
        },
        "2s",
    );
    let out = run("silent-timeout", &stack);

    assert_eq!(
        out.app_reports("event").first(),
        Some(&json!({"gateway": true, "idp": "unknown", "mode": "silent", "fallback": "redirect"}))
    );
    assert!(
        out.app_reports("resolved").is_empty(),
        "the Promise does not claim success"
    );
    assert_eq!(logout_events(&stack), [("silent".into(), "ok".into())]);
    assert_eq!(
        idp_confirmed_logouts(&stack, 1),
        1,
        "the top-level redirect ended the IdP session"
    );
}

#[test]
fn forged_logout_messages_are_ignored() {
    // A long timeout: the forged messages arrive while logout.js waits.
    let stack = stack(IdpOptions::default(), "15s");
    let out = run("forged", &stack);

    let resolved = out.app_reports("resolved");
    assert_eq!(
        resolved.len(),
        1,
        "resolved once, by the real message: {resolved:?}"
    );
    assert_eq!(resolved[0]["mode"], "silent");
    assert_eq!(idp_confirmed_logouts(&stack, 1), 1);
}

#[test]
fn logout_js_local_and_redirect_modes_and_the_confirmation_page() {
    let stack = stack(IdpOptions::default(), "5s");
    let out = run("modes", &stack);

    assert_eq!(
        out.app_reports("resolved"),
        [
            json!({"gateway": true, "idp": "kept", "mode": "local", "returnTo": "/public/signed-out"}),
            json!({"gateway": true, "idp": "unknown", "mode": "redirect", "returnTo": "/public/signed-out"}),
        ]
    );
    assert_eq!(
        logout_events(&stack),
        [
            ("local".into(), "ok".into()),
            ("redirect".into(), "ok".into()),
            ("redirect".into(), "ok".into()),
        ],
        "local, redirect, then the confirmed one"
    );
    assert_eq!(
        idp_confirmed_logouts(&stack, 2),
        2,
        "the local logout never visits the IdP"
    );
}

/// `cookie_samesite = "strict"` with the IdP on another site (issuer
/// `localhost`, gateway `127.0.0.1`): the callback's page hands the last
/// step to a same-site navigation, so the browser lands signed in, once.
#[test]
fn strict_cookie_login_from_an_idp_on_another_site_lands_signed_in() {
    let stack = Stack::start(StackOptions {
        idp: IdpOptions {
            issuer_host: Some("localhost".to_owned()),
            log_requests: true,
            ..Default::default()
        },
        session: "cookie_samesite = \"strict\"\n".to_owned(),
        ..Default::default()
    });
    assert!(stack.idp.issuer().starts_with("http://localhost:"));
    run("strict-cross-site", &stack);
    let logins = stack
        .gateway
        .logs()
        .iter()
        .filter(|l| l.contains("login completed"))
        .count();
    assert_eq!(logins, 1, "one login, no loop back through the IdP");
    assert_eq!(stack.idp.requests("GET", "/auth"), 1);
}

/// `logout.js` as an app (or its Subresource Integrity pin) sees it:
/// JavaScript that is never sniffed as anything else, cacheable for a day,
/// an `ETag` that is the SHA-384 of the bytes and revalidates with 304.
#[tokio::test]
async fn logout_js_is_served_cacheable_and_integrity_friendly() {
    use base64::Engine as _;

    let stack = stack(IdpOptions::default(), "5s");
    let client = reqwest::Client::new();
    let url = stack.gateway.url("/.portcullis/logout.js");
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["cache-control"], "public, max-age=86400");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h.get("set-cookie").is_none());
    let body = resp.bytes().await.unwrap();
    let text = std::str::from_utf8(&body).unwrap();
    assert!(
        !text.contains("__LOGOUT_PATH__") && !text.contains("__SILENT_TIMEOUT_MS__"),
        "the settings are filled in"
    );
    assert!(text.contains("var LOGOUT_PATH = \"/logout\";"));
    assert!(text.contains("var SILENT_TIMEOUT_MS = 5000;"));
    let digest = ring::digest::digest(&ring::digest::SHA384, &body);
    let integrity = format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    );
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        etag,
        format!("\"{integrity}\""),
        "the ETag is the SRI value"
    );

    // The same bytes on the next request: an app can pin them.
    let again = client.get(&url).send().await.unwrap();
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert_eq!(again.bytes().await.unwrap(), body);

    // Revalidation: 304 with no body and the same validators and caching.
    for if_none_match in [etag.clone(), format!("\"other\", {etag}")] {
        let resp = client
            .get(&url)
            .header("if-none-match", &if_none_match)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304, "{if_none_match}");
        assert_eq!(resp.headers()["etag"], etag.as_str());
        assert_eq!(resp.headers()["cache-control"], "public, max-age=86400");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert!(resp.bytes().await.unwrap().is_empty());
    }
    let stale = client
        .get(&url)
        .header("if-none-match", "\"sha384-stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200, "another version gets the new bytes");
    assert_eq!(stale.bytes().await.unwrap(), body);
}
