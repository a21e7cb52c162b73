//! The OIDC client against a real OpenID Provider (oidc-provider 9.13.3 via
//! tests/idp): discovery and readiness, a full login over HTTP, the
//! callback's state/nonce/iss/PKCE checks, refresh, and revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::time::Duration;

use portcullis::config::{OidcConfig, Secret};
use portcullis::oidc::{
    CallbackQuery, LoginResult, LoginState, OidcClient, OidcError, OidcOptions, ProviderOptions,
    RefreshError,
};
use support::idp::{Idp, IdpClient, IdpOptions, browser, free_port};
use support::signing::{TEST_KID, idp_jwks, idp_key_pem, other_key_pem, sign_with, unsigned};
use url::Url;

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "portcullis-test-secret";

/// A gateway origin for redirect URIs. Nothing listens there: the browser
/// driver stops at the first redirect that leaves the IdP.
fn gateway_origin() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn callback_url(origin: &str) -> Url {
    Url::parse(&format!("{origin}/.portcullis/callback")).expect("callback URL")
}

fn config(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer: Url::parse(issuer).expect("issuer URL"),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Some(Secret::new(CLIENT_SECRET)),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        auth_params: Vec::new(),
        end_session_endpoint: None,
        logout_params: Vec::new(),
        frontchannel_frame_ancestors: Vec::new(),
        backchannel_require_exp: true,
    }
}

/// Short retry delays so the late-IdP test is quick.
fn fast_options() -> OidcOptions {
    OidcOptions {
        provider: ProviderOptions {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..ProviderOptions::default()
        },
        ..OidcOptions::default()
    }
}

struct Setup {
    idp: Idp,
    client: OidcClient,
    origin: String,
}

async fn setup(options: IdpOptions, origin: String) -> Setup {
    let idp = Idp::start(options);
    let client = OidcClient::with_options(&config(idp.issuer()), fast_options()).expect("client");
    assert!(
        client.provider().wait_ready(Duration::from_secs(10)).await,
        "discovery did not complete"
    );
    Setup {
        idp,
        client,
        origin,
    }
}

async fn start_default() -> Setup {
    let origin = gateway_origin();
    let options = IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin));
    setup(options, origin).await
}

/// Starts a login and drives the IdP as `user`; returns the login state
/// and the callback query the browser would bring back.
async fn login_at_idp(s: &Setup, user: &str) -> (LoginState, CallbackQuery) {
    login_with(s, &browser(), user).await
}

/// [`login_at_idp`] with a given browser (its cookie jar keeps the IdP
/// session, for a logout later).
async fn login_with(
    s: &Setup,
    browser: &reqwest::Client,
    user: &str,
) -> (LoginState, CallbackQuery) {
    let start = s
        .client
        .start_login(&callback_url(&s.origin), "/app?x=1")
        .expect("start login");
    let back = s.idp.login(browser, &start.authorization_url, user).await;
    assert_eq!(
        back.as_str().split('?').next(),
        Some(callback_url(&s.origin).as_str()),
        "the IdP sends the browser to the callback"
    );
    let query = CallbackQuery::parse(back.query().unwrap_or("")).expect("callback query");
    (start.state, query)
}

async fn full_login(s: &Setup, user: &str) -> LoginResult {
    let (state, query) = login_at_idp(s, user).await;
    s.client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect("finish login")
}

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
async fn end_session_url_carries_hint_client_state_and_logout_params() {
    // Before discovery (IdP down), the configured override still works.
    let mut cfg = config(&format!("http://127.0.0.1:{}", free_port()));
    cfg.end_session_endpoint =
        Some(Url::parse("https://idp.example.com/logout?tenant=t1").expect("url"));
    cfg.logout_params = vec![("federated".into(), "1".into())];
    let client = OidcClient::with_options(&cfg, fast_options()).expect("client");
    let done = Url::parse("http://127.0.0.1:8080/.portcullis/logout/done").expect("url");
    let url = client
        .end_session_url(Some("hint.jwt.sig"), &done, "st")
        .expect("override");
    assert_eq!(
        url.as_str(),
        "https://idp.example.com/logout?tenant=t1&id_token_hint=hint.jwt.sig&client_id=portcullis\
         &post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2F.portcullis%2Flogout%2Fdone\
         &state=st&federated=1"
    );
    // Without a session there is no hint.
    let url = client.end_session_url(None, &done, "st").expect("override");
    assert!(!url.as_str().contains("id_token_hint"));

    // No override and no metadata: nowhere to send the user.
    let bare = OidcClient::with_options(
        &config(&format!("http://127.0.0.1:{}", free_port())),
        fast_options(),
    )
    .expect("client");
    assert!(bare.end_session_url(None, &done, "st").is_none());

    // logout_params cannot override what the gateway sets.
    cfg.logout_params = vec![("state".into(), "x".into())];
    assert!(matches!(OidcClient::new(&cfg), Err(OidcError::Config(_))));
}

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

