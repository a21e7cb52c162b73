//! Starting and finishing a login: the authorization URL and the identity it yields.

use portcullis::oidc::OidcError;

use super::*;

#[tokio::test]
async fn authorization_url_has_code_flow_pkce_nonce_state() {
    let s = start_default().await;
    let mut cfg = config(s.idp.issuer());
    cfg.scopes.push("groups".into());
    cfg.auth_params = vec![("prompt".into(), "login".into())];
    let client = OidcClient::with_options(&cfg, fast_options()).expect("client");
    assert!(client.provider().wait_ready(Duration::from_secs(10)).await);
    let start = client
        .start_login(&callback_url(&s.origin), "/")
        .expect("start");
    let url = &start.authorization_url;
    assert!(
        url.as_str()
            .starts_with(&format!("{}/auth?", s.idp.issuer()))
    );
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["response_mode"], "query");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], callback_url(&s.origin).as_str());
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], start.state.state);
    assert_eq!(q["nonce"], start.state.nonce);
    assert_eq!(q["prompt"], "login");
    assert_eq!(q["scope"], "openid email profile groups");
    assert!(start.state.state.len() >= 43, "state carries 256 bits");
    assert!(
        !format!("{:?}", start.state).contains(&start.state.pkce_verifier),
        "Debug hides the verifier"
    );

    // Reserved parameters cannot be overridden.
    let mut bad = config(s.idp.issuer());
    bad.auth_params = vec![("state".into(), "fixed".into())];
    assert!(matches!(OidcClient::new(&bad), Err(OidcError::Config(_))));
}

#[tokio::test]
async fn full_login_yields_alices_identity() {
    let s = start_default().await;
    let result = full_login(&s, "alice").await;
    let c = &result.claims;
    assert_eq!(c.iss, s.idp.issuer());
    assert_eq!(c.sub, "alice");
    assert_eq!(c.email.as_deref(), Some("alice@example.com"));
    assert!(c.email_verified);
    assert_eq!(c.preferred_username.as_deref(), Some("alice"));
    assert_eq!(c.groups, vec!["admins".to_owned(), "staff".to_owned()]);
    assert!(
        c.sid.as_deref().is_some_and(|sid| !sid.is_empty()),
        "sid present for a back-channel client"
    );
    assert!(result.refresh_token.is_some(), "refresh token issued");
    let expires = result.access_token_expires_at.expect("expires_in");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(expires > now + 3000 && expires <= now + 3601);
    assert_eq!(result.id_token.expose().split('.').count(), 3);
    assert!(
        s.idp
            .introspect(CLIENT_ID, CLIENT_SECRET, result.access_token.expose())
            .await
    );
    // Nothing secret in Debug output.
    let debug = format!("{result:?}");
    assert!(!debug.contains(result.access_token.expose()));
}

#[tokio::test]
async fn unknown_user_has_unverified_email_and_no_groups() {
    let s = start_default().await;
    let result = full_login(&s, "carol").await;
    assert_eq!(result.claims.sub, "carol");
    assert_eq!(result.claims.email.as_deref(), Some("carol@example.net"));
    assert!(!result.claims.email_verified);
    assert!(result.claims.groups.is_empty());
}
