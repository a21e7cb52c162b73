//! The request path, top to bottom: framing and header hygiene, the
//! canonical path, the public origin, the gateway's own paths, the route,
//! the session, the upstream. Each step either answers or hands on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::assertion::{self, Assertions, Signer};
use crate::auth;
use crate::config::{AuthMode, Config, PublicOrigin, Route};
use crate::context::Ctx;
use crate::forward_auth;
use crate::login;
use crate::logout;
use crate::oidc::OidcClient;
use crate::pages::{self, Body};
use crate::paths;
use crate::proxy::{self, IdentityNames, Upstream};
use crate::request::framing::FramingFlag;
use crate::request::{ClientKind, hygiene, origin, path};
use crate::session::Sessions;
use crate::telemetry::trace_context::TraceContext;
use crate::telemetry::{RouteMetrics, access_log, otel};
use crate::threads;

/// Why a gateway could not be built from a configuration.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The session service could not be built.
    #[error("sessions: {0}")]
    Sessions(#[from] crate::session::SessionError),
    /// The OIDC client could not be built.
    #[error("oidc: {0}")]
    Oidc(#[from] crate::oidc::OidcError),
    /// The assertion signing key could not be loaded.
    #[error("headers: {0}")]
    Assertion(#[from] assertion::AssertionError),
    /// A route's upstream URL is unusable.
    #[error("route {index} ({prefix}): {source}")]
    Upstream {
        /// Route position.
        index: usize,
        /// Route prefix.
        prefix: String,
        /// The cause.
        source: proxy::ProxyError,
    },
}

/// What the server knows about a connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: std::net::SocketAddr,
    /// The peer's address as text, written once per connection rather than
    /// for every request's `X-Forwarded-For` and access-log line.
    pub peer_text: String,
    /// Raised by the wire sniffer for `Content-Length` + `Transfer-Encoding`.
    pub framing: Arc<FramingFlag>,
    /// The connection's slot under `server.max_connections`. A WebSocket
    /// tunnel made on the connection keeps it until the tunnel ends: the
    /// client's socket is still open, and hyper is done with it at the 101.
    pub slot: Arc<OwnedSemaphorePermit>,
    /// Turns true when the gateway stops; a tunnel then closes.
    pub stop: watch::Receiver<bool>,
}

/// Connection limits read when a connection starts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time allowed for a request head.
    pub header_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// How long a connection may stay idle; how long a proxied body may stall.
    pub idle_timeout: Duration,
}

/// A route ready to serve: its config, its upstream and its metrics label.
struct ActiveRoute {
    route: Route,
    upstream: Upstream,
    metrics: RouteMetrics,
}

/// Everything built from one configuration; replaced whole on reload.
pub struct Gateway {
    config: Arc<Config>,
    sessions: Option<Sessions>,
    oidc: Option<OidcClient>,
    logout_js: pages::Asset,
    routes: Vec<ActiveRoute>,
    identity: IdentityNames,
    /// Identity headers per opened session record, for this `[headers]`.
    identity_cache: auth::identity::HeaderCache,
    /// The signed identity assertion, when `[headers] jwt_assertion` is on.
    assertions: Option<Assertions>,
    /// Metrics for the gateway's own paths and for requests no route matched.
    own_metrics: RouteMetrics,
    unrouted_metrics: RouteMetrics,
}

