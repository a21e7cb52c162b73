//! Where a logout lands: `return_to` refusing open redirects, and the `/logout/done` page.

use reqwest::header::LOCATION;
use url::Url;

use super::*;
use crate::support::stack::new_browser;

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
        let done = browser
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
