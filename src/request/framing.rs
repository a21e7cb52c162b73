//! A wire-level watch for one request-smuggling shape hyper does not refuse.
//!
//! RFC 9112 §6.1: "A server MAY reject a request that contains both
//! Content-Length and Transfer-Encoding or process such a request in
//! accordance with the Transfer-Encoding alone." hyper does the latter and
//! removes `Content-Length` before the request reaches the gateway, so the
//! gateway cannot see it in the parsed headers. This wrapper watches the
//! bytes hyper reads and raises a per-connection flag when one header block
//! names both fields; the gateway then answers 400 and closes the connection
//! for the request that carries `Transfer-Encoding`.
//!
//! The scan is line-based and cheap (one `memchr` per line). A body that
//! happens to contain both header lines can raise the flag too; it only
//! matters for a later chunked request on the same connection, which is then
//! refused — a false refusal, never a false acceptance.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared between the connection's reader and its requests.
#[derive(Debug, Default)]
pub struct FramingFlag(AtomicBool);

impl FramingFlag {
    /// Takes (and clears) the flag.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

/// Line-scanning state carried across reads.
#[derive(Debug, Default)]
struct Scanner {
    /// The first bytes of a line that began in an earlier read.
    head: [u8; 18],
    head_len: usize,
    line_len: usize,
    saw_length: bool,
    saw_te: bool,
}

impl Scanner {
    fn feed(&mut self, mut bytes: &[u8], flag: &FramingFlag) {
        while !bytes.is_empty() {
            let (line_part, rest, ended) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            if ended && self.line_len == 0 {
                // The usual case: the whole line is in this read, so it is
                // looked at where it is, without a copy.
                self.end_line(line_part, line_part.len(), flag);
            } else {
                // Only a line's first bytes decide; the rest is counted.
                let take = line_part.len().min(self.head.len() - self.head_len);
                self.head[self.head_len..self.head_len + take].copy_from_slice(&line_part[..take]);
                self.head_len += take;
                self.line_len += line_part.len();
                if ended {
                    let head = self.head;
                    self.end_line(&head[..self.head_len], self.line_len, flag);
                }
            }
            bytes = rest;
        }
    }

    /// A line of `len` bytes has ended; `start` is its first bytes (at
    /// least as many as the longest name compared).
    fn end_line(&mut self, start: &[u8], len: usize, flag: &FramingFlag) {
        let blank = len == 0 || (len == 1 && start.first() == Some(&b'\r'));
        if blank {
            if self.saw_length && self.saw_te {
                flag.0.store(true, Ordering::Relaxed);
            }
            self.saw_length = false;
            self.saw_te = false;
        } else if starts_with_ignore_case(start, b"content-length:")
            || starts_with_ignore_case(start, b"content-length ")
        {
            self.saw_length = true;
        } else if starts_with_ignore_case(start, b"transfer-encoding") {
            self.saw_te = true;
        }
        self.head_len = 0;
        self.line_len = 0;
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

pin_project_lite::pin_project! {
    /// An I/O stream whose reads are scanned by [`Scanner`].
    pub struct Sniffed<T> {
        #[pin]
        inner: T,
        scanner: Scanner,
        flag: Arc<FramingFlag>,
    }
}

impl<T> Sniffed<T> {
    /// Wraps a stream; the flag is shared with the connection's requests.
    pub fn new(inner: T, flag: Arc<FramingFlag>) -> Self {
        Sniffed {
            inner,
            scanner: Scanner::default(),
            flag,
        }
    }
}

impl<T: AsyncRead> AsyncRead for Sniffed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.scanner.feed(&buf.filled()[before..], this.flag);
        }
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for Sniffed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let flag = FramingFlag::default();
        let mut s = Scanner::default();
        for c in chunks {
            s.feed(c, &flag);
        }
        flag.take()
    }

    #[test]
    fn flags_length_with_transfer_encoding_in_one_block() {
        let req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(scan(&[req]));
        let te_first =
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 4\r\n\r\n";
        assert!(scan(&[te_first]));
        // Split across reads at awkward places.
        assert!(scan(&[
            b"POST / HTTP/1.1\r\nConte",
            b"nt-Length: 4\r\nTransfer-Enc",
            b"oding: chunked\r",
            b"\n\r\n"
        ]));
    }

    #[test]
    fn any_split_of_the_reads_flags_the_same() {
        let req: &[u8] =
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        for i in 0..=req.len() {
            assert!(scan(&[&req[..i], &req[i..]]), "split at {i}");
        }
        let bytewise: Vec<&[u8]> = req.chunks(1).collect();
        assert!(scan(&bytewise));
        let two: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for i in 0..=two.len() {
            assert!(!scan(&[&two[..i], &two[i..]]), "split at {i}");
        }
    }

    #[test]
    fn separate_blocks_do_not_flag() {
        let two = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(!scan(&[two]));
        assert!(!scan(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]));
    }
}
