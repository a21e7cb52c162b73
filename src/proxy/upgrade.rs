//! WebSocket upgrades. Only `Upgrade: websocket` is forwarded; bytes are
//! tunnelled only after the upstream has answered 101, and the tunnel
//! closes when its [`Deadline`] fires (session revoked or expired) or the
//! gateway stops. Until then it keeps the slot of the client connection it
//! came from ([`Bounds`]).
//!
//! RFC 6455 §10.2: "Servers that are not intended to process input from any
//! web page but only for certain sites SHOULD verify the |Origin| field is an
//! origin they expect." The gateway always does: a cross-site page could
//! otherwise open a socket riding the user's session cookie.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::{CONNECTION, HeaderValue, ORIGIN, UPGRADE};
use http::{HeaderMap, Method, Request};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::{OwnedSemaphorePermit, watch};

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

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Checks a handshake's `Sec-WebSocket-Key` (one, base64 of 16 bytes, RFC
/// 6455 §4.2.1) and `Sec-WebSocket-Version: 13`, and returns the
/// `Sec-WebSocket-Accept` the upstream must answer with.
pub fn expected_accept(headers: &HeaderMap) -> Result<String, &'static str> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let mut versions = headers.get_all("sec-websocket-version").iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == b"13" => {}
        _ => return Err("Sec-WebSocket-Version must be 13"),
    }
    let mut keys = headers.get_all("sec-websocket-key").iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.as_bytes().trim_ascii(),
        _ => return Err("exactly one Sec-WebSocket-Key is required"),
    };
    if STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err("Sec-WebSocket-Key must be 16 bytes in base64");
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WEBSOCKET_GUID.as_bytes());
    Ok(STANDARD.encode(ctx.finish().as_ref()))
}

/// Whether an upstream 101 carries exactly one `Sec-WebSocket-Accept`, equal
/// to `expected`.
pub fn accept_matches(headers: &HeaderMap, expected: &str) -> bool {
    let mut accepts = headers.get_all("sec-websocket-accept").iter();
    match (accepts.next(), accepts.next()) {
        (Some(a), None) => a.as_bytes().trim_ascii() == expected.as_bytes(),
        _ => false,
    }
}

/// Restores the upgrade headers hop-by-hop stripping removed.
pub fn set_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// What ends a tunnel besides its two sides, and what it holds meanwhile.
///
/// No idle timer: WebSocket apps keep quiet sockets open for as long as a
/// page is, so a tunnel with no bytes either way is not cut. What bounds the
/// tunnels of an open route (no session, no deadline) is the slot: each one
/// counts under `server.max_connections` as the client connection it is.
pub struct Bounds {
    /// Resolves when the session behind the tunnel ends (revoked or
    /// expired); `None` on an open route.
    pub deadline: Option<Deadline>,
    /// The client connection's slot, kept until the tunnel ends.
    pub slot: Arc<OwnedSemaphorePermit>,
    /// Turns true when the gateway stops. The tunnel closes then rather
    /// than hold the drain (which waits for every slot) for
    /// `shutdown_timeout`: no request is in flight on it to finish.
    pub stop: watch::Receiver<bool>,
}

/// Joins the two upgraded connections and copies bytes both ways until one
/// side closes, the deadline fires or the gateway stops; the tunnel holds its
/// connection slot until then.
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, bounds: Bounds) {
    let Bounds {
        deadline,
        slot,
        mut stop,
    } = bounds;
    tokio::spawn(async move {
        let _slot = slot;
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
            // An error: the stop signal's sender is gone, so is the gateway.
            _ = stop.wait_for(|stopping| *stopping) => {
                tracing::debug!("websocket closed: the gateway is stopping")
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_example_accept() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        // RFC 6455 §1.3's worked example.
        assert_eq!(expected_accept(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        h.insert("sec-websocket-version", HeaderValue::from_static("8"));
        assert!(expected_accept(&h).is_err());
    }
}
