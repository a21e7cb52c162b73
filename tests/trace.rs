//! W3C trace context and OTLP/HTTP span export, end to end: the gateway
//! binary, the real IdP, an upstream that records what reached it, and an
//! OTLP/HTTP receiver started here that decodes the protobuf export.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;

use support::idp::{Idp, IdpOptions, browser};
use support::setup::{CLIENT_ID, gateway_client, login, wait_ready};
use support::signing::idp_jwks;
use support::{Gateway, Upstream, free_port};

/// One span as the receiver decoded it (ids in lowercase hex).
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
}

/// An OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered 200 with an empty response.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = spans.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let ok = req.method() == http::Method::POST
                                && req.uri().path() == "/v1/traces"
                                && req
                                    .headers()
                                    .get("content-type")
                                    .is_some_and(|v| v == "application/x-protobuf");
                            let body = req.into_body().collect().await?.to_bytes();
                            let status = match ExportTraceServiceRequest::decode(body) {
                                Ok(export) if ok => {
                                    store.lock().unwrap().extend(decode(&export));
                                    200
                                }
                                _ => 400,
                            };
                            Ok::<_, hyper::Error>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Waits (up to 20 s) until `pred` holds for the spans received so far.
    async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if pred(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "never received {what}: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn decode(export: &ExportTraceServiceRequest) -> Vec<Received> {
    let mut out = Vec::new();
    for rs in &export.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.push(Received {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name.clone(),
                });
            }
        }
    }
    out
}

/// `traceparent` parts: (trace id, parent id, flags).
fn parts(tp: &str) -> (String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "{tp}");
    assert_eq!(p[0], "00", "{tp}");
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn caller_traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

/// A trusted caller's trace is continued through login and a proxied page:
/// the upstream's parent is the gateway's request span, the access log has
/// the trace id, and the receiver gets the request span with its session
/// lookup, store and IdP children.
#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_callers_trace_is_continued_and_exported() {
    let receiver = Receiver::start().await;
    let upstream = Upstream::start();
    let idp_port = free_port();
    let config = format!(
        r#"
[server]
listen = "{{listen}}"
public_url = "{{public_url}}"
admin_listen = "{{admin_listen}}"
trusted_proxies = ["127.0.0.1/32"]

[oidc]
issuer = "http://127.0.0.1:{idp_port}"
client_id = "{CLIENT_ID}"
client_secret = "${{PORTCULLIS_CLIENT_SECRET}}"

[session]
secret = "${{PORTCULLIS_SECRET}}"

[[route]]
prefix = "/"
upstream = "{{upstream}}"

[telemetry]
otlp_endpoint = "{}"
service_name = "gw-under-test"
"#,
        receiver.endpoint()
    );
    let gw = Gateway::builder(&config)
        .var("upstream", upstream.url())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start();
    let idp = Idp::start(IdpOptions {
        port: Some(idp_port),
        clients: vec![gateway_client(&gw)],
        signing_jwks: Some(idp_jwks()),
        ..Default::default()
    });
    wait_ready(&gw).await;

    let b = browser();
    login(&gw, &idp, &b, "alice").await;
    let resp = b
        .get(gw.url("/app/traced"))
        .header("traceparent", caller_traceparent())
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The upstream: same trace, a new parent (the gateway's span), sampled,
    // the caller's tracestate.
    let seen = upstream
        .requests()
        .into_iter()
        .rfind(|r| r.path() == "/app/traced")
        .expect("the page reached the upstream");
    let (trace, parent, flags) = parts(seen.header("traceparent").expect("traceparent"));
    assert_eq!(trace, CALLER_TRACE);
    assert_ne!(parent, CALLER_SPAN, "the gateway's own span is the parent");
    assert_eq!(flags, "01");
    assert_eq!(seen.header("tracestate"), Some("vendor=opaque"));

    let line = gw
        .wait_for_log("path", "/app/traced", Duration::from_secs(5))
        .expect("access log line");
    assert_eq!(line["trace_id"], CALLER_TRACE, "{line}");

    // The receiver: the request span (child of the caller's span, the
    // upstream's parent) and its children.
    let spans = receiver
        .wait_for("the page's spans", |s| {
            let req = s
                .iter()
                .find(|x| x.name == "request" && x.trace_id == CALLER_TRACE);
            req.is_some_and(|r| {
                s.iter()
                    .any(|x| x.name == "session.lookup" && x.parent_span_id == r.span_id)
            })
        })
        .await;
    let request = spans
        .iter()
        .find(|x| x.name == "request" && x.trace_id == CALLER_TRACE)
        .unwrap();
    assert_eq!(request.parent_span_id, CALLER_SPAN);
    assert_eq!(
        request.span_id, parent,
        "the upstream's parent is the exported span"
    );
    assert_eq!(request.service, "gw-under-test");
    let lookup = spans
        .iter()
        .find(|x| x.name == "session.lookup" && x.parent_span_id == request.span_id)
        .unwrap();
    assert_eq!(lookup.trace_id, CALLER_TRACE);
    assert!(
        spans
            .iter()
            .any(|x| x.name == "store.get" && x.parent_span_id == lookup.span_id),
        "the store read under the lookup: {spans:#?}"
    );

    // The login's callback called the IdP's token endpoint inside its
    // request span.
    let spans = receiver
        .wait_for("an IdP call inside a request", |s| {
            s.iter().any(|idp_call| {
                idp_call.name == "idp.request"
                    && s.iter().any(|r| {
                        r.name == "request"
                            && r.span_id == idp_call.parent_span_id
                            && r.trace_id == idp_call.trace_id
                    })
            })
        })
        .await;
    assert!(
        spans.iter().any(|x| x.name == "store.insert"),
        "the new session was stored: {spans:#?}"
    );
}

