//! The callback's checks: state, nonce, `iss`, PKCE and code replay, IdP errors, expiry.

use portcullis::oidc::OidcError;

use super::*;

#[tokio::test]
async fn tampered_state_is_rejected() {
    let s = start_default().await;
    let (state, mut query) = login_at_idp(&s, "alice").await;
    query.state = Some(format!("{}x", state.state));
    let err = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect_err("tampered state");
    assert!(matches!(err, OidcError::StateMismatch), "{err:?}");

    query.state = None;
    let err = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect_err("missing state");
    assert!(matches!(err, OidcError::StateMismatch), "{err:?}");
}

#[tokio::test]
async fn wrong_nonce_is_rejected() {
    let s = start_default().await;
    let (mut state, query) = login_at_idp(&s, "alice").await;
    state.nonce = "not-the-nonce-that-was-sent".into();
    let err = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect_err("wrong nonce");
    assert!(
        matches!(&err, OidcError::IdToken(m) if m.contains("nonce")),
        "{err:?}"
    );
}

#[tokio::test]
async fn issuer_mismatch_and_missing_iss_are_rejected() {
    let s = start_default().await;
    let (state, mut query) = login_at_idp(&s, "alice").await;
    assert_eq!(
        query.iss.as_deref(),
        Some(s.idp.issuer()),
        "the IdP sends iss"
    );

    query.iss = Some("http://127.0.0.1:1/evil".into());
    let err = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect_err("iss mismatch");
    assert!(matches!(err, OidcError::IssuerMismatch), "{err:?}");

    // This IdP advertises RFC 9207 support, so a missing iss is an attack.
    query.iss = None;
    let err = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect_err("missing iss");
    assert!(matches!(err, OidcError::MissingIssuer), "{err:?}");

    // The untouched response still works: the checks above did not
    // consume the code.
    query.iss = Some(s.idp.issuer().to_owned());
    s.client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect("genuine response");
}

#[tokio::test]
async fn wrong_pkce_verifier_and_code_replay_fail_at_the_idp() {
    let s = start_default().await;
    let (mut state, query) = login_at_idp(&s, "alice").await;
    let genuine = state.pkce_verifier.clone();
    state.pkce_verifier = "A".repeat(43);
    let err = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect_err("wrong verifier");
    assert!(matches!(err, OidcError::InvalidGrant), "{err:?}");

    // The genuine verifier redeems the code once; a replay is refused.
    state.pkce_verifier = genuine;
    s.client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect("right verifier");
    let err = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect_err("replayed code");
    assert!(matches!(err, OidcError::InvalidGrant), "{err:?}");
}

#[tokio::test]
async fn idp_error_response_is_reported() {
    let s = start_default().await;
    let start = s
        .client
        .start_login(&callback_url(&s.origin), "/")
        .expect("start");
    let query = CallbackQuery {
        state: Some(start.state.state.clone()),
        iss: Some(s.idp.issuer().to_owned()),
        error: Some("access_denied".into()),
        error_description: Some("End-User aborted interaction".into()),
        code: None,
    };
    let err = s
        .client
        .finish_login(&start.state, &query, &callback_url(&s.origin))
        .await
        .expect_err("error response");
    assert!(
        matches!(&err, OidcError::Authorization { error, .. } if error == "access_denied"),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_login_state_is_rejected() {
    let s = start_default().await;
    let (mut state, query) = login_at_idp(&s, "alice").await;
    state.created_at -= 601;
    let err = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect_err("stale login");
    assert!(matches!(err, OidcError::LoginExpired), "{err:?}");
}
