//! Forwarding a request to its upstream and the response back, streaming
//! both bodies. The caller (the gateway) has already chosen the route,
//! normalised the path and decided the identity headers; this module only
//! rewrites headers and moves bytes.

pub mod client;
pub mod headers;
pub mod stall;
pub mod upgrade;

use std::time::Duration;

use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, HOST, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use thiserror::Error;
use url::Url;

use crate::pages::Body;
pub use client::{ClientError, UpstreamClient};
pub use headers::IdentityNames;

/// Why a request could not be proxied.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// The upstream refused or could not be reached in time (502).
    #[error("upstream unreachable: {0}")]
    Connect(String),
    /// The upstream did not answer within the route timeout (504).
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The upstream broke the exchange (502).
    #[error("upstream error: {0}")]
    Upstream(String),
    /// A WebSocket handshake from a foreign origin (403).
    #[error("WebSocket handshake from a foreign origin")]
    ForeignOrigin,
    /// A WebSocket handshake without a valid key or version 13 (400).
    #[error("malformed WebSocket handshake: {0}")]
    BadHandshake(&'static str),
    /// The upstream URL could not be combined with the request path (500).
    #[error("cannot build the upstream URL: {0}")]
    BadUri(String),
}

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ForeignOrigin => StatusCode::FORBIDDEN,
            ProxyError::BadHandshake(_) => StatusCode::BAD_REQUEST,
            ProxyError::BadUri(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Connect(_) => "connect",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::Upstream(_) => "upstream",
            ProxyError::ForeignOrigin => "foreign_origin",
            ProxyError::BadHandshake(_) => "bad_handshake",
            ProxyError::BadUri(_) => "bad_uri",
        }
    }
}

/// One route's upstream: where it is and how to reach it.
#[derive(Clone)]
pub struct Upstream {
    /// `scheme://authority`: where connections go.
    target: Uri,
    /// The `Host` header sent upstream.
    host: HeaderValue,
    /// Base path without a trailing slash ("" for the root).
    base_path: String,
    /// For logs: `scheme://authority`.
    pub display: String,
    /// One pooled client per serving thread (see [`crate::server::workers`]).
    clients: Vec<UpstreamClient>,
    timeout: Duration,
}

impl Upstream {
    /// Prepares an upstream from its configured URL, with one client per
    /// serving thread (at least one).
    pub fn new(
        url: &Url,
        clients: Vec<UpstreamClient>,
        timeout: Duration,
    ) -> Result<Self, ProxyError> {
        if clients.is_empty() {
            return Err(ProxyError::BadUri("no upstream client".into()));
        }
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProxyError::BadUri(e.to_string()))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| ProxyError::BadUri("no scheme".into()))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ProxyError::BadUri("no host".into()))?;
        let base_path = uri.path().trim_end_matches('/').to_string();
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| ProxyError::BadUri(e.to_string()))?;
        let target = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ProxyError::BadUri(e.to_string()))?;
        Ok(Upstream {
            display: format!("{scheme}://{authority}"),
            target,
            host,
            base_path,
            clients,
            timeout,
        })
    }

    /// The calling serving thread's client: its pooled connections belong
    /// to this thread's runtime, so the request stays on one thread.
    fn client(&self) -> &UpstreamClient {
        &self.clients[crate::threads::index() % self.clients.len()]
    }

    /// The request target sent upstream, in origin form (RFC 9112 §3.2.1):
    /// the base path, the canonical path and the query.
    fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, ProxyError> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + 1 + query.map_or(0, str::len),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        let pq =
            PathAndQuery::from_maybe_shared(pq).map_err(|e| ProxyError::BadUri(e.to_string()))?;
        Ok(Uri::from(pq))
    }
}

/// What the gateway decided about one request before forwarding it.
pub struct Forward<'a> {
    /// The route's upstream.
    pub upstream: &'a Upstream,
    /// The canonical path.
    pub path: &'a str,
    /// The connection's peer address, as text.
    pub peer_text: &'a str,
    /// Whether the peer is a trusted proxy.
    pub trusted_peer: bool,
    /// The route origin (`scheme://host[:port]`), for `X-Forwarded-*` and
    /// the WebSocket `Origin` check.
    pub origin: &'a crate::config::PublicOrigin,
    /// Identity header names to strip from the client.
    pub identity: &'a IdentityNames,
    /// Identity headers to set, after stripping.
    pub set_headers: &'a [(HeaderName, HeaderValue)],
    /// The signed identity assertion, when on.
    pub assertion: Option<(HeaderName, HeaderValue)>,
    /// Whether a cookie name is one of the gateway's own.
    pub is_gateway_cookie: &'a (dyn Fn(&str) -> bool + Sync),
    /// The route is an `auth = "session"` one: its responses are per user,
    /// so one without `Cache-Control` gets `private`.
    pub session_route: bool,
    /// Request id, sent upstream as `X-Request-Id`.
    pub request_id: &'a str,
    /// Trace context, sent upstream as `traceparent`/`tracestate` in place
    /// of the client's.
    pub trace: &'a crate::telemetry::trace_context::TraceContext,
    /// Resolves when an upgraded connection must close (session revoked or
    /// expired); `None` keeps it open until either side closes.
    pub upgrade_deadline: Option<upgrade::Deadline>,
    /// The client connection's slot (`server.max_connections`), which an
    /// upgraded connection keeps until it closes.
    pub slot: &'a std::sync::Arc<tokio::sync::OwnedSemaphorePermit>,
    /// Turns true when the gateway stops; an upgraded connection then closes.
    pub stop: &'a tokio::sync::watch::Receiver<bool>,
    /// How long the client's body may stall before the request ends.
    pub body_stall: std::time::Duration,
}

