//! A gateway started before its IdP, for the IdP-initiated logout tests
//! (`tests/backchannel/`, `tests/frontchannel.rs`) and the admin API tests: the IdP
//! must know the gateway's back-channel URL and signs with the fixture key
//! of [`super::signing`], so the gateway picks the IdP's port first. Also a
//! browser-like login through the gateway, the session probe, and
//! hand-made logout tokens. The configuration is the one
//! [`super::stack`] renders.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use url::Url;

use super::idp::{Idp, IdpClient, IdpOptions};
use super::signing::{TEST_KID, idp_jwks};
use super::stack::{GatewayConfig, readyz_status};
use super::{Gateway, TEST_CLIENT_SECRET, Upstream, free_port};

/// The gateway's client id at the test IdP.
pub const CLIENT_ID: &str = "gateway";
/// The back-channel logout event member.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A gateway with `[oidc]` pointing at a test IdP on `idp_port` (started
/// later by the caller, so both can know each other's URLs), an upstream,
/// the admin listener, and `extra` appended to the config (TOML tables).
pub struct Setup {
    /// The gateway.
    pub gw: Gateway,
    /// The upstream behind it.
    pub upstream: Upstream,
    /// The port the IdP must listen on.
    pub idp_port: u16,
}

/// Starts a gateway whose IdP will listen on a port chosen now.
/// `admin_token`: whether the admin API is configured. `oidc_extra`: more
/// `[oidc]` keys.
pub fn start_gateway(admin_token: bool, oidc_extra: &str) -> Setup {
    start_gateway_on(free_port(), admin_token, oidc_extra, "")
}

/// Like [`start_gateway`] with a given IdP port (several gateways, one
/// IdP) and more `[session]` keys/tables (`session_extra`, e.g. Redis).
pub fn start_gateway_on(
    idp_port: u16,
    admin_token: bool,
    oidc_extra: &str,
    session_extra: &str,
) -> Setup {
    let admin = if admin_token {
        "admin_token = \"${PORTCULLIS_ADMIN_TOKEN}\""
    } else {
        ""
    };
    start_gateway_full(idp_port, admin, oidc_extra, session_extra)
}

/// Like [`start_gateway`] with more `[server]` keys (e.g. `trusted_proxies`).
pub fn start_gateway_with_server(server_extra: &str) -> Setup {
    start_gateway_full(free_port(), server_extra, "", "")
}

fn start_gateway_full(idp_port: u16, admin: &str, oidc_extra: &str, session_extra: &str) -> Setup {
    let upstream = Upstream::start();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let config = GatewayConfig {
        server: admin,
        issuer: &issuer,
        client_id: CLIENT_ID,
        oidc: oidc_extra,
        session: session_extra,
        rest: "[[route]]\nprefix = \"/\"\nupstream = \"{upstream}\"\n",
    }
    .render();
    let gw = Gateway::builder(&config)
        .var("upstream", upstream.url())
        .start();
    Setup {
        gw,
        upstream,
        idp_port,
    }
}

/// The gateway's client registration at the IdP.
pub fn gateway_client(gw: &Gateway) -> IdpClient {
    IdpClient::gateway(CLIENT_ID, TEST_CLIENT_SECRET, &gw.public_url())
}

/// Starts the 9.x test IdP on the setup's port, signing with the fixture
/// key, with the gateway's client and `more` clients, and waits until the
/// gateway reports ready.
pub async fn start_idp(setup: &Setup, more: Vec<IdpClient>) -> Idp {
    let mut clients = vec![gateway_client(&setup.gw)];
    clients.extend(more);
    let idp = Idp::start(IdpOptions {
        port: Some(setup.idp_port),
        clients,
        signing_jwks: Some(idp_jwks()),
        ..Default::default()
    });
    wait_ready(&setup.gw).await;
    idp
}