impl Gateway {
    fn build(
        config: &Config,
        tls: &Arc<rustls::ClientConfig>,
        sessions: Option<Sessions>,
        oidc: Option<OidcClient>,
        signer: &Arc<Signer>,
    ) -> Result<Self, GatewayError> {
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let clients = (0..threads::count(config.server.workers))
                .map(|_| proxy::client::build(route.connect_timeout, tls.clone()))
                .collect();
            let upstream =
                Upstream::new(&route.upstream, clients, route.timeout).map_err(|source| {
                    GatewayError::Upstream {
                        index: route.index,
                        prefix: route.prefix.clone(),
                        source,
                    }
                })?;
            let label = match &route.host {
                Some(host) => format!("{host}{}", route.prefix),
                None => route.prefix.clone(),
            };
            routes.push(ActiveRoute {
                route: route.clone(),
                upstream,
                metrics: RouteMetrics::new(&label),
            });
        }
        Ok(Gateway {
            config: Arc::new(config.clone()),
            sessions,
            oidc,
            logout_js: pages::logout_js(&config.logout),
            routes,
            identity: IdentityNames::new(config.headers.configured_names()),
            identity_cache: auth::identity::HeaderCache::default(),
            assertions: Assertions::new(&config.headers, signer.clone()),
            own_metrics: RouteMetrics::new("gateway"),
            unrouted_metrics: RouteMetrics::new("-"),
        })
    }

    /// The configuration this gateway was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session service, when `[session]` is configured.
    pub fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_ref()
    }

    /// The OIDC client, when `[oidc]` is configured.
    pub fn oidc(&self) -> Option<&OidcClient> {
        self.oidc.as_ref()
    }

    /// The first route whose prefix and host match. A route `host` may be
    /// written with or without the port; both forms match.
    fn match_route(&self, path: &str, authority: Option<&str>) -> Option<&ActiveRoute> {
        let host = authority.map(origin::authority_host);
        self.routes.iter().find(|r| {
            path::under_prefix(path, &r.route.prefix)
                && r.route
                    .host
                    .as_deref()
                    .is_none_or(|want| host == Some(want) || authority == Some(want))
        })
    }

    fn is_gateway_cookie(&self, name: &str) -> bool {
        self.config.session.as_ref().is_some_and(|s| {
            name.strip_prefix(s.cookie_name.as_str())
                .is_some_and(|rest| {
                    rest.is_empty()
                        || rest.starts_with(login::state_cookie::COOKIE_INFIX)
                        || rest == logout::rp_initiated::BINDING_SUFFIX
                })
        })
    }
}

/// The running application: the current gateway and what outlives reloads.
pub struct App {
    current: ArcSwap<Gateway>,
    upstream_tls: Arc<rustls::ClientConfig>,
    /// The assertion signing keys: kept across reloads, rotated by them.
    signer: Arc<Signer>,
}

/// Per-request facts for the access log and metrics.
struct RequestLog<'g> {
    id: String,
    /// W3C trace context sent upstream; its trace id is logged.
    trace: TraceContext,
    route: &'g RouteMetrics,
    upstream: &'g str,
    error: Option<&'static str>,
}

fn request_id() -> String {
    // A random per-process prefix and a counter: unique, cheap, not secret.
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        u32::from_le_bytes(b)
    });
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    // 16 lowercase hex digits: the prefix, then the counter's low 32 bits
    // (it wraps after 2^32 requests; the prefix still differs per process).
    let value = (u64::from(prefix) << 32) | (counter & 0xffff_ffff);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Written as bytes and copied once (hex digits are ASCII, so the UTF-8
    // check cannot fail): cheaper than pushing chars one by one.
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((value >> ((15 - i) * 4)) & 0xf) as usize];
    }
    std::str::from_utf8(&digits)
        .map(str::to_owned)
        .unwrap_or_default()
}

impl App {
    /// Builds the application from a validated configuration.
    pub async fn new(config: &Config) -> Result<Self, GatewayError> {
        let upstream_tls = proxy::client::tls_config();
        let sessions = match &config.session {
            Some(cfg) => Some(Sessions::new(cfg).await?),
            None => None,
        };
        let oidc = config.oidc.as_ref().map(OidcClient::new).transpose()?;
        let signer = Arc::new(Signer::new(&config.headers)?);
        let gateway = Gateway::build(config, &upstream_tls, sessions, oidc, &signer)?;
        Ok(App {
            current: ArcSwap::from_pointee(gateway),
            upstream_tls,
            signer,
        })
    }

