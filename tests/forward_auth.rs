//! Portcullis behind the proxy an operator already runs: real nginx
//! (`auth_request`) and real Caddy (`forward_auth`) in front of the test
//! upstream, configured with the very files the README quotes
//! (`deploy/nginx-forward-auth.conf`, `deploy/Caddyfile.forward-auth`),
//! against the real IdP; and the signed identity assertion, verified the
//! way the README tells an app to (`tests/jwt-verify/verify.mjs`, npm
//! `jose`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, LOCATION};
use serde_json::Value;
use support::front_proxy::{FrontOptions, FrontStack, Kind};
use support::idp::IdpOptions;
use support::stack::{DEFAULT_ROUTES, callback_destination, location, navigate, new_browser};
use url::Url;

const ROUTES: &str = r#"
[[route]]
prefix = "/public/"
upstream = "{app}"
auth = "none"

[[route]]
prefix = "/admin/"
upstream = "{app}"
allow_groups = ["admins"]

[[route]]
prefix = "/"
upstream = "{app}"
"#;

const ASSERTION: &str = "x-portcullis-jwt-assertion";

fn start(kind: Kind) -> FrontStack {
    FrontStack::start(
        kind,
        FrontOptions {
            routes: ROUTES.into(),
            headers: "jwt_assertion = \"X-Portcullis-Jwt-Assertion\"".into(),
            logout: "default_return_to = \"/public/goodbye\"".into(),
            idp: IdpOptions::default(),
        },
    )
}

/// Logs `user` in through the front proxy from a navigation to `path`:
/// every hop the browser makes, and the final answer for `path`.
async fn login_through(
    fs: &FrontStack,
    browser: &reqwest::Client,
    user: &str,
    path: &str,
) -> reqwest::Response {
    let idp = Url::parse(fs.stack.idp.issuer()).unwrap();
    let first = navigate(browser, &fs.front.url(path)).await;
    assert_eq!(
        first.status(),
        302,
        "a navigation without a session goes to the login"
    );
    let mut next = location(&first);
    match fs.front.kind() {
        // nginx cannot pass a redirect on: its error_page sends the browser
        // to the login URL Portcullis named, return_to encoded.
        Kind::Nginx => {
            assert_eq!(
                next.origin(),
                Url::parse(&fs.front.origin()).unwrap().origin()
            );
            assert_eq!(next.path(), "/.portcullis/login");
            let return_to = next
                .query_pairs()
                .find(|(k, _)| k == "return_to")
                .map(|(_, v)| v.into_owned());
            assert_eq!(return_to.as_deref(), Some(path));
            let to_idp = navigate(browser, next.as_str()).await;
            assert_eq!(to_idp.status(), 302);
            next = location(&to_idp);
        }
        // Caddy passes Portcullis's redirect (and login-state cookie) on.
        Kind::Caddy => {}
    }
    assert_eq!(next.origin(), idp.origin(), "on to the IdP: {next}");
    let callback = fs.stack.idp.login(browser, &next, user).await;
    assert!(
        callback
            .as_str()
            .starts_with(&fs.front.url("/.portcullis/callback?")),
        "the IdP returns through the front proxy: {callback}"
    );
    let landed = navigate(browser, callback.as_str()).await;
    let back = callback_destination(landed).await;
    assert_eq!(
        back.as_str(),
        fs.front.url(path),
        "back on the original URL"
    );
    navigate(browser, back.as_str()).await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Runs the README's upstream verification (`tests/jwt-verify/verify.mjs`,
/// npm `jose`) on `token`, as of `at` (Unix seconds) when given: the claims,
/// or why it was rejected.
fn verify_with_jose(fs: &FrontStack, token: &str, at: Option<u64>) -> Result<Value, String> {
    jose_verify(&fs.front.origin(), &fs.stack.app.url(), token, at)
}

/// [`verify_with_jose`] for a public origin and an app origin.
fn jose_verify(origin: &str, app: &str, token: &str, at: Option<u64>) -> Result<Value, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jwt-verify");
    support::npm_ci_once(&dir, "jose", &[]);
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("check.mjs"))
        .arg(token)
        .env("PORTCULLIS_ORIGIN", origin)
        .env("APP_ORIGIN", app);
    if let Some(at) = at {
        cmd.arg("--at").arg(at.to_string());
    }
    let out = cmd.output().expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(serde_json::from_str(&stdout).expect("claims JSON"))
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

