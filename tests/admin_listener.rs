//! The admin listener on a non-loopback address (0.0.0.0), as kubelet and Prometheus
//! reach a pod by its IP: probes and metrics answer there; the admin API
//! does not without `[server.admin_tls]`, and does over TLS with it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::idp::{Idp, IdpOptions, browser};
use support::setup::{CLIENT_ID, gateway_client, login, session};
use support::signing::idp_jwks;
use support::{Gateway, TEST_ADMIN_TOKEN, Upstream, free_port, run_check};

/// The admin listener binds the unspecified address, as in a pod
/// (`admin_listen = "0.0.0.0:9090"` in deploy/kubernetes/): that is a
/// non-loopback listener, which is what decides whether the admin API is
/// served. The test reaches it through 127.0.0.1, so no traffic leaves
/// loopback (this machine's other addresses are not ours to send to).
fn pod_style_admin() -> (SocketAddr, SocketAddr) {
    let port = free_port();
    (
        SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port),
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port),
    )
}

/// A gateway whose admin listener is on `admin` (not the harness's
/// loopback one), with an admin token, `server_extra` keys/tables after
/// `[server]`, and the IdP it expects on `idp_port`.
fn gateway(admin: SocketAddr, idp_port: u16, server_extra: &str, upstream: &Upstream) -> Gateway {
    let config = format!(
        r#"
[server]
listen = "{{listen}}"
public_url = "{{public_url}}"
admin_listen = "{admin}"
admin_token = "${{PORTCULLIS_ADMIN_TOKEN}}"
{server_extra}

[oidc]
issuer = "http://127.0.0.1:{idp_port}"
client_id = "{CLIENT_ID}"
client_secret = "${{PORTCULLIS_CLIENT_SECRET}}"

[session]
secret = "${{PORTCULLIS_SECRET}}"

[[route]]
prefix = "/"
upstream = "{{upstream}}"
"#
    );
    Gateway::builder(&config)
        .var("upstream", upstream.url())
        .start()
}

fn start_idp(gw: &Gateway, port: u16) -> Idp {
    Idp::start(IdpOptions {
        port: Some(port),
        clients: vec![gateway_client(gw)],
        signing_jwks: Some(idp_jwks()),
        ..Default::default()
    })
}

