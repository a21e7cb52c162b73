//! The validated runtime configuration.
//!
//! These types are what the rest of the gateway reads. They are built only by
//! [`super::load`] from the raw TOML types in [`super::raw`], after every check
//! has passed, so code holding a [`Config`] never re-validates it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use url::Url;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[oidc]`; `None` when every route is `auth = "none"`.
    pub oidc: Option<OidcConfig>,
    /// `[session]`; `None` when `[oidc]` is absent.
    pub session: Option<SessionConfig>,
    /// `[[route]]`, in file order (first match wins).
    pub routes: Vec<Route>,
    /// `[headers]`
    pub headers: HeadersConfig,
    /// `[logout]`
    pub logout: LogoutConfig,
    /// `[telemetry]`: span export; `None` (the default) exports nothing.
    pub telemetry: Option<TelemetryConfig>,
}

/// `[telemetry]`: OTLP/HTTP export of spans.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans are POSTed (protobuf), used as given, e.g.
    /// `http://collector:4318/v1/traces`.
    pub otlp_endpoint: Url,
    /// `service.name` of the exported spans (default `portcullis`).
    pub service_name: String,
    /// Share of new traces recorded, 0.0–1.0 (default 1.0); a trusted
    /// caller's sampling decision is followed.
    pub sample_ratio: f64,
}

/// A secret value. Its `Debug` and `Display` never show the value, so a
/// secret cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; call only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A public origin browsers use: scheme, host and port, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host name or IP literal as configured (lower-case; IPv6 in brackets).
    pub host: String,
    /// Port, with the scheme's default filled in.
    pub port: u16,
    /// `scheme://host[:port]` with the default port omitted; no trailing slash.
    pub origin: String,
}

impl PublicOrigin {
    /// The authority as a client sends it in `Host` (`host` or `host:port`).
    pub fn authority(&self) -> &str {
        // origin is "<scheme>://<authority>"
        &self.origin[self.scheme.as_str().len() + 3..]
    }
}

/// URL scheme of a public origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// `[server] header_read_timeout` when not set: long enough for a slow
/// client on a bad link, short enough that idle connections holding no
/// request do not pile up.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `[server] max_header_bytes` when not set (64 KiB): room for large cookie
/// jars and long URLs, still a bound on what one request head may cost.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// `[server] shutdown_timeout` when not set: how long in-flight requests may
/// finish after a shutdown signal before connections are closed.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// `[server] workers` when not set: 0 means one serving thread per CPU core.
pub const DEFAULT_WORKERS: usize = 0;

/// `[server] idle_timeout` when not set: how long a client connection may
/// sit idle (and a proxied request body stall) before it is closed.
pub const DEFAULT_SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// `[server] max_connections` when not set: client connections served at
/// once; past it new ones wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Largest `[server] max_connections` accepted.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on (at least one).
    pub listen: Vec<SocketAddr>,
    /// Public origins (at least one); the first is the default.
    pub public_urls: Vec<PublicOrigin>,
    /// Admin listener: `/healthz`, `/readyz`, `/metrics`, admin API.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for the admin API; no token, no admin API.
    pub admin_token: Option<Secret>,
    /// Peers whose `X-Forwarded-*` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Whether a non-loopback `http` public URL was explicitly allowed.
    pub allow_insecure_http: bool,
    /// TLS termination on the public listeners.
    pub tls: Option<TlsConfig>,
    /// TLS on the admin listener; without it a non-loopback admin listener
    /// serves probes and metrics but not the admin API.
    pub admin_tls: Option<TlsConfig>,
    /// How long a client may take to send the request head
    /// ([`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes ([`DEFAULT_MAX_HEADER_BYTES`]).
    pub max_header_bytes: usize,
    /// How long in-flight requests may drain on shutdown
    /// ([`DEFAULT_SHUTDOWN_TIMEOUT`]).
    pub shutdown_timeout: Duration,
    /// Serving threads; 0 ([`DEFAULT_WORKERS`]) means one per CPU core.
    pub workers: usize,
    /// How long a client connection may stay idle (HTTP/1 between
    /// requests, HTTP/2 with no open stream) before it is closed; also how
    /// long a proxied request body may stall (default 60s).
    pub idle_timeout: Duration,
    /// Client connections served at once; past it new ones wait in the
    /// listen backlog (default 10000).
    pub max_connections: usize,
}

