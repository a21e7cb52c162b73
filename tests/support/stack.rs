//! The whole product as an operator runs it: a real IdP (oidc-provider), a
//! real upstream app and the real gateway binary configured against both,
//! plus a "browser" (reqwest with a cookie jar) that logs in through them.

use std::time::Duration;

use reqwest::header::{ACCEPT, LOCATION};
use url::Url;

use super::gateway::Gateway;
use super::idp::{Idp, IdpClient, IdpOptions, browser};
use super::upstream::Upstream;
use super::{TEST_CLIENT_SECRET, free_port};

/// What to vary between tests.
#[derive(Default)]
pub struct StackOptions {
    /// IdP options; the gateway's client is added automatically.
    pub idp: IdpOptions,
    /// Lines appended to `[session]` (e.g. `idle_timeout = "2s"`).
    pub session: String,
    /// Lines appended to `[oidc]`.
    pub oidc: String,
    /// Everything after the `[session]` section: routes, `[headers]`,
    /// `[logout]`. Default: `/public/` open, `/` needs a session, both to
    /// the test upstream (`{app}`).
    pub rest: Option<String>,
    /// `[oidc] scopes`.
    pub scopes: Option<String>,
    /// Lines appended to `[server]` (e.g. `header_read_timeout = "2s"`).
    pub server: String,
}

/// A running IdP + upstream + gateway.
pub struct Stack {
    /// The identity provider.
    pub idp: Idp,
    /// The app behind the gateway.
    pub app: Upstream,
    /// The gateway.
    pub gateway: Gateway,
}

/// The gateway configuration of every stack: listeners, `[oidc]` with the
/// test client secret, `[session]` with the test secret, and routes. The
/// `{listen}`, `{public_url}`, `{admin_listen}` placeholders and `${…}`
/// variables are filled in by [`Gateway::builder`].
pub struct GatewayConfig<'a> {
    /// Lines appended to `[server]` (e.g. `admin_token = …`).
    pub server: &'a str,
    /// `[oidc] issuer` (a URL, or a `{var}` placeholder).
    pub issuer: &'a str,
    /// `[oidc] client_id`.
    pub client_id: &'a str,
    /// Lines appended to `[oidc]`.
    pub oidc: &'a str,
    /// Lines appended to `[session]`.
    pub session: &'a str,
    /// Everything after `[session]`: routes, `[headers]`, `[logout]`.
    pub rest: &'a str,
}

impl GatewayConfig<'_> {
    /// The TOML text.
    pub fn render(&self) -> String {
        let GatewayConfig {
            server,
            issuer,
            client_id,
            oidc,
            session,
            rest,
        } = self;
        format!(
            r#"
[server]
listen = "{{listen}}"
public_url = "{{public_url}}"
admin_listen = "{{admin_listen}}"
{server}

[oidc]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = "${{PORTCULLIS_CLIENT_SECRET}}"
{oidc}

[session]
secret = "${{PORTCULLIS_SECRET}}"
{session}
{rest}
"#
        )
    }
}

/// Default routes for [`StackOptions::rest`].
pub const DEFAULT_ROUTES: &str = r#"
[[route]]
prefix = "/public/"
upstream = "{app}"
auth = "none"

[[route]]
prefix = "/"
upstream = "{app}"
"#;