/// Waits until `url` (a `/readyz`) answers 200.
async fn wait_ready(http: &reqwest::Client, url: &str, gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready within 30 s:\n{}",
            gw.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_metrics_answer_on_a_pod_ip_but_the_admin_api_needs_tls() {
    let (admin, reach) = pod_style_admin();
    let upstream = Upstream::start();
    let idp_port = free_port();

    // `check` accepts it and says the admin API is off there.
    let config = format!(
        "[server]\nlisten = \"{{listen}}\"\npublic_url = \"{{public_url}}\"\n\
         admin_listen = \"{admin}\"\nadmin_token = \"${{PORTCULLIS_ADMIN_TOKEN}}\"\n\n\
         [[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
    );
    let check = run_check(&config);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert!(
        check
            .stderr
            .contains("admin API disabled on a non-loopback listener without [server.admin_tls]"),
        "{}",
        check.stderr
    );

    let gw = gateway(admin, idp_port, "", &upstream);
    let _idp = start_idp(&gw, idp_port);
    let http = reqwest::Client::new();
    let base = format!("http://{reach}");
    wait_ready(&http, &format!("{base}/readyz"), &gw).await;

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Something to count, then the scrape.
    http.get(gw.url("/.portcullis/session"))
        .send()
        .await
        .unwrap();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("portcullis_requests_total"), "{metrics}");

    // The admin API is not there, whatever the token.
    for req in [
        http.post(format!("{base}/admin/sessions/revoke"))
            .bearer_auth(TEST_ADMIN_TOKEN)
            .json(&json!({"sub": "alice"})),
        http.get(format!("{base}/admin/sessions?sub=alice"))
            .bearer_auth(TEST_ADMIN_TOKEN),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "admin_api_disabled", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_admin_tls_the_admin_api_is_served_over_tls_on_a_pod_ip() {
    let (admin, reach) = pod_style_admin();
    let upstream = Upstream::start();
    let idp_port = free_port();
    let ck = rcgen::generate_simple_self_signed(vec![reach.ip().to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("admin.crt"), dir.path().join("admin.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "\n[server.admin_tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );

    let gw = gateway(admin, idp_port, &tls, &upstream);
    let idp = start_idp(&gw, idp_port);
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://{reach}");
    wait_ready(&https, &format!("{base}/readyz"), &gw).await;
    assert!(
        !gw.logs().iter().any(|l| l.contains("admin API disabled")),
        "no warning with admin_tls"
    );

    // Plain HTTP gets no answer from a TLS listener.
    let plain = reqwest::Client::new()
        .get(format!("http://{reach}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| r.status() != 200),
        "plain HTTP answered on the TLS admin listener"
    );

    let b = browser();
    login(&gw, &idp, &b, "alice").await;
    assert!(session(&gw, &b).await.is_some());

    let unauthorized = https
        .post(format!("{base}/admin/sessions/revoke"))
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401, "the token is still required");
    let listed: Value = https
        .get(format!("{base}/admin/sessions?sub=alice"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let revoked = https
        .post(format!("{base}/admin/sessions/revoke"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap()["revoked"], 1);
    assert_eq!(session(&gw, &b).await, None, "the session is over");
}

/// A gateway without login whose admin listener is the harness's loopback
/// one, with `server_extra` in `[server]`.
fn open_admin_gateway(upstream: &Upstream, server_extra: &str) -> Gateway {
    Gateway::builder(&format!(
        r#"
[server]
listen = "{{listen}}"
public_url = "{{public_url}}"
admin_listen = "{{admin_listen}}"
{server_extra}

[[route]]
prefix = "/"
upstream = "{{upstream}}"
auth = "none"
"#
    ))
    .var("upstream", upstream.url())
    .start()
}

/// The status line of one `GET path` on a fresh connection to `addr`, or
/// `None` when no answer came within `wait`.
fn status_line(addr: &str, path: &str, wait: Duration) -> Option<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
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

/// Whether the gateway closed `s` (EOF or reset) within its read timeout;
/// whatever it wrote before closing is skipped.
fn closed_by_peer(s: &mut std::net::TcpStream) -> bool {
    use std::io::{ErrorKind, Read};
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Anonymous clients on an admin listener exposed for probes cannot hold
/// its connections: a head over `max_header_bytes` gets 431; a head not
/// sent in full within `header_read_timeout`, a connection that sends
/// nothing and an idle keep-alive one are closed, and `/healthz` still
/// answers. (Before: the admin listener had no timer and hyper's ~400 KB
/// head limit, and each such connection held its socket for ever.)
#[test]
fn partial_heads_and_idle_connections_on_the_admin_listener_are_closed() {
    use std::io::Write;
    let upstream = Upstream::start();
    let gw = open_admin_gateway(
        &upstream,
        "header_read_timeout = \"2s\"\nmax_header_bytes = 8192",
    );
    let admin = gw.admin_url("");
    let admin = admin.trim_start_matches("http://");
    let health = || status_line(admin, "/healthz", Duration::from_secs(5));
    assert_eq!(health().as_deref(), Some("HTTP/1.1 200 OK"));
    {
        use std::io::{BufRead, BufReader};
        // Exactly max_header_bytes of an unfinished head: the gateway reads
        // all of it before it refuses, so its close is not a reset that
        // could discard the answer before it is read.
        let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        head.resize(8192, b'a');
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&head).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim_end(),
            "HTTP/1.1 431 Request Header Fields Too Large",
            "a head over max_header_bytes"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let baseline = gw.sockets();

    let connect = || {
        let s = std::net::TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        s
    };
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut s = connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            .unwrap();
        held.push(("partial head", s));
    }
    for _ in 0..5 {
        held.push(("silent", connect()));
    }
    let mut keep_alive = connect();
    keep_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut line = [0u8; 12];
    std::io::Read::read_exact(&mut keep_alive, &mut line).unwrap();
    assert_eq!(&line, b"HTTP/1.1 200");
    held.push(("idle keep-alive", keep_alive));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        gw.sockets() >= baseline + held.len(),
        "the gateway holds them for now: {} sockets, {baseline} before",
        gw.sockets()
    );

    for _ in 0..3 {
        // Part of the HTTP/2 preface (which a version sniffer would wait on
        // for ever): an HTTP/1 request line of a version refused at once.
        let mut s = connect();
        s.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
        held.push(("partial HTTP/2 preface", s));
    }
    let started = Instant::now();
    for (what, s) in &mut held {
        assert!(
            closed_by_peer(s),
            "a {what} connection still open after {:?}",
            started.elapsed()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        gw.sockets() <= baseline + 1,
        "{} sockets, {baseline} before",
        gw.sockets()
    );
    assert_eq!(
        health().as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the admin listener still answers"
    );
}

/// The admin listener serves at most 64 connections at once; past that new
/// ones wait in the listen backlog, so a flood of them cannot take the file
/// descriptors the public listener needs. (Before: no limit.)
#[test]
fn the_admin_listener_holds_at_most_64_connections() {
    let upstream = Upstream::start();
    let gw = open_admin_gateway(&upstream, "header_read_timeout = \"10s\"");
    let admin = gw.admin_url("");
    let admin = admin.trim_start_matches("http://").to_owned();
    std::thread::sleep(Duration::from_millis(300));
    let baseline = gw.sockets();
    let silent: Vec<_> = (0..100)
        .map(|_| std::net::TcpStream::connect(&admin).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let held = gw.sockets() - baseline;
    assert!(held <= 64, "the admin listener holds {held} connections");
    assert!(held >= 60, "it serves up to its limit: {held}");
    // The public listener is not affected.
    let public = gw.addr().to_string();
    assert_eq!(
        status_line(&public, "/", Duration::from_secs(5)).as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    drop(silent);
    assert_eq!(
        status_line(&admin, "/healthz", Duration::from_secs(10)).as_deref(),
        Some("HTTP/1.1 200 OK"),
        "served again once they went"
    );
}
