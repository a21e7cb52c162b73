//! What the admin listener answers: `/healthz` (process up), `/readyz`
//! (dependencies up), `/metrics` (Prometheus text), and the bearer-token
//! admin API ([`api`]). It may listen on any address (kubelet and
//! Prometheus reach a pod by its IP); the admin API is served only on a
//! loopback listener or over TLS (`[server.admin_tls]`), so its token never
//! crosses a network in clear text. Its connections and their limits are
//! [`crate::server::admin_listener`]'s.

pub mod api;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::gateway::App;
use crate::pages::{self, Body};
use crate::telemetry;

/// Answers one request on the admin listener; the admin API only when
/// `api_allowed` (the listener is loopback or TLS).
pub async fn handle(app: &App, req: Request<Incoming>, api_allowed: bool) -> Response<Body> {
    if api::is_api_path(req.uri().path()) {
        return api::handle(app, req, api_allowed).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return pages::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => pages::text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let checks = app.readiness().await;
            let ready = checks.iter().all(|(_, e)| e.is_none());
            let body = serde_json::json!({
                "ready": ready,
                "checks": checks.iter().map(|(name, e)| (name.to_string(), serde_json::Value::Bool(e.is_none()))).collect::<serde_json::Map<_, _>>(),
                // Why a check fails, so an operator need not search the logs
                // (e.g. an untrusted Redis TLS certificate).
                "errors": checks.iter().filter_map(|(name, e)| Some((name.to_string(), serde_json::Value::String(e.clone()?)))).collect::<serde_json::Map<_, _>>(),
            });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            pages::json(status, &body)
        }
        "/metrics" => {
            let mut resp = pages::text(StatusCode::OK, telemetry::render_metrics());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => pages::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
