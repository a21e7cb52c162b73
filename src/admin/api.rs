//! The admin API on the admin listener (README "Admin API"):
//! `POST /admin/sessions/revoke` with `{"sub": …}` or `{"sid": …}` →
//! `{"revoked": n}`, and `GET /admin/sessions?sub=…` → that user's sessions
//! (hashed ids, created, last seen). Every call needs `Authorization:
//! Bearer <server.admin_token>`, compared in constant time; without a
//! configured token the API does not exist (404), nor on a non-loopback
//! admin listener without TLS (404, saying why).

use http::header::{ALLOW, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::clock::unix_secs;
use crate::gateway::{App, Gateway};
use crate::logout::events::{self, Kind};
use crate::pages::{self, Body};
use crate::request::body::{self, BodyError};
use crate::session::SessionSummary;

/// Largest revoke request body.
const MAX_BODY_BYTES: usize = 4096;

/// The API's paths.
pub const REVOKE_PATH: &str = "/admin/sessions/revoke";
/// Session listing.
pub const LIST_PATH: &str = "/admin/sessions";

/// Why an admin API call failed. Messages carry no token and no user data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    /// No admin token configured, no sessions, or an unknown path.
    #[error("not found")]
    NotFound,
    /// A non-loopback admin listener without TLS: the API is off there.
    #[error("the admin API is off: a non-loopback admin_listen needs [server.admin_tls]")]
    NeedsTls,
    /// Missing or wrong bearer token.
    #[error("unauthorized")]
    Unauthorized,
    /// Wrong method for the path.
    #[error("method not allowed")]
    Method(&'static str),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The IdP's issuer is not known yet (metadata not loaded).
    #[error("identity provider metadata not available")]
    NotReady,
    /// The session store failed.
    #[error("session store unavailable")]
    Store,
}

impl AdminError {
    fn status(&self) -> StatusCode {
        match self {
            AdminError::NotFound | AdminError::NeedsTls => StatusCode::NOT_FOUND,
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotReady | AdminError::Store => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AdminError::NotFound => "not_found",
            AdminError::NeedsTls => "admin_api_disabled",
            AdminError::Unauthorized => "unauthorized",
            AdminError::Method(_) => "method_not_allowed",
            AdminError::BadRequest(_) => "invalid_request",
            AdminError::NotReady => "not_ready",
            AdminError::Store => "store_unavailable",
        }
    }
}

/// Whether `path` belongs to the admin API (so the listener routes it here).
pub fn is_api_path(path: &str) -> bool {
    path == REVOKE_PATH || path == LIST_PATH
}

/// Compares the presented bearer token with the configured one in constant
/// time. Both sides are hashed first so neither the content nor the length
/// of the configured token leaks through timing.
pub fn token_matches(presented: &[u8], configured: &[u8]) -> bool {
    let a = ring::digest::digest(&ring::digest::SHA256, presented);
    let b = ring::digest::digest(&ring::digest::SHA256, configured);
    bool::from(a.as_ref().ct_eq(b.as_ref()))
}

/// The bearer token of an `Authorization` header (scheme case-insensitive).
fn bearer(req: &Request<Incoming>) -> Option<&[u8]> {
    let v = req.headers().get(AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !rest.is_empty()).then_some(rest)
}

/// Handles an admin API request (see [`is_api_path`]); `allowed` is false
/// on a non-loopback listener without TLS.
pub async fn handle(app: &App, req: Request<Incoming>, allowed: bool) -> Response<Body> {
    let gw = app.gateway();
    let result = if allowed {
        process(&gw, req).await
    } else {
        Err(AdminError::NeedsTls)
    };
    match result {
        Ok(value) => pages::json(StatusCode::OK, &value),
        Err(err) => {
            if err != AdminError::NotFound {
                tracing::warn!(error = %err, "admin API request refused");
            }
            let mut resp = pages::json(
                err.status(),
                &json!({"error": err.code(), "error_description": err.to_string()}),
            );
            match err {
                AdminError::Unauthorized => {
                    resp.headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                AdminError::Method(allow) => {
                    resp.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static(allow));
                }
                _ => {}
            }
            resp
        }
    }
}

async fn process(gw: &Gateway, req: Request<Incoming>) -> Result<Value, AdminError> {
    let Some(token) = &gw.config().server.admin_token else {
        return Err(AdminError::NotFound);
    };
    // Authenticate before revealing anything else (even which methods exist).
    match bearer(&req) {
        Some(presented) if token_matches(presented, token.expose().as_bytes()) => {}
        _ => return Err(AdminError::Unauthorized),
    }
    let (Some(sessions), Some(oidc)) = (gw.sessions(), gw.oidc()) else {
        return Err(AdminError::NotFound);
    };
    let issuer = oidc
        .provider()
        .metadata()
        .map(|m| m.issuer.clone())
        .ok_or(AdminError::NotReady)?;
    match req.uri().path() {
        REVOKE_PATH => {
            if req.method() != Method::POST {
                return Err(AdminError::Method("POST"));
            }
            let target = parse_revoke(req).await?;
            let result = match &target {
                Target::Sub(sub) => sessions.delete_by_sub(&issuer, sub, None).await,
                Target::Sid(sid) => sessions.delete_by_sid(&issuer, sid).await,
            };
            let n = result.map_err(|e| {
                tracing::warn!(error = %e, "admin revoke: ending sessions failed");
                events::record(Kind::Admin, "-", "store_error", 0, None);
                AdminError::Store
            })?;
            events::record(
                Kind::Admin,
                "-",
                if n > 0 { "ok" } else { "no_session" },
                n,
                None,
            );
            Ok(json!({ "revoked": n }))
        }
        LIST_PATH => {
            if req.method() != Method::GET {
                return Err(AdminError::Method("GET"));
            }
            let sub = sub_param(req.uri().query().unwrap_or(""))?;
            let list = sessions.list_by_sub(&issuer, &sub).await.map_err(|e| {
                tracing::warn!(error = %e, "admin list: store failed");
                AdminError::Store
            })?;
            Ok(json!({ "sessions": list.iter().map(summary_json).collect::<Vec<_>>() }))
        }
        _ => Err(AdminError::NotFound),
    }
}

/// Whose sessions to revoke.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Sub(String),
    Sid(String),
}

