//! Listeners: the public TCP/TLS accept loops (HTTP/1.1 and HTTP/2), the
//! admin listener, signals (SIGTERM/SIGINT drain and exit, SIGHUP reload)
//! and graceful shutdown.

mod accept;
pub mod admin_listener;
mod connection;
pub mod conns;
pub mod tls;
pub mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, Loaded};
use crate::gateway::App;
use crate::threads;

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
    #[error(transparent)]
    Worker(#[from] workers::WorkerError),
}

async fn bind(loaded: &Loaded, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|err| {
        let what = format!("cannot listen on {addr}: {err}");
        match loaded.listen_location(addr) {
            Some(loc) => ServerError::Bind(format!("{loc}: {what}")),
            None => ServerError::Bind(what),
        }
    })
}

/// Tells `portcullis check` on the same file which addresses this gateway
/// holds, so `systemctl reload` (check, then SIGHUP) passes. Failing to
/// announce costs only that, so it is logged, not fatal.
fn announce(
    config_path: &std::path::Path,
    cfg: &crate::config::Config,
) -> Option<crate::instance::Announcement> {
    let held: Vec<SocketAddr> = cfg
        .server
        .listen
        .iter()
        .copied()
        .chain(cfg.server.admin_listen)
        .collect();
    match crate::instance::announce(config_path, &held) {
        Ok(announcement) => Some(announcement),
        Err(err) => {
            tracing::warn!(error = %err, "cannot announce the listen addresses to `portcullis check`");
            None
        }
    }
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
    let admin = match cfg.server.admin_listen {
        Some(addr) => Some(bind(&loaded, addr).await?),
        None => None,
    };
    let shutdown_timeout = cfg.server.shutdown_timeout;
    let _announcement = announce(&config_path, cfg);
    let app = Arc::new(App::new(&loaded.config).await?);

    // Read once: a reload does not resize the slots.
    let slots = Arc::new(conns::Slots::new(cfg.server.max_connections));
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
            .map_err(|e| workers::WorkerError(format!("cannot share a listener: {e}")))?;
        std_listeners.push(listener);
    }
    let threads = threads::count(cfg.server.workers);
    let mut workers =
        workers::Workers::start(threads, std_listeners, tls.clone(), &app, &slots, &stop_rx)?;
    tracing::info!(threads, "serving threads started");
    let mut tasks = Vec::new();
    if let Some(listener) = admin {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, tls = cfg.server.admin_tls.is_some(), "admin listening");
        }
        let admin_tls = cfg
            .server
            .admin_tls
            .as_ref()
            .map(tls::server_config)
            .transpose()?;
        tasks.push(tokio::spawn(admin_listener::serve(
            listener,
            admin_tls,
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
    // Every connection was told to finish (the stop signal) and gives its
    // slot back when it has.
    tokio::select! {
        () = slots.drained() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(shutdown_timeout) => tracing::warn!("shutdown timeout: closing remaining connections"),
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
