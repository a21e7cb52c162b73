//! Static assets the gateway serves: `logout.js` (at [`crate::paths::LOGOUT_JS`]).
//!
//! An asset's bytes are fixed for a given version and configuration, so an
//! app may pin it with Subresource Integrity; it is cacheable (a day, then
//! revalidated by its `ETag`, a SHA-384 of the bytes), unlike every other
//! gateway response.

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS,
};
use http::{Request, Response, StatusCode};

use super::{Body, empty, full};
use crate::config::LogoutConfig;

const LOGOUT_JS: &str = include_str!("assets/logout.js");

/// A static asset with its validator.
#[derive(Debug, Clone)]
pub struct Asset {
    body: Bytes,
    etag: String,
    content_type: &'static str,
}

impl Asset {
    fn new(body: String, content_type: &'static str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA384, body.as_bytes());
        let etag = format!(
            "\"sha384-{}\"",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        );
        Asset {
            body: Bytes::from(body),
            etag,
            content_type,
        }
    }

    /// The Subresource Integrity value (`sha384-…`).
    pub fn integrity(&self) -> &str {
        self.etag.trim_matches('"')
    }

    /// Serves the asset, answering 304 to a matching `If-None-Match`.
    pub fn serve<B>(&self, req: &Request<B>) -> Response<Body> {
        let not_modified = req
            .headers()
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == self.etag));
        let mut resp = if not_modified {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            Response::new(full(self.body.clone()))
        };
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        );
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(
            http::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            h.insert(ETAG, v);
        }
        resp
    }
}

/// `logout.js` with the logout path and silent timeout filled in.
pub fn logout_js(cfg: &LogoutConfig) -> Asset {
    let path = serde_json::Value::String(cfg.path.clone()).to_string();
    let body = LOGOUT_JS.replace("__LOGOUT_PATH__", &path).replace(
        "__SILENT_TIMEOUT_MS__",
        &cfg.silent_timeout.as_millis().to_string(),
    );
    Asset::new(body, "text/javascript; charset=utf-8")
}
