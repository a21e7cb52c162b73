//! The `oidc-provider@6.31.1` line (`node tests/idp-legacy/provider.js`),
//! the last one that renders OpenID Connect Front-Channel Logout iframes.
//! One process per test, killed on drop, plus a browser-over-HTTP driver
//! for its dev login form and its logout page.
//!
//! Needs `node` and `npm`; `tests/idp-legacy/node_modules` is installed with
//! `npm ci` on first use. Use it for front-channel tests only: its
//! back-channel tokens follow an old draft.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use url::Url;

use super::idp::{Form, attr, location, spawn_provider};

/// A running legacy IdP. Dropping it kills the process.
pub struct LegacyIdp {
    child: Child,
    issuer: String,
    stderr: Arc<Mutex<String>>,
    _config: tempfile::NamedTempFile,
}

impl Drop for LegacyIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp-legacy")
}

/// Client metadata for a gateway at `origin` with front-channel logout
/// (`frontchannel_logout_session_required`, so the iframe URL carries
/// `iss` and `sid`, and ID tokens carry `sid`).
pub fn gateway_client(client_id: &str, client_secret: &str, origin: &str) -> Value {
    let origin = origin.trim_end_matches('/');
    json!({
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uris": [format!("{origin}/.portcullis/callback")],
        "post_logout_redirect_uris": [format!("{origin}/.portcullis/logout/done")],
        "frontchannel_logout_uri": format!("{origin}/.portcullis/frontchannel-logout"),
        "frontchannel_logout_session_required": true,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    })
}

impl LegacyIdp {
    /// Starts the IdP on `port` (0: any) with `clients` (metadata JSON).
    pub fn start(port: u16, clients: Vec<Value>) -> LegacyIdp {
        super::npm_ci_once(&dir(), "oidc-provider", &[]);
        let config = json!({"port": port, "clients": clients});
        let (child, issuer, stderr, file) =
            spawn_provider(&dir().join("provider.js"), &config, "legacy IdP");
        LegacyIdp {
            child,
            issuer,
            stderr,
            _config: file,
        }
    }

    /// The issuer, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// What the IdP wrote to stderr.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn is_idp(&self, url: &Url) -> bool {
        Url::parse(&self.issuer).is_ok_and(|i| i.origin() == url.origin())
    }

    /// Logs in as `user` from `authorization_url` (dev login form, then the
    /// consent form); returns the first redirect that leaves the IdP.
    pub async fn login(&self, http: &reqwest::Client, authorization_url: &Url, user: &str) -> Url {
        let mut response = http
            .get(authorization_url.clone())
            .send()
            .await
            .expect("GET authorization endpoint");
        for _ in 0..20 {
            let here = response.url().clone();
            let status = response.status();
            if status.is_redirection() {
                let next = location(&here, &response);
                if !self.is_idp(&next) {
                    return next;
                }
                response = http.get(next).send().await.expect("follow IdP redirect");
                continue;
            }
            let body = response.text().await.expect("IdP page");
            assert!(
                status.is_success(),
                "IdP answered {status} at {here}:\n{body}"
            );
            let form = Form::parse(&body, &here)
                .unwrap_or_else(|| panic!("no form on IdP page {here}:\n{body}"));
            let mut fields = form.hidden.clone();
            if form.field("prompt") == Some("login") {
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), "any-password".into()));
            }
            response = http
                .post(form.action)
                .form(&fields)
                .send()
                .await
                .expect("POST IdP form");
        }
        panic!("legacy IdP login did not finish within 20 steps");
    }

    /// RP-initiated logout confirmed with `logout=yes`; returns the page
    /// the IdP renders afterwards (with one iframe per front-channel
    /// client of the session).
    pub async fn logout_page(&self, http: &reqwest::Client, params: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&self.issuer).expect("issuer URL");
        url.set_path("/session/end");
        url.query_pairs_mut().extend_pairs(params);
        let response = http.get(url).send().await.expect("GET end_session");
        let here = response.url().clone();
        let status = response.status();
        let body = response.text().await.expect("end_session body");
        assert!(
            status.is_success(),
            "end_session answered {status}:\n{body}"
        );
        let form = Form::parse(&body, &here).expect("logout confirmation form");
        let mut fields = form.hidden.clone();
        fields.push(("logout".into(), "yes".into()));
        let response = http
            .post(form.action)
            .form(&fields)
            .send()
            .await
            .expect("POST end_session confirm");
        let status = response.status();
        let body = response.text().await.expect("logout page");
        assert!(
            status.is_success(),
            "logout confirm answered {status}:\n{body}"
        );
        body
    }
}

/// The `src` of every `<iframe>` in `html`, as URLs.
pub fn iframe_srcs(html: &str) -> Vec<Url> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<iframe") {
        rest = &rest[i..];
        let close = rest.find('>').unwrap_or(rest.len());
        if let Some(src) = attr(&rest[..close], "src")
            && let Ok(u) = Url::parse(&src)
        {
            out.push(u);
        }
        rest = &rest[close..];
    }
    out
}
