//! The revocation subscription of the Redis store: one task per store
//! that keeps a subscription to [`REVOCATION_CHANNEL`] alive, applies its
//! messages to the local cache, and learns the replica count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use moka::sync::Cache;
use tokio::sync::{broadcast, watch};

use super::redis_conn::{Backend, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use super::redis_lua::REVOCATION_CHANNEL;
use crate::session::id::StoreKey;

/// How often the subscriber checks its connection is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// What the subscriber task shares with the store.
pub(super) struct Shared {
    pub(super) local: Cache<StoreKey, Arc<[u8]>>,
    pub(super) epoch: Arc<AtomicU64>,
    pub(super) replicas: Arc<AtomicUsize>,
    pub(super) revoked: broadcast::Sender<StoreKey>,
    pub(super) subscribed: watch::Sender<bool>,
    pub(super) resync: watch::Sender<u64>,
}

/// Learns how many replicas deletions must wait for. A failure leaves the
/// last count: the heartbeat tries again.
async fn refresh_replicas(backend: &Backend, replicas: &AtomicUsize) {
    if let Ok(Ok(n)) = tokio::time::timeout(RESPONSE_TIMEOUT, backend.replicas()).await {
        replicas.store(n, Ordering::Relaxed);
    }
}

/// Keeps a subscription to [`REVOCATION_CHANNEL`] alive (on the current
/// master with Sentinel, on any node of a cluster). Messages may have been
/// lost while it was down, so every resubscription clears the local cache
/// and tells long-lived admissions to re-check their session.
pub(super) async fn subscriber(backend: Arc<Backend>, sh: Shared) {
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, backend.pubsub()).await;
        if let Ok(Ok(mut ps)) = conn
            && ps.subscribe(REVOCATION_CHANNEL).await.is_ok()
        {
            sh.epoch.fetch_add(1, Ordering::SeqCst);
            sh.local.invalidate_all();
            sh.subscribed.send_replace(true);
            if !first {
                sh.resync.send_modify(|n| *n += 1);
            }
            first = false;
            tracing::debug!("session revocation subscription live");
            refresh_replicas(&backend, &sh.replicas).await;
            backoff = Duration::from_millis(50);
            let (mut sink, mut stream) = ps.split();
            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            heartbeat.reset();
            loop {
                tokio::select! {
                    msg = stream.next() => {
                        let Some(msg) = msg else { break };
                        handle_message(msg.get_payload_bytes(), &sh.local, &sh.epoch, &sh.revoked).await;
                    }
                    _ = heartbeat.tick() => {
                        // A silently dead link (no FIN) would otherwise look
                        // like a quiet channel forever.
                        let pong = tokio::time::timeout(
                            RESPONSE_TIMEOUT,
                            sink.ping::<redis::Value>(),
                        )
                        .await;
                        if !matches!(pong, Ok(Ok(_))) {
                            break;
                        }
                        refresh_replicas(&backend, &sh.replicas).await;
                    }
                }
            }
            sh.subscribed.send_replace(false);
            sh.epoch.fetch_add(1, Ordering::SeqCst);
            tracing::warn!("session revocation subscription lost; reconnecting");
        } else {
            first = false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Applies one message: `u:<key>` drops a cached copy (the record changed),
/// `<key>` is a revocation (dropped and announced).
async fn handle_message(
    payload: &[u8],
    local: &Cache<StoreKey, Arc<[u8]>>,
    epoch: &AtomicU64,
    revoked: &broadcast::Sender<StoreKey>,
) {
    let Ok(payload) = std::str::from_utf8(payload) else {
        return;
    };
    let (revocation, key) = match payload.strip_prefix("u:") {
        Some(k) => (false, k),
        None => (true, payload),
    };
    let Some(key) = StoreKey::from_stored(key) else {
        return;
    };
    epoch.fetch_add(1, Ordering::SeqCst);
    local.invalidate(&key);
    if revocation {
        // Nobody listening is fine.
        let _ = revoked.send(key);
    }
}
