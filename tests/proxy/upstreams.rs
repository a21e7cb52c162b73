//! Upstream connections: 502 and 504 with their metrics, reuse, reconnecting after idle close.

use std::time::Instant;

use super::*;
use crate::support::{silent_upstream, unused_addr};

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let silent = silent_upstream();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
admin_listen = "{admin_listen}"

[[route]]
prefix = "/down/"
upstream = "{down}"
auth = "none"

[[route]]
prefix = "/"
upstream = "{silent}"
auth = "none"
timeout = "1s"
"#,
    )
    .var("down", format!("http://{}", unused_addr()))
    .var("silent", silent.url())
    .start();
    let c = client();

    let r = c
        .get(gw.url("/down/x"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let r = c
        .get(gw.url("/down/x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    // A navigation gets the page, anything else (curl: Accept */*) JSON.
    let r = c
        .get(gw.url("/slow"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("did not answer in time"), "{page}");

    let started = Instant::now();
    let r = c.get(gw.url("/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "timeout", "{body}");

    // Both kinds of failure are counted per route.
    let metric = |text: &str, route: &str, kind: &str| -> Option<u64> {
        text.lines()
            .find(|l| {
                l.starts_with("portcullis_upstream_errors_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = c
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counts = (
            metric(&text, "/down", "connect"),
            metric(&text, "/", "timeout"),
        );
        if counts == (Some(2), Some(2)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upstream error counts {counts:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gateway with one serving thread and one `auth = "none"` route to `upstream`.
fn one_thread_gateway(upstream: &str) -> Gateway {
    Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
workers = 1

[[route]]
prefix = "/"
upstream = "{app}"
auth = "none"
"#,
    )
    .var("app", upstream)
    .start()
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let app = Upstream::start();
    let gw = one_thread_gateway(&app.url());
    let c = client();
    // Bodies read to the end, empty bodies (204, 304-like) and a streamed
    // body: each hands its connection back for the next request.
    for path in ["/x", "/status?code=204", "/bytes?n=100000", "/y"] {
        for _ in 0..5 {
            let r = c.get(gw.url(path)).send().await.unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.bytes().await.unwrap();
        }
    }
    assert_eq!(app.request_count(), 20);
    assert_eq!(
        app.connection_count(),
        1,
        "sequential requests share one upstream connection"
    );
}

#[tokio::test]
async fn an_upstream_that_closes_idle_connections_is_reconnected() {
    // Answers one request per connection with keep-alive, then closes the
    // connection 100 ms later, as an upstream with a short idle timeout does.
    let (addr, accepted) =
        answer_once_per_connection(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let gw = one_thread_gateway(&format!("http://{addr}"));
    let c = client();
    for i in 0..3 {
        let r = c.get(gw.url("/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// An upstream response framed by both `Transfer-Encoding: chunked` and a
/// (wrong) `Content-Length` reaches the client whole: the chunks frame it
/// (RFC 9112 §6.3), and the length is not forwarded. Before, the client got
/// `content-length: 3` and three of the five bytes.
#[tokio::test]
async fn a_response_with_both_length_and_chunks_is_framed_by_the_chunks() {
    let (addr, _) = answer_once_per_connection(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let gw = one_thread_gateway(&format!("http://{addr}"));
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none_or(|v| v == "5"));
    assert_eq!(r.text().await.unwrap(), "hello");
}

/// A raw upstream: on each connection it reads one request head, writes
/// `reply` byte for byte and closes 100 ms later. Returns its address and
/// how many connections it accepted.
async fn answer_once_per_connection(
    reply: &'static [u8],
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(reply).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
        }
    });
    (addr, accepted)
}
