//! One accepted connection: the accept loop of a listener, the TLS
//! handshake, and serving HTTP/1.1 or HTTP/2 on it with the gateway.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::gateway::{App, ConnInfo};
use crate::request::framing::{FramingFlag, Sniffed};

use super::accept;
use super::conns::{Activity, Slots, Tracked, Verdict, Watched};

/// Accepts connections on `listener` until `stop` turns true, each once a
/// connection slot is free; each one is served on its own task on this
/// thread's runtime.
pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Arc<App>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    while let Some((slot, stream, peer)) = accept::next(&listener, &slots, &mut stop).await {
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            // Shared: a WebSocket tunnel made on this connection keeps the
            // slot after hyper is done with the connection.
            let slot = Arc::new(slot);
            match acceptor {
                None => serve_connection(stream, peer, app, slot, stop).await,
                Some(acceptor) => {
                    if let Some(tls) =
                        accept::tls_handshake(&acceptor, stream, peer, "public").await
                    {
                        serve_connection(tls, peer, app, slot, stop).await;
                    }
                }
            }
        });
    }
}

/// How long a connection found idle past `idle_timeout` (told to close then,
/// or earlier by the gateway stopping) may take to close before it is
/// dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Arc<App>,
    slot: Arc<OwnedSemaphorePermit>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let flag = Arc::new(FramingFlag::default());
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(
        Sniffed::new(stream, flag.clone()),
        activity.clone(),
    ));
    let limits = app.limits();
    let conn_info = Arc::new(ConnInfo {
        peer,
        peer_text: peer.ip().to_string(),
        framing: flag,
        slot,
        stop: stop.clone(),
    });
    let requests = activity.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let conn_info = conn_info.clone();
        let in_flight = requests.request_started();
        async move {
            let resp = app.handle(req, &conn_info).await;
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, in_flight)))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Timed by `conns` (hyper's timer would also cut idle keep-alive).
        .header_read_timeout(None)
        // The config check keeps this at 8 KiB or more, hyper's minimum
        // (it panics below); the max() only guards that assumption.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // Rapid reset (CVE-2023-44487) and its kin: at most 200 streams at
        // once, GOAWAY after 20 streams the client resets before they are
        // served, and after 1024 streams the gateway had to reset for
        // protocol errors (RUSTSEC-2024-0003). hyper's and h2's defaults,
        // set here so that an upgrade cannot silently change them.
        .max_concurrent_streams(200)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        // Pings find dead peers of connections with streams open.
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn.into_owned());
    let mut timers = Timers {
        activity,
        limits,
        peer,
        timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        seen: None,
        told_to_close: false,
        drop_at: None,
    };
    let mut stopped = std::pin::pin!(stop.changed());
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(res) = conn.as_mut().poll(cx) {
                if let Err(err) = res {
                    log_connection_error(timers.peer, err.as_ref());
                }
                return Poll::Ready(());
            }
            if !timers.told_to_close && stopped.as_mut().poll(cx).is_ready() {
                timers.told_to_close = true;
                conn.as_mut().graceful_shutdown();
                continue;
            }
            match timers.check(cx) {
                Due::Wait => return Poll::Pending,
                Due::Drop => return Poll::Ready(()),
                // Poll it again so that it acts on being told.
                Due::Close => conn.as_mut().graceful_shutdown(),
            }
        }
    })
    .await;
}

/// A connection's timers, checked in the connection's own task after each
/// poll of it: every read that could start a head, and every HTTP/1 request
/// start and end, happens inside that poll, so no wake-up or fresh timer is
/// needed per request. The one timer only moves earlier (a slow head) when
/// it must; a later deadline waits until the timer fires and is then re-read.
/// An HTTP/2 request ends on its own task without waking this one; that only
/// moves the idle deadline later, which the next firing finds.
///
/// Response bodies do not wake this task either: while a request is in
/// flight the timer fires at least every `idle_timeout`, and a firing that
/// finds a response waiting on the client sets it to `idle_timeout` after
/// the last move of response data, so a stall is found on time.
struct Timers {
    /// What the connection has been doing.
    activity: Arc<Activity>,
    /// The limits read when the connection started.
    limits: crate::gateway::Limits,
    /// The client, for log lines.
    peer: SocketAddr,
    /// Never later than the next deadline; re-read when it fires.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The activity generation the timer was last set for.
    seen: Option<u32>,
    /// Idle, or the gateway stopping: hyper finishes what is in flight,
    /// then ends the connection.
    told_to_close: bool,
    /// When a connection told to close is dropped if it has not ended.
    drop_at: Option<tokio::time::Instant>,
}

