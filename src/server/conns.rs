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
//!
//! A request is in flight until its response body has been handed to hyper
//! in full, and may take as long as its route allows while the gateway or
//! the upstream works on it (long polls, SSE, slow upstreams). It may not
//! wait on the client for ever: a client that stops reading (HTTP/1) or
//! opens no flow-control window (HTTP/2) would hold its connection slot and
//! an upstream connection as long as it likes (nginx bounds this with
//! `send_timeout`). So each response body ([`Tracked`]) tells whether it
//! waits on the client: from when it is ready, and whenever it gave hyper a
//! frame that hyper has not come back for (hyper polls a body again only
//! when it can send more: room in the HTTP/1 write buffer, HTTP/2 send
//! window). A connection where some body waits on the client and no
//! response data moved for `idle_timeout` is stalled, and dropped.

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
    /// Response bodies waiting on the client (see [`Tracked`]).
    waiting_on_client: AtomicU32,
    /// When response data last moved towards the client, or a body started
    /// waiting on the client while none was (ms since `origin`). Only read
    /// while some body waits.
    moved_at: AtomicU64,
}

/// What a connection's timers say now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A request is in flight and no response waits on the client: it may
    /// take as long as its route allows, so no timer applies.
    Busy,
    /// Nothing due before this instant.
    WaitUntil(Instant),
    /// Idle past `idle_timeout`: close it gracefully.
    Idle,
    /// A request head not received within `header_read_timeout`.
    HeadTimeout,
    /// A response has waited on the client while no response data moved
    /// for `idle_timeout`: the client takes nothing.
    Stalled,
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
            waiting_on_client: AtomicU32::new(0),
            moved_at: AtomicU64::new(0),
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

    /// Bytes went out to the client.
    fn on_write(&self) {
        // Over HTTP/2 the gateway also writes pings, their acks and
        // settings, which say nothing about the client's flow-control
        // windows; there only hyper coming back to a body counts. Over
        // HTTP/1 every byte written is response data the client took
        // (into its socket), finer than hyper coming back to the body,
        // which may take a large upstream chunk's time.
        if !self.h2.load(Ordering::Relaxed) && self.waiting_on_client.load(Ordering::Relaxed) > 0 {
            self.moved();
        }
    }

    /// Response data moved towards the client now.
    fn moved(&self) {
        self.moved_at.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A response body starts waiting on the client. The wait is timed
    /// from now when no other body was waiting; else from the last move,
    /// so that new requests cannot hide a response the client never takes.
    fn wait_on_client(&self) {
        if self.waiting_on_client.load(Ordering::Relaxed) == 0 {
            self.moved();
        }
        // Release: whoever sees the count sees the time stored before it.
        self.waiting_on_client.fetch_add(1, Ordering::Release);
    }

    /// A response body no longer waits on the client.
    fn stop_waiting(&self) {
        self.waiting_on_client.fetch_sub(1, Ordering::Release);
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
            if self.waiting_on_client.load(Ordering::Acquire) == 0 {
                return Verdict::Busy;
            }
            let due = self.at(self.moved_at.load(Ordering::Relaxed)) + idle_timeout;
            return if Instant::now() >= due {
                Verdict::Stalled
            } else {
                Verdict::WaitUntil(due)
            };
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

/// What a response body waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waits {
    /// Ready, not polled yet: hyper polls it once it can send (HTTP/1:
    /// after an earlier response left its write buffer).
    Ready,
    /// It gave hyper a frame; hyper comes back for more once that went out.
    Client,
    /// Its last poll was `Pending` (its upstream has nothing yet), or it
    /// ended: not the client's doing.
    Upstream,
}

/// A response body that keeps its request in flight until it is done, and
/// tells its connection's [`Activity`] whether it waits on the client.
/// Costs an atomic or two and at most one clock read a poll; no timer.
pub struct Tracked<B> {
    inner: B,
    waits: Waits,
    in_flight: InFlight,
}

impl<B> Tracked<B> {
    /// `inner`, holding `in_flight` until dropped; a response ready to be
    /// sent waits on the client from now.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        in_flight.0.wait_on_client();
        Tracked {
            inner,
            waits: Waits::Ready,
            in_flight,
        }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        // Before `in_flight` drops: a waiting body is always in flight.
        if self.waits != Waits::Upstream {
            self.in_flight.0.stop_waiting();
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
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        let activity = &self.in_flight.0;
        if self.waits == Waits::Client {
            // hyper is back for more: the frame it took went out (HTTP/2:
            // the window had room) or left room in the write buffer.
            activity.moved();
        }
        let now = match res {
            Poll::Ready(Some(Ok(_))) => Waits::Client,
            _ => Waits::Upstream,
        };
        match (self.waits == Waits::Upstream, now == Waits::Upstream) {
            (true, false) => activity.wait_on_client(),
            (false, true) => activity.stop_waiting(),
            _ => {}
        }
        self.waits = now;
        res
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
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(1..)) = res {
            self.activity.on_write();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(1..)) = res {
            self.activity.on_write();
        }
        res
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::task::Waker;

    use super::*;

    type Step = Poll<Option<Result<Frame<Bytes>, Infallible>>>;

    /// A body that answers its polls from a script, then ends.
    struct Script(VecDeque<Step>);

    impl HttpBody for Script {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Step {
            self.0.pop_front().unwrap_or(Poll::Ready(None))
        }
    }

    fn data() -> Step {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
    }

    fn response(activity: &Arc<Activity>, steps: Vec<Step>) -> Tracked<Script> {
        Tracked::new(Script(steps.into()), activity.request_started())
    }

    fn poll(body: &mut Tracked<Script>) -> Step {
        Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
    }

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);
    const A_WHILE: Duration = Duration::from_millis(30);

    /// When the connection would be stalled (`IDLE` after the last move).
    fn stall_due(a: &Activity) -> Instant {
        match a.verdict(HEAD, IDLE) {
            Verdict::WaitUntil(due) => due,
            other => panic!("no response waits on the client: {other:?}"),
        }
    }

    /// Data moved at `at` or later: `due` is no earlier than `IDLE` after
    /// it (the timestamps are rounded down to the millisecond).
    fn moved_since(due: Instant, at: Instant) -> bool {
        due + Duration::from_millis(1) >= at + IDLE
    }

    #[test]
    fn a_ready_response_waits_on_the_client_until_polled_again_after_data() {
        let a = Activity::new();
        let before = Instant::now();
        let mut body = response(&a, vec![data(), data()]);
        assert!(moved_since(stall_due(&a), before));
        assert_eq!(a.verdict(HEAD, Duration::ZERO), Verdict::Stalled);
        std::thread::sleep(A_WHILE);
        // The first poll is no progress: HTTP/2 polls before it has window.
        let before = Instant::now();
        assert!(poll(&mut body).is_ready());
        assert!(!moved_since(stall_due(&a), before));
        // hyper back for more: what it took went out.
        assert!(poll(&mut body).is_ready());
        assert!(moved_since(stall_due(&a), before));
    }

    #[test]
    fn a_body_waiting_on_its_upstream_is_busy_for_as_long_as_it_takes() {
        let a = Activity::new();
        let mut body = response(&a, vec![Poll::Pending, data(), Poll::Pending]);
        assert!(poll(&mut body).is_pending());
        assert_eq!(a.verdict(HEAD, Duration::ZERO), Verdict::Busy);
        std::thread::sleep(A_WHILE);
        // Data again: it waits on the client from now, not from creation.
        let before = Instant::now();
        assert!(poll(&mut body).is_ready());
        assert!(moved_since(stall_due(&a), before));
        assert!(poll(&mut body).is_pending());
        assert_eq!(a.verdict(HEAD, Duration::ZERO), Verdict::Busy);
        // Ended and dropped: nothing in flight.
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        drop(body);
        assert!(matches!(
            a.verdict(HEAD, IDLE),
            Verdict::WaitUntil(_) | Verdict::Idle
        ));
        assert_eq!(a.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(a.waiting_on_client.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn new_responses_do_not_restart_the_wait_of_a_stuck_one() {
        let a = Activity::new();
        let stuck = response(&a, vec![]);
        std::thread::sleep(A_WHILE);
        let before = Instant::now();
        let mut other = response(&a, vec![data()]);
        assert!(poll(&mut other).is_ready());
        assert!(!moved_since(stall_due(&a), before));
        // Dropping either leaves the other counted.
        drop(stuck);
        assert_eq!(a.verdict(HEAD, Duration::ZERO), Verdict::Stalled);
        drop(other);
        assert_eq!(a.waiting_on_client.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn http1_writes_are_progress_http2_writes_are_not() {
        for h2 in [false, true] {
            let a = Activity::new();
            if h2 {
                a.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            }
            let mut conn = Watched::new(tokio::io::sink(), a.clone());
            let mut cx = Context::from_waker(Waker::noop());
            let _body = response(&a, vec![]);
            std::thread::sleep(A_WHILE);
            let before = Instant::now();
            assert!(Pin::new(&mut conn).poll_write(&mut cx, b"x").is_ready());
            // HTTP/2: a ping or its ack says nothing about the windows.
            assert_eq!(moved_since(stall_due(&a), before), !h2, "h2: {h2}");
        }
    }
}
