//! A real OpenID Provider for tests: `node tests/idp/provider.js`
//! (oidc-provider 9.13.3), one process per test, killed on drop; plus a
//! small "browser over HTTP" that logs in through the IdP's dev login form
//! and drives RP-initiated logout, and a token introspection helper.
//!
//! Needs `node` and `npm` on PATH. `tests/idp/node_modules` is installed
//! with `npm ci` on first use (serialised across test processes).

#![allow(dead_code)] // each test binary uses a different part of this

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use url::Url;

/// How long the IdP may take to print READY.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A client registered at the test IdP.
#[derive(Debug, Clone)]
pub struct IdpClient {
    /// `client_id`
    pub client_id: String,
    /// `client_secret`
    pub client_secret: String,
    /// `redirect_uris`
    pub redirect_uris: Vec<String>,
    /// `post_logout_redirect_uris`
    pub post_logout_redirect_uris: Vec<String>,
    /// `backchannel_logout_uri` (registered with
    /// `backchannel_logout_session_required: true`, so ID tokens carry `sid`).
    pub backchannel_logout_uri: Option<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub token_endpoint_auth_method: String,
}

impl IdpClient {
    /// A client for a gateway at `origin` (`http://127.0.0.1:PORT`), with
    /// the gateway's callback, post-logout and back-channel URLs.
    pub fn gateway(client_id: &str, client_secret: &str, origin: &str) -> Self {
        let origin = origin.trim_end_matches('/');
        IdpClient {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: vec![format!("{origin}/.portcullis/callback")],
            post_logout_redirect_uris: vec![format!("{origin}/.portcullis/logout/done")],
            backchannel_logout_uri: Some(format!("{origin}/.portcullis/backchannel-logout")),
            token_endpoint_auth_method: "client_secret_basic".to_owned(),
        }
    }

    /// Adds the URLs of another public origin of the same gateway.
    pub fn with_origin(mut self, origin: &str) -> Self {
        let origin = origin.trim_end_matches('/');
        self.redirect_uris
            .push(format!("{origin}/.portcullis/callback"));
        self.post_logout_redirect_uris
            .push(format!("{origin}/.portcullis/logout/done"));
        self
    }

    fn to_json(&self) -> Value {
        let mut c = json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
        });
        if let Some(uri) = &self.backchannel_logout_uri {
            c["backchannel_logout_uri"] = json!(uri);
            c["backchannel_logout_session_required"] = json!(true);
        }
        c
    }
}

/// How to start the IdP.
#[derive(Debug, Clone, Default)]
pub struct IdpOptions {
    /// Port to listen on; `None` picks a free one.
    pub port: Option<u16>,
    /// The issuer's host name, e.g. `localhost`: the IdP still listens on
    /// 127.0.0.1, but a browser sees it on another site than a gateway on
    /// 127.0.0.1 (the default issuer host is 127.0.0.1).
    pub issuer_host: Option<String>,
    /// Registered clients.
    pub clients: Vec<IdpClient>,
    /// Access token lifetime in seconds (default 3600).
    pub access_token_ttl: Option<u64>,
    /// ID token lifetime in seconds (default 3600).
    pub id_token_ttl: Option<u64>,
    /// Refresh token lifetime in seconds (default 14 days).
    pub refresh_token_ttl: Option<u64>,
    /// End-session confirmation page submits itself (browser tests).
    pub auto_submit_logout: bool,
    /// Log `REQ <method> <path>` per request to stderr (see
    /// [`Idp::requests`]).
    pub log_requests: bool,
    /// Sign with a new random RSA key (kid `fresh-…`) instead of the
    /// development key: restart an IdP with it to simulate key rotation.
    pub fresh_signing_key: bool,
    /// Sign with these private keys (a JWKS `{"keys": [<private JWK>]}`),
    /// so a test can forge tokens the gateway must judge by their claims
    /// alone (see `tests/fixtures/bcl-idp-key.jwk.json`).
    pub signing_jwks: Option<Value>,
    /// End-session pages refuse to be framed (`X-Frame-Options: DENY`,
    /// `frame-ancestors 'none'`), like many real IdPs; oidc-provider's own
    /// default allows framing.
    pub refuse_framing: bool,
    /// End-session pages send `Cross-Origin-Opener-Policy: same-origin`,
    /// which cuts a logout popup off from its opener.
    pub isolate_opener: bool,
    /// Discovery omits `end_session_endpoint`, like IdPs without
    /// RP-initiated logout.
    pub no_end_session: bool,
    /// Log issued refresh tokens and each revocation request (hint and
    /// token, in order) to stderr; see [`Idp::issued_refresh_tokens`] and
    /// [`Idp::revocations`].
    pub log_tokens: bool,
}

impl IdpOptions {
    /// Options with one registered client.
    pub fn with_client(client: IdpClient) -> Self {
        IdpOptions {
            clients: vec![client],
            ..Default::default()
        }
    }
}