    /// Swaps in a new configuration; the old one finishes its requests.
    /// Sessions survive when the store settings are unchanged (secrets and
    /// timeouts may change); the OIDC client is kept when `[oidc]` is
    /// unchanged, so a reload never makes the gateway forget the IdP.
    pub async fn reload(&self, config: &Config) -> Result<(), GatewayError> {
        let old = self.current.load_full();
        if old.config.server.listen != config.server.listen
            || old.config.server.admin_listen != config.server.admin_listen
            || old.config.server.tls.is_some() != config.server.tls.is_some()
            || old.config.server.admin_tls.is_some() != config.server.admin_tls.is_some()
            || old.config.telemetry != config.telemetry
            || old.config.server.workers != config.server.workers
        {
            tracing::warn!(
                "listen addresses, TLS, workers or [telemetry] changed: they take effect after a restart"
            );
        }
        let sessions = match (&config.session, &old.config.session, &old.sessions) {
            (Some(new), Some(prev), Some(sessions)) if new.store == prev.store => {
                Some(sessions.reconfigure(new)?)
            }
            (Some(new), _, _) => {
                if old.sessions.is_some() {
                    tracing::warn!("session store changed: existing sessions are not carried over");
                }
                Some(Sessions::new(new).await?)
            }
            (None, _, _) => None,
        };
        let oidc = match (&config.oidc, &old.config.oidc, &old.oidc) {
            (Some(new), Some(prev), Some(client)) if new == prev => Some(client.clone()),
            (Some(new), _, _) => Some(OidcClient::new(new)?),
            (None, _, _) => None,
        };
        self.signer.reconfigure(&config.headers)?;
        let gateway = Gateway::build(config, &self.upstream_tls, sessions, oidc, &self.signer)?;
        self.current.store(Arc::new(gateway));
        Ok(())
    }

    /// The current gateway.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Connection limits from the current configuration.
    pub fn limits(&self) -> Limits {
        let server = &self.current.load().config.server;
        Limits {
            header_read_timeout: server.header_read_timeout,
            max_header_bytes: server.max_header_bytes,
            idle_timeout: server.idle_timeout,
        }
    }

    /// Whether the gateway can serve: the IdP's metadata is loaded and the
    /// session store answers. Each check with why it fails (`None`: ok).
    pub async fn readiness(&self) -> Vec<(&'static str, Option<String>)> {
        let gateway = self.gateway();
        let mut checks = vec![("config", None)];
        if let Some(oidc) = &gateway.oidc {
            checks.push((
                "idp",
                (!oidc.ready()).then(|| "IdP metadata not loaded".to_owned()),
            ));
        }
        if let Some(sessions) = &gateway.sessions {
            checks.push((
                "session_store",
                sessions.ready().await.err().map(|e| e.to_string()),
            ));
        }
        checks
    }

    /// Answers one request and writes its access-log line and metrics.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let gateway = self.current.load_full();
        let method = req.method().clone();
        let raw_path = req.uri().path().to_owned();
        let trusted = origin::is_trusted(conn.peer.ip(), &gateway.config.server.trusted_proxies);
        let (trace, span) = otel::start_request(req.headers(), trusted, &method, &raw_path);
        let mut log = RequestLog {
            id: request_id(),
            trace,
            route: &gateway.unrouted_metrics,
            upstream: "-",
            error: None,
        };
        let resp = if span.is_none() {
            gateway.respond(req, conn, &mut log).await
        } else {
            use tracing::Instrument as _;
            let resp = gateway
                .respond(req, conn, &mut log)
                .instrument(span.clone())
                .await;
            otel::finish_request(&span, resp.status().as_u16(), log.route.label());
            resp
        };
        let elapsed = started.elapsed();
        log.route.record(resp.status(), elapsed, log.error);
        access_log::write(&access_log::Entry {
            request_id: &log.id,
            trace_id: &log.trace.trace_id,
            method: method.as_str(),
            path: &raw_path,
            status: resp.status().as_u16(),
            duration: elapsed,
            route: log.route.label(),
            upstream: log.upstream,
            error: log.error.unwrap_or(""),
            peer: &conn.peer_text,
        });
        resp
    }
}

