//! Upstream connections: one small HTTP/1.1 connection pool per route and
//! serving thread, http and https upstreams.
//!
//! Each serving thread runs its own single-threaded runtime (see
//! [`crate::server::workers`]) and has its own pool for each route, so a
//! pool is a plain stack of idle connections behind an uncontended lock: no
//! pool keys to hash, no cross-thread hand-offs. hyper-util's general
//! client did that work on every request and cost several percent of the
//! gateway's CPU on the benchmark's session route.
//!
//! A connection goes back to its pool when the response body has been read
//! to its end and the connection can take the next request (RFC 9112 §9.3:
//! HTTP/1.1 connections persist unless one side says otherwise). A request
//! that an idle connection could not even start (the upstream closed it
//! while idle) goes to the next idle connection or a new one, as hyper-util
//! does. Idle connections are closed after [`IDLE_TIMEOUT`] by a sweep
//! that lives as long as the pool.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::stall::RequestBody;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use thiserror::Error;
use tower_service::Service;

use crate::telemetry::error_chain;

/// How long an idle connection is kept for reuse.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections are checked for [`IDLE_TIMEOUT`].
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Most idle connections one pool keeps.
const MAX_IDLE: usize = 256;

/// Why a request got no response from the upstream.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No connection could be made (refused, unreachable, TLS failed,
    /// connect timeout).
    #[error("{0}")]
    Connect(String),
    /// The connection broke before a whole response head arrived.
    #[error("{0}")]
    Send(String),
}

/// One route's pooled upstream client for one serving thread. Cheap to
/// clone (shared state).
#[derive(Clone)]
pub struct UpstreamClient {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<Vec<Idle>>,
    /// Whether the idle sweep runs (started with the first connection, on
    /// the serving thread's runtime).
    sweeping: std::sync::atomic::AtomicBool,
}

struct Idle {
    tx: SendRequest<RequestBody>,
    since: Instant,
}

/// TLS settings for upstream connections: the system trust store, or none
/// when it cannot be read (https upstreams then fail with 502 and a log line).
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::warn!(error = %err, "could not read a system CA certificate");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates found: https upstreams will fail");
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(c) => Arc::new(c),
        Err(err) => {
            // The ring provider supports the default versions; this is a
            // build misconfiguration, so fail closed with an empty trust store.
            tracing::error!(error = %err, "upstream TLS configuration failed");
            Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        }
    }
}

/// Builds a pooled client with the given connect timeout.
pub fn build(connect_timeout: Duration, tls: Arc<rustls::ClientConfig>) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    UpstreamClient {
        inner: Arc::new(Inner {
            connector,
            idle: Mutex::new(Vec::new()),
            sweeping: std::sync::atomic::AtomicBool::new(false),
        }),
    }
}

impl UpstreamClient {
    /// Sends `req` (its URI in origin form, its `Host` set) to the upstream
    /// at `target` (scheme and authority) and returns the response head;
    /// the body streams from the connection.
    pub async fn send(
        &self,
        target: &Uri,
        mut req: Request<RequestBody>,
    ) -> Result<Response<PooledBody>, ClientError> {
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                None => (self.connect(target).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = PooledBody {
                        body,
                        tx: Some(tx),
                        pool: self.inner.clone(),
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut err) => match err.take_message() {
                    // Not even started on a connection that had been idle:
                    // the upstream closed it meanwhile. A new one gets it.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(ClientError::Send(error_chain(err.error()))),
                },
            }
        }
    }

    /// The most recently used idle connection that can take a request.
    fn checkout(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.inner.lock_idle();
        while let Some(conn) = idle.pop() {
            if conn.tx.is_ready() && conn.since.elapsed() < IDLE_TIMEOUT {
                return Some(conn.tx);
            }
        }
        None
    }

    async fn connect(&self, target: &Uri) -> Result<SendRequest<RequestBody>, ClientError> {
        if !self
            .inner
            .sweeping
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            Inner::start_sweep(Arc::downgrade(&self.inner));
        }
        let mut connector = self.inner.connector.clone();
        let io = connector
            .call(target.clone())
            .await
            .map_err(|e| ClientError::Connect(error_chain(e.as_ref())))?;
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ClientError::Connect(error_chain(&e)))?;
        // The connection runs on this serving thread's runtime; upgrades
        // (WebSocket) take the socket over after a 101.
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(tx)
    }
}

impl Inner {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A panic while holding the lock leaves at worst a shorter stack.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops idle connections that closed or waited too long (dropping a
    /// `SendRequest` closes its connection).
    fn prune(idle: &mut Vec<Idle>) {
        idle.retain(|c| !c.tx.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
    }

    /// Every [`SWEEP_EVERY`], prunes the idle connections of a pool that is
    /// still in use; ends with the pool (a reload builds new ones).
    fn start_sweep(pool: std::sync::Weak<Inner>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(pool) = pool.upgrade() else { return };
                Inner::prune(&mut pool.lock_idle());
            }
        });
    }

    fn put(&self, tx: SendRequest<RequestBody>) {
        let mut idle = self.lock_idle();
        if idle.len() >= MAX_IDLE {
            Inner::prune(&mut idle);
        }
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    /// Returns the connection once it can take the next request: at once
    /// when it already can, else when it says so (its task has noticed the
    /// end of the body); a connection that closes instead is dropped.
    fn give_back(self: Arc<Self>, mut tx: SendRequest<RequestBody>) {
        if tx.is_ready() {
            self.put(tx);
        } else if !tx.is_closed() {
            tokio::spawn(async move {
                if tx.ready().await.is_ok() {
                    self.put(tx);
                }
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body that hands its connection back to the
    /// pool when it has been read to the end. Dropped early, the
    /// connection is dropped with it (hyper closes a connection whose body
    /// was not read).
    pub struct PooledBody {
        #[pin]
        body: Incoming,
        tx: Option<SendRequest<RequestBody>>,
        pool: Arc<Inner>,
    }

    impl PinnedDrop for PooledBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // A body the server never polled because it was empty from the
            // start (204, 304, Content-Length: 0) ends here, not in poll_frame.
            if this.body.is_end_stream() && let Some(tx) = this.tx.take() {
                this.pool.clone().give_back(tx);
            }
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let Some(tx) = this.tx.take()
        {
            this.pool.clone().give_back(tx);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
