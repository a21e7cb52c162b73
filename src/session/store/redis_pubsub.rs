//! The revocation subscription of the Redis store: one task per store
//! that keeps a subscription to [`REVOCATION_CHANNEL`] alive, applies its
//! messages to the local cache, and learns which replicas must confirm a
//! deletion.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use moka::sync::Cache;
use tokio::sync::{broadcast, watch};

use super::redis_conn::{Backend, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use super::redis_lua::REVOCATION_CHANNEL;
use super::redis_replicas::Replicas;
use crate::session::id::StoreKey;

/// How often the subscriber checks its connection is alive.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// What the subscriber task shares with the store.
pub(super) struct Shared {
    pub(super) local: Cache<StoreKey, Arc<[u8]>>,
    pub(super) epoch: Arc<AtomicU64>,
    /// Bumped by every deletion or foreign change this instance learns of
    /// (see [`cache_unless_moved`]).
    pub(super) changes: Arc<AtomicU64>,
    /// Whether revocations are heard now; while not, the local cache is
    /// neither read nor filled (see [`cache_unless_moved`]).
    pub(super) live: Arc<AtomicBool>,
    pub(super) replicas: Arc<ArcSwap<Replicas>>,
    pub(super) revoked: broadcast::Sender<StoreKey>,
    pub(super) subscribed: watch::Sender<bool>,
    pub(super) resync: watch::Sender<u64>,
}

/// Learns which replicas deletions must wait for (per master on a
/// cluster). A refusal by the server makes them unknown (logged once):
/// deletions then wait as if a replica existed, since counting none would
/// switch the wait off unnoticed and a logout acknowledged on the master
/// alone could be lost in a failover. A failure to reach the server leaves
/// what was last learned, and the heartbeat tries again.
async fn refresh_replicas(backend: &Backend, replicas: &ArcSwap<Replicas>) {
    match tokio::time::timeout(RESPONSE_TIMEOUT, backend.replicas()).await {
        Ok(Ok(r)) => replicas.store(Arc::new(r)),
        Ok(Err(e)) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {
            if *replicas.swap(Arc::new(Replicas::Unknown)) != Replicas::Unknown {
                tracing::warn!(
                    error = %e,
                    "cannot learn the Redis master's replicas (grant the Redis user ROLE, or \
                     CLUSTER NODES on a cluster): every deletion now waits for a replica, \
                     and fails if none confirms"
                );
            }
        }
        Ok(Err(_)) | Err(_) => {}
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
            sh.changes.fetch_add(1, Ordering::SeqCst);
            sh.local.invalidate_all();
            sh.live.store(true, Ordering::SeqCst);
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
                        handle_message(msg.get_payload_bytes(), &sh).await;
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
            // Deaf from here on: another instance's revocation would not
            // reach the cache, so reads go to Redis until the subscription
            // is back (and the counters stop reads and writes in flight
            // from caching what they got).
            sh.live.store(false, Ordering::SeqCst);
            sh.subscribed.send_replace(false);
            sh.epoch.fetch_add(1, Ordering::SeqCst);
            sh.changes.fetch_add(1, Ordering::SeqCst);
            sh.local.invalidate_all();
            tracing::warn!("session revocation subscription lost; reconnecting");
        } else {
            first = false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Caches `blob` under `key` unless `counter` has moved since `before` (read
/// before the value was fetched or written), and drops it again if the
/// counter moved during the insert. With the epoch, a read that raced an
/// invalidation does not cache what it read; with the count of changes, a
/// record this instance has just written is not cached when a deletion or
/// a foreign change arrived meanwhile: another instance's revocation
/// handled between the write's reply and the insert would otherwise be
/// undone here for up to `cache_ttl`, the revoked session served again.
/// Nothing is cached while `live` is false (the subscription is down).
pub(super) fn cache_unless_moved(
    local: &Cache<StoreKey, Arc<[u8]>>,
    live: &AtomicBool,
    counter: &AtomicU64,
    key: &StoreKey,
    blob: Arc<[u8]>,
    before: u64,
) {
    let unmoved = || live.load(Ordering::SeqCst) && counter.load(Ordering::SeqCst) == before;
    if !unmoved() {
        return;
    }
    local.insert(key.clone(), blob);
    // A change that landed between the check and the insert still wins.
    if !unmoved() {
        local.invalidate(key);
    }
}

/// Applies one message: `u:<key>` drops a cached copy (the record changed),
/// `<key>` is a revocation (dropped and announced).
async fn handle_message(payload: &[u8], sh: &Shared) {
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
    sh.epoch.fetch_add(1, Ordering::SeqCst);
    sh.changes.fetch_add(1, Ordering::SeqCst);
    sh.local.invalidate(&key);
    if revocation {
        // Nobody listening is fine.
        let _ = sh.revoked.send(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> (Shared, broadcast::Receiver<StoreKey>) {
        let (revoked, rx) = broadcast::channel(4);
        let shared = Shared {
            local: Cache::new(16),
            epoch: Arc::default(),
            changes: Arc::default(),
            live: Arc::new(AtomicBool::new(true)),
            replicas: Arc::default(),
            revoked,
            subscribed: watch::channel(false).0,
            resync: watch::channel(0).0,
        };
        (shared, rx)
    }

    /// A write's reply and the insert into the local cache are two steps;
    /// a revocation from another instance handled between them must win.
    #[tokio::test]
    async fn a_revocation_during_a_write_is_not_undone_by_caching_the_write() {
        let (sh, mut rx) = shared();
        let key = StoreKey::from_stored(&"k".repeat(43)).unwrap();
        let blob: Arc<[u8]> = Arc::from(&b"record"[..]);

        let before = sh.changes.load(Ordering::SeqCst);
        // The write is in flight; another instance deletes the session.
        handle_message(key.as_str().as_bytes(), &sh).await;
        assert_eq!(rx.recv().await.unwrap(), key);
        cache_unless_moved(&sh.local, &sh.live, &sh.changes, &key, blob.clone(), before);
        assert!(
            sh.local.get(&key).is_none(),
            "the revoked session is cached"
        );

        // With nothing in between, the written record is cached.
        let before = sh.changes.load(Ordering::SeqCst);
        cache_unless_moved(&sh.local, &sh.live, &sh.changes, &key, blob.clone(), before);
        assert!(sh.local.get(&key).is_some());

        // Deaf (the subscription is down): nothing is cached.
        sh.local.invalidate_all();
        sh.live.store(false, Ordering::SeqCst);
        let before = sh.changes.load(Ordering::SeqCst);
        cache_unless_moved(&sh.local, &sh.live, &sh.changes, &key, blob, before);
        assert!(sh.local.get(&key).is_none(), "cached while deaf");
    }
}
