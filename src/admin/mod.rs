//! The admin listener: `/healthz` (process up), `/readyz` (dependencies
//! up), `/metrics` (Prometheus text), and the bearer-token admin API
//! ([`api`]). It may listen on any address (kubelet and Prometheus reach
//! a pod by its IP); the admin API is served only on a loopback listener or
//! over TLS (`[server.admin_tls]`), so its token never crosses a network in
//! clear text.

pub mod api;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gateway::App;
use crate::pages::{self, Body};
use crate::telemetry;

/// How long a TLS handshake on the admin listener may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin listener until `stop` turns true; with `tls`, every
/// connection is TLS.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) {
    // Decided by the listener actually bound, not by a reloadable config.
    let api_allowed = tls.is_some() || listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(stream, app, api_allowed).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, app, api_allowed).await,
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "admin TLS handshake failed")
                        }
                        Err(_) => tracing::debug!("admin TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(stream: S, app: Arc<App>, api_allowed: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(&app, req, api_allowed).await) }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(app: &App, req: Request<Incoming>, api_allowed: bool) -> Response<Body> {
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
