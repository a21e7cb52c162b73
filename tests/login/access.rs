//! Route access: allow lists by group, email and domain; no bypass by path parameters or port.

use reqwest::header::ACCEPT;

use super::*;
use crate::support::stack::{StackOptions, new_browser};

#[tokio::test]
async fn allow_rules_admit_only_the_listed() {
    let stack = Stack::start(StackOptions {
        rest: Some(
            r#"
[[route]]
prefix = "/admins/"
upstream = "{app}"
allow_groups = ["admins"]

[[route]]
prefix = "/by-email/"
upstream = "{app}"
allow_emails = ["bob@example.org"]

[[route]]
prefix = "/by-domain/"
upstream = "{app}"
allow_email_domains = ["example.net", "example.org"]

[[route]]
prefix = "/"
upstream = "{app}"
"#
            .into(),
        ),
        ..Default::default()
    });
    let alice = new_browser();
    let bob = new_browser();
    let carol = new_browser(); // carol@example.net, unverified
    stack.login(&alice, "alice", "/").await;
    stack.login(&bob, "bob", "/").await;
    stack.login(&carol, "carol", "/").await;
    let status = |b: &reqwest::Client, path: &str| {
        let url = stack.gateway.url(path);
        let b = b.clone();
        async move { b.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&alice, "/admins/x").await, 200);
    assert_eq!(status(&bob, "/admins/x").await, 403);
    assert_eq!(status(&bob, "/by-email/x").await, 200);
    assert_eq!(status(&alice, "/by-email/x").await, 403);
    assert_eq!(
        status(&bob, "/by-domain/x").await,
        200,
        "a verified email of a listed domain"
    );
    assert_eq!(
        status(&carol, "/by-domain/x").await,
        403,
        "unverified emails never match"
    );
    assert_eq!(
        status(&alice, "/by-domain/x").await,
        403,
        "example.com is not listed"
    );
    assert_eq!(status(&carol, "/anything").await, 200);
}

#[tokio::test]
async fn protected_routes_cannot_be_bypassed_by_parameters_or_a_host_port() {
    let stack = Stack::start(StackOptions {
        rest: Some(
            r#"
[[route]]
prefix = "/admin"
host = "127.0.0.1:{port}"
upstream = "{app}"
allow_groups = ["admins"]

[[route]]
prefix = "/"
upstream = "{app}"
auth = "none"
"#
            .into(),
        ),
        ..Default::default()
    });
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/admin/panel",
        "/admin;x/panel",
        "/admin;jsessionid=1",
        "/admin/;x/panel",
    ] {
        let r = c
            .get(stack.gateway.url(path))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} must need a session");
    }
    assert_eq!(
        stack.app.request_count(),
        0,
        "nothing reached the app without a session"
    );
    assert_eq!(
        c.get(stack.gateway.url("/other"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // With alice's session (group admins) the parameters are passed on unchanged.
    let alice = new_browser();
    stack.login(&alice, "alice", "/admin/home").await;
    assert_eq!(
        alice
            .get(stack.gateway.url("/admin;x/panel"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(stack.app.last_request().unwrap().path(), "/admin;x/panel");
}