impl Stack {
    /// Starts the three parts.
    ///
    /// The gateway's port is chosen before the IdP starts (the IdP must know
    /// the gateway's URLs), so another test process may take it meanwhile;
    /// then the whole stack is started again on a fresh port.
    pub fn start(options: StackOptions) -> Stack {
        for attempt in 1.. {
            match Self::try_start(&options) {
                Ok(stack) => return stack,
                Err(err)
                    if attempt < 3
                        && err
                            .logs
                            .iter()
                            .any(|l| l.contains("Address already in use")) =>
                {
                    eprintln!("stack: gateway port taken by another process; retrying ({err})");
                }
                Err(err) => panic!("gateway did not start: {err}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn try_start(options: &StackOptions) -> Result<Stack, super::StartError> {
        let port = free_port();
        let origin = format!("http://127.0.0.1:{port}");
        let mut idp_options = options.idp.clone();
        idp_options.clients.insert(
            0,
            IdpClient::gateway("portcullis", TEST_CLIENT_SECRET, &origin),
        );
        let idp = Idp::start(idp_options);
        let app = Upstream::start();
        let scopes = format!(
            "scopes = {}\n{}",
            options
                .scopes
                .as_deref()
                .unwrap_or(r#"["openid", "email", "profile", "offline_access"]"#),
            options.oidc
        );
        let server = format!(
            "admin_token = \"${{PORTCULLIS_ADMIN_TOKEN}}\"\n{}",
            options.server
        );
        let config = GatewayConfig {
            server: &server,
            issuer: "{issuer}",
            client_id: "portcullis",
            oidc: &scopes,
            session: &options.session,
            rest: options.rest.as_deref().unwrap_or(DEFAULT_ROUTES),
        }
        .render();
        let gateway = Gateway::builder(&config)
            .port(port)
            .var("issuer", idp.issuer())
            .var("app", app.url())
            .try_start()?;
        assert!(
            wait_ready(&gateway),
            "gateway never became ready:\n{}",
            gateway.logs().join("\n")
        );
        Ok(Stack { idp, app, gateway })
    }

    /// Logs `user` in through the gateway the way a browser does, starting
    /// from a navigation to `path`, and returns the response to the final
    /// request for `path` (from the upstream, through the gateway).
    pub async fn login(
        &self,
        browser: &reqwest::Client,
        user: &str,
        path: &str,
    ) -> reqwest::Response {
        let to_idp = navigate(browser, &self.gateway.url(path)).await;
        assert_eq!(
            to_idp.status(),
            302,
            "a navigation without a session goes to the IdP"
        );
        let auth_url = location(&to_idp);
        let callback = self.idp.login(browser, &auth_url, user).await;
        let landed = navigate(browser, callback.as_str()).await;
        let back = callback_destination(landed).await;
        navigate(browser, back.as_str()).await
    }
}

/// A fresh browser (cookie jar, no automatic redirects).
pub fn new_browser() -> reqwest::Client {
    browser()
}

/// GET as a top-level navigation (Sec-Fetch-* and Accept as a browser
/// sends them for a typed URL).
pub async fn navigate(browser: &reqwest::Client, url: &str) -> reqwest::Response {
    browser
        .get(url)
        .header(ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-site", "none")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .expect("navigation")
}

/// The `Location` of a redirect, resolved against the request URL.
pub fn location(resp: &reqwest::Response) -> Url {
    let raw = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{} without Location", resp.status()));
    resp.url().join(raw).expect("Location is a URL")
}

/// Where the callback's answer sends the browser: the `Location` of its
/// 303 (`cookie_samesite` lax or none), or the meta refresh of its 200 hop
/// page (strict).
pub async fn callback_destination(landed: reqwest::Response) -> Url {
    match landed.status().as_u16() {
        303 => location(&landed),
        200 => {
            let base = landed.url().clone();
            let page = landed.text().await.expect("callback page");
            base.join(&meta_refresh_target(&page).expect("a meta refresh"))
                .expect("the refresh target is a URL")
        }
        other => panic!("callback answered {other}: {:?}", landed.text().await),
    }
}

/// The URL of a page's `<meta http-equiv="refresh" content="0;url=…">`,
/// entities decoded.
pub fn meta_refresh_target(page: &str) -> Option<String> {
    let start = page.find("<meta http-equiv=\"refresh\"")?;
    let tag = &page[start..start + page[start..].find('>')?];
    let content = super::idp::attr(tag, "content")?;
    Some(content.split_once("url=")?.1.to_owned())
}

/// Waits up to 20 s for `/readyz` to say ready.
pub fn wait_ready(gateway: &Gateway) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if readyz_status(gateway) == Some(200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The status of `GET /readyz` on the admin listener (blocking, no client
/// library needed).
pub fn readyz_status(gateway: &Gateway) -> Option<u16> {
    use std::io::{Read, Write};
    let url = Url::parse(&gateway.admin_url("/readyz")).ok()?;
    let addr = format!("{}:{}", url.host_str()?, url.port()?);
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}