/// A client that is not a trusted proxy cannot choose the trace: its
/// `traceparent` and `tracestate` are replaced by a new trace, which is
/// what the upstream, the access log and the exported span carry.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_clients_traceparent_is_not_continued() {
    let receiver = Receiver::start().await;
    let upstream = Upstream::start();
    let config = format!(
        r#"
[server]
listen = "{{listen}}"
public_url = "{{public_url}}"

[[route]]
prefix = "/"
upstream = "{{upstream}}"
auth = "none"

[telemetry]
otlp_endpoint = "{}"
"#,
        receiver.endpoint()
    );
    let gw = Gateway::builder(&config)
        .var("upstream", upstream.url())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start();
    let resp = reqwest::Client::new()
        .get(gw.url("/untrusted"))
        .header("traceparent", caller_traceparent())
        .header("tracestate", "vendor=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let seen = upstream.last_request().expect("reached the upstream");
    let (trace, parent, _) = parts(seen.header("traceparent").expect("traceparent"));
    assert_ne!(trace, CALLER_TRACE, "a new trace");
    assert_eq!(trace.len(), 32);
    assert_ne!(parent, CALLER_SPAN);
    assert_eq!(
        seen.header("tracestate"),
        None,
        "the client's state is dropped"
    );
    assert_eq!(seen.header_all("traceparent").len(), 1);

    let line = gw
        .wait_for_log("path", "/untrusted", Duration::from_secs(5))
        .expect("access log line");
    assert_eq!(line["trace_id"].as_str(), Some(trace.as_str()));

    let spans = receiver
        .wait_for("the request span", |s| {
            s.iter().any(|x| x.name == "request" && x.trace_id == trace)
        })
        .await;
    let request = spans.iter().find(|x| x.trace_id == trace).unwrap();
    assert_eq!(request.parent_span_id, "", "a root span");
    assert_eq!(request.span_id, parent);
    assert_eq!(request.service, "portcullis", "the default service name");
    assert!(!spans.iter().any(|x| x.trace_id == CALLER_TRACE));
}

/// Without `[telemetry]` nothing is exported, but the trace context still
/// works: a trusted caller's trace reaches the upstream with the gateway's
/// own span id, and every access-log line has a trace id.
#[tokio::test(flavor = "multi_thread")]
async fn without_export_the_trace_is_still_propagated_and_logged() {
    let upstream = Upstream::start();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
trusted_proxies = ["127.0.0.1/32"]

[[route]]
prefix = "/"
upstream = "{upstream}"
auth = "none"
"#,
    )
    .var("upstream", upstream.url())
    .start();
    let http = reqwest::Client::new();
    let resp = http
        .get(gw.url("/continued"))
        .header("traceparent", caller_traceparent())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = upstream.last_request().unwrap();
    let (trace, parent, flags) = parts(seen.header("traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (CALLER_TRACE, "01"));
    assert_ne!(parent, CALLER_SPAN);

    http.get(gw.url("/fresh")).send().await.unwrap();
    let seen = upstream.last_request().unwrap();
    let (fresh, _, flags) = parts(seen.header("traceparent").unwrap());
    assert_ne!(fresh, CALLER_TRACE);
    assert_eq!(flags, "00", "nothing recorded this trace");
    for (path, id) in [("/continued", CALLER_TRACE), ("/fresh", fresh.as_str())] {
        let line = gw
            .wait_for_log("path", path, Duration::from_secs(5))
            .expect("access log line");
        assert_eq!(line["trace_id"].as_str(), Some(id), "{line}");
    }
}
