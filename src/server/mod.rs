//! Listeners: the public TCP/TLS accept loops (HTTP/1.1 and HTTP/2), the
//! admin listener, signals (SIGTERM/SIGINT drain and exit, SIGHUP reload)
//! and graceful shutdown.

pub mod framing;
pub mod tls;
pub mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin;
use crate::config::{self, Loaded};
use crate::gateway::{App, ConnInfo};
use framing::{FramingFlag, Sniffed};

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A listen address could not be bound (message carries file:line:col).
    #[error("{0}")]
    Bind(String),
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The gateway could not be built from the configuration.
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    /// A serving thread could not be started.
    #[error("serving threads: {0}")]
    Worker(String),
}

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn bind(loaded: &Loaded, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|err| {
        let what = format!("cannot listen on {addr}: {err}");
        match loaded.listen_location(addr) {
            Some(loc) => ServerError::Bind(format!("{loc}: {what}")),
            None => ServerError::Bind(what),
        }
    })
}

/// Runs the gateway until SIGTERM/SIGINT, then drains and returns.
pub async fn run(config_path: PathBuf, loaded: Loaded) -> Result<(), ServerError> {
    let cfg = &loaded.config;
    let tls = cfg
        .server
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()?;
    let mut public = Vec::new();
    for addr in &cfg.server.listen {
        public.push(bind(&loaded, *addr).await?);
    }
    let admin_listener = match cfg.server.admin_listen {
        Some(addr) => Some(bind(&loaded, addr).await?),
        None => None,
    };
    let shutdown_timeout = cfg.server.shutdown_timeout;
    let app = Arc::new(App::new(&loaded.config).await?);

    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut std_listeners = Vec::with_capacity(public.len());
    for listener in public {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, tls = tls.is_some(), "listening");
        }
        // Deregistered from this runtime; each serving thread registers
        // its own handle with its own runtime.
        let listener = listener
            .into_std()
            .map_err(|e| ServerError::Worker(format!("cannot share a listener: {e}")))?;
        std_listeners.push(listener);
    }
    let threads = workers::count(cfg.server.workers);
    let mut workers = workers::Workers::start(
        threads,
        std_listeners,
        tls.clone(),
        &app,
        &graceful,
        &stop_rx,
    )?;
    tracing::info!(threads, "serving threads started");
    let mut tasks = Vec::new();
    if let Some(listener) = admin_listener {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "admin listening");
        }
        tasks.push(tokio::spawn(admin::serve(
            listener,
            app.clone(),
            stop_rx.clone(),
        )));
    }

    wait_for_stop(&config_path, &app).await;
    tracing::info!(timeout = ?shutdown_timeout, "shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    workers.stopped_accepting().await;
    // The accept loops held the only other references and have ended.
    match Arc::try_unwrap(graceful) {
        Ok(graceful) => tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections drained"),
            () = tokio::time::sleep(shutdown_timeout) => tracing::warn!("shutdown timeout: closing remaining connections"),
        },
        Err(_) => tracing::error!("connections could not be drained"),
    }
    workers.finish().await;
    Ok(())
}

/// Waits for SIGTERM or SIGINT; reloads the configuration on SIGHUP.
async fn wait_for_stop(config_path: &std::path::Path, app: &App) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => reload(config_path, app).await,
        }
    }
}

async fn reload(config_path: &std::path::Path, app: &App) {
    match config::load(config_path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!(%warning, "configuration warning");
            }
            match app.reload(&loaded.config).await {
                Ok(()) => tracing::info!(path = %config_path.display(), "configuration reloaded"),
                Err(err) => {
                    tracing::error!(error = %err, "reload rejected; keeping the running configuration")
                }
            }
        }
        Err(err) => {
            tracing::error!(error = %err, "reload rejected: configuration invalid; keeping the running one");
        }
    }
}

async fn accept_loop(
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
