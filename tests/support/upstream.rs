//! An in-process HTTP upstream that records what reached it.
//!
//! It runs on its own thread and tokio runtime, so it works the same from
//! `#[test]` and `#[tokio::test]` functions and is not slowed by the test's
//! own runtime. Every request is answered with a JSON echo of what arrived
//! (like the demo app, `demo/src/main.rs`), except on these paths:
//!
//! | path | answer |
//! |---|---|
//! | `/slow?ms=N` | the echo, after N milliseconds |
//! | `/bytes?n=N` | N bytes of [`pattern_bytes`], streamed in 16 KiB chunks, never held whole |
//! | `/drip?chunks=N&ms=M&size=S` | N chunks of S bytes of [`pattern_bytes`] (default 1 KiB), M milliseconds apart |
//! | `/upload` | `{"bytes": n, "checksum": "<fnv1a hex>"}` of the request body, which is discarded as it streams |
//! | `/set-cookie?name=A&name=B&value=V&obs=1` | the echo, with `Set-Cookie: A=V; Path=/` for each name (V defaults to `upstream`); with `obs`, each line ends `; a=<0xFF byte>` |
//! | `/status?code=N` | the echo, with status N (200..=599) |
//! | `/ws` | a WebSocket echo server (text and binary messages come back) |
//! | `/app.html` | `tests/browser/app.html`: an app page with `logout.js` and a button per logout mode |
//! | `/forge.html` | `tests/browser/forge.html`: posts a forged logout message to its opener or parent |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::Fnv1a;

/// The response body type of the test upstream.
type ResBody = BoxBody<Bytes, Infallible>;

/// What the upstream saw of one request (the body is not kept).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Request target as received (origin form: path and query).
    pub uri: Uri,
    /// HTTP version of the upstream connection.
    pub version: Version,
    /// All request headers, repeated ones included.
    pub headers: HeaderMap,
}

impl RecordedRequest {
    /// The first value of header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of header `name`, lossily decoded.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The request path (without the query).
    pub fn path(&self) -> &str {
        self.uri.path()
    }
}

/// Shared between the server tasks and the test's handle.
#[derive(Default)]
struct State {
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
}

/// A running test upstream; stopped (port closed, connections dropped) on drop.
pub struct Upstream {
    state: Arc<State>,
    server: Background,
}

impl Upstream {
    /// Starts an upstream on a free port of 127.0.0.1.
    pub fn start() -> Upstream {
        let state = Arc::new(State::default());
        let shared = state.clone();
        let server = Background::start(move |listener| serve(listener, shared));
        Upstream { state, server }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// `http://127.0.0.1:<port>`, as a route's `upstream` value.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The most recent request that arrived (recorded when its head arrived).
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.lock().last().cloned()
    }

    /// Every request that arrived, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().clone()
    }

    /// How many requests arrived.
    pub fn request_count(&self) -> usize {
        self.lock().len()
    }

    /// How many TCP connections were accepted (to check connection reuse).
    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        // A panicking test thread cannot leave the list half-written, so a
        // poisoned lock still holds good data.
        self.state
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A server that accepts TCP connections and never answers (for 504 tests).
/// It reads and discards what arrives so senders never block.
pub struct SilentUpstream {
    server: Background,
}

impl SilentUpstream {
    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}

/// Starts a [`SilentUpstream`].
pub fn silent_upstream() -> SilentUpstream {
    let server = Background::start(|listener| async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                // Keep the socket open after the client's EOF too: the peer
                // must see a stalled server, not a closed one.
                std::future::pending::<()>().await;
            });
        }
    });
    SilentUpstream { server }
}

/// An address on 127.0.0.1 where nothing listens (for 502 tests).
pub fn unused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], super::free_port()))
}

/// Byte `i` of the `/bytes` pattern is `i % 251`: a prime period, so a chunk
/// lost, repeated or reordered anywhere shows up.
pub fn pattern_bytes(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((offset + i) % 251) as u8)
        .collect()
}