/// `[server.tls]`
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[oidc] scopes` when not set. `openid` is requested whatever the list
/// says; `email` and `profile` carry the claims the identity headers and the
/// `allow_*` rules read.
pub const DEFAULT_SCOPES: &[&str] = &["openid", "email", "profile"];

/// `[oidc]`
#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    /// The issuer; discovery at `<issuer>/.well-known/openid-configuration`.
    ///
    /// Note: `Url` serialises an empty path as `/`, so
    /// `issuer = "https://idp.example.com"` reads back as
    /// `"https://idp.example.com/"`; compare with the discovered `issuer` and
    /// the `iss` claim allowing for that one trailing slash.
    pub issuer: Url,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (`None` for public clients).
    pub client_secret: Option<Secret>,
    /// Requested scopes; always contains `openid`.
    pub scopes: Vec<String>,
    /// Extra authorization request parameters.
    pub auth_params: Vec<(String, String)>,
    /// End-session endpoint override for IdPs that do not publish one.
    pub end_session_endpoint: Option<Url>,
    /// Extra end-session parameters.
    pub logout_params: Vec<(String, String)>,
    /// `frame-ancestors` for the front-channel receiver; empty means the
    /// origins of the issuer and the end-session endpoint.
    pub frontchannel_frame_ancestors: Vec<String>,
    /// Whether back-channel logout tokens must carry `exp`.
    pub backchannel_require_exp: bool,
}

/// `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Lax`
    Lax,
    /// `SameSite=Strict`
    Strict,
    /// `SameSite=None` (https only)
    None,
}

/// Where sessions live.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// Embedded in-memory store (one instance).
    Memory,
    /// Redis, shared by a fleet.
    Redis(RedisConfig),
}

/// `[session.redis] cache_ttl` when not set: how long an instance may serve
/// a session from its local cache before reading Redis again. Short, because
/// changes other than logouts (which are published at once) reach the other
/// instances only through this re-read.
pub const DEFAULT_REDIS_CACHE_TTL: Duration = Duration::from_secs(5);

/// `[session.redis]`
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL; may carry a password, so it is a
    /// secret. With Sentinel or Cluster only its credentials, db and scheme
    /// (TLS or not) apply to the data nodes; absent, they use none and db 0.
    pub url: Option<Secret>,
    /// Which Redis deployment: one server, Sentinel or Cluster.
    pub topology: RedisTopology,
    /// PEM CA certificates that verify the servers' TLS certificates
    /// instead of the system roots (`ca_file`).
    pub ca_file: Option<std::path::PathBuf>,
    /// How long a locally cached session may be served without re-reading
    /// ([`DEFAULT_REDIS_CACHE_TTL`]).
    pub cache_ttl: Duration,
}

impl RedisConfig {
    /// One server at `url`, verified against the system roots when TLS.
    pub fn server(url: impl Into<String>, cache_ttl: Duration) -> RedisConfig {
        RedisConfig {
            url: Some(Secret::new(url.into())),
            topology: RedisTopology::Server,
            ca_file: None,
            cache_ttl,
        }
    }
}

/// The Redis deployment the store talks to.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTopology {
    /// One server (or a fixed primary) at `url`.
    Server,
    /// The master a set of Sentinels watches (`sentinels`, `sentinel_master`).
    Sentinel {
        /// Sentinel URLs, each with its own credentials and TLS.
        sentinels: Vec<Secret>,
        /// The master set name.
        master: String,
    },
    /// A Redis Cluster reached through these seed nodes (`cluster`).
    Cluster {
        /// Seed node URLs.
        nodes: Vec<Secret>,
    },
}

/// `[session] cookie_name` when not set, without its prefix: the cookie is
/// `__Host-portcullis` when every public URL is https,
/// `__Secure-portcullis` when it also has a `cookie_domain` (a `__Host-`
/// cookie cannot have one), and plain `portcullis` otherwise.
pub const DEFAULT_COOKIE_NAME: &str = "portcullis";

/// `[session] cookie_samesite` when not set: `Lax` sends the cookie on
/// top-level navigations from other sites (links into the app, the IdP's
/// redirect back), but not on cross-site subrequests.
pub const DEFAULT_SAMESITE: SameSite = SameSite::Lax;

/// `[session] idle_timeout` when not set (30 minutes): a session unused for
/// this long ends.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `[session] max_lifetime` when not set (12 hours, a working day): a session
/// ends this long after login however active it is.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// `[session]`
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Secrets, each ≥ 32 bytes: the first encrypts, any decrypts.
    pub secrets: Vec<Secret>,
    /// Session cookie name (default: [`DEFAULT_COOKIE_NAME`] with the
    /// strongest prefix the public URLs allow).
    pub cookie_name: String,
    /// Cookie `Domain`, to share a session across subdomains.
    pub cookie_domain: Option<String>,
    /// Cookie `SameSite` ([`DEFAULT_SAMESITE`]).
    pub cookie_samesite: SameSite,
    /// Whether the cookie carries `Max-Age = max_lifetime`.
    pub persistent: bool,
    /// Sliding idle timeout ([`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Absolute lifetime; never slides ([`DEFAULT_MAX_LIFETIME`]).
    pub max_lifetime: Duration,
    /// Session store.
    pub store: StoreConfig,
}

