//! The admin listener's connections: what an anonymous client can hold on
//! it. It may listen on a pod's IP for kubelet probes and Prometheus, so it
//! has limits of its own: at most [`MAX_CONNECTIONS`] connections at once
//! (past it new ones wait in the listen backlog, so they cannot take the
//! file descriptors the public listeners need), the server's
//! `header_read_timeout` for every request head, idle keep-alive included,
//! and its `max_header_bytes`. What the listener answers is
//! [`crate::admin`].
//!
//! HTTP/1.1 only: hyper times HTTP/1 heads itself, from the moment it waits
//! for one (a connection that sends nothing included), but has no idle timer
//! for HTTP/2, and `auto`'s version sniffing waits for bytes with no timer at
//! all. Probes and scrapers speak HTTP/1.1, so the public listener's own
//! timers ([`super::conns`]) are not needed here.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::accept;
use super::conns::Slots;
use crate::admin;
use crate::gateway::App;

/// Connections the admin listener serves at once. A pod needs a handful:
/// kubelet opens one per probe (liveness, readiness, startup) and closes
/// it, each Prometheus replica keeps one, and an operator's API calls are
/// rare. 64 leaves room for bursts and several scrapers, and caps what
/// anonymous clients can hold at 64 descriptors and 64 request heads of
/// `max_header_bytes`.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves the admin listener until `stop` turns true; with `tls`, every
/// connection is TLS (offering HTTP/1.1 only by ALPN).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) {
    // Decided by the listener actually bound, not by a reloadable config.
    let api_allowed = tls.is_some() || listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let acceptor = tls.map(|tls| {
        // tls::server_config offers h2 as well, for the public listeners.
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(tls))
    });
    let slots = Slots::new(MAX_CONNECTIONS);
    while let Some((slot, stream, peer)) = accept::next(&listener, &slots, &mut stop).await {
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => serve_connection(stream, app, api_allowed).await,
                Some(acceptor) => {
                    if let Some(tls) = accept::tls_handshake(&acceptor, stream, peer, "admin").await
                    {
                        serve_connection(tls, app, api_allowed).await;
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
    let limits = app.limits();
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(admin::handle(&app, req, api_allowed).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Runs whenever hyper waits for a head: from the connection's start
        // and between requests, so it also closes idle keep-alive
        // connections (a scraper reconnects; nothing here is worth keeping
        // a connection open for).
        .header_read_timeout(limits.header_read_timeout)
        // The config check keeps this at 8 KiB or more, hyper's minimum
        // (it panics below); the max() only guards that assumption.
        .max_buf_size(limits.max_header_bytes.max(8192));
    if let Err(err) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        // At debug: anonymous clients could otherwise fill the log.
        tracing::debug!(error = %err, "admin connection ended with an error");
    }
}
