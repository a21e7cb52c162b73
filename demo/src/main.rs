//! A sample upstream app: it answers every request with what it received.
//!
//! Put it behind Portcullis to see the identity headers the gateway sends:
//!
//! ```text
//! cargo run --release -p portcullis-demo -- --listen 127.0.0.1:3000
//! ```
//!
//! Browsers (`Accept: text/html`) get a small page with a logout button per
//! mode (through the gateway's `/.portcullis/logout.js`); everything else
//! gets JSON with the method, path, query and every header.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// The identity headers Portcullis sets by default (see `[headers]`).
const IDENTITY_HEADERS: [&str; 4] = [
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Groups",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = listen_addr()?;
    let listener = TcpListener::bind(addr).await?;
    println!("echo: listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
            if let Err(e) = served {
                eprintln!("echo: connection error: {e}");
            }
        });
    }
}

/// `--listen ADDR` (default 127.0.0.1:3000).
fn listen_addr() -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:3000".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => addr = args.next().ok_or("--listen needs an address")?,
            other => {
                return Err(
                    format!("unknown argument {other:?}; usage: echo [--listen ADDR]").into(),
                );
            }
        }
    }
    Ok(addr.parse()?)
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let report = json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query().unwrap_or(""),
        "headers": headers_json(req.headers()),
    });
    let wants_html = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let (content_type, body) = if wants_html {
        ("text/html; charset=utf-8", page(req.headers(), &report))
    } else {
        ("application/json", report.to_string())
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(res)
}

/// Every header as `name: value`; repeated headers become a list.
fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::from(String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let value = match <[Value; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        };
        map.insert(name.to_string(), value);
    }
    Value::Object(map)
}

/// A page showing who the gateway says the user is, then the full request.
fn page(headers: &HeaderMap, report: &Value) -> String {
    let rows: String = IDENTITY_HEADERS
        .iter()
        .map(|name| {
            let value = headers
                .get(*name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_else(|| "(not sent)".to_owned());
            format!("<tr><th>{name}</th><td>{}</td></tr>\n", escape(&value))
        })
        .collect();
    let full = serde_json::to_string_pretty(report).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>echo: what the app receives</title>
<script src="/.portcullis/logout.js"></script>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem; }}
  th {{ text-align: left; padding-right: 1rem; font-family: monospace; }}
  pre {{ background: #f4f4f4; padding: 1rem; overflow-x: auto; }}
</style>
<h1>Hello from the app behind Portcullis</h1>
<p>Portcullis sets these identity headers from the session (and removes any copies the browser sent):</p>
<table>
{rows}</table>
<h2>Log out</h2>
<p>Each button calls <code>portcullis.logout({{mode}})</code> from <code>/.portcullis/logout.js</code>:
<b>redirect</b> goes through the identity provider and back; <b>silent</b> does that in a hidden
iframe and <b>popup</b> in a popup window, so this page stays until the end; <b>local</b> ends only
the gateway session (the identity provider still knows you).</p>
<p>
  <button type="button" data-logout-mode="redirect">Log out (redirect)</button>
  <button type="button" data-logout-mode="silent">Log out (silent)</button>
  <button type="button" data-logout-mode="popup">Log out (popup)</button>
  <button type="button" data-logout-mode="local">Log out (local)</button>
</p>
<p id="logout-status" role="status"></p>
<noscript><form method="post" action="/logout"><button>Log out</button></form></noscript>
<h2>The whole request</h2>
<pre>{}</pre>
<script>
  // The gateway serves logout.js; it ends the gateway session, runs the
  // identity provider's logout the way the button says, and tells the page
  // with a Promise and a `portcullis:logout` event.
  (function () {{
    var status = document.getElementById('logout-status');
    window.addEventListener('portcullis:logout', function (event) {{
      status.textContent = 'portcullis:logout ' + JSON.stringify(event.detail);
    }});
    document.querySelectorAll('button[data-logout-mode]').forEach(function (button) {{
      button.addEventListener('click', function () {{
        var mode = button.getAttribute('data-logout-mode');
        status.textContent = 'Signing out (' + mode + ')…';
        window.portcullis.logout({{ mode: mode }}).catch(function (error) {{
          status.textContent = 'Sign-out: ' + error.message;
        }});
      }});
    }});
  }})();
</script>
</html>
"#,
        escape(&full)
    )
}

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