/// Parses `{"sub": "…"}` or `{"sid": "…"}` (exactly one, a non-empty
/// string).
fn parse_target(body: &[u8]) -> Result<Target, AdminError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| AdminError::BadRequest("body must be a JSON object"))?;
    let obj = v
        .as_object()
        .ok_or(AdminError::BadRequest("body must be a JSON object"))?;
    let get = |k: &str| match obj.get(k) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(AdminError::BadRequest(
            "sub and sid must be non-empty strings",
        )),
    };
    match (get("sub")?, get("sid")?) {
        (Some(sub), None) => Ok(Target::Sub(sub)),
        (None, Some(sid)) => Ok(Target::Sid(sid)),
        _ => Err(AdminError::BadRequest("give exactly one of sub and sid")),
    }
}

async fn parse_revoke(req: Request<Incoming>) -> Result<Target, AdminError> {
    let body = body::read(req, body::JSON, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::ContentType(_) => {
                AdminError::BadRequest("content type must be application/json")
            }
            BodyError::TooLarge | BodyError::Unreadable | BodyError::Timeout => {
                AdminError::BadRequest("body unreadable or too large")
            }
        })?;
    parse_target(&body)
}

/// The single non-empty `sub` query parameter.
fn sub_param(query: &str) -> Result<String, AdminError> {
    let mut found = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "sub" {
            if found.is_some() {
                return Err(AdminError::BadRequest("sub given more than once"));
            }
            found = Some(v.into_owned());
        }
    }
    found
        .filter(|s| !s.is_empty())
        .ok_or(AdminError::BadRequest("sub query parameter required"))
}

fn summary_json(s: &SessionSummary) -> Value {
    json!({
        "id_hash": s.id_hash,
        "created": unix_secs(s.created_at),
        "last_seen": unix_secs(s.last_seen),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
        assert!(!token_matches(b"", b"abc"));
    }

    #[test]
    fn revoke_bodies() {
        assert_eq!(
            parse_target(br#"{"sub":"alice"}"#),
            Ok(Target::Sub("alice".into()))
        );
        assert_eq!(parse_target(br#"{"sid":"s"}"#), Ok(Target::Sid("s".into())));
        for bad in [
            &br#"{"sub":"a","sid":"b"}"#[..],
            br#"{}"#,
            br#"{"sub":""}"#,
            br#"{"sub":5}"#,
            br#"[]"#,
            b"garbage",
        ] {
            assert!(
                parse_target(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn list_query() {
        assert_eq!(sub_param("sub=alice").unwrap(), "alice");
        assert_eq!(sub_param("sub=a%40b").unwrap(), "a@b");
        assert!(sub_param("").is_err());
        assert!(sub_param("sub=").is_err());
        assert!(sub_param("sub=a&sub=b").is_err());
    }
}
