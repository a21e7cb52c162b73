//! Responses the gateway generates itself: the body type, HTML pages with a
//! per-response CSP nonce, JSON bodies, and error answers shaped by the
//! client kind. Every response built here carries `Cache-Control: no-store`
//! and no `Access-Control-Allow-*` header (README "The request path: what
//! the gateway guarantees", Errors).

pub mod assets;

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, HeaderValue, REFERRER_POLICY,
    VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};

use crate::request::ClientKind;
pub use assets::{Asset, logout_js};

/// The error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the gateway sends: its own pages, or an
/// upstream body streamed through.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A fresh CSP nonce: 128 random bits, base64.
pub fn nonce() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    // SystemRandom only fails if the OS has no randomness at all; a fixed
    // nonce would then merely weaken CSP for this page, not break it.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Headers every gateway-generated response carries.
pub fn set_common_headers(headers: &mut http::HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// Who may frame an HTML page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing<'a> {
    /// `frame-ancestors 'none'` (every page but the logout callback).
    Deny,
    /// `frame-ancestors 'self'` (the logout callback, framed by the gateway).
    SameOrigin,
    /// An explicit source list (the front-channel receiver).
    Sources(&'a str),
}

/// An HTML page: `body_html` goes inside `<main>`; `script` (already safe
/// JavaScript) runs with the page's nonce.
pub struct Page<'a> {
    /// Status code.
    pub status: StatusCode,
    /// Page title (escaped here).
    pub title: &'a str,
    /// Trusted HTML for the body (escape any input before putting it here).
    pub body_html: &'a str,
    /// Optional inline script.
    pub script: Option<&'a str>,
    /// Framing rule.
    pub framing: Framing<'a>,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}a,button{font-size:1rem}code{background:#f4f4f4;padding:0 .2em}";

impl Page<'_> {
    /// Renders the page with its security headers.
    pub fn render(&self) -> Response<Body> {
        let nonce = nonce();
        let mut html = String::with_capacity(512 + self.body_html.len());
        let _ = write!(
            html,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
             <body><main>{body}</main>",
            title = escape(self.title),
            body = self.body_html,
        );
        if let Some(script) = self.script {
            let _ = write!(html, "<script nonce=\"{nonce}\">{script}</script>");
        }
        html.push_str("</body></html>");

        let ancestors = match self.framing {
            Framing::Deny => "'none'",
            Framing::SameOrigin => "'self'",
            Framing::Sources(list) => list,
        };
        let csp = format!(
            "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
             connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; \
             frame-ancestors {ancestors}"
        );
        let mut resp = Response::new(full(html));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        set_common_headers(h);
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(CONTENT_SECURITY_POLICY, v);
        }
        resp
    }
}

/// A JSON response with the headers every JSON endpoint gets.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    set_common_headers(h);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(VARY, HeaderValue::from_static("Cookie, Accept"));
    resp
}

/// A plain-text response (admin endpoints, curl-friendly answers).
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    set_common_headers(h);
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A redirect (`302` or `303`) to `location`, with the common headers. The
/// gateway builds every location itself; one that could not be a header
/// value leaves the response without a `Location`.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut resp = text(status, "");
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// `405 Method Not Allowed` with the `Allow` header.
pub fn method_not_allowed(kind: ClientKind, allow: &'static str) -> Response<Body> {
    let mut resp = error(
        kind,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("Use {allow}."),
    );
    resp.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// An error answer: a short HTML page for navigations, otherwise JSON
/// `{"error", "error_description"}`. `message` is shown to the user, so
/// it must never hold a secret or internal detail.
pub fn error(kind: ClientKind, status: StatusCode, code: &str, message: &str) -> Response<Body> {
    // README (Errors): HTML for navigations, JSON otherwise — curl, scripts and
    // API clients get a body they can parse.
    if kind != ClientKind::Navigation {
        return json(
            status,
            &serde_json::json!({ "error": code, "error_description": message }),
        );
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<h1>{} {}</h1><p>{}</p>",
        status.as_u16(),
        escape(reason),
        escape(message)
    );
    Page {
        status,
        title: reason,
        body_html: &body,
        script: None,
        framing: Framing::Deny,
    }
    .render()
}

/// 503 `store_unavailable`: the session store cannot answer. Never a
/// redirect to login (the session may be fine) and never a pass; `message`
/// says what could not be done.
pub fn store_unavailable(kind: ClientKind, message: &str) -> Response<Body> {
    error(
        kind,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn pages_carry_security_headers() {
        let resp = error(
            ClientKind::Navigation,
            StatusCode::BAD_GATEWAY,
            "x",
            "<script>",
        );
        let h = resp.headers();
        assert_eq!(h[CACHE_CONTROL], "no-store");
        let csp = h[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("script-src 'nonce-"));
        let json = error(ClientKind::Json, StatusCode::BAD_GATEWAY, "x", "y");
        assert_eq!(json.headers()[VARY], "Cookie, Accept");
        // curl and scripts (neither navigation nor explicit JSON) get JSON too.
        let other = error(ClientKind::Other, StatusCode::BAD_GATEWAY, "x", "y");
        assert_eq!(other.headers()[CONTENT_TYPE], json.headers()[CONTENT_TYPE]);
        assert_eq!(
            json.headers()["cross-origin-resource-policy"],
            "same-origin"
        );
    }
}
