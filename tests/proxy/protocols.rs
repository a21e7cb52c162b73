//! Bodies and protocols: 100 MB streamed both ways without buffering, WebSocket, HTTP/2 (TLS).

use futures_util::{SinkExt, StreamExt};

use super::*;

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

/// A WebSocket tunnel keeps the connection slot of the handshake it came
/// from (SPEC "Limits": `max_connections` counts client connections, and a
/// tunnel is one), so an open route cannot be made to hold sockets without
/// limit: with `max_connections = 2`, two tunnels are established and the
/// next handshakes wait in the listen backlog until one closes. (Before: the
/// slot was given back at the 101, and every handshake got a tunnel.)
#[tokio::test]
async fn websocket_tunnels_keep_their_connection_slot() {
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "max_connections = 2");
    let mut req = format!("ws://127.0.0.1:{}/ws", gw.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", gw.public_url().parse().unwrap());
    let open = |req: tokio_tungstenite::tungstenite::handshake::client::Request| {
        tokio::spawn(async move {
            let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
            assert_eq!(resp.status(), 101);
            ws.send(Message::text("through")).await.unwrap();
            let echoed = ws.next().await.unwrap().unwrap();
            assert_eq!(echoed.into_text().unwrap().as_str(), "through");
            ws
        })
    };
    let within = |secs| Duration::from_secs(secs);

    let first = tokio::time::timeout(within(5), open(req.clone()))
        .await
        .expect("the first tunnel")
        .unwrap();
    let second = tokio::time::timeout(within(5), open(req.clone()))
        .await
        .expect("the second tunnel")
        .unwrap();
    let waiting = vec![open(req.clone()), open(req.clone())];
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let through = waiting.iter().filter(|t| t.is_finished()).count();
    assert_eq!(through, 0, "{through} tunnels past max_connections = 2");

    // Closing one lets exactly one of the waiting handshakes through.
    drop(first);
    let deadline = tokio::time::Instant::now() + within(5);
    while !waiting.iter().any(|t| t.is_finished()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no waiting handshake got the slot of the closed tunnel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (done, still): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|t| t.is_finished());
    assert_eq!(done.len(), 1, "one slot freed, one tunnel more");
    let third = done.into_iter().next().unwrap().await.unwrap();

    // And the last one once another tunnel closes.
    drop(second);
    let fourth = tokio::time::timeout(within(5), still.into_iter().next().unwrap())
        .await
        .expect("the last handshake once a second tunnel closed")
        .unwrap();
    drop((third, fourth));
}

/// SIGTERM closes an open tunnel at once: it keeps its connection slot, and
/// the drain waits for every slot, but no request is in flight on it to
/// finish, so the drain must not wait `shutdown_timeout` for it.
#[tokio::test]
async fn sigterm_closes_an_open_websocket_tunnel() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = Upstream::start();
    let mut gw = two_route_gateway(&app, &app, "shutdown_timeout = \"20s\"");
    let mut req = format!("ws://127.0.0.1:{}/ws", gw.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", gw.public_url().parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    gw.send_signal(support::Signal::Term);
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(closed, Ok(None | Some(Err(_)))),
        "the tunnel stayed open: {closed:?}"
    );
    let (exit, gw) =
        tokio::task::spawn_blocking(move || (gw.wait_exit(Duration::from_secs(5)), gw))
            .await
            .unwrap();
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "exit within 5 s");
    assert!(
        gw.logs()
            .iter()
            .any(|l| l.contains("all connections drained")),
        "{}",
        gw.logs().join("\n")
    );
}
