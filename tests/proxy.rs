//! End-to-end tests of the proxy path through the real binary: routing,
//! path normalisation, request smuggling shapes, header hygiene, forwarding
//! headers, streaming, WebSocket, HTTP/2 over TLS, 502/504, graceful
//! shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::{Gateway, Signal, Upstream, silent_upstream, unused_addr};

/// Two upstreams: `/public/` goes to `public`, everything else to `app`.
fn two_route_gateway(public: &Upstream, app: &Upstream, extra_server: &str) -> Gateway {
    Gateway::builder(&format!(
        r#"
[server]
listen = "{{listen}}"
public_url = ["{{public_url}}", "http://localhost:{{port}}"]
admin_listen = "{{admin_listen}}"
{extra_server}

[[route]]
prefix = "/public/"
upstream = "{{public}}"
auth = "none"

[[route]]
prefix = "/"
host = "localhost"
upstream = "{{app}}"
auth = "none"
timeout = "2s"

[[route]]
prefix = "/"
upstream = "{{app}}"
auth = "none"
"#
    ))
    .var("public", public.url())
    .var("app", app.url())
    .start()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Sends raw bytes and reads until the server closes (or 5 s pass).
fn raw_exchange(gw: &Gateway, request: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test]
async fn prefix_routing_matches_whole_segments_and_hosts() {
    let public = Upstream::start();
    let app = Upstream::start();
    let gw = two_route_gateway(&public, &app, "");
    let c = client();

    let r = c.get(gw.url("/public/page?x=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = public.last_request().expect("public upstream reached");
    assert_eq!(seen.uri.to_string(), "/public/page?x=1");

    // `/publicity` is not under `/public/`.
    c.get(gw.url("/publicity")).send().await.unwrap();
    assert_eq!(app.last_request().unwrap().path(), "/publicity");
    assert_eq!(public.request_count(), 1);

    // `/public` (no slash) is the same segment.
    c.get(gw.url("/public")).send().await.unwrap();
    assert_eq!(public.request_count(), 2);

    // Host matching: the localhost route.
    let r = c
        .get(gw.url("/anything"))
        .header("host", format!("localhost:{}", gw.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.last_request().unwrap().header("x-forwarded-host"),
        Some(&*format!("localhost:{}", gw.port()))
    );
}

#[tokio::test]
async fn path_normalisation_and_bypass_attempts() {
    let public = Upstream::start();
    let app = Upstream::start();
    let gw = two_route_gateway(&public, &app, "");

    for bad in [
        "/public/..%2fadmin",
        "/public/%2e%2e/admin",
        "/public/..;/admin",
        "/public/%2E%2E%2Fadmin",
        "/public/..%5Cadmin",
        "/a%00b",
    ] {
        let (resp, _) = raw_exchange(
            &gw,
            format!("GET {bad} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(resp.starts_with("HTTP/1.1 400"), "{bad}: {resp}");
    }
    assert_eq!(
        public.request_count() + app.request_count(),
        0,
        "no bypass attempt reached an upstream"
    );

    // Dot-segments are resolved before matching and the result goes upstream.
    let (resp, _) = raw_exchange(
        &gw,
        b"GET /public/../admin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(public.request_count(), 0);
    assert_eq!(app.last_request().unwrap().path(), "/admin");

    // Encoded unreserved characters are decoded; merged slashes.
    let (resp, _) = raw_exchange(
        &gw,
        b"GET //%70ublic//x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(public.last_request().unwrap().path(), "/public/x");
}

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

#[tokio::test]
async fn spoofed_identity_and_rewrite_headers_never_reach_the_upstream() {
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let (resp, _) = raw_exchange(
        &gw,
        b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-User: mallory\r\nx_forwarded_user: mallory\r\n\
X-FORWARDED-EMAIL: m@evil\r\nX_Forwarded_Groups: admins\r\nx-forwarded-preferred_username: root\r\n\
X-Forwarded-Access-Token: t\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Forwarded-Prefix: /admin\r\n\
X-HTTP-Method-Override: DELETE\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\
Authorization: Bearer client-token\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = app.last_request().unwrap();
    for (name, _) in seen.headers.iter() {
        let n = name.as_str().replace('_', "-");
        assert!(
            !matches!(
                n.as_str(),
                "x-forwarded-user"
                    | "x-forwarded-email"
                    | "x-forwarded-groups"
                    | "x-forwarded-preferred-username"
                    | "x-forwarded-access-token"
                    | "x-original-url"
                    | "x-rewrite-url"
                    | "x-forwarded-prefix"
                    | "x-http-method-override"
                    | "x-real-ip"
                    | "forwarded"
            ),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    // The gateway sets no Authorization here, so the client's passes.
    assert_eq!(seen.header("authorization"), Some("Bearer client-token"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let r = client()
        .get(gw.url("/x"))
        .header("connection", "keep-alive, X-Hop-Secret")
        .header("x-hop-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic eA==")
        .header("upgrade", "h2c")
        .header("x-end-to-end", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last_request().unwrap();
    for h in [
        "x-hop-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(seen.header(h).is_none(), "{h} reached the upstream");
    }
    assert_eq!(seen.header("x-end-to-end"), Some("1"));

    // The response side: the upstream sends hop-by-hop headers, one of
    // them named in its own `Connection`.
    let hop = ["keep-alive", "x-hop-reply", "proxy-authenticate"];
    let direct = client()
        .get(format!("{}/hop-by-hop", app.url()))
        .send()
        .await
        .unwrap();
    for h in hop {
        assert!(direct.headers().contains_key(h), "the upstream sends {h}");
    }
    let r = client().get(gw.url("/hop-by-hop")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for h in hop {
        assert!(!r.headers().contains_key(h), "{h} reached the client");
    }
    assert_eq!(r.headers()["x-end-to-end-reply"], "1");
}

#[tokio::test]
async fn host_routes_match_only_their_host() {
    let on_host = Upstream::start();
    let other = Upstream::start();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = ["{public_url}", "http://localhost:{port}"]

[[route]]
prefix = "/"
host = "localhost"
upstream = "{on_host}"
auth = "none"

[[route]]
prefix = "/"
upstream = "{other}"
auth = "none"
"#,
    )
    .var("on_host", on_host.url())
    .var("other", other.url())
    .start();
    let c = client();
    for (host, want_on_host) in [
        (format!("localhost:{}", gw.port()), true),
        ("localhost".to_owned(), true),
        (format!("127.0.0.1:{}", gw.port()), false),
        ("evil.example".to_owned(), false),
        (format!("localhost.evil.example:{}", gw.port()), false),
    ] {
        let before = (on_host.request_count(), other.request_count());
        let r = c
            .get(gw.url("/page"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "Host: {host}");
        let after = (on_host.request_count(), other.request_count());
        let expected = if want_on_host {
            (before.0 + 1, before.1)
        } else {
            (before.0, before.1 + 1)
        };
        assert_eq!(after, expected, "Host: {host} went to the wrong upstream");
    }
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

#[tokio::test]
async fn forwarded_headers_trust_only_trusted_proxies() {
    let app = Upstream::start();
    let c = client();
    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
    };

    let gw = two_route_gateway(&app, &app, "");
    spoof(c.get(gw.url("/x"))).send().await.unwrap();
    let seen = app.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(&*format!("127.0.0.1:{}", gw.port()))
    );
    assert_eq!(
        seen.header("host"),
        Some(&*format!("127.0.0.1:{}", app.port()))
    );
    drop(gw);

    let gw = two_route_gateway(&app, &app, r#"trusted_proxies = ["127.0.0.0/8"]"#);
    spoof(c.get(gw.url("/x"))).send().await.unwrap();
    let seen = app.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("evil.example"));
}

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

#[tokio::test]
async fn streams_100mb_both_ways_without_buffering() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let c = client();
    // Warm up so allocator pools and connection pools exist before measuring.
    c.get(gw.url("/bytes?n=1048576"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let before = gw.rss_kb().expect("rss");
    gw.reset_peak_rss();

    // Download, consumed as a stream.
    let mut r = c
        .get(gw.url(&format!("/bytes?n={SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut received = 0u64;
    let mut check = support::Fnv1a::default();
    while let Some(chunk) = r.chunk().await.unwrap() {
        check.update(&chunk);
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);
    assert_eq!(
        check.hex(),
        support::checksum(&support::pattern_bytes(0, SIZE as usize))
    );
    let after_download = gw.rss_kb().expect("rss");

    // Upload, generated as a stream.
    let chunk = 64 * 1024u64;
    let stream = futures_util::stream::iter((0..SIZE / chunk).map(move |i| {
        Ok::<_, std::io::Error>(bytes::Bytes::from(support::pattern_bytes(
            i * chunk,
            chunk as usize,
        )))
    }));
    let r = c
        .post(gw.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["bytes"], SIZE);
    let after_upload = gw.rss_kb().expect("rss");
    // The peak, not only the end state: a body buffered whole and freed
    // again would leave RSS where it was but raise the high-water mark.
    let peak = gw.peak_rss_kb().expect("peak rss");

    let growth = peak
        .max(after_download)
        .max(after_upload)
        .saturating_sub(before);
    eprintln!(
        "gateway RSS: before {before} kB, after download {after_download} kB, after upload {after_upload} kB, peak {peak} kB"
    );
    assert!(
        growth < 8 * 1024,
        "gateway memory grew by {growth} kB while streaming 100 MB"
    );
}

#[tokio::test]
async fn websocket_echo_and_foreign_origin() {
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let ws_url = format!("ws://127.0.0.1:{}/ws", gw.port());

    let mut req = ws_url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", gw.public_url().parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("handshake through the gateway");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello through portcullis"))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        echoed.into_text().unwrap().as_str(),
        "hello through portcullis"
    );
    ws.close(None).await.ok();

    let before = app.request_count();
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!(
            "foreign origin was not refused: {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
    assert_eq!(
        app.request_count(),
        before,
        "refused handshake reached the upstream"
    );

    // An upstream that answers the handshake with a plain 200 (no 101):
    // the client gets that answer, not a tunnel.
    let mut plain = format!("ws://127.0.0.1:{}/not-a-socket", gw.port())
        .into_client_request()
        .unwrap();
    plain
        .headers_mut()
        .insert("origin", gw.public_url().parse().unwrap());
    match tokio_tungstenite::connect_async(plain).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 200),
        other => panic!(
            "a handshake the upstream did not accept was upgraded: {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
    let seen = app.last_request().unwrap();
    assert_eq!(seen.path(), "/not-a-socket");
    assert_eq!(
        seen.header("upgrade"),
        Some("websocket"),
        "the handshake was forwarded"
    );
}

#[tokio::test]
async fn http2_over_tls() {
    let app = Upstream::start();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = "https://localhost:{port}"

[server.tls]
cert = "{dir}/cert.pem"
key = "{dir}/key.pem"

[[route]]
prefix = "/"
upstream = "{app}"
auth = "none"
"#,
    )
    .var("app", app.url())
    .file("cert.pem", cert.cert.pem())
    .file("key.pem", cert.signing_key.serialize_pem())
    .start();
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", gw.addr())
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{}/h2", gw.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let seen = app.last_request().unwrap();
    assert_eq!(seen.path(), "/h2");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    // A client that offers only http/1.1 in ALPN is served HTTP/1.1.
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", gw.addr())
        .http1_only()
        .build()
        .unwrap();
    let r = h1
        .get(format!("https://localhost:{}/h1", gw.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(app.last_request().unwrap().path(), "/h1");
}

#[tokio::test]
async fn serving_threads_share_connections_and_drain_together() {
    let app = Upstream::start();
    let mut gw = two_route_gateway(&app, &app, "workers = 4");
    let started = gw
        .wait_for_log("message", "serving threads started", Duration::from_secs(5))
        .expect("startup log line");
    assert_eq!(started["threads"], 4, "{started}");

    // 48 connections at once (one client each, so no connection is shared),
    // each with slow requests in flight on every thread.
    let mut calls = Vec::new();
    for i in 0..48 {
        let url = gw.url(&format!("/slow?ms=300&n={i}"));
        calls.push(tokio::spawn(async move {
            let resp = client().get(url).send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body))
        }));
    }
    // SIGTERM while they are in flight: every one still completes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.request_count() < 48 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.send_signal(Signal::Term);
    for (i, call) in calls.into_iter().enumerate() {
        let (status, body) = call
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(status, 200, "request {i}");
        assert!(
            body["query"] == format!("ms=300&n={i}").as_str(),
            "request {i} got another's answer: {body}"
        );
    }
    let exit = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "exit after draining");
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request() {
    let app = Upstream::start();
    let mut gw = two_route_gateway(&app, &app, "");
    let url = gw.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    // Wait until the request has reached the upstream.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.request_count() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.send_signal(Signal::Term);
    let status = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(status, 200);
    let exit = tokio::task::spawn_blocking(move || {
        let status = gw.wait_exit(Duration::from_secs(10));
        (status, gw)
    })
    .await
    .unwrap();
    assert_eq!(
        exit.0.and_then(|s| s.code()),
        Some(0),
        "gateway did not exit 0 after draining"
    );
    assert!(
        TcpStream::connect(exit.1.addr()).is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn admin_endpoints_and_access_log() {
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let c = client();
    c.get(gw.url("/public/x?token=secret-query"))
        .send()
        .await
        .unwrap();

    let health = c.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = c.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = c
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"portcullis_requests_total{route="/public",status="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_request_duration_seconds_bucket"),
        "{metrics}"
    );

    let line = gw
        .wait_for_log("path", "/public/x", Duration::from_secs(5))
        .expect("one access log line per request");
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert!(line["request_id"].is_string());
    assert!(
        line["upstream"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert!(
        !gw.logs().iter().any(|l| l.contains("secret-query")),
        "query strings are not logged"
    );
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers one request per connection with keep-alive, then closes the
    // connection 100 ms later, as an upstream with a short idle timeout does.
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
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
        }
    });
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
