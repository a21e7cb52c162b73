//! End-to-end tests of the proxy path through the real binary: routing,
//! path normalisation, request smuggling shapes, header hygiene, forwarding
//! headers, streaming, WebSocket, HTTP/2 over TLS, 502/504, graceful
//! shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Gateway, Upstream};

#[path = "../support/mod.rs"]
mod support;

mod headers;
mod operations;
mod protocols;
mod request_heads;
mod routing;
mod upstreams;

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
