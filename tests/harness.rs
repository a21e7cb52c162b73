//! Tests of the test harness itself: the in-process upstream, redis-server
//! management and the port helpers. If these fail, every integration test
//! built on them is suspect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::{Gateway, Redis, Upstream};
use tokio_tungstenite::tungstenite::Message;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

#[tokio::test]
async fn upstream_echoes_and_records_the_request() {
    let up = Upstream::start();
    let res = client()
        .post(format!("{}/some/path?a=1&b=two", up.url()))
        .header("X-Forwarded-User", "alice")
        .header("X-Test", "yes")
        .body("0123456789")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.expect("json echo");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/some/path");
    assert_eq!(echo["query"], "a=1&b=two");
    assert_eq!(echo["headers"]["x-forwarded-user"], "alice");
    assert_eq!(echo["body_bytes"], 10);

    let seen = up.last_request().expect("a recorded request");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path(), "/some/path");
    assert_eq!(seen.uri.query(), Some("a=1&b=two"));
    assert_eq!(seen.header("x-test"), Some("yes"));
    assert_eq!(up.request_count(), 1);
    up.clear();
    assert!(up.last_request().is_none());
}

#[tokio::test]
async fn upstream_keeps_connections_alive() {
    let up = Upstream::start();
    let client = client();
    for _ in 0..3 {
        let res = client.get(up.url()).send().await.expect("request");
        res.bytes().await.expect("body");
    }
    assert_eq!(up.request_count(), 3);
    assert_eq!(up.connection_count(), 1);
}

