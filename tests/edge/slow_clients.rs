//! Clients that take no response data: a connection whose response waits on
//! the client while no response data moves for `idle_timeout` is dropped,
//! over HTTP/1 (the client stops reading) and HTTP/2 (it opens no window);
//! a response that waits on its upstream is not. (Before: a request counted
//! as in flight until its body was sent, however long the client made that
//! take, so such clients held their slots for ever.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{get_status, open_gateway, support};

/// A response far larger than every socket buffer on its way (the test
/// upstream makes it as it is read, so it is never made in full).
const HUGE: &str = "/bytes?n=1000000000";

/// The `[server]` settings of the tests that fill every slot.
const TWO_SLOTS: &str = "max_connections = 2\nidle_timeout = \"2s\"";

/// How long a fresh request may wait for a slot held by stuck clients: the
/// stall is found `idle_timeout` (2 s) after data last moved, plus a margin
/// for a loaded machine (and the 5 s close grace, were the connections
/// closed gracefully).
const FREED_WITHIN: Duration = Duration::from_secs(12);

/// Both slots held: a fresh request gets no answer for a while, then a 200
/// once the stuck connections are dropped, each with a log line.
fn slots_freed(gw: &support::Gateway) {
    assert_eq!(
        get_status(gw, "/", Duration::from_secs(1)),
        None,
        "a fresh request waits while the stuck clients hold every slot"
    );
    let started = Instant::now();
    let status = get_status(gw, "/", FREED_WITHIN);
    assert!(
        status.as_deref().is_some_and(|l| l.contains(" 200")),
        "no answer within {FREED_WITHIN:?} ({status:?}): the stuck clients kept their slots"
    );
    eprintln!("served after {:?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let drops = gw
            .json_logs()
            .iter()
            .filter(|l| support::log_field(l, "message") == Some("response not taken in time"))
            .count();
        if drops == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{drops} drops logged, not 2");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// HTTP/1: two clients ask for a large response and never read, with
/// `max_connections = 2`; a fresh request is served once they have taken
/// nothing for `idle_timeout`, and their connections are closed.
#[test]
fn http1_clients_that_stop_reading_lose_their_slots() {
    let app = support::Upstream::start();
    let gw = open_gateway(&app, TWO_SLOTS);
    let stuck: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(gw.addr()).unwrap();
            write!(s, "GET {HUGE} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    slots_freed(&gw);
    // Both were dropped: what was sent before is still delivered, then
    // the end.
    for mut s in stuck {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the stuck connection is still open: {e}"),
            }
        }
    }
}

/// HTTP/2 (prior knowledge): two clients with `SETTINGS_INITIAL_WINDOW_SIZE
/// = 0` ask for a response with a body and keep answering pings; with
/// `max_connections = 2` a fresh request is served once they have taken
/// nothing for `idle_timeout`, and their connections are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_that_open_no_window_lose_their_slots() {
    let app = support::Upstream::start();
    let gw = open_gateway(&app, TWO_SLOTS);
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        // The connection task answers the gateway's pings.
        let conn = tokio::spawn(conn);
        let req = http::Request::get(format!("http://{}/bytes?n=100000", gw.addr()))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        stuck.push((sender, resp, conn));
    }
    // Blocking reads, while the runtime's other worker answers pings.
    tokio::task::block_in_place(|| slots_freed(&gw));
    for (_sender, _resp, conn) in stuck {
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        assert!(ended.is_ok(), "the stuck HTTP/2 connection is still open");
    }
}

/// A response whose upstream pauses for longer than `idle_timeout` between
/// chunks (a long poll, SSE) waits on its upstream, not on the client: it
/// is delivered in full, over HTTP/1 and HTTP/2.
#[tokio::test]
async fn responses_that_wait_on_their_upstream_are_not_cut() {
    let app = support::Upstream::start();
    let gw = open_gateway(&app, "idle_timeout = \"1s\"");
    let http1 = reqwest::Client::new();
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (name, client) in [("HTTP/1", http1), ("HTTP/2", http2)] {
        let started = Instant::now();
        let resp = client
            .get(gw.url("/drip?chunks=3&ms=1600&size=1000"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let body = resp.bytes().await.unwrap();
        let took = started.elapsed();
        assert_eq!(body.len(), 3000, "{name}: cut off after {took:?}");
        assert_eq!(body[..], support::pattern_bytes(0, 3000)[..], "{name}");
        assert!(
            took >= Duration::from_secs(3),
            "{name}: no pauses? {took:?}"
        );
    }
}