/// Whether a route needs a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid session is required (the default).
    Session,
    /// Anyone may pass; identity headers are still stripped.
    None,
}

/// `[[route]] connect_timeout` when not set: an upstream that has not
/// accepted the connection by then is down (502), not slow.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `[[route]] timeout` when not set: how long the upstream may take to send
/// its response head before the client gets a 504.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the file, for logs and metrics labels.
    pub index: usize,
    /// Path prefix, matched on whole segments; always starts with `/`.
    /// Stored without a trailing `/` (except the root `/`), so `"/public/"`
    /// and `"/public"` in the file both mean the segment `public`: it
    /// matches `/public` and `/public/…`, never `/publicity`. Contains no
    /// empty, `.` or `..` segment, no percent-encoding, and is never under
    /// `/.portcullis/`.
    pub prefix: String,
    /// Optional `Host` to match (lower-case, without port unless configured).
    pub host: Option<String>,
    /// Upstream base URL (`http` or `https`); its path is prefixed to the
    /// request path.
    pub upstream: Url,
    /// Authentication requirement.
    pub auth: AuthMode,
    /// Authorisation: any listed group.
    pub allow_groups: Vec<String>,
    /// Authorisation: any listed email (lower-case).
    pub allow_emails: Vec<String>,
    /// Authorisation: any email domain (lower-case; verified emails only).
    pub allow_email_domains: Vec<String>,
    /// Upstream connect timeout ([`DEFAULT_CONNECT_TIMEOUT`]) → 502.
    pub connect_timeout: Duration,
    /// Time to the upstream's response head ([`DEFAULT_UPSTREAM_TIMEOUT`])
    /// → 504.
    pub timeout: Duration,
}

impl Route {
    /// Whether any `allow_*` rule is set.
    pub fn has_authorisation_rules(&self) -> bool {
        !(self.allow_groups.is_empty()
            && self.allow_emails.is_empty()
            && self.allow_email_domains.is_empty())
    }
}

/// `[headers] user` when not set: carries the `sub` claim.
pub const DEFAULT_USER_HEADER: &str = "X-Forwarded-User";
/// `[headers] email` when not set.
pub const DEFAULT_EMAIL_HEADER: &str = "X-Forwarded-Email";
/// `[headers] preferred_username` when not set.
pub const DEFAULT_PREFERRED_USERNAME_HEADER: &str = "X-Forwarded-Preferred-Username";
/// `[headers] groups` when not set.
pub const DEFAULT_GROUPS_HEADER: &str = "X-Forwarded-Groups";

/// `[headers]`: identity headers sent upstream. `None` disables a header.
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    /// `sub` ([`DEFAULT_USER_HEADER`]).
    pub user: Option<http::HeaderName>,
    /// Email ([`DEFAULT_EMAIL_HEADER`]).
    pub email: Option<http::HeaderName>,
    /// Send the email only when `email_verified` is true.
    pub require_verified_email: bool,
    /// `preferred_username` ([`DEFAULT_PREFERRED_USERNAME_HEADER`]).
    pub preferred_username: Option<http::HeaderName>,
    /// Groups ([`DEFAULT_GROUPS_HEADER`]).
    pub groups: Option<http::HeaderName>,
    /// Send `X-Forwarded-Access-Token`.
    pub access_token: bool,
    /// Send `Authorization: Bearer <access token>`.
    pub authorization: bool,
    /// The header carrying the gateway-signed identity JWT; `None`: off.
    pub jwt_assertion: Option<http::HeaderName>,
    /// The PEM (PKCS#8, P-256) of `jwt_signing_key_file`; `None`: a key
    /// made at start.
    pub jwt_signing_key: Option<Secret>,
}

