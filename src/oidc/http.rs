//! The HTTP client the gateway uses to talk to the IdP (discovery, JWKS,
//! token, revocation).
//!
//! Built on hyper-util's pooled client with rustls, so connections to the IdP
//! are reused. Every request has a deadline covering connect, response head
//! and body, and a response-size cap, so a slow or hostile IdP can neither
//! hang a login nor exhaust memory. Redirects are never followed (a token
//! endpoint that redirects is misconfigured, and following would leak
//! credentials to another host).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Default deadline for one request to the IdP.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on a response body from the IdP (discovery documents and key
/// sets are a few KiB; 1 MiB leaves ample room).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Why a request to the IdP failed. Messages never contain request or
/// response bodies (they carry tokens and client secrets).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request did not complete within the deadline.
    #[error("request to the identity provider timed out")]
    Timeout,
    /// The response body exceeded the size cap.
    #[error("response from the identity provider is larger than {0} bytes")]
    TooLarge(usize),
    /// A plain-HTTP URL where only HTTPS is allowed.
    #[error("refusing plain-http request to {0}: the issuer is https")]
    InsecureScheme(String),
    /// The TLS configuration could not be built.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// Connecting, sending or receiving failed.
    #[error("request to the identity provider failed: {0}")]
    Transport(String),
}

/// A pooled HTTP(S) client for IdP requests. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
    allow_http: bool,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl HttpClient {
    /// Builds a client. `allow_http` permits plain-HTTP URLs; pass it only
    /// when the configured issuer itself is `http://` (loopback test IdPs),
    /// so an https issuer can never be downgraded by its own metadata.
    pub fn new(allow_http: bool, timeout: Duration, max_body: usize) -> Result<Self, HttpError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);

        let provider = rustls::crypto::ring::default_provider();
        let builder = match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider) {
            Ok(b) => b,
            // No system CA bundle: fine for a plain-http loopback issuer,
            // fatal for an https one.
            Err(e) if allow_http => {
                tracing::debug!(error = %e, "no native CA roots; https to the IdP will fail");
                let cfg = rustls::ClientConfig::builder_with_provider(
                    rustls::crypto::ring::default_provider().into(),
                )
                .with_safe_default_protocol_versions()
                .map_err(|e| HttpError::Tls(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(cfg)
            }
            Err(e) => return Err(HttpError::Tls(e.to_string())),
        };
        let connector = if allow_http {
            builder.https_or_http().enable_http1().wrap_connector(http)
        } else {
            builder.https_only().enable_http1().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .build(connector);
        Ok(HttpClient {
            client,
            timeout,
            max_body,
            allow_http,
        })
    }

    /// Sends one request and reads the whole response, within the deadline
    /// and the size cap.
    pub async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if request.uri().scheme_str() != Some("https") && !self.allow_http {
            return Err(HttpError::InsecureScheme(redacted_uri(request.uri())));
        }
        let (parts, body) = request.into_parts();
        let (method, uri) = (parts.method.clone(), parts.uri.clone());
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let max_body = self.max_body;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Transport(crate::telemetry::error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let collected = Limited::new(body, max_body).collect().await.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    HttpError::TooLarge(max_body)
                } else {
                    HttpError::Transport(e.to_string())
                }
            })?;
            Ok(http::Response::from_parts(
                parts,
                collected.to_bytes().to_vec(),
            ))
        };
        crate::telemetry::otel::traced!(
            "idp.request",
            async {
                tokio::time::timeout(self.timeout, exchange)
                    .await
                    .map_err(|_| HttpError::Timeout)
                    .and_then(|r| r)
            },
            otel.kind = "client",
            http.request.method = %method,
            url.full = %redacted_uri(&uri)
        )
    }

    /// A GET of `url` asking for JSON.
    pub async fn get_json(&self, url: &url::Url) -> Result<HttpResponse, HttpError> {
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        self.execute(request).await
    }
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

/// `scheme://authority/path` of a URI, without the query (which may carry
/// tokens in some IdP APIs).
fn redacted_uri(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection server that reads the request and then runs `reply`.
    async fn server<F, Fut>(reply: F) -> url::Url
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                reply(stream).await;
            }
        });
        url::Url::parse(&format!("http://{addr}/x")).expect("url")
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let url = server(|stream| async move {
            // Hold the connection open without answering.
            let _open = stream;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await;
        let client = HttpClient::new(true, Duration::from_millis(200), 1024).expect("client");
        let started = std::time::Instant::now();
        let err = client.get_json(&url).await.expect_err("timeout");
        assert!(matches!(err, HttpError::Timeout), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused() {
        let url = server(|mut s| async move {
            let body = vec![b'a'; 5000];
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
        })
        .await;
        let client = HttpClient::new(true, Duration::from_secs(5), 1024).expect("client");
        let err = client.get_json(&url).await.expect_err("too large");
        assert!(matches!(err, HttpError::TooLarge(1024)), "{err:?}");
    }

    #[tokio::test]
    async fn a_small_body_is_read_whole() {
        let url = server(|mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await;
        })
        .await;
        let client = HttpClient::new(true, Duration::from_secs(5), 1024).expect("client");
        let response = client.get_json(&url).await.expect("response");
        assert_eq!(response.body(), b"{}");
    }

    #[tokio::test]
    async fn an_https_issuer_never_talks_plain_http() {
        let client = HttpClient::new(false, Duration::from_secs(1), 1024).expect("client");
        let url = url::Url::parse("http://127.0.0.1:9/x").expect("url");
        let err = client.get_json(&url).await.expect_err("refused");
        assert!(matches!(err, HttpError::InsecureScheme(_)), "{err:?}");
    }
}
