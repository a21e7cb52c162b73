//! Optional export of spans over OTLP/HTTP (protobuf), configured by
//! `[telemetry]`: one span per request (the parent of the upstream's work),
//! with children for the session lookup, each session-store call and each
//! call to the IdP.
//!
//! Off by default, and then nearly free: no `tracing` span is created at
//! all ([`enabled`] is one relaxed atomic load), and the request's trace
//! context comes from [`super::trace_context`] alone. On, the spans go
//! through `tracing-opentelemetry` to the SDK's batch processor, which runs
//! on its own thread and posts through [`OtlpHttp`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use thiserror::Error;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::trace_context::{self, TraceContext};
use crate::config::TelemetryConfig;

/// The `tracing` target of every exported span; the exporter's layer sees
/// only these, the log formatter none of them.
pub const TARGET: &str = "portcullis::trace";

/// How long one export may take (the SDK retries nothing; the next batch
/// goes on).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why the exporter could not be set up.
#[derive(Debug, Error)]
pub enum OtelError {
    /// The OTLP exporter refused its configuration.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// No TLS configuration for an https endpoint.
    #[error("TLS for the OTLP endpoint: {0}")]
    Tls(String),
}

/// The running exporter; dropping it sends what is queued and stops.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown() {
            eprintln!("OTLP exporter shutdown: {err}");
        }
    }
}

/// Builds the exporter for `cfg`; its HTTP requests run on `runtime`.
/// Spans are created only after [`activate`].
pub fn exporter(
    cfg: &TelemetryConfig,
    runtime: tokio::runtime::Handle,
) -> Result<(Exporter, SdkTracer), OtelError> {
    let client = OtlpHttp::new(runtime)?;
    let span_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(cfg.otlp_endpoint.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| OtelError::Exporter(e.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(span_exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("portcullis");
    Ok((Exporter { provider }, tracer))
}

/// Starts creating spans (once the layer is installed).
pub fn activate() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The trace context of a request and, when exporting, its span. A trusted
/// caller's `traceparent` (and `tracestate`) is continued; otherwise a new
/// trace starts. The span's own id is what the upstream sees as its parent.
pub fn start_request(
    headers: &HeaderMap,
    trusted: bool,
    method: &Method,
    path: &str,
) -> (TraceContext, Span) {
    if !enabled() {
        return (TraceContext::from_request(headers, trusted), Span::none());
    }
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let incoming = trace_context::incoming(headers, trusted);
    let tracestate = incoming.and_then(|_| trace_context::tracestate(headers));
    if let Some(inc) = incoming {
        let state = tracestate
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let parent = SpanContext::new(
            TraceId::from_bytes(inc.trace_id),
            SpanId::from_bytes(inc.parent_id),
            TraceFlags::new(inc.flags & 1),
            true,
            state,
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        // The layer is not installed after all: propagate without spans.
        return (TraceContext::from_request(headers, trusted), span);
    }
    let ctx = TraceContext {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8() & 1,
        tracestate,
    };
    (ctx, span)
}

/// Records the outcome on a request span (nothing when not exporting).
pub fn finish_request(span: &Span, status: u16, route: &str) {
    if !span.is_none() {
        span.record("http.response.status_code", status);
        span.record("http.route", route);
    }
}

/// `fut.await`, inside a child span named `$name` (with `$fields`) when
/// spans are exported.
macro_rules! traced {
    ($name:expr, $fut:expr $(, $($field:tt)*)?) => {{
        let fut = $fut;
        if $crate::telemetry::otel::enabled() {
            tracing::Instrument::instrument(
                fut,
                tracing::info_span!(target: "portcullis::trace", $name $(, $($field)*)?),
            )
            .await
        } else {
            fut.await
        }
    }};
}
pub(crate) use traced;

/// The exporter's HTTP client: our hyper stack. The SDK's batch thread
/// drives exports with a plain executor, so each request is spawned onto
/// the gateway's runtime (where hyper's I/O lives) and awaited from there.
struct OtlpHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for OtlpHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpHttp").finish_non_exhaustive()
    }
}

/// Largest collector answer read (it is a small protobuf status).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

impl OtlpHttp {
    fn new(runtime: tokio::runtime::Handle) -> Result<Self, OtelError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        let provider = rustls::crypto::ring::default_provider();
        let builder = match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider) {
            Ok(b) => b,
            // No CA bundle: plain-http collectors still work.
            Err(_) => {
                let cfg = rustls::ClientConfig::builder_with_provider(
                    rustls::crypto::ring::default_provider().into(),
                )
                .with_safe_default_protocol_versions()
                .map_err(|e| OtelError::Tls(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(cfg)
            }
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(OtlpHttp { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let exchange = async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        };
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(EXPORT_TIMEOUT, exchange).await });
        match task.await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("OTLP export timed out".into()),
            Err(e) => Err(Box::new(e)),
        }
    }
}