/// A listener served by a future on a dedicated thread and runtime.
struct Background {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    fn start<F, Fut>(serve: F) -> Background
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("test-upstream-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        _ = rx => {}
                        _ = serve(listener) => {}
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })
            .expect("spawn upstream thread");
        Background {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<ResBody>, Infallible> {
    {
        let mut requests = state
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        requests.push(RecordedRequest {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        });
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let response = match req.uri().path() {
        "/ws" => websocket(req),
        "/app.html" => html(include_str!("../browser/app.html")),
        "/forge.html" => html(include_str!("../browser/forge.html")),
        "/bytes" => {
            let n = param("n").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut res = Response::new(
                PatternBody {
                    offset: 0,
                    remaining: n,
                }
                .boxed(),
            );
            set(&mut res, header::CONTENT_TYPE, "application/octet-stream");
            res
        }
        "/drip" => {
            let chunks = param("chunks").and_then(|v| v.parse().ok()).unwrap_or(1u64);
            let pause = Duration::from_millis(
                param("ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0u64)
                    .min(600_000),
            );
            let size = param("size")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024usize)
                .min(1 << 20);
            let drip = futures_util::stream::unfold(0u64, move |i| async move {
                if i == chunks {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(pause).await;
                }
                let chunk = pattern_bytes(i * size as u64, size);
                Some((Ok(Frame::data(Bytes::from(chunk))), i + 1))
            });
            let mut res = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(drip)));
            set(&mut res, header::CONTENT_TYPE, "application/octet-stream");
            res
        }
        "/upload" => {
            let mut body = req.into_body();
            let (mut count, mut sum) = (0u64, Fnv1a::default());
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Ok(text(StatusCode::BAD_REQUEST, "request body broke off"));
                };
                if let Some(data) = frame.data_ref() {
                    count += data.len() as u64;
                    sum.update(data);
                }
            }
            json(
                StatusCode::OK,
                &serde_json::json!({ "bytes": count, "checksum": sum.hex() }),
            )
        }
        "/hop-by-hop" => {
            // Hop-by-hop headers in a reply, one named by `Connection`.
            let mut res = echo(req, StatusCode::OK).await;
            set(&mut res, header::CONNECTION, "x-hop-reply");
            set(
                &mut res,
                header::HeaderName::from_static("x-hop-reply"),
                "1",
            );
            set(
                &mut res,
                header::HeaderName::from_static("keep-alive"),
                "timeout=5",
            );
            set(&mut res, header::PROXY_AUTHENTICATE, "Basic");
            set(
                &mut res,
                header::HeaderName::from_static("x-end-to-end-reply"),
                "1",
            );
            res
        }
        "/slow" => {
            let ms = param("ms").and_then(|v| v.parse().ok()).unwrap_or(0u64);
            tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
            echo(req, StatusCode::OK).await
        }
        "/status" => {
            match param("code")
                .and_then(|v| v.parse::<u16>().ok())
                .filter(|c| (200..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(code) => echo(req, code).await,
                None => text(StatusCode::BAD_REQUEST, "code must be 200..=599"),
            }
        }
        "/set-cookie" => {
            let value = param("value").unwrap_or("upstream").to_owned();
            let names: Vec<String> = query
                .iter()
                .filter(|(k, _)| k == "name")
                .map(|(_, v)| v.clone())
                .collect();
            // `obs=1` ends each line with an attribute holding a non-ASCII
            // byte (obs-text), which a `to_str()` reader cannot parse.
            let tail: &[u8] = if param("obs").is_some() {
                b"; a=\xff"
            } else {
                b""
            };
            let mut res = echo(req, StatusCode::OK).await;
            for name in names {
                let line = [format!("{name}={value}; Path=/").as_bytes(), tail].concat();
                if let Ok(v) = HeaderValue::from_bytes(&line) {
                    res.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            res
        }
        _ => echo(req, StatusCode::OK).await,
    };
    Ok(response)
}

/// Answers with a JSON description of the request, after reading its body.
async fn echo(req: Request<Incoming>, status: StatusCode) -> Response<ResBody> {
    let (parts, body) = req.into_parts();
    let body_bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    json(
        status,
        &serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query().unwrap_or(""),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_bytes": body_bytes,
        }),
    )
}

/// Accepts a WebSocket handshake and echoes every data message.
fn websocket(req: Request<Incoming>) -> Response<ResBody> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| upgrade)
    else {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket handshake");
    };
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    set(&mut res, header::CONNECTION, "upgrade");
    set(&mut res, header::UPGRADE, "websocket");
    if let Ok(v) = HeaderValue::from_str(&accept) {
        res.headers_mut().insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// Streams the `/bytes` pattern one chunk per poll, so at most one chunk is
/// in memory however large the body.
struct PatternBody {
    offset: u64,
    remaining: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(16 * 1024) as usize;
        let chunk = pattern_bytes(self.offset, len);
        self.offset += len as u64;
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

fn empty() -> ResBody {
    Full::new(Bytes::new()).boxed()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<ResBody> {
    let mut res = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *res.status_mut() = status;
    set(&mut res, header::CONTENT_TYPE, "application/json");
    res
}

/// A static HTML page, never cached (tests load it again after logouts).
fn html(body: &'static str) -> Response<ResBody> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    set(&mut res, header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(&mut res, header::CACHE_CONTROL, "no-store");
    res
}

fn text(status: StatusCode, body: &'static str) -> Response<ResBody> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *res.status_mut() = status;
    set(&mut res, header::CONTENT_TYPE, "text/plain; charset=utf-8");
    res
}

fn set(res: &mut Response<ResBody>, name: header::HeaderName, value: &'static str) {
    res.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}
