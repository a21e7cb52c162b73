//! A proxied request body that ends its request when the client stops
//! sending for longer than `server.idle_timeout` (SPEC, "Limits"): a
//! client dripping a body must not hold an upstream connection forever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum StallError {
    /// The client sent nothing for this long.
    #[error("request body stalled for {0:?}")]
    Stalled(Duration),
    /// Reading from the client failed.
    #[error("request body: {0}")]
    Read(#[from] hyper::Error),
}

/// The client's body, with a stall timer that runs only while it waits.
pub struct RequestBody {
    inner: Incoming,
    limit: Duration,
    /// Armed when the body first has nothing to give; disarmed by data.
    timer: Option<Pin<Box<Sleep>>>,
}

impl RequestBody {
    /// `inner`, ended after `limit` without data.
    pub fn new(inner: Incoming, limit: Duration) -> Self {
        RequestBody {
            inner,
            limit,
            timer: None,
        }
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = StallError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StallError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(StallError::from)))
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(StallError::Stalled(limit)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
