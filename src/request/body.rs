//! Reading the body of a request to one of the gateway's own form or JSON
//! endpoints (`/logout`, the back-channel logout receiver, the admin API),
//! with one content-type rule and one size cap check for all of them.
//!
//! The rule: the media type (what comes before any `;`), trimmed, equals
//! the expected one ignoring ASCII case; parameters such as `charset` are
//! allowed. A type that merely starts with the expected one
//! (`application/x-www-form-urlencodedXYZ`) is a different type and is
//! refused, as is a request without `Content-Type`.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// `application/x-www-form-urlencoded`.
pub const FORM: &str = "application/x-www-form-urlencoded";
/// `application/json`.
pub const JSON: &str = "application/json";

/// Why a body was not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// `Content-Type` is missing or names another media type.
    #[error("content type must be {0}")]
    ContentType(&'static str),
    /// The body (or its declared `Content-Length`) exceeds the cap.
    #[error("request body too large")]
    TooLarge,
    /// The body could not be read (the client went away, bad framing).
    #[error("request body could not be read")]
    Unreadable,
    /// The body did not arrive within its deadline.
    #[error("request body not received in time")]
    Timeout,
}

/// Whether the request's `Content-Type` names the media type `expected`
/// (see the module docs for the rule).
pub fn has_media_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}

/// The whole body of a request whose `Content-Type` is `expected`, at most
/// `max` bytes. A declared `Content-Length` over the cap is refused before
/// anything is read.
pub async fn read<B>(
    req: http::Request<B>,
    expected: &'static str,
    max: usize,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !has_media_type(req.headers(), expected) {
        return Err(BodyError::ContentType(expected));
    }
    let (parts, body) = req.into_parts();
    read_checked(&parts.headers, body, max).await
}

/// [`read`], within `deadline` (SPEC, "Limits": a body for the gateway's
/// own paths arrives within `header_read_timeout`), so a client dripping a
/// body cannot hold the request open.
pub async fn read_within<B>(
    req: http::Request<B>,
    expected: &'static str,
    max: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(deadline, read(req, expected, max))
        .await
        .map_err(|_| BodyError::Timeout)?
}

/// [`read_checked`], within `deadline`.
pub async fn read_checked_within<B>(
    headers: &HeaderMap,
    body: B,
    max: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(deadline, read_checked(headers, body, max))
        .await
        .map_err(|_| BodyError::Timeout)?
}

/// The whole `body`, at most `max` bytes, for a caller that has checked
/// [`has_media_type`] on its `headers` itself.
pub async fn read_checked<B>(headers: &HeaderMap, body: B, max: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = content_type {
            h.insert(CONTENT_TYPE, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn media_type_is_compared_exactly_parameters_allowed() {
        for ok in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded",
            " application/x-www-form-urlencoded ; charset=UTF-8",
            "application/x-www-form-urlencoded;charset=utf-8",
        ] {
            assert!(has_media_type(&headers(Some(ok)), FORM), "{ok}");
        }
        for bad in [
            "application/x-www-form-urlencodedXYZ",
            "application/x-www-form-urlencoded-evil; charset=utf-8",
            "xapplication/x-www-form-urlencoded",
            "multipart/form-data",
            "application/json",
            "",
        ] {
            assert!(!has_media_type(&headers(Some(bad)), FORM), "{bad}");
        }
        assert!(!has_media_type(&headers(None), FORM), "missing type");
        assert!(has_media_type(&headers(Some("application/json")), JSON));
        assert!(!has_media_type(&headers(Some("application/jsonp")), JSON));
    }

    fn request(content_type: &str, body: &'static str) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method("POST")
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request")
    }

    #[tokio::test]
    async fn reads_within_the_cap_and_refuses_the_rest() {
        let body = read(request("application/json", "{}"), JSON, 16).await;
        assert_eq!(body, Ok(Bytes::from_static(b"{}")));
        let near_miss = read(request("application/jsonx", "{}"), JSON, 16).await;
        assert_eq!(near_miss, Err(BodyError::ContentType(JSON)));
        let big = read(request(FORM, "a=0123456789abcdef"), FORM, 16).await;
        assert_eq!(big, Err(BodyError::TooLarge));
        let mut declared = request(FORM, "a=1");
        declared
            .headers_mut()
            .insert(CONTENT_LENGTH, http::HeaderValue::from_static("100000"));
        assert_eq!(read(declared, FORM, 16).await, Err(BodyError::TooLarge));
    }
}
