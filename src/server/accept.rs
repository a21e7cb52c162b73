//! Taking a connection off a listener, the same way on the public and the
//! admin listeners: a connection slot first (past the limit, new
//! connections wait in the kernel's listen backlog rather than costing
//! memory here), accept errors backed off and logged at most once a second,
//! and a TLS handshake bounded in time.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::conns::Slots;

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long accepting pauses after an error (EMFILE and friends), instead
/// of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next connection and the slot it holds; `None` once `stop` turns
/// true (or the slots are closed).
pub(super) async fn next(
    listener: &TcpListener,
    slots: &Slots,
    stop: &mut watch::Receiver<bool>,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let slot = tokio::select! {
        _ = stop.changed() => return None,
        slot = slots.take() => slot?,
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((slot, stream, peer)),
                Err(err) => {
                    log_accept_error(&err);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// The TLS handshake of an accepted connection; `None` (logged at debug,
/// naming `listener`) when it fails or takes longer than
/// [`TLS_HANDSHAKE_TIMEOUT`].
pub(super) async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    listener: &str,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(err)) => {
            tracing::debug!(%peer, listener, error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, listener, "TLS handshake timed out");
            None
        }
    }
}

/// Logs accept failures (EMFILE and friends) at most once a second, with
/// how many were not logged, so a descriptor shortage cannot flood the log.
fn log_accept_error(err: &io::Error) {
    static LAST_SECOND: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_SECOND.swap(second, Ordering::Relaxed) == second {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::warn!(error = %err, suppressed, "accept failed; backing off");
}
