//! What anonymous traffic can cost (SPEC, "Limits"), end to end against the
//! real binary: anonymous logouts keep nothing, kept values are capped, the
//! IdP probe is shared, connections are limited and timed, bodies have
//! deadlines, hostile paths, WebSocket handshakes and headers are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

#[path = "../support/mod.rs"]
mod support;

mod slow_clients;

use std::time::Duration;

use reqwest::header::{ACCEPT, LOCATION};
use support::idp::IdpOptions;
use support::stack::{DEFAULT_ROUTES, Stack, StackOptions, location, navigate, new_browser};

const LOGOUT: &str = r#"
[logout]
default_return_to = "/goodbye"
allowed_modes = ["redirect", "silent", "popup", "local"]
"#;

fn stack_with(session: &str, rest: &str) -> Stack {
    Stack::start(StackOptions {
        session: session.to_owned(),
        rest: Some(format!("{rest}{DEFAULT_ROUTES}{LOGOUT}")),
        ..Default::default()
    })
}

fn stack() -> Stack {
    stack_with("", "")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// `n` anonymous `POST /logout` (no Origin, no Sec-Fetch-*: allowed, as
/// curl) with `query`, `concurrency` at a time; every answer must be a 303.
async fn anonymous_logouts(stack: &Stack, query: &str, n: usize, concurrency: usize) {
    let client = no_redirects();
    let url = stack.gateway.url(&format!("/logout{query}"));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        let share = n / concurrency + usize::from(w < n % concurrency);
        tasks.spawn(async move {
            for _ in 0..share {
                let resp = client.post(&url).send().await.unwrap();
                // 303 to the IdP; 200 for the silent and popup pages.
                assert!(matches!(resp.status().as_u16(), 200 | 303));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Follows a logout answer through the IdP back to `/logout/done`, and
/// returns `/logout/done`'s answer.
async fn through_the_idp(
    stack: &Stack,
    browser: &reqwest::Client,
    resp: reqwest::Response,
) -> reqwest::Response {
    assert_eq!(resp.status(), 303);
    let to_idp = location(&resp);
    assert!(to_idp.as_str().starts_with(stack.idp.issuer()), "{to_idp}");
    let params: Vec<(String, String)> = to_idp.query_pairs().into_owned().collect();
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = stack
        .idp
        .logout(browser, &params)
        .await
        .expect("IdP redirects back");
    assert_eq!(back.path(), "/.portcullis/logout/done");
    navigate(browser, back.as_str()).await
}

/// POST /logout from the app's own page (same-origin), as a navigation.
async fn logout_same_origin(
    stack: &Stack,
    browser: &reqwest::Client,
    query: &str,
) -> reqwest::Response {
    browser
        .post(stack.gateway.url(&format!("/logout{query}")))
        .header("origin", stack.gateway.public_url())
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "navigate")
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap()
}

/// SPEC's "Done when": 10,000 anonymous logouts with an 8 KB `return_to`
/// grow the gateway's RSS by less than 24 MiB, and a fresh login and logout
/// still work afterwards. (Before: each stored a sealed 600-second state.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_anonymous_logouts_keep_nothing() {
    let stack = stack();
    let query = format!("?return_to=/?{}", "a".repeat(8 * 1024));
    // Warm up (thread arenas, connection buffers), then measure.
    anonymous_logouts(&stack, &query, 200, 32).await;
    let before = stack.gateway.rss_kb().unwrap();
    let started = std::time::Instant::now();
    anonymous_logouts(&stack, &query, 10_000, 32).await;
    let after = stack.gateway.rss_kb().unwrap();
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "10000 anonymous logouts in {:?}: RSS {before} KiB -> {after} KiB (+{grown_mib:.1} MiB)",
        started.elapsed()
    );
    assert!(grown_mib < 24.0, "RSS grew by {grown_mib:.1} MiB");

    let browser = new_browser();
    assert_eq!(stack.login(&browser, "alice", "/").await.status(), 200);
    let resp = logout_same_origin(&stack, &browser, "?return_to=/after").await;
    let done = through_the_idp(&stack, &browser, resp).await;
    assert_eq!(done.headers()[LOCATION], "/after");
    let private = navigate(&browser, &stack.gateway.url("/private")).await;
    assert_eq!(private.status(), 302, "logged out: back to the IdP");
}

/// On Redis, an anonymous logout writes nothing, whatever its mode or
/// destination, and still lands where it asked after the IdP: the `state`
/// carries the destination, sealed. (Before: one key per request.)
#[tokio::test]
async fn anonymous_logouts_write_nothing_to_redis_and_still_land() {
    let redis = support::redis::Redis::start();
    let stack = stack_with(
        "store = \"redis\"",
        &format!("\n[session.redis]\nurl = \"{}\"\n", redis.url()),
    );
    for mode in ["redirect", "silent", "popup"] {
        anonymous_logouts(&stack, &format!("?return_to=/after&mode={mode}"), 50, 5).await;
    }
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "dbsize"])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(keys, "0", "keys written by anonymous logouts");

    // The sealed state brings an anonymous logout to its destination.
    let browser = new_browser();
    let resp = browser
        .post(stack.gateway.url("/logout?return_to=/after%3Fx%3D1"))
        .send()
        .await
        .unwrap();
    let done = through_the_idp(&stack, &browser, resp).await;
    assert_eq!(done.headers()[LOCATION], "/after?x=1");
    // Silent, falling back to the top level through /logout/continue.
    let json = browser
        .post(stack.gateway.url("/logout?return_to=/there&mode=silent"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = json.json().await.unwrap();
    let cont = body["continue_url"].as_str().unwrap().to_owned();
    let resp = browser
        .get(format!("{cont}&fallback=redirect"))
        .send()
        .await
        .unwrap();
    let done = through_the_idp(&stack, &browser, resp).await;
    assert_eq!(done.status(), 303, "the fallback ends in a redirect");
    assert_eq!(done.headers()[LOCATION], "/there");
}

/// A `return_to` over 2 KiB is treated as absent; one at the limit is kept.
#[tokio::test]
async fn return_to_over_two_kib_is_absent() {
    let stack = stack();
    let client = no_redirects();
    let at_limit = format!("/{}", "a".repeat(2047));
    let over = format!("/{}", "a".repeat(2048));
    for (dest, expect) in [(&at_limit, at_limit.as_str()), (&over, "/goodbye")] {
        let resp = client
            .post(
                stack
                    .gateway
                    .url(&format!("/logout?mode=local&return_to={dest}")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303);
        assert_eq!(
            resp.headers()[LOCATION],
            expect,
            "return_to of {} bytes",
            dest.len()
        );
    }
}

/// A gateway with no login: `/` open to the test upstream, `extra` in
/// `[server]`.
fn open_gateway(app: &support::Upstream, extra: &str) -> support::Gateway {
    support::Gateway::builder(&format!(
        r#"
[server]
listen = "{{listen}}"
public_url = "{{public_url}}"
workers = 2
{extra}

[[route]]
prefix = "/"
upstream = "{{app}}"
auth = "none"
timeout = "30s"
"#
    ))
    .var("app", app.url())
    .start()
}

/// One `GET` on a fresh connection; the status line, or `None` when no
/// answer came within `wait`.
fn get_status(gw: &support::Gateway, path: &str, wait: Duration) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(gw.addr()).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    (!line.is_empty()).then(|| line.trim_end().to_owned())
}

/// More silent connections than `max_connections`: the gateway holds at
/// most that many (the rest wait in the listen backlog), and serves again
/// once they go. (Before: it accepted every one.)
#[test]
fn connections_past_max_connections_wait_in_the_backlog() {
    let app = support::Upstream::start();
    let gw = open_gateway(&app, "max_connections = 4\nidle_timeout = \"60s\"");
    assert!(get_status(&gw, "/", Duration::from_secs(5)).is_some_and(|l| l.contains(" 200")));
    std::thread::sleep(Duration::from_millis(300));
    let baseline = gw.sockets();
    let silent: Vec<_> = (0..12)
        .map(|_| std::net::TcpStream::connect(gw.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let held = gw.sockets() - baseline;
    assert!(held <= 4, "the gateway holds {held} connections");
    assert!(held >= 3, "the gateway serves up to the limit: {held}");
    assert_eq!(
        get_status(&gw, "/", Duration::from_secs(1)),
        None,
        "a new connection waits while every slot is held"
    );
    drop(silent);
    assert!(
        get_status(&gw, "/", Duration::from_secs(10)).is_some_and(|l| l.contains(" 200")),
        "served again once the silent connections went"
    );
}

/// An idle keep-alive connection is closed after `idle_timeout`, not
/// before, and not only after `header_read_timeout`. (Before: hyper closed
/// it after `header_read_timeout`, whatever `idle_timeout` said.)
#[test]
fn idle_keep_alive_connections_close_after_idle_timeout() {
    use std::io::{Read, Write};
    let app = support::Upstream::start();
    let gw = open_gateway(&app, "idle_timeout = \"2s\"\nheader_read_timeout = \"10s\"");
    let mut s = std::net::TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let read_response = |s: &mut std::net::TcpStream| {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        // The test upstream's answer is small: it came with the head.
        String::from_utf8_lossy(&got).into_owned()
    };
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(1200));
    s.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        read_response(&mut s).starts_with("HTTP/1.1 200"),
        "still open within idle_timeout"
    );
    let idle_from = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(1800) && idle < Duration::from_secs(6),
        "closed after {idle:?} idle"
    );
}

/// An HTTP/2 connection with no open stream closes after `idle_timeout`,
/// counted from the end of its last stream (which ends on a task of its
/// own, so the connection's timer must find it when it fires).
#[tokio::test]
async fn idle_http2_connections_close_after_idle_timeout() {
    use http_body_util::BodyExt;
    let app = support::Upstream::start();
    let gw = open_gateway(&app, "idle_timeout = \"2s\"\nheader_read_timeout = \"10s\"");
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    // HTTP/2 with prior knowledge on the plain listener.
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let opened = std::time::Instant::now();
    let conn = tokio::spawn(conn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let req = http::Request::get(format!("http://{}/h2-idle", gw.addr()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let idle_from = std::time::Instant::now();
    // Still open past the idle_timeout counted from the connection's start.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !conn.is_finished(),
        "closed {:?} after it opened",
        opened.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .expect("the idle HTTP/2 connection was not closed")
        .unwrap()
        .unwrap();
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(1800) && idle < Duration::from_secs(8),
        "closed after {idle:?} idle"
    );
}

/// A proxied body that stalls for longer than `idle_timeout` ends its
/// request at once (502), rather than holding the upstream until the
/// route's timeout. (Before: 504 after the route's 30 s.)
#[test]
fn a_stalled_proxied_body_ends_its_request() {
    use std::io::{BufRead, BufReader, Write};
    let app = support::Upstream::start();
    let gw = open_gateway(&app, "idle_timeout = \"1s\"");
    let mut s = std::net::TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        .unwrap();
    let started = std::time::Instant::now();
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "answered after {took:?}: {line}"
    );
    assert!(line.starts_with("HTTP/1.1 502"), "{line}");
}

/// A body dripped to `/logout` is cut off after `header_read_timeout`
/// (408, connection closed). (Before: read for as long as it dripped.)
#[tokio::test]
async fn a_body_dripped_to_logout_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start(StackOptions {
        server: "header_read_timeout = \"2s\"".into(),
        rest: Some(format!("{DEFAULT_ROUTES}{LOGOUT}")),
        ..Default::default()
    });
    let mut s = tokio::net::TcpStream::connect(stack.gateway.addr())
        .await
        .unwrap();
    s.write_all(
        b"POST /logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let (mut rd, mut wr) = s.into_split();
    let drip = tokio::spawn(async move {
        for _ in 0..60 {
            if wr.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut reply)).await;
    let took = started.elapsed();
    drip.abort();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "cut off after {took:?}"
    );
}

/// `%25` and two hex digits, and `;` encoded inside a dot-segment, get
/// 400 and never reach the upstream. (Before: `/%2561dmin` went upstream
/// as is, and `/public/..%3B/x` passed as a `/public/` path.)
#[test]
fn double_encoding_and_encoded_dot_segment_parameters_get_400() {
    let app = support::Upstream::start();
    let gw = open_gateway(&app, "");
    for bad in [
        "/%2561dmin",
        "/public/%252e%252e/x",
        "/public/..%3B/x",
        "/public/..%3b/x",
        "/a/.%3Bx/b",
    ] {
        let status = get_status(&gw, bad, Duration::from_secs(5)).unwrap_or_default();
        assert!(status.contains(" 400"), "{bad}: {status}");
    }
    assert_eq!(app.request_count(), 0, "none reached the upstream");
    for fine in ["/%25", "/100%25/x", "/a%3Bb/c", "/a/..;b"] {
        let status = get_status(&gw, fine, Duration::from_secs(5)).unwrap_or_default();
        let expect = if fine.ends_with("..;b") {
            " 400"
        } else {
            " 200"
        };
        assert!(status.contains(expect), "{fine}: {status}");
    }
}

/// `check` warns when a session route is followed by a broader open route,
/// naming both; the safe layout (protect `/`, open the public prefixes)
/// gets no such warning.
#[test]
fn check_warns_about_an_open_route_after_a_narrower_session_route() {
    let config = |routes: &str| {
        format!(
            r#"[server]
listen = "{{listen}}"
public_url = "{{public_url}}"

[oidc]
issuer = "http://127.0.0.1:9"
client_id = "portcullis"
client_secret = "s"

[session]
secret = "0123456789abcdef0123456789abcdef"
{routes}"#
        )
    };
    let risky = support::run_check(&config(
        r#"
[[route]]
prefix = "/admin/"
upstream = "http://127.0.0.1:9"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:9"
auth = "none"
"#,
    ));
    assert_eq!(
        risky.code,
        Some(0),
        "a warning, not an error: {}",
        risky.stderr
    );
    assert!(
        risky.stderr.contains("warning:")
            && risky.stderr.contains("route #1 (/admin)")
            && risky.stderr.contains("/ADMIN/x"),
        "{}",
        risky.stderr
    );
    let safe = support::run_check(&config(
        r#"
[[route]]
prefix = "/public/"
upstream = "http://127.0.0.1:9"
auth = "none"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:9"
"#,
    ));
    assert_eq!(safe.code, Some(0), "{}", safe.stderr);
    assert!(!safe.stderr.contains("session route"), "{}", safe.stderr);
}

/// Sends `head` on a fresh connection and returns the response head.
fn raw_exchange(gw: &support::Gateway, head: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A WebSocket handshake needs one 16-byte `Sec-WebSocket-Key` and
/// `Sec-WebSocket-Version: 13` (else 400, nothing sent upstream).
/// (Before: forwarded as they came.)
#[test]
fn websocket_handshakes_without_key_or_version_13_get_400() {
    let app = support::Upstream::start();
    let gw = open_gateway(&app, "");
    let origin = gw.public_url();
    let cases = [
        ("no key", "Sec-WebSocket-Version: 13\r\n".to_owned()),
        (
            "short key",
            "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n".to_owned(),
        ),
        (
            "version 8",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"
                .to_owned(),
        ),
        (
            "no version",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n".to_owned(),
        ),
    ];
    for (name, extra) in cases {
        let reply = raw_exchange(
            &gw,
            &format!(
                "GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{extra}\r\n"
            ),
        );
        assert!(reply.starts_with("HTTP/1.1 400"), "{name}: {reply}");
    }
    assert_eq!(app.request_count(), 0, "nothing reached the upstream");
    // A valid one still works (the real WebSocket echo server).
    let reply = raw_exchange(
        &gw,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");
    assert!(reply.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{reply}");
}

/// An upstream that answers 101 without the matching
/// `Sec-WebSocket-Accept` (an HTTP server that keeps parsing HTTP) gets
/// 502 and no tunnel: a request written after the handshake never reaches
/// it. (Before: 101, and the raw request went through.)
#[test]
fn an_upstream_101_without_the_matching_accept_is_502_and_nothing_is_tunnelled() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    // What each upstream connection received.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen_by_server = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let seen = seen_by_server.clone();
            let index = {
                let mut seen = seen.lock().unwrap();
                seen.push(String::new());
                seen.len() - 1
            };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut answered = false;
                conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.lock().unwrap()[index].push_str(&String::from_utf8_lossy(&buf[..n]));
                    if !answered {
                        answered = true;
                        let _ = conn.write_all(
                            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                        );
                    }
                }
            });
        }
    });
    let gw = support::Gateway::builder(&format!(
        r#"
[server]
listen = "{{listen}}"
public_url = "{{public_url}}"

[[route]]
prefix = "/"
upstream = "{upstream}"
auth = "none"
"#
    ))
    .start();
    let origin = gw.public_url();
    let mut s = std::net::TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    let _ = s.write_all(b"GET /internal-admin HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    let seen = seen.lock().unwrap().clone();
    let handshake = seen
        .iter()
        .find(|c| c.contains("GET /ws"))
        .expect("the handshake went upstream");
    assert!(
        !handshake.contains("/internal-admin"),
        "bytes after the handshake were tunnelled: {handshake}"
    );
}