/// A running test IdP. Dropping it kills the process.
pub struct Idp {
    child: Child,
    issuer: String,
    stderr: Arc<Mutex<String>>,
    _config: tempfile::NamedTempFile,
}

impl Idp {
    /// Stops the IdP now (to test the gateway with the IdP down).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id (to freeze the IdP with SIGSTOP, so that a request
    /// to it hangs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use super::free_port;

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

impl Idp {
    /// Starts the IdP and waits for it to listen.
    pub fn start(options: IdpOptions) -> Idp {
        super::npm_ci_once(&idp_dir(), "oidc-provider", &[]);
        let config = json!({
            "port": options.port.unwrap_or(0),
            "issuerHost": options.issuer_host,
            "clients": options.clients.iter().map(IdpClient::to_json).collect::<Vec<_>>(),
            "accessTokenTtl": options.access_token_ttl.unwrap_or(3600),
            "idTokenTtl": options.id_token_ttl.unwrap_or(3600),
            "refreshTokenTtl": options.refresh_token_ttl.unwrap_or(14 * 24 * 3600),
            "autoSubmitLogout": options.auto_submit_logout,
            "logRequests": options.log_requests,
            "freshSigningKey": options.fresh_signing_key,
            "refuseFraming": options.refuse_framing,
            "isolateOpener": options.isolate_opener,
            "noEndSession": options.no_end_session,
            "logTokens": options.log_tokens,
        });
        let mut config = config;
        if let Some(jwks) = &options.signing_jwks {
            config["jwks"] = jwks.clone();
        }
        let (child, issuer, stderr, file) =
            spawn_provider(&idp_dir().join("provider.js"), &config, "test IdP");
        Idp {
            child,
            issuer,
            stderr,
            _config: file,
        }
    }

    /// The issuer, `http://127.0.0.1:PORT` unless
    /// [`IdpOptions::issuer_host`] says otherwise (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The issuer as a URL.
    pub fn issuer_url(&self) -> Url {
        Url::parse(&self.issuer).expect("issuer is a URL")
    }

    /// What the IdP wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many requests `METHOD path` the IdP has received (needs
    /// `log_requests`).
    ///
    /// The IdP writes a request's line before answering it, but this
    /// process reads stderr on another thread, so a line can still be in
    /// the pipe when the answer has arrived. A marker request is sent and
    /// awaited first: the lines come in order, so once the marker's line is
    /// here every earlier request's line is too.
    pub fn requests(&self, method: &str, path: &str) -> usize {
        self.sync_request_log();
        let needle = format!("REQ {method} {path}");
        self.stderr().lines().filter(|l| *l == needle).count()
    }

    /// The refresh tokens the IdP issued, oldest first (needs
    /// `log_tokens`).
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter_map(|l| l.strip_prefix("TOKEN refresh_token "))
            .map(str::to_owned)
            .collect()
    }

    /// The revocation requests received, in order, as
    /// `(token_type_hint, token)` (needs `log_tokens`; the line is written
    /// after the answer, so wait for the count you expect).
    pub fn revocations(&self) -> Vec<(String, String)> {
        self.stderr()
            .lines()
            .filter_map(|l| l.strip_prefix("REVOKE "))
            .filter_map(|rest| rest.split_once(' '))
            .map(|(hint, token)| (hint.to_owned(), token.to_owned()))
            .collect()
    }