/// What the timers decided.
enum Due {
    /// Keep serving.
    Wait,
    /// Tell the connection to close gracefully.
    Close,
    /// Drop it now.
    Drop,
}

impl Timers {
    /// Re-reads the timers when the timer fired or the connection's
    /// activity moved, and says what is due; leaves the timer polled, so
    /// this task wakes when it fires.
    fn check(&mut self, cx: &mut Context<'_>) -> Due {
        loop {
            let fired = self.timer.as_mut().poll(cx).is_ready();
            let generation = self.activity.generation();
            if !fired && self.seen == Some(generation) {
                return Due::Wait;
            }
            self.seen = Some(generation);
            let now = tokio::time::Instant::now();
            if fired && self.drop_at.is_some_and(|d| now >= d) {
                return Due::Drop;
            }
            let limits = &self.limits;
            let due = match self
                .activity
                .verdict(limits.header_read_timeout, limits.idle_timeout)
            {
                // A request may take as long as its route allows; look again
                // within idle_timeout, as its response may start waiting on
                // the client meanwhile without waking this task. (Unfired,
                // this only brings a longer head deadline closer.)
                Verdict::Busy => Some(now + limits.idle_timeout),
                Verdict::WaitUntil(at) => Some(tokio::time::Instant::from_std(at)),
                Verdict::HeadTimeout => {
                    tracing::info!(peer = %self.peer.ip(), "request head not received in time");
                    return Due::Drop;
                }
                // Dropped at once: a graceful close would wait for the stuck
                // response to be sent, which is what never happens, and the
                // client takes nothing anyway. Dropping frees the slot and
                // the upstream connection now.
                Verdict::Stalled => {
                    tracing::info!(peer = %self.peer.ip(), "response not taken in time");
                    return Due::Drop;
                }
                Verdict::Idle => {
                    let drop_at = *self.drop_at.get_or_insert(now + CLOSE_GRACE);
                    if !self.told_to_close {
                        self.told_to_close = true;
                        self.timer.as_mut().reset(drop_at);
                        return Due::Close;
                    }
                    Some(drop_at)
                }
            };
            let due = match (due, self.drop_at) {
                (Some(due), Some(d)) => Some(due.min(d)),
                (due, _) => due,
            };
            match due {
                // Set it again and poll it (loop) so that it wakes this task.
                Some(due) if fired || due < self.timer.deadline() => {
                    self.timer.as_mut().reset(due);
                }
                _ => return Due::Wait,
            }
        }
    }
}

/// Requests hyper refuses before the gateway sees them get one log line
/// here, as every refusal does: a malformed or oversized head (hyper answers
/// 400 or 431); a head not sent within `header_read_timeout` is logged by
/// [`Timers::check`], which ends such connections (hyper's own head timer
/// is off). Peers that just go away stay at debug.
fn log_connection_error(peer: SocketAddr, err: &(dyn std::error::Error + 'static)) {
    match err.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_parse_too_large() => {
            tracing::warn!(peer = %peer.ip(), error = %e, "request refused: head too large")
        }
        Some(e) if e.is_parse() => {
            tracing::warn!(peer = %peer.ip(), error = %e, "request refused: malformed head")
        }
        // HTTP/2 keep-alive pings left unanswered.
        Some(e) if e.is_timeout() => tracing::info!(peer = %peer.ip(), "connection timed out"),
        _ => tracing::debug!(%peer, error = %err, "connection ended with an error"),
    }
}