/// Waits until `/readyz` answers 200 (IdP metadata and keys loaded),
/// without blocking the test's runtime between polls.
pub async fn wait_ready(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz_status(gw) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "gateway not ready within 30 s:\n{}",
            gw.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Logs `user` in through the gateway the way a browser does: a protected
/// navigation, the IdP's login form, the callback. `browser` keeps cookies
/// and does not follow redirects ([`crate::support::idp::browser`]).
pub async fn login(gw: &Gateway, idp: &Idp, browser: &reqwest::Client, user: &str) {
    let resp = browser
        .get(gw.url("/app/page"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("GET protected page");
    assert_eq!(resp.status(), 302, "protected page must send to login");
    let to_idp = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("login redirect has Location");
    let to_idp = Url::parse(to_idp).expect("IdP URL");
    let callback = idp.login(browser, &to_idp, user).await;
    let resp = browser
        .get(callback)
        .send()
        .await
        .expect("GET gateway callback");
    assert_eq!(
        resp.status(),
        303,
        "callback must create a session: {}",
        resp.text().await.unwrap_or_default()
    );
}

/// The session as `/.portcullis/session` shows it, or `None` (401).
pub async fn session(gw: &Gateway, browser: &reqwest::Client) -> Option<Value> {
    let resp = browser
        .get(gw.url("/.portcullis/session"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET /.portcullis/session");
    match resp.status().as_u16() {
        200 => Some(resp.json().await.expect("session JSON")),
        401 => None,
        other => panic!("/.portcullis/session answered {other}"),
    }
}

/// Whether a protected request with this browser still reaches the
/// upstream (a dead session gets a redirect to the IdP).
pub async fn reaches_upstream(gw: &Gateway, browser: &reqwest::Client) -> bool {
    let resp = browser
        .get(gw.url("/app/data"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("GET protected page");
    match resp.status().as_u16() {
        200 => true,
        302 => false,
        other => panic!("protected page answered {other}"),
    }
}

/// The header the IdP's own logout tokens carry.
pub fn logout_header() -> Value {
    json!({ "alg": "RS256", "kid": TEST_KID, "typ": "logout+jwt" })
}

/// Valid logout-token claims for the IdP at `issuer` naming `sid` (when
/// given) or only `sub`.
pub fn logout_claims(issuer: &str, sid: Option<&str>, sub: Option<&str>) -> Value {
    let t = now();
    let mut c = json!({
        "iss": issuer,
        "aud": CLIENT_ID,
        "iat": t,
        "exp": t + 120,
        "jti": format!("jti-{}", rand_suffix()),
        "events": { EVENT: {} },
    });
    if let Some(sid) = sid {
        c["sid"] = json!(sid);
    }
    if let Some(sub) = sub {
        c["sub"] = json!(sub);
    }
    c
}

/// A process-unique suffix.
pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// POSTs a raw body to the back-channel endpoint.
pub async fn post_backchannel(
    gw: &Gateway,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(gw.url("/.portcullis/backchannel-logout"))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.expect("POST back-channel logout")
}

/// POSTs `logout_token=<token>` form-encoded.
pub async fn post_token(gw: &Gateway, token: &str) -> reqwest::Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", token)
        .finish();
    post_backchannel(gw, Some("application/x-www-form-urlencoded"), body).await
}

/// Runs an authorization-code flow for `client_id` at the IdP in
/// `browser`'s IdP session (PKCE S256), exchanges the code itself and
/// returns the ID token. Used to log a second client into the same IdP
/// session and to get a real ID token of the gateway's client.
pub async fn id_token_via_code(
    idp: &Idp,
    browser: &reqwest::Client,
    client_id: &str,
    client_secret: &str,
    redirect_uri: &str,
    user: &str,
) -> String {
    let verifier = format!(
        "verifier-{}-0123456789abcdefghijklmnopqrstuvwxyz",
        rand_suffix()
    );
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let mut auth = idp.issuer_url();
    auth.set_path("/auth");
    auth.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "test-state")
        .append_pair("nonce", "test-nonce")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let back = idp.login(browser, &auth, user).await;
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {back}"));
    let resp = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer()))
        .basic_auth(client_id, Some(client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("POST token");
    assert!(
        resp.status().is_success(),
        "token endpoint: {}",
        resp.status()
    );
    let body: Value = resp.json().await.expect("token JSON");
    body["id_token"].as_str().expect("id_token").to_owned()
}

/// A second client of the same IdP (no back-channel URI of its own).
pub fn other_client() -> IdpClient {
    IdpClient {
        client_id: "other-app".into(),
        client_secret: "other-app-secret-0123456789abcdef".into(),
        redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
        post_logout_redirect_uris: vec!["http://127.0.0.1:9/bye".into()],
        backchannel_logout_uri: None,
        token_endpoint_auth_method: "client_secret_basic".into(),
    }
}