/// An upstream `Set-Cookie` with an empty name is dropped: a browser would
/// send `=portcullis=evil` back as `portcullis=evil`. (Before: passed.)
#[tokio::test]
async fn an_upstream_set_cookie_with_an_empty_name_is_dropped() {
    let app = support::Upstream::start();
    let gw = open_gateway(&app, "");
    let resp = no_redirects()
        .get(gw.url("/set-cookie?name=&name=%20&name=app&value=portcullis%3Devil"))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    assert_eq!(cookies, ["app=portcullis=evil; Path=/"]);
}

/// Client-IP and host headers beyond `X-Forwarded-*` are removed from
/// untrusted peers and kept from trusted proxies. (Before: most passed.)
#[tokio::test]
async fn client_ip_and_host_headers_from_untrusted_peers_are_removed() {
    const SPOOFED: [&str; 8] = [
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "fastly-client-ip",
        "x-original-host",
        "x-host",
        "x-forwarded-server",
    ];
    let app = support::Upstream::start();
    for (extra, trusted) in [("", false), ("trusted_proxies = [\"127.0.0.0/8\"]", true)] {
        let gw = open_gateway(&app, extra);
        let mut req = no_redirects().get(gw.url("/echo"));
        for name in SPOOFED {
            req = req.header(name, "203.0.113.7");
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
        let seen = app.last_request().unwrap();
        for name in SPOOFED {
            assert_eq!(
                seen.header(name).is_some(),
                trusted,
                "{name} from a {} peer",
                if trusted { "trusted" } else { "untrusted" }
            );
        }
    }
}

/// Without script, a silent or popup logout still reaches the IdP: the
/// page's `<noscript>` refresh (and link) turn it into a redirect logout
/// that ends at the destination. (Before: the page only ran logout.js.)
#[tokio::test]
async fn silent_and_popup_pages_work_without_script() {
    let stack = stack();
    for mode in ["silent", "popup"] {
        let browser = new_browser();
        assert_eq!(stack.login(&browser, "alice", "/").await.status(), 200);
        let page =
            logout_same_origin(&stack, &browser, &format!("?mode={mode}&return_to=/after")).await;
        assert_eq!(page.status(), 200, "{mode}");
        let html = page.text().await.unwrap();
        let target = support::stack::meta_refresh_target(&html)
            .unwrap_or_else(|| panic!("{mode}: no <noscript> refresh in {html}"));
        assert!(html.contains("<noscript><p><a href="), "{mode}: no link");
        assert!(target.contains("fallback=redirect"), "{target}");
        let resp = navigate(
            &browser,
            &stack
                .gateway
                .url(target.trim_start_matches(&stack.gateway.public_url())),
        )
        .await;
        let done = through_the_idp(&stack, &browser, resp).await;
        assert_eq!(done.status(), 303, "{mode}: a redirect at the end");
        assert_eq!(done.headers()[LOCATION], "/after", "{mode}");
    }
}

/// However many logouts arrive, the gateway opens at most one probe
/// connection to the IdP every few seconds; and none at all when no IdP
/// leg runs (`mode=local`). (Before: one connection per logout.)
#[tokio::test]
async fn the_idp_probe_is_shared_and_skipped_without_an_idp_leg() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The end-session endpoint (configured, as for an IdP that publishes
    // none): a listener that only counts connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let end_session = format!("http://{}/end", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    let stack = Stack::start(StackOptions {
        idp: IdpOptions {
            no_end_session: true,
            ..Default::default()
        },
        oidc: format!("end_session_endpoint = \"{end_session}\""),
        rest: Some(format!("{DEFAULT_ROUTES}{LOGOUT}")),
        ..Default::default()
    });
    anonymous_logouts(&stack, "?mode=local", 100, 10).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "no IdP leg, no probe");
    let started = std::time::Instant::now();
    anonymous_logouts(&stack, "", 300, 20).await;
    let secs = started.elapsed().as_secs();
    let probes = accepted.load(Ordering::SeqCst);
    // One per 5 s window the flood spanned.
    assert!(
        probes >= 1 && probes as u64 <= secs / 5 + 2,
        "{probes} probe connections for 300 logouts in {secs} s"
    );
}
