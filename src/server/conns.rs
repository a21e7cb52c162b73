//! What a client connection may cost: how many are served at once
//! (`server.max_connections`), how long one may sit idle
//! (`server.idle_timeout`) and how long a request head may take
//! (`server.header_read_timeout`), timed here rather than by hyper.
//!
//! hyper's HTTP/1 head timer starts whenever the connection waits for a
//! head, idle keep-alive included, so it cannot tell "idle" from "slow head";
//! and hyper has no idle timer for HTTP/2. A connection's reads and its
//! requests are watched instead: with no request in flight, the first byte
//! read starts the head timer (HTTP/1), otherwise the idle timer runs from
//! the end of the last response (HTTP/1 and HTTP/2, whose pings and
//! settings never count as activity).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connection slots of the public listeners, shared by every serving
/// thread.
pub struct Slots {
    semaphore: Arc<Semaphore>,
    max: u32,
}

impl Slots {
    /// `max` slots (at least one).
    pub fn new(max: usize) -> Self {
        let max = u32::try_from(max.clamp(1, Semaphore::MAX_PERMITS))
            .unwrap_or(u32::MAX)
            .max(1);
        Slots {
            semaphore: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    /// Waits for a free slot; the connection holds it until it ends. An
    /// accept loop takes one before accepting, so past the limit new
    /// connections wait in the kernel's listen backlog.
    pub async fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.semaphore.clone().acquire_owned().await.ok()
    }

    /// Waits until every connection has ended.
    pub async fn drained(&self) {
        let _all = self.semaphore.acquire_many(self.max).await;
    }
}

/// What the timers need to know about one connection.
pub struct Activity {
    origin: Instant,
    /// Requests whose response has not been sent in full (HTTP/2: open
    /// streams the gateway answers).
    in_flight: AtomicU32,
    /// When the connection last became idle (ms since `origin`).
    idle_since: AtomicU64,
    /// When the current request head started (ms since `origin`, plus one;
    /// 0: none is being read).
    head_since: AtomicU64,
    /// The client spoke HTTP/2 (no head timer: h2 frames are not a head).
    h2: AtomicBool,
    /// Nothing has been read yet.
    fresh: AtomicBool,
    /// Bumped whenever a head starts or a request starts or ends, so the
    /// connection re-reads its timers only when one of them may have moved.
    generation: AtomicU32,
}

/// What a connection's timers say now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A request is in flight: it may take as long as its route allows, so
    /// neither the idle nor the head timer applies.
    Busy,
    /// Nothing due before this instant.
    WaitUntil(Instant),
    /// Idle past `idle_timeout`: close it gracefully.
    Idle,
    /// A request head not received within `header_read_timeout`.
    HeadTimeout,
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            origin: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            fresh: AtomicBool::new(true),
            generation: AtomicU32::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    fn on_read(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.fresh.swap(false, Ordering::Relaxed) && bytes.starts_with(b"PRI * HTTP/2.0") {
            self.h2.store(true, Ordering::Relaxed);
        }
        if !self.h2.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            self.head_since
                .store(self.now_ms().saturating_add(1), Ordering::Relaxed);
            self.changed();
        }
    }

    /// Marks that the verdict may have changed.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A number that changes whenever the verdict may have: compare it with
    /// the one seen at the last [`Activity::verdict`] to skip re-reading.
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// A request reached the gateway (its head is complete); the returned
    /// guard marks its end when dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Relaxed);
        self.changed();
        InFlight(self.clone())
    }

    /// The timers' verdict now.
    pub fn verdict(&self, header_read_timeout: Duration, idle_timeout: Duration) -> Verdict {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::Busy;
        }
        let now = Instant::now();
        let head = self.head_since.load(Ordering::Relaxed);
        if head > 0 {
            let due = self.at(head - 1) + header_read_timeout;
            return if now >= due {
                Verdict::HeadTimeout
            } else {
                Verdict::WaitUntil(due)
            };
        }
        let due = self.at(self.idle_since.load(Ordering::Relaxed)) + idle_timeout;
        if now >= due {
            Verdict::Idle
        } else {
            Verdict::WaitUntil(due)
        }
    }
}

/// Marks a request in flight; dropped when its response has been sent in
/// full (or abandoned).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now_ms(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
        a.changed();
    }
}

/// A response body that keeps its request in flight until it is done.
pub struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    /// `inner`, holding `in_flight` until dropped.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Tracked {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B> HttpBody for Tracked<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's stream, reporting its reads to an [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// Watches `inner` for `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            self.activity.on_read(&buf.filled()[before..]);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Logs accept failures (EMFILE and friends) at most once a second, with
/// how many were not logged, so a descriptor shortage cannot flood the log.
pub fn log_accept_error(err: &io::Error) {
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
