//! One accepted connection: the accept loop of a listener, the TLS
//! handshake, and serving HTTP/1.1 or HTTP/2 on it with the gateway.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gateway::{App, ConnInfo};
use crate::request::framing::{FramingFlag, Sniffed};

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `stop` turns true; each one is
/// served on its own task on this thread's runtime.
pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Arc<App>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(stream, peer, app, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(tls_stream, peer, app, watcher).await
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, app: Arc<App>, watcher: Watcher)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let flag = Arc::new(FramingFlag::default());
    let io = TokioIo::new(Sniffed::new(stream, flag.clone()));
    let limits = app.limits();
    let conn_info = Arc::new(ConnInfo {
        peer,
        peer_text: peer.ip().to_string(),
        framing: flag,
    });
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let conn_info = conn_info.clone();
        async move { Ok::<_, Infallible>(app.handle(req, &conn_info).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // The config check keeps this at 8 KiB or more, hyper's minimum
        // (it panics below); the max() only guards that assumption.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection_with_upgrades(io, service);
    let conn = watcher.watch(conn.into_owned());
    if let Err(err) = conn.await {
        log_connection_error(peer, err.as_ref());
    }
}

/// Requests hyper refuses before the gateway sees them get one log line
/// here, as every refusal does: a malformed or oversized head (hyper answers
/// 400 or 431) and a head not sent within `header_read_timeout` (hyper
/// closes the connection). Peers that just go away stay at debug.
fn log_connection_error(peer: SocketAddr, err: &(dyn std::error::Error + 'static)) {
    match err.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_parse_too_large() => {
            tracing::warn!(peer = %peer.ip(), error = %e, "request refused: head too large")
        }
        Some(e) if e.is_parse() => {
            tracing::warn!(peer = %peer.ip(), error = %e, "request refused: malformed head")
        }
        Some(e) if e.is_timeout() => {
            tracing::info!(peer = %peer.ip(), "request head not received in time")
        }
        _ => tracing::debug!(%peer, error = %err, "connection ended with an error"),
    }
}
