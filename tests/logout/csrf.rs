//! Who may log out: CSRF rules, the flow token, the form media type, refusals with the store down.

use std::time::Duration;

use reqwest::header::LOCATION;

use super::*;
use crate::support::stack::new_browser;

/// A request to `/logout` in a table of cases: name, method, headers,
/// whether it logs out, the status expected.
type RequestCase = (
    &'static str,
    reqwest::Method,
    &'static [(&'static str, &'static str)],
    bool,
    u16,
);

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
