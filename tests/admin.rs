//! The admin API end to end: revoke by `sub` and by `sid`, list a user's
//! sessions, and the bearer token gate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::time::Duration;

use serde_json::{Value, json};

use support::TEST_ADMIN_TOKEN;
use support::idp::browser;
use support::setup::*;

fn admin() -> reqwest::Client {
    reqwest::Client::new()
}

async fn list(gw: &support::Gateway, sub: &str) -> Vec<Value> {
    let resp = admin()
        .get(gw.admin_url("/admin/sessions"))
        .query(&[("sub", sub)])
        .bearer_auth(TEST_ADMIN_TOKEN)
        .send()
        .await
        .expect("GET /admin/sessions");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    body["sessions"].as_array().expect("sessions array").clone()
}

async fn revoke(gw: &support::Gateway, body: Value) -> reqwest::Response {
    admin()
        .post(gw.admin_url("/admin/sessions/revoke"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("POST revoke")
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_by_sub_and_sid_and_list_sessions() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;

    let (a1, a2, a3, bob) = (browser(), browser(), browser(), browser());
    for b in [&a1, &a2, &a3] {
        login(gw, &idp, b, "alice").await;
    }
    login(gw, &idp, &bob, "bob").await;

    // Listing: three sessions of alice, hashed ids, times, no tokens.
    let sessions = list(gw, "alice").await;
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    let mut ids = std::collections::HashSet::new();
    for s in &sessions {
        let id = s["id_hash"].as_str().expect("id_hash");
        assert!(!id.is_empty());
        assert!(ids.insert(id.to_owned()), "ids are distinct");
        assert!(s.get("id_token").is_none() && s.get("access_token").is_none());
        let created = s["created"].as_u64().expect("created");
        let seen = s["last_seen"].as_u64().expect("last_seen");
        assert!(created <= seen && seen <= now() + 1);
    }
    assert_eq!(list(gw, "bob").await.len(), 1);
    assert!(list(gw, "nobody").await.is_empty());

    // Revoke one session by its IdP sid.
    let sid = session(gw, &a1).await.expect("a1")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let resp = revoke(gw, json!({ "sid": sid })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("JSON"),
        json!({"revoked": 1})
    );
    assert_eq!(session(gw, &a1).await, None);
    assert!(session(gw, &a2).await.is_some());
    assert_eq!(list(gw, "alice").await.len(), 2);

    // Revoke the rest of alice by sub; bob stays.
    let resp = revoke(gw, json!({ "sub": "alice" })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("JSON"),
        json!({"revoked": 2})
    );
    assert_eq!(session(gw, &a2).await, None);
    assert_eq!(session(gw, &a3).await, None);
    assert!(!reaches_upstream(gw, &a3).await);
    assert!(session(gw, &bob).await.is_some());
    assert!(reaches_upstream(gw, &bob).await);
    assert!(list(gw, "alice").await.is_empty());

    // Nothing left to revoke: still a success, with 0.
    let resp = revoke(gw, json!({ "sub": "alice" })).await;
    assert_eq!(
        resp.json::<Value>().await.expect("JSON"),
        json!({"revoked": 0})
    );

    // Bad bodies are 400, never "everyone".
    for bad in [
        json!({}),
        json!({"sub": "bob", "sid": "x"}),
        json!({"sub": ""}),
        json!(["bob"]),
    ] {
        let resp = revoke(gw, bad.clone()).await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    assert!(session(gw, &bob).await.is_some());

    let event = gw
        .wait_for_log("kind", "admin", Duration::from_secs(5))
        .expect("admin logout event");
    assert_eq!(support::log_field(&event, "outcome"), Some("ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_is_required() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let b = browser();
    login(gw, &idp, &b, "alice").await;

    let no_token = admin()
        .post(gw.admin_url("/admin/sessions/revoke"))
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(no_token.status(), 401);
    assert_eq!(
        no_token
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let wrong = admin()
        .post(gw.admin_url("/admin/sessions/revoke"))
        .bearer_auth(format!("{TEST_ADMIN_TOKEN}x"))
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(wrong.status(), 401);
    let prefix = admin()
        .get(gw.admin_url("/admin/sessions?sub=alice"))
        .bearer_auth(&TEST_ADMIN_TOKEN[..TEST_ADMIN_TOKEN.len() - 1])
        .send()
        .await
        .expect("GET");
    assert_eq!(prefix.status(), 401);
    let basic = admin()
        .get(gw.admin_url("/admin/sessions?sub=alice"))
        .basic_auth("admin", Some(TEST_ADMIN_TOKEN))
        .send()
        .await
        .expect("GET");
    assert_eq!(basic.status(), 401);
    assert!(session(gw, &b).await.is_some(), "nothing was revoked");

    // The right token, wrong method.
    let get_revoke = admin()
        .get(gw.admin_url("/admin/sessions/revoke"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(get_revoke.status(), 405);
    // The old endpoints are untouched.
    let health = admin()
        .get(gw.admin_url("/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_admin_token_means_no_admin_api() {
    let setup = start_gateway(false, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let b = browser();
    login(gw, &idp, &b, "alice").await;

    for token in [None, Some(TEST_ADMIN_TOKEN), Some("")] {
        let mut req = admin()
            .post(gw.admin_url("/admin/sessions/revoke"))
            .json(&json!({"sub": "alice"}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.expect("POST").status(), 404);
        let mut req = admin().get(gw.admin_url("/admin/sessions?sub=alice"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        assert_eq!(req.send().await.expect("GET").status(), 404);
    }
    assert!(session(gw, &b).await.is_some());
}
