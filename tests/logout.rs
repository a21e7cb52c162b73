//! `/logout` end to end with the real IdP: the full redirect chain, CSRF
//! rules, open-redirect refusal, modes, JSON clients, scope=all,
//! Clear-Site-Data placement, the IdP down, token revocation, the event.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::time::Duration;

use reqwest::header::{ACCEPT, LOCATION, SET_COOKIE};
use support::TEST_CLIENT_SECRET;
use support::idp::IdpOptions;
use support::stack::{DEFAULT_ROUTES, Stack, StackOptions, location, navigate, new_browser};
use url::Url;

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

/// A request to `/logout` in a table of cases: name, method, headers,
/// whether it logs out, the status expected.
type RequestCase = (
    &'static str,
    reqwest::Method,
    &'static [(&'static str, &'static str)],
    bool,
    u16,
);

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
async fn csrf_rules() {
    let stack = stack();
    let origin = stack.gateway.public_url();
    struct Case {
        name: &'static str,
        method: reqwest::Method,
        headers: Vec<(&'static str, String)>,
        logs_out: bool,
        expect: u16,
    }
    let cases = vec![
        Case {
            name: "same-origin POST",
            method: reqwest::Method::POST,
            headers: vec![
                ("sec-fetch-site", "same-origin".into()),
                ("origin", origin.clone()),
            ],
            logs_out: true,
            expect: 303,
        },
        Case {
            name: "POST with route Origin only",
            method: reqwest::Method::POST,
            headers: vec![("origin", origin.clone())],
            logs_out: true,
            expect: 303,
        },
        Case {
            name: "POST from curl",
            method: reqwest::Method::POST,
            headers: vec![],
            logs_out: true,
            expect: 303,
        },
        Case {
            name: "typed GET",
            method: reqwest::Method::GET,
            headers: vec![
                ("sec-fetch-site", "none".into()),
                ("sec-fetch-mode", "navigate".into()),
                ("accept", "text/html".into()),
            ],
            logs_out: true,
            expect: 303,
        },
        Case {
            name: "same-origin GET link",
            method: reqwest::Method::GET,
            headers: vec![
                ("sec-fetch-site", "same-origin".into()),
                ("sec-fetch-mode", "navigate".into()),
                ("accept", "text/html".into()),
            ],
            logs_out: true,
            expect: 303,
        },
        Case {
            name: "cross-site POST navigation",
            method: reqwest::Method::POST,
            headers: vec![
                ("sec-fetch-site", "cross-site".into()),
                ("sec-fetch-mode", "navigate".into()),
                ("origin", "https://evil.example".into()),
                ("accept", "text/html".into()),
            ],
            logs_out: false,
            expect: 200,
        },
        Case {
            name: "cross-site fetch",
            method: reqwest::Method::POST,
            headers: vec![
                ("sec-fetch-site", "cross-site".into()),
                ("sec-fetch-mode", "cors".into()),
                ("origin", "https://evil.example".into()),
            ],
            logs_out: false,
            expect: 403,
        },
        Case {
            name: "cross-site GET navigation (link on evil page)",
            method: reqwest::Method::GET,
            headers: vec![
                ("sec-fetch-site", "cross-site".into()),
                ("sec-fetch-mode", "navigate".into()),
                ("accept", "text/html".into()),
            ],
            logs_out: false,
            expect: 200,
        },
        Case {
            name: "cross-site image",
            method: reqwest::Method::GET,
            headers: vec![
                ("sec-fetch-site", "cross-site".into()),
                ("sec-fetch-mode", "no-cors".into()),
                ("sec-fetch-dest", "image".into()),
            ],
            logs_out: false,
            expect: 403,
        },
        Case {
            name: "Origin: null",
            method: reqwest::Method::POST,
            headers: vec![("origin", "null".into())],
            logs_out: false,
            expect: 403,
        },
        Case {
            name: "prefetch",
            method: reqwest::Method::GET,
            headers: vec![
                ("sec-fetch-site", "none".into()),
                ("sec-fetch-mode", "navigate".into()),
                ("sec-purpose", "prefetch".into()),
                ("accept", "text/html".into()),
            ],
            logs_out: false,
            expect: 200,
        },
        Case {
            name: "HEAD",
            method: reqwest::Method::HEAD,
            headers: vec![("sec-fetch-site", "same-origin".into())],
            logs_out: false,
            expect: 403,
        },
        Case {
            name: "plain GET without metadata",
            method: reqwest::Method::GET,
            headers: vec![],
            logs_out: false,
            expect: 403,
        },
    ];
    for case in cases {
        let browser = new_browser();
        stack.login(&browser, "alice", "/").await;
        let mut req = browser.request(case.method.clone(), stack.gateway.url("/logout?mode=local"));
        for (k, v) in &case.headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), case.expect, "{}", case.name);
        assert_eq!(resp.headers()["cache-control"], "no-store", "{}", case.name);
        if case.expect == 200 {
            let csp = resp.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                csp.contains("frame-ancestors 'none'"),
                "{}: {csp}",
                case.name
            );
            let page = resp.text().await.unwrap();
            assert!(
                page.contains("name=\"csrf\""),
                "{}: the confirmation form carries the token",
                case.name
            );
        } else if case.expect == 403 && case.method != reqwest::Method::HEAD {
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "csrf", "{}", case.name);
        }
        assert_eq!(
            has_access(&stack, &browser).await,
            !case.logs_out,
            "{}",
            case.name
        );
    }

    // With the session's valid CSRF token: HEAD, `Origin: null` and
    // prefetches still never log out. The last case, the same token on a
    // cross-site fetch, shows the token itself is good.
    let token_cases: [RequestCase; 5] = [
        (
            "HEAD with a valid token",
            reqwest::Method::HEAD,
            &[("sec-fetch-site", "same-origin")],
            false,
            403,
        ),
        (
            "Origin: null with a valid token",
            reqwest::Method::POST,
            &[("origin", "null"), ("sec-fetch-mode", "cors")],
            false,
            403,
        ),
        (
            "Sec-Purpose: prefetch with a valid token",
            reqwest::Method::GET,
            &[
                ("sec-fetch-site", "none"),
                ("sec-fetch-mode", "navigate"),
                ("sec-purpose", "prefetch"),
                ("accept", "text/html"),
            ],
            false,
            200,
        ),
        (
            "Purpose: prefetch with a valid token",
            reqwest::Method::GET,
            &[
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "navigate"),
                ("purpose", "prefetch"),
                ("accept", "text/html"),
            ],
            false,
            200,
        ),
        (
            "cross-site fetch with a valid token",
            reqwest::Method::POST,
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "cors"),
                ("origin", "https://evil.example"),
            ],
            true,
            303,
        ),
    ];
    for (name, method, headers, logs_out, expect) in token_cases {
        let browser = new_browser();
        stack.login(&browser, "alice", "/").await;
        let flow: serde_json::Value = browser
            .get(stack.gateway.url("/.portcullis/logout/flow"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = flow["csrf"].as_str().unwrap();
        let url = format!("/logout?mode=local&csrf={}", urlencode(token));
        let mut req = browser.request(method, stack.gateway.url(&url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), expect, "{name}");
        assert_eq!(
            expires_session_cookie(&resp),
            logs_out,
            "{name}: {:?}",
            set_cookies(&resp)
        );
        assert_eq!(has_access(&stack, &browser).await, !logs_out, "{name}");
    }

    // The confirmation page's form, submitted from the page (same-origin), logs out.
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    let page = browser
        .get(stack.gateway.url("/logout?mode=local&return_to=/bye"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let resp = browser
        .post(stack.gateway.url("/logout"))
        .header("sec-fetch-site", "same-origin")
        .header("origin", &origin)
        .form(&[
            ("csrf", token.as_str()),
            ("mode", "local"),
            ("return_to", "/bye"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/bye");
    assert!(!has_access(&stack, &browser).await);
}

#[tokio::test]
async fn flow_token_logs_out_cross_site_and_only_its_session() {
    let stack = stack();
    let alice = new_browser();
    let other = new_browser();
    stack.login(&alice, "alice", "/").await;
    stack.login(&other, "alice", "/").await;
    let flow: serde_json::Value = alice
        .get(stack.gateway.url("/.portcullis/logout/flow"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = flow["logout_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&stack.gateway.url("/logout?csrf=")));
    // The other session's token does not log alice out, and vice versa.
    let wrong = other
        .get(format!("{url}&mode=local"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "no-cors")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert!(has_access(&stack, &other).await);
    // Alice's token works from another site.
    let resp = alice
        .get(format!("{url}&mode=local"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "no-cors")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(!has_access(&stack, &alice).await);
    assert!(has_access(&stack, &other).await);
    // The token also works as a header, e.g. from a SPA's fetch.
    let flow: serde_json::Value = other
        .get(stack.gateway.url("/.portcullis/logout/flow"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = other
        .post(stack.gateway.url("/logout?mode=local"))
        .header("x-portcullis-csrf", flow["csrf"].as_str().unwrap())
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert!(!has_access(&stack, &other).await);
    // Without a session there is no flow.
    assert_eq!(
        no_redirects()
            .get(stack.gateway.url("/.portcullis/logout/flow"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

/// Open-redirect payloads, end to end: each is refused in favour of
/// `default_return_to` (the full list is in src/destination.rs).
#[tokio::test]
async fn open_redirect_payloads_are_refused() {
    let stack = stack();
    let payloads = [
        "//evil.com",
        "///evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "/%5Cevil.com",
        "/\t/evil.com",
        "/%09/evil.com",
        "/%0d%0aLocation:%20https://evil.com",
        "https://evil.com",
        "http:evil.com",
        "https:/\\evil.com",
        "//app@evil.com",
        "https://www.example.com/signed-out/",
        "javascript:alert(1)",
        "data:text/html,x",
        "evil.com",
        "%2F%2Fevil.com",
        "/%00/evil.com",
        " //evil.com",
        "/.//evil.com",
        "/a/..//evil.com",
        "/%2e//evil.com",
    ];
    let client = no_redirects();
    for payload in payloads {
        let url = format!(
            "{}?mode=local&return_to={}",
            stack.gateway.url("/logout"),
            urlencode(payload)
        );
        let resp = client.post(url).send().await.unwrap();
        assert_eq!(resp.status(), 303, "{payload:?}");
        assert_eq!(
            resp.headers()[LOCATION],
            "/goodbye",
            "{payload:?} was followed"
        );
    }
    // Allowed: same-origin paths and the byte-exact allowed URL.
    for (ok, want) in [
        ("/next?a=1", "/next?a=1"),
        (
            "https://www.example.com/signed-out",
            "https://www.example.com/signed-out",
        ),
    ] {
        let url = format!(
            "{}?mode=local&return_to={}",
            stack.gateway.url("/logout"),
            urlencode(ok)
        );
        let resp = client.post(url).send().await.unwrap();
        assert_eq!(resp.headers()[LOCATION], want);
    }
    // The login's return URL follows the same rule.
    let browser = new_browser();
    let to_idp = navigate(
        &browser,
        &format!(
            "{}?return_to={}",
            stack.gateway.url("/.portcullis/login"),
            urlencode("//evil.com")
        ),
    )
    .await;
    let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
    let landed = navigate(&browser, callback.as_str()).await;
    assert_eq!(landed.headers()[LOCATION], "/");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
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

/// The form body counts only when `Content-Type` is the form media type
/// (parameters allowed): a type that merely starts with it is another type,
/// and its body is ignored like any other non-form body.
#[tokio::test]
async fn only_the_exact_form_media_type_is_read_as_a_form() {
    let stack = stack();
    let browser = new_browser();
    let post = |content_type: &'static str| {
        browser
            .post(stack.gateway.url("/logout?mode=local"))
            .header("origin", stack.gateway.public_url())
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "navigate")
            .header(ACCEPT, "text/html")
            .header("content-type", content_type)
            .body("return_to=%2Fbye")
            .send()
    };

    stack.login(&browser, "alice", "/").await;
    let resp = post("application/x-www-form-urlencodedXYZ").await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()[LOCATION],
        "/goodbye",
        "a near-miss content type's body is not a form"
    );
    assert!(!has_access(&stack, &browser).await);

    stack.login(&browser, "alice", "/").await;
    let resp = post("Application/X-WWW-Form-URLEncoded; charset=UTF-8")
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/bye", "the form's return_to");
    assert!(!has_access(&stack, &browser).await);
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

/// The `nonce` of the page's first `<script nonce="…">`.
fn script_nonce(page: &str) -> &str {
    page.split("<script nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a script with a nonce")
}

/// The target-origin arguments of the page's `postMessage(m, …)` calls
/// (a BroadcastChannel's `postMessage(m)` takes none).
fn post_message_targets(page: &str) -> Vec<&str> {
    page.split("postMessage(m,")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap_or(rest))
        .collect()
}

#[tokio::test]
async fn done_page_headers_and_unknown_state() {
    let stack = stack();
    let client = no_redirects();
    let resp = client
        .get(stack.gateway.url("/.portcullis/logout/done?state=unknown"))
        .send()
        .await
        .unwrap();
    assert_done_redirect_headers(&resp);
    assert_eq!(
        resp.headers()[LOCATION],
        "/goodbye",
        "an unknown state goes to the default, never elsewhere"
    );

    // A silent logout's done page (framed) and a popup's: exact CSP, no
    // X-Frame-Options, an exact target origin for every postMessage.
    let origin = serde_json::Value::String(stack.gateway.public_url()).to_string();
    for mode in ["silent", "popup"] {
        let browser = new_browser();
        stack.login(&browser, "alice", "/").await;
        let resp = browser
            .post(stack.gateway.url(&format!("/logout?mode={mode}")))
            .header(ACCEPT, "application/json")
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        let state = Url::parse(body["continue_url"].as_str().unwrap())
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let done = client
            .get(
                stack
                    .gateway
                    .url(&format!("/.portcullis/logout/done?state={state}")),
            )
            .header("sec-fetch-dest", "iframe")
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 200, "{mode}");
        let headers = done.headers().clone();
        assert!(headers.get("x-frame-options").is_none(), "{mode}");
        assert_eq!(headers["cache-control"], "no-store", "{mode}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{mode}");
        assert!(
            headers.get("clear-site-data").is_some(),
            "{mode}: the final silent/popup page ends the flow"
        );
        let page = done.text().await.unwrap();
        assert_eq!(
            headers["content-security-policy"],
            done_csp(Some(script_nonce(&page))).as_str(),
            "{mode}"
        );
        assert!(page.contains(&state), "{mode}");
        let targets = post_message_targets(&page);
        assert_eq!(
            targets,
            [origin.as_str()],
            "{mode}: one postMessage, to this exact origin, never \"*\"\n{page}"
        );
    }
}

/// SPEC: HEAD, `Origin: null`, prefetches and cross-site requests never log
/// out — not even when the session store is down. Such a request gets its
/// usual answer, its cookie stays, no logout event is logged; only a
/// request allowed to log out learns that the store is unavailable.
#[tokio::test]
async fn store_down_never_turns_a_refused_request_into_a_logout() {
    let mut redis = support::Redis::start();
    let stack = Stack::start(StackOptions {
        // No local cache worth the name: every load asks Redis.
        session: format!(
            "store = \"redis\"\n[session.redis]\nurl = \"{}\"\ncache_ttl = \"0s\"\n",
            redis.url()
        ),
        rest: Some(format!("{DEFAULT_ROUTES}{LOGOUT}")),
        ..Default::default()
    });
    let browser = new_browser();
    let to_idp = navigate(&browser, &stack.gateway.url("/")).await;
    let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
    let landed = navigate(&browser, callback.as_str()).await;
    let cookie = set_cookies(&landed)
        .into_iter()
        .find(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0"))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    redis.stop();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let origin = stack.gateway.public_url();
    let cases: [RequestCase; 5] = [
        (
            "HEAD",
            reqwest::Method::HEAD,
            &[("sec-fetch-site", "same-origin")],
            false,
            403,
        ),
        (
            "Origin: null",
            reqwest::Method::POST,
            &[("origin", "null")],
            false,
            403,
        ),
        (
            "prefetch",
            reqwest::Method::GET,
            &[
                ("sec-fetch-site", "none"),
                ("sec-fetch-mode", "navigate"),
                ("sec-purpose", "prefetch"),
                ("accept", "text/html"),
            ],
            false,
            200,
        ),
        (
            "cross-site GET navigation",
            reqwest::Method::GET,
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("accept", "text/html"),
            ],
            false,
            200,
        ),
        (
            "cross-site fetch",
            reqwest::Method::POST,
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "cors"),
                ("origin", "https://evil.example"),
            ],
            false,
            403,
        ),
    ];
    let client = no_redirects();
    for (name, method, headers, _, expect) in cases {
        let mut req = client
            .request(method, stack.gateway.url("/logout?mode=local&csrf=x"))
            .header("cookie", &cookie);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), expect, "{name}");
        assert!(
            set_cookies(&resp).is_empty(),
            "{name}: the cookie is left alone: {:?}",
            set_cookies(&resp)
        );
        assert_eq!(resp.headers()["cache-control"], "no-store", "{name}");
    }

    // A request that may log out is told the truth, and its cookie expires.
    let resp = client
        .post(stack.gateway.url("/logout?mode=local"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(expires_session_cookie(&resp), "{:?}", set_cookies(&resp));
    stack
        .gateway
        .wait_for_log("outcome", "store_error", Duration::from_secs(5))
        .expect("the logout event says the store failed");
    let store_errors = stack
        .gateway
        .json_logs()
        .iter()
        .filter(|l| support::log_field(l, "event") == Some("logout"))
        .filter(|l| support::log_field(l, "outcome") == Some("store_error"))
        .count();
    assert_eq!(store_errors, 1, "only the allowed request logged a logout");
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
