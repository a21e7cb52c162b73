//! Which sessions a valid token ends: IdP-driven, `sub`-only, unknown `sid`; POST only.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::support::idp::browser;
use crate::support::setup::*;
use crate::support::signing::*;

/// A user logs in through the gateway, then signs out at the IdP from
/// another application in the same IdP browser session: the IdP POSTs a
/// logout token to the gateway, and the gateway session is over.
#[tokio::test(flavor = "multi_thread")]
async fn idp_driven_backchannel_logout_ends_the_gateway_session() {
    let setup = start_gateway(true, "");
    let other = other_client();
    let idp = start_idp(&setup, vec![other.clone()]).await;
    let gw = &setup.gw;

    let b = browser();
    login(gw, &idp, &b, "alice").await;
    let s = session(gw, &b).await.expect("logged in");
    assert_eq!(s["sub"], "alice");
    assert!(s["sid"].is_string(), "IdP sid recorded: {s}");
    assert!(reaches_upstream(gw, &b).await);

    // The other app logs in silently in the same IdP session.
    id_token_via_code(
        &idp,
        &b,
        &other.client_id,
        &other.client_secret,
        &other.redirect_uris[0],
        "alice",
    )
    .await;

    // ... and its user signs out at the IdP, confirming "sign me out".
    let done = idp
        .logout(
            &b,
            &[
                ("client_id", other.client_id.as_str()),
                (
                    "post_logout_redirect_uri",
                    &other.post_logout_redirect_uris[0],
                ),
            ],
        )
        .await;
    assert!(
        done.is_some_and(|u| u.as_str().starts_with("http://127.0.0.1:9/bye")),
        "IdP finished the logout"
    );

    assert_eq!(session(gw, &b).await, None, "gateway session ended");
    assert!(
        !reaches_upstream(gw, &b).await,
        "protected page sends to login again"
    );
    assert!(
        !idp.stderr().contains("backchannel.error"),
        "IdP delivery failed: {}",
        idp.stderr()
    );
    let event = gw
        .wait_for_log("kind", "backchannel", Duration::from_secs(5))
        .expect("logout event logged");
    assert_eq!(support::log_field(&event, "outcome"), Some("ok"), "{event}");
}

/// A token with only `sub` ends every session of that user created before
/// its `iat` (not just the newest), and no one else's.
#[tokio::test(flavor = "multi_thread")]
async fn sub_only_token_ends_all_of_that_users_earlier_sessions() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let iss = idp.issuer().to_owned();

    let (a1, a2, bob) = (browser(), browser(), browser());
    login(gw, &idp, &a1, "alice").await;
    login(gw, &idp, &a2, "alice").await;
    login(gw, &idp, &bob, "bob").await;
    let s1 = session(gw, &a1).await.expect("a1");
    let s2 = session(gw, &a2).await.expect("a2");
    assert_ne!(s1["sid"], s2["sid"], "two IdP sessions");

    // A session alice opens after the token's iat stays.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let iat = now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = browser();
    login(gw, &idp, &later, "alice").await;

    let mut claims = logout_claims(&iss, None, Some("alice"));
    claims["iat"] = json!(iat);
    let resp = post_token(gw, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
    assert_eq!(resp.status(), 200);

    assert_eq!(session(gw, &a1).await, None, "alice's first session ended");
    assert_eq!(session(gw, &a2).await, None, "alice's second session ended");
    assert!(!reaches_upstream(gw, &a2).await);
    assert_eq!(
        session(gw, &bob).await.map(|s| s["sub"].clone()),
        Some(json!("bob")),
        "bob's session survives"
    );
    assert!(reaches_upstream(gw, &bob).await);
    assert!(
        session(gw, &later).await.is_some(),
        "a session created after iat survives"
    );
}

/// A token for no known session is still a success (200), and the
/// endpoint only takes POST.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_sessions_and_methods() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let claims = logout_claims(idp.issuer(), Some("nobody-has-this-sid"), None);
    let resp = post_token(gw, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
    assert_eq!(resp.status(), 200);
    let event = gw
        .wait_for_log("kind", "backchannel", Duration::from_secs(5))
        .expect("event");
    assert_eq!(support::log_field(&event, "outcome"), Some("no_session"));

    let get = reqwest::get(gw.url("/.portcullis/backchannel-logout"))
        .await
        .expect("GET");
    assert_eq!(get.status(), 405);
}
