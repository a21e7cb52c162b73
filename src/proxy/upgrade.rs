//! WebSocket upgrades. Only `Upgrade: websocket` is forwarded; bytes are
//! tunnelled only after the upstream has answered 101, and the tunnel
//! closes when its [`Deadline`] fires (session revoked or expired).
//!
//! RFC 6455 §10.2: "Servers that are not intended to process input from any
//! web page but only for certain sites SHOULD verify the |Origin| field is an
//! origin they expect." The gateway always does: a cross-site page could
//! otherwise open a socket riding the user's session cookie.

use std::future::Future;
use std::pin::Pin;

use http::header::{CONNECTION, HeaderValue, ORIGIN, UPGRADE};
use http::{HeaderMap, Method, Request};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Resolves when an upgraded connection must be closed.
pub type Deadline = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

fn has_token(headers: &HeaderMap, name: http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a request is a WebSocket handshake (HTTP/1.1 GET with
/// `Connection: upgrade` and `Upgrade: websocket`).
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req.version() == http::Version::HTTP_11
        && has_token(req.headers(), CONNECTION, "upgrade")
        && has_token(req.headers(), UPGRADE, "websocket")
}

/// Whether an upstream 101 switches to WebSocket.
pub fn is_websocket_response(headers: &HeaderMap) -> bool {
    has_token(headers, UPGRADE, "websocket")
}

/// Whether the handshake's `Origin` is exactly the route origin.
pub fn origin_allowed(headers: &HeaderMap, route_origin: &str) -> bool {
    let mut origins = headers.get_all(ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (Some(origin), None) => origin
            .as_bytes()
            .eq_ignore_ascii_case(route_origin.as_bytes()),
        _ => false,
    }
}

/// Restores the upgrade headers hop-by-hop stripping removed.
pub fn set_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// Joins the two upgraded connections and copies bytes both ways until one
/// side closes or the deadline fires.
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, deadline: Option<Deadline>) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::debug!(error = %err, "websocket upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        let deadline = deadline.unwrap_or_else(|| Box::pin(std::future::pending()));
        tokio::select! {
            result = copy => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "websocket tunnel ended with an error");
                }
            }
            () = deadline => tracing::info!("websocket closed: session ended"),
        }
    });
}