#[tokio::test]
async fn forged_key_ids_refetch_the_jwks_at_most_once_per_interval() {
    let origin = gateway_origin();
    let idp = Idp::start(IdpOptions {
        log_requests: true,
        ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
    });
    let mut options = fast_options();
    options.provider.jwks_min_refetch_interval = Duration::from_secs(1);
    let client = OidcClient::with_options(&config(idp.issuer()), options).expect("client");
    assert!(client.provider().wait_ready(Duration::from_secs(10)).await);
    assert_eq!(idp.requests("GET", "/jwks"), 1, "one fetch at discovery");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..20 {
        let kid = format!("forged-{i}");
        let result = client
            .provider()
            .decoding_key(Some(&kid), jsonwebtoken::Algorithm::RS256)
            .await;
        assert!(matches!(result, Err(OidcError::UnknownKey)));
    }
    assert_eq!(
        idp.requests("GET", "/jwks"),
        2,
        "twenty unknown kids cause one refetch"
    );
    // The real key still works without another fetch.
    client
        .provider()
        .decoding_key(Some("keystore-CHANGE-ME"), jsonwebtoken::Algorithm::RS256)
        .await
        .expect("known key");
    assert_eq!(idp.requests("GET", "/jwks"), 2);
}

/// A stand-in for the gateway's back-channel receiver: records each POST
/// body and answers 200.
async fn backchannel_receiver(
    listener: tokio::net::TcpListener,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use http_body_util::BodyExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Empty::<
                                bytes::Bytes,
                            >::new(
                            )))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    rx
}

#[tokio::test]
async fn rp_initiated_logout_delivers_a_verifiable_backchannel_token() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let origin = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let mut received = backchannel_receiver(listener).await;
    let options = IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin));
    let s = setup(options, origin.clone()).await;

    let browser = browser();
    let (state, query) = login_with(&s, &browser, "alice").await;
    let login = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect("login");
    let sid = login.claims.sid.clone().expect("sid");

    let done = format!("{origin}/.portcullis/logout/done");
    let end_session = s
        .client
        .end_session_url(
            Some(login.id_token.expose()),
            &Url::parse(&done).expect("url"),
            "logout-state-1",
        )
        .expect("end-session URL");
    let params: Vec<(String, String)> = end_session.query_pairs().into_owned().collect();
    assert!(params.contains(&("client_id".into(), CLIENT_ID.into())));
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = s
        .idp
        .logout(&browser, &params)
        .await
        .expect("redirect after logout");
    assert_eq!(back.as_str(), format!("{done}?state=logout-state-1"));

    // The IdP POSTed the logout token before redirecting.
    let body = received.try_recv().unwrap_or_else(|_| {
        panic!(
            "no back-channel logout arrived; IdP log:\n{}",
            s.idp.stderr()
        )
    });
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("logout_token field");

    // Validate it with the provider's key cache, as the receiver will.
    let header = jsonwebtoken::decode_header(&token).expect("JWT header");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let key = s
        .client
        .provider()
        .decoding_key(header.kid.as_deref(), header.alg)
        .await
        .expect("signing key");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[s.idp.issuer()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation)
        .expect("valid logout token")
        .claims;
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["sub"], "alice");
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());

    // The tokens of that IdP session are gone too.
    let refresh = login.refresh_token.expect("refresh token");
    let err = s
        .client
        .refresh(refresh.expose(), &login.claims)
        .await
        .expect_err("refresh after IdP logout");
    assert!(matches!(err, RefreshError::InvalidGrant), "{err:?}");
}

#[tokio::test]
async fn auto_submit_logout_page_submits_itself() {
    let origin = gateway_origin();
    let s = setup(
        IdpOptions {
            auto_submit_logout: true,
            ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
        },
        origin,
    )
    .await;
    let browser = browser();
    let _ = login_with(&s, &browser, "bob").await;
    let page = browser
        .get(format!(
            "{}/session/end?client_id={CLIENT_ID}",
            s.idp.issuer()
        ))
        .send()
        .await
        .expect("GET end_session")
        .text()
        .await
        .expect("body");
    assert!(page.contains("id=\"op.logoutForm\""), "{page}");
    assert!(page.contains("f.submit()"), "{page}");
}

