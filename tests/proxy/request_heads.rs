//! Hostile request heads: smuggling shapes and CONNECT refused, slow or oversized heads cut off.

use std::time::Instant;

use super::*;

#[tokio::test]
async fn smuggling_shapes_get_400_and_a_closed_connection() {
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let shapes: [(&str, &[u8]); 8] = [
        ("CL then TE", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("TE then CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
        ("conflicting lengths", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("gzip, chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("identity coding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n"),
        ("bare CR in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\rb\r\n\r\n"),
        ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n"),
    ];
    for (name, bytes) in shapes {
        let (resp, closed) = raw_exchange(&gw, bytes);
        assert!(resp.starts_with("HTTP/1.1 400"), "{name}: {resp}");
        assert!(closed, "{name}: connection left open");
    }
    let (resp, closed) = raw_exchange(
        &gw,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 405"), "CONNECT: {resp}");
    assert!(closed, "CONNECT: connection left open");
    assert_eq!(
        app.request_count(),
        0,
        "no smuggling shape reached the upstream"
    );
}

#[test]
fn slow_and_oversized_request_heads_are_refused_and_logged() {
    let app = Upstream::start();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
header_read_timeout = "1s"
max_header_bytes = 8192

[[route]]
prefix = "/"
upstream = "{app}"
auth = "none"
"#,
    )
    .var("app", app.url())
    .start();

    // A head that never finishes: the connection is closed after about
    // header_read_timeout, and the upstream never hears of it.
    let started = Instant::now();
    let (_, closed) = raw_exchange(&gw, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let took = started.elapsed();
    assert!(closed, "a stalled head keeps its connection");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    assert!(
        gw.wait_for_log(
            "message",
            "request head not received in time",
            Duration::from_secs(2)
        )
        .is_some(),
        "no log line for the stalled head"
    );

    // A head over max_header_bytes: 431, connection closed.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (reply, closed) = raw_exchange(&gw, big.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert!(closed);
    assert!(
        gw.wait_for_log(
            "message",
            "request refused: head too large",
            Duration::from_secs(2)
        )
        .is_some(),
        "no log line for the oversized head"
    );

    // Just under the limit still passes.
    let fits = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Fits: {}\r\n\r\n",
        "a".repeat(6_000)
    );
    let (reply, _) = raw_exchange(&gw, fits.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(
        app.request_count(),
        1,
        "only the fitting request went upstream"
    );
}