impl HeadersConfig {
    /// The identity header names this configuration sets, in addition to the
    /// fixed ones the gateway always strips from clients.
    pub fn configured_names(&self) -> impl Iterator<Item = &http::HeaderName> {
        [
            &self.user,
            &self.email,
            &self.preferred_username,
            &self.groups,
            &self.jwt_assertion,
        ]
        .into_iter()
        .flatten()
    }
}

/// A logout mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogoutMode {
    /// 303 to the IdP end-session endpoint.
    Redirect,
    /// Hidden iframe to the IdP.
    Silent,
    /// Popup window to the IdP.
    Popup,
    /// Gateway session only.
    Local,
}

impl LogoutMode {
    /// The mode's configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogoutMode::Redirect => "redirect",
            LogoutMode::Silent => "silent",
            LogoutMode::Popup => "popup",
            LogoutMode::Local => "local",
        }
    }
    /// Parses a configuration name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "redirect" => LogoutMode::Redirect,
            "silent" => LogoutMode::Silent,
            "popup" => LogoutMode::Popup,
            "local" => LogoutMode::Local,
            _ => return None,
        })
    }
}

/// A `Clear-Site-Data` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearSiteData {
    /// `"storage"`
    Storage,
    /// `"cache"`
    Cache,
    /// `"cookies"`
    Cookies,
}

/// `[logout] path` when not set.
pub const DEFAULT_LOGOUT_PATH: &str = "/logout";

/// `[logout] mode` when not set: a redirect to the IdP's end-session
/// endpoint works without JavaScript and ends the IdP session too.
pub const DEFAULT_LOGOUT_MODE: LogoutMode = LogoutMode::Redirect;

/// `[logout] allowed_modes` when not set: every mode, so `?mode=` may pick
/// any of them.
pub const DEFAULT_ALLOWED_MODES: &[LogoutMode] = &[
    LogoutMode::Redirect,
    LogoutMode::Silent,
    LogoutMode::Popup,
    LogoutMode::Local,
];

/// `[logout] default_return_to` when not set: the root of the origin the
/// logout came from.
pub const DEFAULT_RETURN_TO: &str = "/";

/// `[logout] clear_site_data` when not set: `"storage"` removes what the app
/// kept in the browser; `"cookies"` is left out because it reaches every host
/// under the registrable domain.
pub const DEFAULT_CLEAR_SITE_DATA: &[ClearSiteData] = &[ClearSiteData::Storage];

/// `[logout] silent_timeout` when not set: how long a silent or popup logout
/// may wait for the IdP before the page falls back to a full redirect.
pub const DEFAULT_SILENT_TIMEOUT: Duration = Duration::from_secs(5);

/// `[logout]`
#[derive(Debug, Clone)]
pub struct LogoutConfig {
    /// The logout path ([`DEFAULT_LOGOUT_PATH`]).
    pub path: String,
    /// Default mode ([`DEFAULT_LOGOUT_MODE`]).
    pub mode: LogoutMode,
    /// Modes `?mode=` may ask for ([`DEFAULT_ALLOWED_MODES`]).
    pub allowed_modes: Vec<LogoutMode>,
    /// Where users land after logout (a same-origin path or an allowed URL;
    /// [`DEFAULT_RETURN_TO`]).
    pub default_return_to: String,
    /// Absolute URLs a `return_to` may name, compared byte for byte.
    pub allowed_return_to: Vec<String>,
    /// RFC 7009 token revocation at logout.
    pub revoke_tokens: bool,
    /// `Clear-Site-Data` directives on the response that ends the flow
    /// ([`DEFAULT_CLEAR_SITE_DATA`]).
    pub clear_site_data: Vec<ClearSiteData>,
    /// Silent/popup fallback timeout ([`DEFAULT_SILENT_TIMEOUT`]).
    pub silent_timeout: Duration,
}
