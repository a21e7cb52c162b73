//! `portcullis probe <url>`: a health check for container runtimes that
//! needs no shell tools in the image (a Dockerfile `HEALTHCHECK`, a
//! Kubernetes `exec` probe): one GET, success when the answer is 2xx within
//! the deadline.

use std::time::Duration;

use crate::oidc::http::{HttpClient, HttpError};

/// A health answer is a few bytes; anything bigger is read no further.
const MAX_BODY: usize = 64 * 1024;

/// Why a probe did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not an `http://` or `https://` URL.
    #[error("{0}: not an http:// or https:// URL")]
    Url(String),
    /// The request failed or timed out.
    #[error("{0}")]
    Http(#[from] HttpError),
    /// The answer was not 2xx.
    #[error("answered {0}")]
    Status(http::StatusCode),
}

/// GETs `url` and returns its status when it is 2xx within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<http::StatusCode, ProbeError> {
    let parsed = url::Url::parse(url).map_err(|_| ProbeError::Url(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProbeError::Url(url.to_owned()));
    }
    let client = HttpClient::new(true, timeout, MAX_BODY)?;
    let request = http::Request::builder()
        .method(http::Method::GET)
        .uri(parsed.as_str())
        .header(http::header::USER_AGENT, "portcullis-probe")
        .body(Vec::new())
        .map_err(|_| ProbeError::Url(url.to_owned()))?;
    let status = client.execute(request).await?.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}