impl Gateway {
    /// The context for login, logout and session handlers; `None` when
    /// `[oidc]`/`[session]` are not configured.
    fn handler_context<'a>(
        &'a self,
        origin: &'a PublicOrigin,
        kind: ClientKind,
        request_id: &'a str,
        peer: std::net::IpAddr,
    ) -> Option<Ctx<'a>> {
        Some(Ctx {
            config: &self.config,
            session_config: self.config.session.as_ref()?,
            sessions: self.sessions.as_ref()?,
            oidc: self.oidc.as_ref()?,
            origin,
            kind,
            request_id,
            peer,
        })
    }

    /// The gateway's own endpoints, by path.
    async fn own_path(
        &self,
        path: &str,
        req: Request<Incoming>,
        origin: &PublicOrigin,
        kind: ClientKind,
        request_id: &str,
        conn: &ConnInfo,
    ) -> Response<Body> {
        if path == paths::LOGOUT_JS {
            return self.logout_js.serve(&req);
        }
        if path == paths::JWKS
            && let Some(a) = &self.assertions
        {
            return a.signer().jwks_response();
        }
        // The client's address for per-client limits (the back-channel
        // rate limit): behind trusted proxies, the one they forwarded.
        let peer = origin::client_ip(
            req.headers(),
            conn.peer.ip(),
            &self.config.server.trusted_proxies,
        );
        let Some(ctx) = self.handler_context(origin, kind, request_id, peer) else {
            return pages::error(
                kind,
                StatusCode::NOT_FOUND,
                "not_found",
                "Login is not configured on this gateway.",
            );
        };
        if path == self.config.logout.path {
            return logout::rp_initiated::handle(&ctx, req).await;
        }
        match path {
            paths::LOGIN => login::start::handle(&ctx, req).await,
            paths::LOGOUT_FLOW => logout::rp_initiated::flow(&ctx, req).await,
            paths::LOGOUT_CONTINUE => logout::rp_initiated::continue_(&ctx, req).await,
            paths::LOGOUT_DONE => logout::rp_initiated::done(&ctx, req).await,
            paths::CALLBACK => login::callback::handle(&ctx, req).await,
            paths::SESSION => login::session_info::handle(&ctx, req).await,
            paths::BACKCHANNEL_LOGOUT => logout::backchannel::handle(&ctx, req).await,
            paths::FRONTCHANNEL_LOGOUT => logout::frontchannel::handle(&ctx, req).await,
            p if forward_auth::is_auth_path(p) => {
                let route_for = |path: &str, authority: Option<&str>| {
                    self.match_route(path, authority)
                        .map(|a| forward_auth::RouteRef {
                            route: &a.route,
                            upstream_origin: &a.upstream.display,
                        })
                };
                let deps = forward_auth::Deps {
                    tcp_peer: conn.peer.ip(),
                    route_for: &route_for,
                    identity_cache: &self.identity_cache,
                    assertions: self.assertions.as_ref(),
                };
                forward_auth::handle(&ctx, req, deps).await
            }
            _ => pages::error(
                kind,
                StatusCode::NOT_FOUND,
                "not_found",
                "No such gateway path.",
            ),
        }
    }
}