#[tokio::test]
async fn slow_path_waits_before_answering() {
    let up = Upstream::start();
    let started = Instant::now();
    let res = client()
        .get(format!("{}/slow?ms=300", up.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Recorded on arrival, not on answer, so a test can see a request that
    // is still in flight.
    assert_eq!(up.last_request().expect("recorded").path(), "/slow");
}

#[tokio::test]
async fn bytes_path_streams_the_exact_pattern() {
    let up = Upstream::start();
    let n = 1_000_003usize;
    let res = client()
        .get(format!("{}/bytes?n={n}", up.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.content_length(), Some(n as u64));
    let body = res.bytes().await.expect("body");
    assert_eq!(body.len(), n);
    assert!(
        body[..] == support::pattern_bytes(0, n)[..],
        "pattern differs"
    );
}

#[tokio::test]
async fn bytes_path_does_not_buffer_the_body() {
    let up = Upstream::start();
    // 64 GiB could not be produced (let alone held) before the first byte.
    let started = Instant::now();
    let mut res = client()
        .get(format!("{}/bytes?n={}", up.url(), 64u64 << 30))
        .send()
        .await
        .expect("request");
    let first = res.chunk().await.expect("chunk").expect("a first chunk");
    assert!(!first.is_empty());
    assert_eq!(first[..], support::pattern_bytes(0, first.len())[..]);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn upload_counts_and_checksums_a_streamed_body() {
    let up = Upstream::start();
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    // A stream body goes out chunked, with no Content-Length.
    let res = client()
        .post(format!("{}/upload", up.url()))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.expect("json");
    assert_eq!(answer["bytes"], data.len() as u64);
    assert_eq!(answer["checksum"], support::checksum(&data));
    let seen = up.last_request().expect("recorded");
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
}

#[test]
fn checksum_is_fnv1a_64() {
    // Published FNV-1a 64-bit test vectors.
    assert_eq!(support::checksum(b""), "cbf29ce484222325");
    assert_eq!(support::checksum(b"a"), "af63dc4c8601ec8c");
    assert_eq!(support::checksum(b"foobar"), "85944171f73967e8");
}

#[tokio::test]
async fn set_cookie_path_sets_each_named_cookie() {
    let up = Upstream::start();
    let res = client()
        .get(format!(
            "{}/set-cookie?name=portcullis&name=app&value=v1",
            up.url()
        ))
        .send()
        .await
        .expect("request");
    let cookies: Vec<&str> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(cookies, ["portcullis=v1; Path=/", "app=v1; Path=/"]);
}

#[tokio::test]
async fn status_path_answers_the_asked_status() {
    let up = Upstream::start();
    let client = client();
    let res = client
        .get(format!("{}/status?code=418", up.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 418);
    let res = client
        .get(format!("{}/status?code=99", up.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn ws_path_echoes_messages() {
    let up = Upstream::start();
    let (mut ws, res) = tokio_tungstenite::connect_async(format!("ws://{}/ws", up.addr()))
        .await
        .expect("websocket handshake");
    assert_eq!(res.status(), 101);
    ws.send(Message::text("hello")).await.expect("send text");
    let back = ws.next().await.expect("a reply").expect("a message");
    assert_eq!(back, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let back = ws.next().await.expect("a reply").expect("a message");
    assert_eq!(back, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.expect("close");
    let seen = up.last_request().expect("recorded");
    assert_eq!(seen.path(), "/ws");
    assert_eq!(seen.header("upgrade"), Some("websocket"));
}

#[tokio::test]
async fn ws_path_refuses_a_plain_request() {
    let up = Upstream::start();
    let res = client()
        .get(format!("{}/ws", up.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn silent_upstream_accepts_but_never_answers() {
    let silent = support::silent_upstream();
    assert!(TcpStream::connect(silent.addr()).is_ok());
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client")
        .get(silent.url())
        .send()
        .await
        .expect_err("no answer expected");
    assert!(err.is_timeout(), "expected a timeout, got {err}");
}

#[tokio::test]
async fn unused_addr_refuses_connections() {
    let addr = support::unused_addr();
    let err = client()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .expect_err("nothing listens");
    assert!(err.is_connect(), "expected a connect error, got {err}");
}

#[test]
fn upstream_stops_on_drop() {
    let up = Upstream::start();
    let addr = up.addr();
    assert!(support::wait_for_port(addr, Duration::from_secs(1)));
    drop(up);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn wait_for_port_times_out_on_a_closed_port() {
    let started = Instant::now();
    assert!(!support::wait_for_port(
        support::unused_addr(),
        Duration::from_millis(300)
    ));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Sends one inline Redis command and returns the reply's lines
/// (one line, or two for a bulk string).
fn redis_cmd(addr: std::net::SocketAddr, cmd: &str) -> std::io::Result<Vec<String>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{cmd}\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut lines = vec![first.trim_end().to_owned()];
    if first.starts_with('$') && !first.starts_with("$-1") {
        let mut data = String::new();
        reader.read_line(&mut data)?;
        lines.push(data.trim_end().to_owned());
    }
    Ok(lines)
}

#[test]
fn redis_runs_on_its_own_port_and_stops() {
    let mut redis = Redis::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/0", redis.port()));
    assert_eq!(redis_cmd(redis.addr(), "PING").expect("ping"), ["+PONG"]);
    assert_eq!(redis_cmd(redis.addr(), "SET k v1").expect("set"), ["+OK"]);
    assert_eq!(redis_cmd(redis.addr(), "GET k").expect("get"), ["$2", "v1"]);
    // No persistence: a restarted server is empty.
    redis.stop();
    assert!(TcpStream::connect(redis.addr()).is_err());
    redis.restart();
    assert_eq!(redis_cmd(redis.addr(), "GET k").expect("get"), ["$-1"]);
    let addr = redis.addr();
    drop(redis);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn gateway_start_reports_an_early_exit_with_its_output() {
    // Whatever the binary makes of this file, it must not serve it; the
    // harness must say so at once instead of waiting for the port.
    let started = Instant::now();
    let err = match Gateway::builder("this is [not toml").try_start() {
        Ok(_) => panic!("a gateway started on a broken config"),
        Err(err) => err,
    };
    assert!(err.message.contains("exited"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
