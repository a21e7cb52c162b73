//! The OIDC client against a real OpenID Provider (oidc-provider 9.13.3 via
//! tests/idp): discovery and readiness, a full login over HTTP, the
//! callback's state/nonce/iss/PKCE checks, refresh, and revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

use std::time::Duration;

use portcullis::config::{OidcConfig, Secret};
use portcullis::oidc::{
    CallbackQuery, LoginResult, LoginState, OidcClient, OidcOptions, ProviderOptions,
};
use support::idp::{Idp, IdpClient, IdpOptions, browser, free_port};
use url::Url;

#[path = "../support/mod.rs"]
mod support;

mod callback;
mod discovery;
mod keys;
mod login;
mod logout;
mod tokens;

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