/// A 400 that also closes the connection (framing can no longer be trusted).
fn refuse_and_close(kind: ClientKind, status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = pages::error(kind, status, "bad_request", message);
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

impl Gateway {
    async fn respond<'g>(
        &'g self,
        mut req: Request<Incoming>,
        conn: &ConnInfo,
        log: &mut RequestLog<'g>,
    ) -> Response<Body> {
        let kind = ClientKind::of(req.headers());

        // 1. Framing and header hygiene.
        let te_sniffed =
            req.headers().contains_key(http::header::TRANSFER_ENCODING) && conn.framing.take();
        if let Err(err) = hygiene::check_framing(&req, te_sniffed) {
            tracing::warn!(request_id = %log.id, peer = %conn.peer.ip(), reason = %err, "request refused");
            log.error = Some("framing");
            return refuse_and_close(kind, err.status(), &err.to_string());
        }
        for name in hygiene::drop_control_values(req.headers_mut()) {
            tracing::warn!(request_id = %log.id, header = %name, "dropped a header value with control characters");
        }

        // 2. The canonical path.
        let path = match path::normalize(req.uri().path()) {
            Ok(path) => path,
            Err(err) => {
                log.error = Some("path");
                tracing::warn!(request_id = %log.id, reason = %err, "request path refused");
                return pages::error(
                    kind,
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &err.to_string(),
                );
            }
        };

        // The client's address for per-client limits (the back-channel
        // rate limit): behind trusted proxies, the one they forwarded. Only
        // the handlers need it, not a plain proxied request.
        let client_of = |req: &Request<Incoming>| {
            origin::client_ip(
                req.headers(),
                conn.peer.ip(),
                &self.config.server.trusted_proxies,
            )
        };

        // 3. The public origin the request belongs to.
        let authority = origin::request_authority(&req);
        let origins = &self.config.server.public_urls;
        let public: &PublicOrigin = &origins[origin::select_origin(origins, authority.as_deref())];
        // Matching ignores `;parameters`, which many servers strip.
        let match_path = path::without_params(&path);

        // 4. The gateway's own paths never reach an upstream.
        if paths::is_reserved(&match_path) || match_path == self.config.logout.path {
            log.route = &self.own_metrics;
            return self
                .own_path(&match_path, req, public, kind, &log.id, conn)
                .await;
        }

        // 5. The route.
        let Some(active) = self.match_route(&match_path, authority.as_deref()) else {
            log.error = Some("no_route");
            return pages::error(
                kind,
                StatusCode::NOT_FOUND,
                "not_found",
                "No route matches this path.",
            );
        };
        log.route = &active.metrics;
        log.upstream = &active.upstream.display;

        // 6. The session (routes with auth = "session").
        let session_route = active.route.auth == AuthMode::Session;
        let mut set_headers: Option<auth::identity::IdentityHeaders> = None;
        let mut assertion = None;
        let mut upgrade_deadline = None;
        if session_route {
            let Some(ctx) = self.handler_context(public, kind, &log.id, client_of(&req)) else {
                // The config check makes session routes require [oidc] and [session].
                log.error = Some("no_login");
                return pages::error(
                    kind,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Login is not configured.",
                );
            };
            match auth::admit(&ctx, &req, &active.route, &path, &self.identity_cache).await {
                auth::Admission::Admit {
                    headers,
                    deadline,
                    record,
                } => {
                    assertion = self
                        .assertions
                        .as_ref()
                        .and_then(|a| a.header(&record, &public.origin, &active.upstream.display));
                    set_headers = Some(headers);
                    upgrade_deadline = deadline;
                }
                auth::Admission::Answer(resp, why) => {
                    log.error = Some(why);
                    return resp;
                }
            }
        }

        // 7. The upstream.
        let forward = proxy::Forward {
            upstream: &active.upstream,
            path: &path,
            peer_text: &conn.peer_text,
            trusted_peer: origin::is_trusted(conn.peer.ip(), &self.config.server.trusted_proxies),
            origin: public,
            identity: &self.identity,
            set_headers: set_headers.as_deref().unwrap_or_default(),
            assertion,
            is_gateway_cookie: &|name| self.is_gateway_cookie(name),
            session_route,
            request_id: &log.id,
            trace: &log.trace,
            upgrade_deadline,
            slot: &conn.slot,
            stop: &conn.stop,
            body_stall: self.config.server.idle_timeout,
        };
        match proxy::forward(req, forward).await {
            Ok(resp) => resp,
            Err(err) => {
                log.error = Some(err.kind());
                tracing::warn!(request_id = %log.id, route = %active.metrics.label(), error = %err, "proxy error");
                let message = match err.status() {
                    StatusCode::GATEWAY_TIMEOUT => "The application did not answer in time.",
                    StatusCode::FORBIDDEN => "Cross-origin WebSocket connections are not allowed.",
                    StatusCode::BAD_REQUEST => "The WebSocket handshake is malformed.",
                    _ => "The application is unavailable.",
                };
                pages::error(kind, err.status(), err.kind(), message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_16_hex_digits_and_distinct() {
        let (a, b) = (request_id(), request_id());
        for id in [&a, &b] {
            assert_eq!(id.len(), 16, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        assert_ne!(a, b);
        assert_eq!(a[..8], b[..8], "same process prefix");
    }
}
