//! Refresh and revocation: new tokens after expiry, which failures end a session, revoked tokens.

use portcullis::oidc::RefreshError;

use super::*;

#[tokio::test]
async fn refresh_returns_new_tokens_after_access_token_expiry() {
    let origin = gateway_origin();
    let options = IdpOptions {
        access_token_ttl: Some(2),
        ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
    };
    let s = setup(options, origin).await;
    let login = full_login(&s, "alice").await;
    let refresh_token = login.refresh_token.clone().expect("refresh token");

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(
        !s.idp
            .introspect(CLIENT_ID, CLIENT_SECRET, login.access_token.expose())
            .await,
        "the short-lived access token has expired"
    );

    let refreshed = s
        .client
        .refresh(refresh_token.expose(), &login.claims)
        .await
        .expect("refresh");
    assert_ne!(refreshed.access_token.expose(), login.access_token.expose());
    assert!(
        s.idp
            .introspect(CLIENT_ID, CLIENT_SECRET, refreshed.access_token.expose())
            .await,
        "the new access token is active"
    );
    assert!(refreshed.access_token_expires_at.is_some());
    let claims = refreshed.claims.expect("a new ID token on refresh");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.groups, login.claims.groups);
    assert_eq!(claims.sid, login.claims.sid);
    assert!(refreshed.id_token.is_some());
}

#[tokio::test]
async fn invalid_refresh_token_ends_the_session() {
    let s = start_default().await;
    let login = full_login(&s, "alice").await;
    let err = s
        .client
        .refresh("not-a-refresh-token", &login.claims)
        .await
        .expect_err("bogus refresh token");
    assert!(matches!(err, RefreshError::InvalidGrant), "{err:?}");
    assert!(err.ends_session());
}

#[tokio::test]
async fn unreachable_idp_keeps_the_session() {
    let s = start_default().await;
    let login = full_login(&s, "alice").await;
    let refresh_token = login.refresh_token.clone().expect("refresh token");
    let Setup { idp, client, .. } = s;
    drop(idp); // the IdP goes away
    let err = client
        .refresh(refresh_token.expose(), &login.claims)
        .await
        .expect_err("IdP down");
    assert!(matches!(err, RefreshError::Transient(_)), "{err:?}");
    assert!(!err.ends_session());
}

#[tokio::test]
async fn revocation_makes_tokens_inactive() {
    let s = start_default().await;
    let login = full_login(&s, "alice").await;
    let refresh = login.refresh_token.clone().expect("refresh token");
    let (id, secret) = (CLIENT_ID, CLIENT_SECRET);
    assert!(s.idp.introspect(id, secret, refresh.expose()).await);
    assert!(
        s.idp
            .introspect(id, secret, login.access_token.expose())
            .await
    );

    s.client
        .spawn_revoke(Some(refresh.clone()), Some(login.access_token.clone()))
        .await
        .expect("revocation task");

    assert!(!s.idp.introspect(id, secret, refresh.expose()).await);
    assert!(
        !s.idp
            .introspect(id, secret, login.access_token.expose())
            .await
    );
    let err = s
        .client
        .refresh(refresh.expose(), &login.claims)
        .await
        .expect_err("revoked refresh token");
    assert!(matches!(err, RefreshError::InvalidGrant), "{err:?}");
}