async fn identity_rules_and_assertion(kind: Kind) {
    let fs = start(kind);
    let app = &fs.stack.app;
    let browser = new_browser();

    // A JSON client without a session: the request path's 401 JSON.
    let resp = browser
        .get(fs.front.url("/private/data?page=2"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["error"], "unauthenticated");
    let login_url = Url::parse(body["login_url"].as_str().unwrap()).unwrap();
    assert_eq!(
        login_url.as_str().split('?').next(),
        Some(fs.front.url("/.portcullis/login").as_str())
    );
    assert_eq!(
        login_url
            .query_pairs()
            .find(|(k, _)| k == "return_to")
            .unwrap()
            .1,
        "/private/data?page=2"
    );
    assert_eq!(app.request_count(), 0, "nothing reached the app");

    // Navigation → IdP → back on the original URL, identity at the app.
    let resp = login_through(&fs, &browser, "alice", "/private/page?x=1").await;
    assert_eq!(resp.status(), 200);
    let seen = app.last_request().expect("the app was reached");
    assert_eq!(seen.uri.to_string(), "/private/page?x=1");
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admins,staff"));
    let token = seen
        .header(ASSERTION)
        .expect("the signed assertion")
        .to_owned();

    // Spoofed identity headers never reach the app: not with a session...
    app.clear();
    let resp = browser
        .get(fs.front.url("/private/again"))
        .header("X-Forwarded-User", "mallory")
        .header("X-Forwarded-Groups", "root")
        .header("X-Forwarded-Preferred-Username", "mallory")
        .header(ASSERTION, "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = app.last_request().unwrap();
    assert_eq!(seen.header_all("x-forwarded-user"), ["alice"]);
    assert_eq!(seen.header_all("x-forwarded-groups"), ["admins,staff"]);
    // alice has no preferred_username: the gateway's value is empty, and
    // the client's copy is gone anyway.
    assert!(
        seen.header_all("x-forwarded-preferred-username")
            .iter()
            .all(|v| v != "mallory")
    );
    assert_ne!(seen.header(ASSERTION), Some("forged"));
    // ... nor spelled with `_` (CGI, PHP and Rack read it as `-`), nor by
    // naming the gateway's headers in `Connection` so that the proxy drops
    // them on the way to the app after they were set.
    app.clear();
    let resp = browser
        .get(fs.front.url("/private/underscore"))
        .header("X_Forwarded_User", "mallory")
        .header("X_Portcullis_Jwt_Assertion", "forged")
        .header("Connection", "X-Forwarded-User, X-Portcullis-Jwt-Assertion")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = app.last_request().unwrap();
    for (name, value) in &seen.headers {
        let canonical = name.as_str().replace('_', "-");
        if canonical == "x-forwarded-user" {
            assert_eq!(value, "alice", "{name}: {value:?}");
        }
        assert_ne!(value, "forged", "{name}");
    }
    assert_eq!(seen.header_all("x-forwarded-user"), ["alice"]);
    assert!(
        seen.header(ASSERTION).is_some_and(|a| !a.is_empty()),
        "the assertion"
    );
    // ... nor on an open route without one.
    app.clear();
    let anonymous = new_browser();
    let resp = anonymous
        .get(fs.front.url("/public/page"))
        .header("X-Forwarded-User", "mallory")
        .header("X-Forwarded-Email", "mallory@example.com")
        .header(ASSERTION, "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = app.last_request().unwrap();
    // Absent (nginx) or empty (Caddy 2.6 copies the gateway's empty value).
    for name in ["x-forwarded-user", "x-forwarded-email", ASSERTION] {
        assert_eq!(seen.header(name).unwrap_or(""), "", "{name}");
    }

    // allow_groups: alice (admins) passes, bob (staff) gets 403, also when
    // he names another original URL himself.
    let resp = browser
        .get(fs.front.url("/admin/panel"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bob = new_browser();
    let resp = login_through(&fs, &bob, "bob", "/admin/panel").await;
    assert_eq!(resp.status(), 403);
    app.clear();
    let resp = bob
        .get(fs.front.url("/admin/panel"))
        .header("X-Forwarded-Uri", "/public/x")
        .header("X-Original-URL", fs.front.url("/public/x"))
        .header("X-Forwarded-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        403,
        "a client cannot name the original request"
    );
    assert_eq!(app.request_count(), 0);

    // The app verifies the assertion against /.portcullis/jwks.json with
    // a standard JWT library.
    let claims = verify_with_jose(&fs, &token, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["groups"], serde_json::json!(["admins", "staff"]));
    assert_eq!(claims["iss"], fs.front.origin());
    assert_eq!(claims["aud"], app.url());
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 300, "iat {iat} exp {exp}");
    // Tampered: one claim changed, the signature kept.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let payload = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
            .unwrap(),
    )
    .unwrap()
    .replace("\"alice\"", "\"admin\"");
    parts[1] = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload);
    let err = verify_with_jose(&fs, &parts.join("."), None).expect_err("tampered");
    assert!(
        err.contains("ERR_JWS_SIGNATURE_VERIFICATION_FAILED"),
        "{err}"
    );
    // Expired: the same token checked after its exp.
    let err = verify_with_jose(&fs, &token, Some(now() + 301 + 60)).expect_err("expired");
    assert!(err.contains("ERR_JWT_EXPIRED"), "{err}");
}

#[tokio::test]
async fn nginx_auth_request_identity_rules_and_assertion() {
    identity_rules_and_assertion(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_forward_auth_identity_rules_and_assertion() {
    identity_rules_and_assertion(Kind::Caddy).await;
}

/// nginx passes a raw `#` in the path on to the gateway (in
/// `X-Original-URL`) and to the app. Judged only up to the `#`, the path
/// below fell under the open `/public/` route while the app, which may clean
/// it, was asked for `/admin/panel`. It is refused and never reaches the app.
#[tokio::test]
async fn nginx_a_raw_fragment_in_the_path_is_refused() {
    use std::io::{Read, Write};
    let fs = start(Kind::Nginx);
    let app = &fs.stack.app;
    let addr = fs.front.origin().trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "GET /public/#/../admin/panel HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap_or_default().to_owned();
    assert_ne!(status, "200", "{answer}");
    assert_eq!(app.request_count(), 0, "the app was reached: {answer}");
}

async fn forward_auth_requests_from_untrusted_peers(kind: Kind) {
    let fs = start(kind);
    let gateway = &fs.stack.gateway;
    let front_host = fs.front.origin().trim_start_matches("http://").to_owned();
    let ask = |client: reqwest::Client| {
        let url = gateway.url("/.portcullis/auth");
        let host = front_host.clone();
        async move {
            client
                .get(url)
                .header(ACCEPT, "application/json")
                .header("X-Forwarded-Method", "GET")
                .header("X-Forwarded-Host", host)
                .header("X-Forwarded-Uri", "/private/x")
                .send()
                .await
                .unwrap()
        }
    };
    // trusted_proxies = 127.0.0.1/32: the front proxy is believed...
    let trusted = reqwest::Client::new();
    assert_eq!(
        ask(trusted.clone()).await.status(),
        401,
        "a trusted peer gets an answer"
    );
    // ...about a public_url host only.
    let resp = trusted
        .get(gateway.url("/.portcullis/auth"))
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Uri", "/private/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "a host the configuration does not name");
    // ...a client on 127.0.0.2 is not.
    let untrusted = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    assert_eq!(ask(untrusted).await.status(), 400);
    let logged = |gateway: &support::Gateway| {
        gateway.json_logs().iter().any(|l| {
            support::log_field(l, "message") == Some("forward-auth request refused")
                && support::log_field(l, "reason")
                    .is_some_and(|r| r.contains("127.0.0.2, which is not in trusted_proxies"))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !logged(gateway) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        logged(gateway),
        "the refusal is logged:\n{}",
        gateway.logs().join("\n")
    );

    // Through the front proxy, a client cannot ask /.portcullis/auth about
    // a URI of its choosing either: not in headers, not in the path.
    let browser = new_browser();
    assert_eq!(
        login_through(&fs, &browser, "bob", "/private/")
            .await
            .status(),
        200
    );
    for path in ["/.portcullis/auth", "/.portcullis/auth/private/x"] {
        let resp = browser
            .get(fs.front.url(path))
            .header("X-Forwarded-Uri", "/private/x")
            .header("X-Original-URL", fs.front.url("/private/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert!(resp.headers().get("x-forwarded-user").is_none(), "{path}");
    }
}

#[tokio::test]
async fn nginx_forward_auth_headers_from_untrusted_peers_are_refused() {
    forward_auth_requests_from_untrusted_peers(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_forward_auth_headers_from_untrusted_peers_are_refused() {
    forward_auth_requests_from_untrusted_peers(Kind::Caddy).await;
}

/// Whether the IdP still has a session in this browser: a new login comes
/// straight back with a code instead of showing the login form.
async fn idp_session_alive(fs: &FrontStack, browser: &reqwest::Client) -> bool {
    let to_idp = navigate(browser, &fs.front.url("/.portcullis/login?return_to=/")).await;
    let mut url = location(&to_idp);
    for _ in 0..10 {
        let resp = browser.get(url.clone()).send().await.unwrap();
        if !resp.status().is_redirection() {
            return false;
        }
        url = location(&resp);
        if url.path() == "/.portcullis/callback" {
            return true;
        }
    }
    panic!("IdP redirect loop");
}

async fn signed_in(fs: &FrontStack, browser: &reqwest::Client) -> bool {
    navigate(browser, &fs.front.url("/private/check"))
        .await
        .status()
        == 200
}

async fn logout_and_backchannel(kind: Kind) {
    let fs = start(kind);
    let browser = new_browser();
    assert_eq!(
        login_through(&fs, &browser, "alice", "/private/")
            .await
            .status(),
        200
    );

    // Redirect mode: /logout → IdP → /.portcullis/logout/done → destination,
    // every gateway hop through the front proxy.
    let resp = browser
        .post(fs.front.url("/logout?return_to=/public/bye"))
        .header("origin", fs.front.origin())
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "navigate")
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let to_idp = location(&resp);
    assert!(
        to_idp.as_str().starts_with(fs.stack.idp.issuer()),
        "{to_idp}"
    );
    let params: Vec<(String, String)> = to_idp.query_pairs().into_owned().collect();
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = fs
        .stack
        .idp
        .logout(&browser, &params)
        .await
        .expect("the IdP sends the user back");
    assert_eq!(
        back.as_str().split('?').next(),
        Some(fs.front.url("/.portcullis/logout/done").as_str())
    );
    let done = navigate(&browser, back.as_str()).await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()[LOCATION], "/public/bye");
    assert!(
        !signed_in(&fs, &browser).await,
        "the gateway session is over"
    );
    assert!(!idp_session_alive(&fs, &browser).await, "and the IdP's");

    // Back-channel: the IdP ends its session; its logout token reaches the
    // gateway through the front proxy and ends the session seen there.
    let browser = new_browser();
    assert_eq!(
        login_through(&fs, &browser, "alice", "/private/")
            .await
            .status(),
        200
    );
    assert!(signed_in(&fs, &browser).await);
    fs.stack
        .idp
        .logout(&browser, &[("client_id", "portcullis")])
        .await;
    assert!(
        fs.stack
            .gateway
            .wait_for_log("kind", "backchannel", Duration::from_secs(10))
            .is_some(),
        "a back-channel logout event:\n{}",
        fs.stack.gateway.logs().join("\n")
    );
    assert!(
        !signed_in(&fs, &browser).await,
        "the back-channel token ended the session"
    );
}

#[tokio::test]
async fn nginx_logout_and_backchannel_through_the_front_proxy() {
    logout_and_backchannel(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_logout_and_backchannel_through_the_front_proxy() {
    logout_and_backchannel(Kind::Caddy).await;
}

/// The real-browser silent logout scenario (`tests/browser/silent.mjs`),
/// with the browser on the front proxy's origin.
fn silent_logout_in_a_browser(kind: Kind) {
    let fs = FrontStack::start(
        kind,
        FrontOptions {
            routes: DEFAULT_ROUTES.into(),
            headers: String::new(),
            logout: "default_return_to = \"/public/goodbye\"\nsilent_timeout = \"5s\"".into(),
            idp: IdpOptions {
                auto_submit_logout: true,
                log_requests: true,
                ..Default::default()
            },
        },
    );
    let out = support::browser::run_at("silent", &fs.stack, &fs.front.origin());
    support::browser::assert_passed("silent", &out, &fs.stack);
}

#[test]
fn nginx_silent_logout_in_a_real_browser() {
    silent_logout_in_a_browser(Kind::Nginx);
}

#[test]
fn caddy_silent_logout_in_a_real_browser() {
    silent_logout_in_a_browser(Kind::Caddy);
}

/// The README quotes the configurations and the verification example the
/// tests run, byte for byte.
#[test]
fn the_readme_quotes_the_tested_files() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for file in [
        "deploy/nginx-forward-auth.conf",
        "deploy/Caddyfile.forward-auth",
        "tests/jwt-verify/verify.mjs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            readme.contains(&text),
            "README.md does not quote {file} as it is"
        );
    }
}

fn p256_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem()
}

fn kid_of(pem: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256)
        .unwrap()
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
}

async fn published_kids(gateway: &support::Gateway) -> Vec<String> {
    let jwks: Value = reqwest::get(gateway.url("/.portcullis/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(
                (k["kty"].as_str(), k["crv"].as_str()),
                (Some("EC"), Some("P-256"))
            );
            k["kid"].as_str().unwrap().to_owned()
        })
        .collect()
}

const KEY_FILE_CONFIG: &str = r#"
[server]
listen = "{listen}"
public_url = "{public_url}"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:9"
auth = "none"

[headers]
jwt_assertion = "X-Portcullis-Jwt-Assertion"
jwt_signing_key_file = "{dir}/KEY"
"#;

#[tokio::test]
async fn the_key_file_signs_and_a_rotation_keeps_the_previous_key_published() {
    let (first, second) = (p256_pem(), p256_pem());
    let gateway = support::Gateway::builder(&KEY_FILE_CONFIG.replace("KEY", "first.pem"))
        .file("first.pem", first.clone())
        .file("second.pem", second.clone())
        .start();
    assert_eq!(published_kids(&gateway).await, [kid_of(&first)]);

    gateway.rewrite_config(&KEY_FILE_CONFIG.replace("KEY", "second.pem"));
    gateway.send_signal(support::Signal::Hup);
    assert!(
        gateway
            .wait_for_log(
                "message",
                "assertion signing key rotated",
                Duration::from_secs(10)
            )
            .is_some(),
        "{}",
        gateway.logs().join("\n")
    );
    assert_eq!(
        published_kids(&gateway).await,
        [kid_of(&second), kid_of(&first)],
        "the new key signs; the old one stays until its tokens have expired"
    );
}

#[test]
fn check_refuses_a_signing_key_es256_cannot_use() {
    // ES256 needs P-256: a P-384 key is refused by `check`, not at the first request.
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let out = support::Gateway::builder(&KEY_FILE_CONFIG.replace("KEY", "key.pem"))
        .file("key.pem", p384.serialize_pem())
        .check();
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("jwt_signing_key_file must hold a P-256"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

/// Without a front proxy: the gateway's own proxied requests carry the
/// assertion, and a client's copy never passes.
#[tokio::test]
async fn proxied_requests_carry_a_verifiable_assertion() {
    let stack = support::stack::Stack::start(support::stack::StackOptions {
        rest: Some(format!(
            "{DEFAULT_ROUTES}\n[headers]\njwt_assertion = \"X-Portcullis-Jwt-Assertion\"\n"
        )),
        ..Default::default()
    });
    let browser = new_browser();
    assert_eq!(stack.login(&browser, "alice", "/page").await.status(), 200);
    let resp = browser
        .get(stack.gateway.url("/page"))
        .header(ASSERTION, "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = stack.app.last_request().unwrap().header_all(ASSERTION);
    assert_eq!(token.len(), 1, "exactly the gateway's");
    let claims = jose_verify(
        &stack.gateway.public_url(),
        &stack.app.url(),
        &token[0],
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claims["sub"], "alice");
    assert!(
        claims["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "{claims}"
    );

    stack.app.clear();
    let resp = new_browser()
        .get(stack.gateway.url("/public/x"))
        .header("X-Portcullis_Jwt-Assertion", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = stack.app.last_request().unwrap();
    assert!(seen.header_all(ASSERTION).is_empty());
    assert!(seen.header_all("x-portcullis_jwt-assertion").is_empty());
}
