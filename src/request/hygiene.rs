//! Request framing and header hygiene: the request-smuggling shapes the
//! README lists ("The request path: what the gateway guarantees"), and header values no upstream should see.
//!
//! hyper's HTTP/1 parser already answers 400 and closes the connection for
//! obs-fold, CR/LF/NUL in values, conflicting `Content-Length` values and a
//! transfer coding whose last member is not `chunked`. Two shapes pass it:
//! `Content-Length` together with `Transfer-Encoding` (hyper drops the length
//! and stops keep-alive; RFC 9112 §6.1 says a server "MAY reject" such a
//! request, and the gateway does), which [`super::framing`] detects
//! on the wire, and codings such as `gzip, chunked`, refused here.

use http::header::TRANSFER_ENCODING;
use http::{HeaderMap, Method, Request};
use thiserror::Error;

/// A request refused before anything else looks at it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HygieneError {
    /// `CONNECT` is never proxied.
    #[error("CONNECT is not supported")]
    Connect,
    /// `Content-Length` and `Transfer-Encoding` together.
    #[error("request has both Content-Length and Transfer-Encoding")]
    LengthAndTransferEncoding,
    /// A transfer coding other than a single `chunked`.
    #[error("unsupported Transfer-Encoding (only \"chunked\" is accepted)")]
    TransferCoding,
}

impl HygieneError {
    /// The status to answer with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            HygieneError::Connect => http::StatusCode::METHOD_NOT_ALLOWED,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// Checks method and framing. `saw_length_with_te` comes from the
/// connection's wire sniffer.
pub fn check_framing<B>(req: &Request<B>, saw_length_with_te: bool) -> Result<(), HygieneError> {
    if req.method() == Method::CONNECT {
        return Err(HygieneError::Connect);
    }
    let mut codings = req.headers().get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        if saw_length_with_te {
            return Err(HygieneError::LengthAndTransferEncoding);
        }
        let single_chunked = first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if !single_chunked || codings.next().is_some() {
            return Err(HygieneError::TransferCoding);
        }
    }
    Ok(())
}

/// Whether a header value holds a control character (HTAB is allowed
/// whitespace; DEL and C0 controls are not).
pub fn has_control(value: &[u8]) -> bool {
    // Every value of every request is checked and nearly none has one: a
    // pass without an early exit, which the compiler vectorises.
    value.iter().fold(false, |any, &b| {
        any | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// Removes header values with control characters; returns the names of the
/// headers dropped, for the log.
pub fn drop_control_values(headers: &mut HeaderMap) -> Vec<http::HeaderName> {
    let bad: Vec<http::HeaderName> = headers
        .iter()
        .filter(|(_, v)| has_control(v.as_bytes()))
        .map(|(k, _)| k.clone())
        .collect();
    for name in &bad {
        // Keep the clean values of a repeated header.
        let clean: Vec<_> = headers
            .get_all(name)
            .iter()
            .filter(|v| !has_control(v.as_bytes()))
            .cloned()
            .collect();
        headers.remove(name);
        for v in clean {
            headers.append(name.clone(), v);
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, te: &[&'static str]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/");
        for v in te {
            b = b.header("transfer-encoding", *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn framing_rules() {
        assert_eq!(check_framing(&req("GET", &[]), false), Ok(()));
        assert_eq!(check_framing(&req("POST", &["chunked"]), false), Ok(()));
        assert_eq!(check_framing(&req("POST", &["Chunked "]), false), Ok(()));
        assert_eq!(
            check_framing(&req("POST", &["gzip, chunked"]), false),
            Err(HygieneError::TransferCoding)
        );
        assert_eq!(
            check_framing(&req("POST", &["chunked", "chunked"]), false),
            Err(HygieneError::TransferCoding)
        );
        assert_eq!(
            check_framing(&req("POST", &["chunked"]), true),
            Err(HygieneError::LengthAndTransferEncoding)
        );
        // The sniffer's flag alone (no TE on this request) refuses nothing.
        assert_eq!(check_framing(&req("GET", &[]), true), Ok(()));
        assert_eq!(
            check_framing(&req("CONNECT", &[]), false),
            Err(HygieneError::Connect)
        );
    }

    #[test]
    fn control_values_are_dropped() {
        let mut h = HeaderMap::new();
        h.append("x-a", http::HeaderValue::from_static("fine\tvalue"));
        h.append(
            "x-b",
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert!(drop_control_values(&mut h).is_empty());
        assert!(has_control(b"a\x01b"));
        assert!(has_control(b"a\x7fb"));
        assert!(!has_control(b"a b"));
    }
}
