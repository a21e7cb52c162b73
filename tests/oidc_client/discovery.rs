//! Discovery and readiness: metadata and keys, the end-session override, a late IdP.

use portcullis::oidc::OidcError;

use super::*;

#[tokio::test]
async fn discovery_loads_metadata_and_keys() {
    let s = start_default().await;
    assert!(s.client.ready());
    let meta = s.client.provider().metadata().expect("metadata");
    let issuer = s.idp.issuer();
    assert_eq!(meta.issuer, issuer);
    assert_eq!(
        meta.end_session_endpoint.as_ref().map(Url::as_str),
        Some(format!("{issuer}/session/end").as_str())
    );
    assert_eq!(
        meta.revocation_endpoint.as_ref().map(Url::as_str),
        Some(format!("{issuer}/token/revocation").as_str())
    );
    assert_eq!(
        meta.introspection_endpoint.as_ref().map(Url::as_str),
        Some(format!("{issuer}/token/introspection").as_str())
    );
    assert!(meta.iss_parameter_supported);
    assert!(meta.backchannel_logout_supported);
    assert_eq!(meta.jwt_algorithms(), vec![jsonwebtoken::Algorithm::RS256]);

    // The key cache serves back-channel logout validation.
    let provider = s.client.provider();
    provider
        .decoding_key(Some("keystore-CHANGE-ME"), jsonwebtoken::Algorithm::RS256)
        .await
        .expect("the IdP's development key");
    assert!(matches!(
        provider
            .decoding_key(Some("forged-kid"), jsonwebtoken::Algorithm::RS256)
            .await,
        Err(OidcError::UnknownKey)
    ));
    assert!(matches!(
        provider
            .decoding_key(Some("keystore-CHANGE-ME"), jsonwebtoken::Algorithm::HS256)
            .await,
        Err(OidcError::DisallowedAlg)
    ));
    assert!(
        matches!(
            provider
                .decoding_key(Some("keystore-CHANGE-ME"), jsonwebtoken::Algorithm::PS256)
                .await,
            Err(OidcError::DisallowedAlg),
        ),
        "only algorithms the IdP advertises for ID tokens"
    );
}

#[tokio::test]
async fn end_session_override_wins() {
    let idp = Idp::start(IdpOptions::default());
    let mut cfg = config(idp.issuer());
    cfg.end_session_endpoint = Some(Url::parse("https://logout.example.com/bye").expect("url"));
    let client = OidcClient::with_options(&cfg, fast_options()).expect("client");
    assert!(client.provider().wait_ready(Duration::from_secs(10)).await);
    let meta = client.provider().metadata().expect("metadata");
    assert_eq!(
        meta.end_session_endpoint.as_ref().map(Url::as_str),
        Some("https://logout.example.com/bye")
    );
}

#[tokio::test]
async fn gateway_waits_for_an_idp_that_starts_late() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let client = OidcClient::with_options(&config(&issuer), fast_options()).expect("client");
    let origin = gateway_origin();

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!client.ready(), "not ready while the IdP is down");
    assert!(matches!(
        client.start_login(&callback_url(&origin), "/"),
        Err(OidcError::NotReady)
    ));

    let idp = Idp::start(IdpOptions {
        port: Some(port),
        ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
    });
    assert!(
        client.provider().wait_ready(Duration::from_secs(10)).await,
        "ready once the IdP answers"
    );
    assert_eq!(
        client.provider().metadata().expect("metadata").issuer,
        idp.issuer()
    );
    client
        .start_login(&callback_url(&origin), "/")
        .expect("login can start");
}