    /// Sends `GET /__sync/<n>` and waits until its log line has been read.
    fn sync_request_log(&self) {
        use std::io::Write;
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("/__sync/{}-{n}", std::process::id());
        let addr = self
            .issuer_url()
            .socket_addrs(|| None)
            .expect("IdP address")[0];
        let mut conn = std::net::TcpStream::connect(addr).expect("connect to the IdP");
        write!(
            conn,
            "GET {marker} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("send the marker request");
        let needle = format!("REQ GET {marker}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !self.stderr().lines().any(|l| l == needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "the IdP did not log the marker request (start it with log_requests)"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether `url` is on the IdP's origin.
    fn is_idp(&self, url: &Url) -> bool {
        let issuer = self.issuer_url();
        url.origin() == issuer.origin()
    }

    /// Logs in as `username` the way a browser would: follows the IdP's
    /// redirects from `authorization_url`, fills and posts the dev login
    /// form (and the consent form if shown), and returns the first redirect
    /// that leaves the IdP (the client's redirect URI with `code`, `state`,
    /// `iss`). `http` must keep cookies and must not follow redirects
    /// (see [`browser`]).
    pub async fn login(
        &self,
        http: &reqwest::Client,
        authorization_url: &Url,
        username: &str,
    ) -> Url {
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
            let body = response.text().await.expect("IdP page body");
            assert!(
                status.is_success(),
                "IdP answered {status} at {here}:\n{body}"
            );
            let form = Form::parse(&body, &here)
                .unwrap_or_else(|| panic!("no form on IdP page {here}:\n{body}"));
            let mut fields = form.hidden.clone();
            match form.field("prompt") {
                Some("login") => {
                    fields.push(("login".into(), username.into()));
                    fields.push(("password".into(), "any-password".into()));
                }
                Some("consent") => {}
                other => panic!("unexpected IdP form (prompt={other:?}) at {here}:\n{body}"),
            }
            response = http
                .post(form.action)
                .form(&fields)
                .send()
                .await
                .expect("POST IdP form");
        }
        panic!("IdP login did not finish within 20 steps");
    }

    /// RP-initiated logout as a browser with the IdP's session cookie:
    /// `GET end_session_endpoint?params`, then POST the confirmation form
    /// with `logout=yes` (which also sends back-channel logout tokens to
    /// every client of the IdP session). Returns the final redirect, e.g.
    /// `post_logout_redirect_uri?state=…`, or `None` if the IdP showed its
    /// own "signed out" page.
    pub async fn logout(&self, http: &reqwest::Client, params: &[(&str, &str)]) -> Option<Url> {
        let mut url = self.issuer_url();
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
        let mut fields: Vec<(String, String)> = form
            .hidden
            .iter()
            .filter(|(n, _)| n != "logout")
            .cloned()
            .collect();
        fields.push(("logout".into(), "yes".into()));
        let response = http
            .post(form.action)
            .form(&fields)
            .send()
            .await
            .expect("POST end_session confirm");
        if response.status().is_redirection() {
            Some(location(&here, &response))
        } else {
            None
        }
    }

    /// RFC 7662 introspection with the client's credentials (HTTP Basic):
    /// whether the IdP still considers `token` active.
    pub async fn introspect(&self, client_id: &str, client_secret: &str, token: &str) -> bool {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{}/token/introspection", self.issuer))
            .basic_auth(client_id, Some(client_secret))
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST introspection");
        assert!(
            response.status().is_success(),
            "introspection answered {}",
            response.status()
        );
        let body: Value = response.json().await.expect("introspection JSON");
        body["active"].as_bool().expect("introspection has active")
    }
}

/// Starts `node <script> <config file>` and waits for its `READY <issuer>`
/// line; returns the process, the issuer, its collected stderr and the
/// config file (which must live as long as the process). Shared by the
/// current and the legacy (front-channel) test IdPs.
pub fn spawn_provider(
    script: &std::path::Path,
    config: &Value,
    what: &str,
) -> (Child, String, Arc<Mutex<String>>, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().expect("temp config file");
    serde_json::to_writer(&mut file, config).expect("write IdP config");
    let mut child = Command::new("node")
        .arg(script)
        .arg(file.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node (is Node.js installed?)");

    // Collect stderr (warnings, back-channel errors) for diagnostics.
    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(mut pipe) = child.stderr.take() {
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }

    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let Ok(line) = rx.recv_timeout(START_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
        panic!("{what} did not start:\n{err}");
    };
    let issuer = line
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("unexpected {what} output: {line}"))
        .trim()
        .to_owned();
    (child, issuer, stderr, file)
}

/// An HTTP client that behaves like a browser for these drivers: a cookie
/// jar, and no automatic redirects (the drivers follow them, so they can
/// stop at the client's redirect URI).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build reqwest client")
}

/// The `Location` of a redirect, resolved against the request URL (the
/// IdP sends relative ones).
pub fn location(base: &Url, response: &reqwest::Response) -> Url {
    let raw = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("redirect without Location");
    base.join(raw).expect("Location is a URL")
}

/// The first `<form>` of a page: where it posts and its hidden inputs.
/// An HTML form: where it posts and its hidden fields.
pub struct Form {
    /// The resolved `action`.
    pub action: Url,
    /// Hidden fields, in order.
    pub hidden: Vec<(String, String)>,
}

impl Form {
    /// The first `<form>` of `html`, its action resolved against `base`.
    pub fn parse(html: &str, base: &Url) -> Option<Form> {
        let start = html.find("<form")?;
        let end = html[start..]
            .find("</form>")
            .map_or(html.len(), |e| start + e);
        let form = &html[start..end];
        let tag_end = form.find('>')?;
        let action = attr(&form[..tag_end], "action").unwrap_or_default();
        let action = base.join(&action).ok()?;
        let mut hidden = Vec::new();
        let mut rest = form;
        while let Some(i) = rest.find("<input") {
            rest = &rest[i..];
            let close = rest.find('>').unwrap_or(rest.len());
            let tag = &rest[..close];
            if attr(tag, "type").as_deref() == Some("hidden")
                && let Some(name) = attr(tag, "name")
            {
                hidden.push((name, attr(tag, "value").unwrap_or_default()));
            }
            rest = &rest[close..];
        }
        Some(Form { action, hidden })
    }

    /// A hidden field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.hidden
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A double-quoted attribute's value, with the common HTML entities decoded.
pub fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(
        tag[start..start + len]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}