/// Forwards `req` upstream and returns the response to send back.
pub async fn forward(
    mut req: Request<Incoming>,
    f: Forward<'_>,
) -> Result<Response<Body>, ProxyError> {
    let websocket = upgrade::is_websocket(&req);
    if websocket && !upgrade::origin_allowed(req.headers(), &f.origin.origin) {
        return Err(ProxyError::ForeignOrigin);
    }
    // The Sec-WebSocket-Accept the upstream must answer with.
    let expected_accept = if websocket {
        Some(upgrade::expected_accept(req.headers()).map_err(ProxyError::BadHandshake)?)
    } else {
        None
    };
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    let uri = f.upstream.uri_for(f.path, req.uri().query())?;
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let h = &mut parts.headers;
    headers::strip_hop_by_hop(h);
    headers::strip_client_controlled(h, f.identity, f.trusted_peer);
    headers::filter_cookies(h, f.is_gateway_cookie);
    // Room for what is added below (forwarding, Host, request id, trace,
    // identity, assertion) at once: hyper sizes the map for the fields it
    // parsed, and growing it field by field rehashes it more than once.
    h.reserve(8 + f.set_headers.len());
    headers::set_forwarded(
        h,
        f.peer_text,
        f.trusted_peer,
        f.origin.scheme.as_str(),
        f.origin.authority(),
    );
    h.insert(HOST, f.upstream.host.clone());
    if let Ok(v) = HeaderValue::from_str(f.request_id) {
        h.insert(HeaderName::from_static("x-request-id"), v);
    }
    f.trace.set_headers(h);
    for (name, value) in f.set_headers {
        h.insert(name.clone(), value.clone());
    }
    if let Some((name, value)) = f.assertion {
        h.insert(name, value);
    }
    if websocket {
        upgrade::set_upgrade_headers(h);
    }
    let upstream_req = Request::from_parts(parts, stall::RequestBody::new(body, f.body_stall));

    let mut resp = match tokio::time::timeout(
        f.upstream.timeout,
        f.upstream.client().send(&f.upstream.target, upstream_req),
    )
    .await
    {
        Err(_) => return Err(ProxyError::Timeout(f.upstream.timeout)),
        Ok(Err(ClientError::Connect(why))) => return Err(ProxyError::Connect(why)),
        Ok(Err(ClientError::Send(why))) => return Err(ProxyError::Upstream(why)),
        Ok(Ok(resp)) => resp,
    };

    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let Some(client_upgrade) = client_upgrade else {
            // An upstream may not switch protocols unasked.
            return Err(ProxyError::Upstream("unexpected 101 response".into()));
        };
        if !upgrade::is_websocket_response(resp.headers()) {
            return Err(ProxyError::Upstream(
                "101 without Upgrade: websocket".into(),
            ));
        }
        // A backend that answers 101 but keeps parsing HTTP would let raw
        // requests through the tunnel: only a real WebSocket server
        // computes the accept value.
        if !expected_accept
            .as_deref()
            .is_some_and(|want| upgrade::accept_matches(resp.headers(), want))
        {
            return Err(ProxyError::Upstream(
                "101 without the matching Sec-WebSocket-Accept".into(),
            ));
        }
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        upgrade::spawn_tunnel(
            client_upgrade,
            upstream_upgrade,
            upgrade::Bounds {
                deadline: f.upgrade_deadline,
                slot: f.slot.clone(),
                stop: f.stop.clone(),
            },
        );
    }

    let (mut parts, body) = resp.into_parts();
    let h = &mut parts.headers;
    // RFC 9112 §6.3: a message with both Transfer-Encoding and
    // Content-Length is framed by the former, and "an intermediary MUST
    // remove the received Content-Length field prior to forwarding". hyper
    // decodes the chunks but leaves the length, which would then frame the
    // client's copy (a cut body over HTTP/1, a malformed one over HTTP/2).
    if h.contains_key(TRANSFER_ENCODING) {
        h.remove(CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(h);
    headers::filter_set_cookies(h, f.is_gateway_cookie);
    if switching {
        upgrade::set_upgrade_headers(h);
    }
    if f.session_route && !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
    }
    Ok(Response::from_parts(
        parts,
        body.map_err(Into::into).boxed_unsync(),
    ))
}