#[tokio::test]
async fn id_tokens_signed_with_a_rotated_key_are_accepted_after_a_refetch() {
    let origin = gateway_origin();
    let port = free_port();
    let registration = || IdpOptions {
        port: Some(port),
        ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
    };
    let before = Idp::start(registration());
    let mut options = fast_options();
    options.provider.jwks_min_refetch_interval = Duration::from_millis(500);
    let client = OidcClient::with_options(&config(before.issuer()), options).expect("client");
    assert!(client.provider().wait_ready(Duration::from_secs(10)).await);
    drop(before);

    // The IdP comes back on the same issuer with a new signing key.
    let after = Idp::start(IdpOptions {
        fresh_signing_key: true,
        log_requests: true,
        ..registration()
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = Setup {
        idp: after,
        client,
        origin,
    };
    let result = full_login(&s, "bob").await;
    assert_eq!(result.claims.sub, "bob");
    assert_eq!(
        s.idp.requests("GET", "/jwks"),
        1,
        "one refetch for the new kid"
    );
    let kid = jsonwebtoken::decode_header(result.id_token.expose())
        .expect("header")
        .kid
        .expect("kid");
    assert!(kid.starts_with("fresh-"), "{kid}");
}

/// ID tokens forged with the key the IdP signs with (and with others) and
/// judged by the gateway's own validation: each claim the gateway checks is
/// broken in turn on an otherwise valid token, which must be refused.
#[tokio::test]
async fn forged_id_tokens_are_refused_claim_by_claim() {
    let origin = gateway_origin();
    let s = setup(
        IdpOptions {
            signing_jwks: Some(idp_jwks()),
            ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
        },
        origin,
    )
    .await;
    let idp_key = jsonwebtoken::EncodingKey::from_rsa_pem(&idp_key_pem()).unwrap();
    let other_key = jsonwebtoken::EncodingKey::from_rsa_pem(&other_key_pem()).unwrap();
    let rs256 = serde_json::json!({"alg": "RS256", "kid": TEST_KID, "typ": "JWT"});
    let now = support::setup::now();
    let claims = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = serde_json::json!({
            "iss": s.idp.issuer(),
            "aud": CLIENT_ID,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "nonce": "n-0S6_WzA2Mj",
            "email": "alice@example.com",
            "email_verified": true,
        });
        edit(&mut c);
        c
    };
    let good = claims(&|_| {});
    let rs = |c: &serde_json::Value, key: &jsonwebtoken::EncodingKey| {
        sign_with(&rs256, c, key, jsonwebtoken::Algorithm::RS256)
    };

    // The control: a well-formed token with the IdP's key passes, so each
    // refusal below is down to the one thing changed.
    let ok = s
        .client
        .validate_id_token(&rs(&good, &idp_key), Some("n-0S6_WzA2Mj"))
        .await
        .expect("a valid token");
    assert_eq!(ok.sub, "alice");
    assert!(ok.email_verified);

    let valid = rs(&good, &idp_key);
    let mut parts: Vec<&str> = valid.split('.').collect();
    let mallory = unsigned(&rs256, &claims(&|c| c["sub"] = "mallory".into()));
    let swapped_payload = mallory.split('.').nth(1).unwrap().to_owned();
    parts[1] = &swapped_payload;
    let tampered = parts.join(".");

    let hs256 = sign_with(
        &serde_json::json!({"alg": "HS256", "typ": "JWT"}),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    );
    let none = format!(
        "{}.",
        unsigned(&serde_json::json!({"alg": "none", "typ": "JWT"}), &good)
    );

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "signed with another key under the IdP's kid",
            rs(&good, &other_key),
            "signature verification failed: Crypto error",
        ),
        (
            "payload changed after signing",
            tampered,
            "signature verification failed: Crypto error",
        ),
        (
            "another audience",
            rs(&claims(&|c| c["aud"] = "someone-else".into()), &idp_key),
            "audience",
        ),
        (
            "another issuer",
            rs(
                &claims(&|c| c["iss"] = "http://evil.example".into()),
                &idp_key,
            ),
            "issuer",
        ),
        (
            "expired",
            rs(
                &claims(&|c| {
                    c["iat"] = (now - 900).into();
                    c["exp"] = (now - 600).into();
                }),
                &idp_key,
            ),
            "xpired",
        ),
        (
            "issued an hour in the future",
            rs(
                &claims(&|c| {
                    c["iat"] = (now + 3600).into();
                    c["exp"] = (now + 7200).into();
                }),
                &idp_key,
            ),
            "iat is in the future",
        ),
        (
            "HS256 with the client secret",
            hs256,
            "algorithm not allowed",
        ),
        ("alg none", none, "algorithm not allowed"),
        (
            "another nonce",
            rs(&claims(&|c| c["nonce"] = "other".into()), &idp_key),
            "nonce",
        ),
    ];
    for (what, token, says) in cases {
        match s
            .client
            .validate_id_token(&token, Some("n-0S6_WzA2Mj"))
            .await
        {
            Ok(c) => panic!("{what}: accepted as {}", c.sub),
            Err(e @ (OidcError::IdToken(_) | OidcError::DisallowedAlg)) => {
                let msg = e.to_string();
                assert!(msg.contains(says), "{what}: refused, but as {msg:?}");
            }
            Err(e) => panic!("{what}: refused for an unrelated reason: {e}"),
        }
    }
}
