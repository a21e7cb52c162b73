//! `POST /.portcullis/backchannel-logout`: OpenID Connect Back-Channel
//! Logout 1.0 (with errata set 1) receiver.
//!
//! The checks are split so they can be tested and fuzzed without a network:
//! [`parse_form`] (the request body), [`parse_header`] (the JWT header),
//! [`decode_claims_unverified`] (the payload, for the fuzz target only) and
//! [`validate_claims`] (every §2.6 claim rule). [`handle`] adds what needs
//! the outside world: the rate limit, the signature against the IdP's keys,
//! and the `jti` replay cache with the deletion of sessions (one store step,
//! so a logout that did not complete never leaves its `jti` behind).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{ALLOW, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use crate::clock::unix_now;
use crate::context::Ctx;
use crate::logout::events::{self, Kind};
use crate::logout::rate_limit::PeerLimiter;
use crate::pages::{self, Body};
use crate::request::body::{self, BodyError};
use crate::session::Revoke;

/// Largest request body accepted (README "IdP-initiated logout": 16 KiB).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// How far in the future `iat` may be (clock skew).
pub const MAX_IAT_AHEAD: Duration = Duration::from_secs(60);
/// How old `iat` may be.
pub const MAX_IAT_AGE: Duration = Duration::from_secs(5 * 60);
/// How long a `jti` is remembered: longer than any token passes the `iat`
/// window (`MAX_IAT_AGE + MAX_IAT_AHEAD`), so a replay is caught either by
/// the cache or by `iat`.
pub const JTI_TTL: Duration = Duration::from_secs(10 * 60);
/// The event member a logout token must carry.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Rate limit per client address (TCP peer; IPv6 by /64): burst size and
/// sustained rate (requests per second). An IdP sends one request per
/// session ended; this leaves room for mass logouts while bounding the cost
/// of a flood (each request may cost a signature check and a store write),
/// and a flood from one address leaves the IdP's own requests alone.
const RATE_BURST: u32 = 100;
const RATE_PER_SEC: u32 = 50;
/// How many client addresses have a bucket at once (a few hundred bytes
/// each); beyond it the least recently seen are forgotten.
const RATE_PEERS: u64 = 10_000;

/// Why a back-channel logout request failed. Each variant names one check;
/// messages never carry the token or any claim value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackchannelError {
    /// Not a POST.
    #[error("method not allowed")]
    Method,
    /// Too many requests.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The Content-Type is not `application/x-www-form-urlencoded`.
    #[error("content type must be application/x-www-form-urlencoded")]
    ContentType,
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("request body too large")]
    BodyTooLarge,
    /// The body could not be read.
    #[error("request body could not be read")]
    BodyRead,
    /// The body did not arrive within `server.header_read_timeout`.
    #[error("request body not received in time")]
    BodyTimeout,
    /// No `logout_token` parameter (or an empty one).
    #[error("missing logout_token parameter")]
    MissingToken,
    /// More than one `logout_token` parameter.
    #[error("more than one logout_token parameter")]
    DuplicateToken,
    /// Not a compact JWS with a parseable header.
    #[error("malformed logout token: {0}")]
    Malformed(&'static str),
    /// `typ` present and neither `logout+jwt` nor `JWT`.
    #[error("wrong token type (typ)")]
    Typ,
    /// The algorithm is not one the IdP signs ID tokens with (or is
    /// symmetric / `none`).
    #[error("signing algorithm not allowed")]
    Alg,
    /// No IdP key fits the token's `kid` and `alg`.
    #[error("no matching signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// The IdP's metadata is not loaded, so nothing can be verified.
    #[error("identity provider metadata not available")]
    NotReady,
    /// `iss` missing or not the IdP's issuer.
    #[error("wrong or missing iss")]
    Iss,
    /// `aud` missing or does not contain the client id.
    #[error("wrong or missing aud")]
    Aud,
    /// `iat` missing, malformed, too old or too far ahead.
    #[error("iat missing, too old or in the future")]
    Iat,
    /// `exp` missing (when required), malformed or past.
    #[error("exp missing or expired")]
    Exp,
    /// `events` missing or not the back-channel logout event object.
    #[error("events claim missing or malformed")]
    Events,
    /// A `nonce` is present (an ID token, not a logout token).
    #[error("nonce must not be present")]
    Nonce,
    /// Neither `sid` nor `sub`, or one of them is not a non-empty string.
    #[error("sid or sub required")]
    Subject,
    /// `jti` missing or not a non-empty string.
    #[error("jti missing")]
    Jti,
    /// This `jti` was seen before.
    #[error("logout token replayed (jti seen before)")]
    Replay,
    /// The store could not record the `jti` or end the sessions.
    #[error("session store unavailable")]
    Store,
}

impl BackchannelError {
    /// A short fixed name of the failed check, for the log line.
    pub fn check(&self) -> &'static str {
        use BackchannelError as E;
        match self {
            E::Method => "method",
            E::RateLimited => "rate_limit",
            E::ContentType => "content_type",
            E::BodyTooLarge => "body_size",
            E::BodyRead => "body_read",
            E::BodyTimeout => "body_timeout",
            E::MissingToken => "logout_token_missing",
            E::DuplicateToken => "logout_token_duplicate",
            E::Malformed(_) => "malformed",
            E::Typ => "typ",
            E::Alg => "alg",
            E::UnknownKey => "kid",
            E::Signature => "signature",
            E::NotReady => "idp_not_ready",
            E::Iss => "iss",
            E::Aud => "aud",
            E::Iat => "iat",
            E::Exp => "exp",
            E::Events => "events",
            E::Nonce => "nonce",
            E::Subject => "sid_sub",
            E::Jti => "jti",
            E::Replay => "jti_replay",
            E::Store => "store",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            BackchannelError::Method => StatusCode::METHOD_NOT_ALLOWED,
            BackchannelError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            BackchannelError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// What a logout token's checks settle for [`validate_claims`].
#[derive(Debug, Clone, Copy)]
pub struct ClaimRules<'a> {
    /// The IdP's issuer, exactly as its discovery document spells it.
    pub issuer: &'a str,
    /// Our client id (must be in `aud`).
    pub client_id: &'a str,
    /// Whether `exp` is required (`oidc.backchannel_require_exp`).
    pub require_exp: bool,
}

/// The JWT header fields the receiver looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// `alg`, parsed (unknown names and `none` fail parsing).
    pub alg: jsonwebtoken::Algorithm,
    /// `kid`, if any.
    pub kid: Option<String>,
    /// `typ`, if any.
    pub typ: Option<String>,
}

/// A validated logout token: whose sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    /// The issuer (equal to the IdP's).
    pub iss: String,
    /// The IdP session id, if sent.
    pub sid: Option<String>,
    /// The subject, if sent.
    pub sub: Option<String>,
    /// Issued-at, seconds since the epoch.
    pub iat: u64,
    /// The token id, for the replay cache.
    pub jti: String,
}

/// The single `logout_token` of a form-encoded body. Other parameters are
/// ignored; a missing, empty or repeated `logout_token` is an error.
pub fn parse_form(body: &[u8]) -> Result<String, BackchannelError> {
    let mut found: Option<String> = None;
    for (name, value) in form_urlencoded::parse(body) {
        if name == "logout_token" {
            if found.is_some() {
                return Err(BackchannelError::DuplicateToken);
            }
            found = Some(value.into_owned());
        }
    }
    match found {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(BackchannelError::MissingToken),
    }
}

/// Splits a compact JWS into its three parts; anything else is malformed.
fn split(token: &str) -> Result<(&str, &str, &str), BackchannelError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => Err(BackchannelError::Malformed("not a compact JWS")),
    }
}

/// Parses the JWT header. `alg: none`, HMAC names and unknown names parse
/// or fail here; which algorithms are acceptable is decided against the
/// IdP's metadata later (and `typ` in [`validate_claims`]).
pub fn parse_header(token: &str) -> Result<TokenHeader, BackchannelError> {
    let (h, _, _) = split(token)?;
    let raw = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| BackchannelError::Malformed("header is not base64url"))?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|_| BackchannelError::Malformed("header is not JSON"))?;
    let obj = v
        .as_object()
        .ok_or(BackchannelError::Malformed("header is not an object"))?;
    let alg = obj
        .get("alg")
        .cloned()
        .and_then(|a| serde_json::from_value::<jsonwebtoken::Algorithm>(a).ok())
        .ok_or(BackchannelError::Alg)?;
    let text = |name: &str| -> Result<Option<String>, BackchannelError> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(BackchannelError::Malformed("header member is not a string")),
        }
    };
    // `crit` names extensions we would have to understand (RFC 7515 §4.1.11).
    if obj.contains_key("crit") {
        return Err(BackchannelError::Malformed("unsupported crit header"));
    }
    Ok(TokenHeader {
        alg,
        kid: text("kid")?,
        typ: text("typ")?,
    })
}

/// The payload as JSON without verifying anything: only for fuzzing and
/// tests of [`validate_claims`]; the handler verifies the signature first.
pub fn decode_claims_unverified(token: &str) -> Result<Value, BackchannelError> {
    let (_, p, _) = split(token)?;
    let raw = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| BackchannelError::Malformed("payload is not base64url"))?;
    serde_json::from_slice(&raw).map_err(|_| BackchannelError::Malformed("payload is not JSON"))
}

/// Whether `typ` is acceptable: absent, `logout+jwt`, or `JWT` (taken as
/// untyped: Glewlwyd 2.7 and older Keycloak releases send it, and §2.6 does
/// not check `typ`; the `events` claim and the `nonce` ban already keep an
/// ID token out), compared case-insensitively after dropping a leading
/// `application/`. Any other type (`at+jwt`, …) is refused.
fn typ_ok(typ: Option<&str>) -> bool {
    let Some(t) = typ else { return true };
    let t = t.to_ascii_lowercase();
    let t = t.strip_prefix("application/").unwrap_or(&t);
    t == "logout+jwt" || t == "jwt"
}

/// A NumericDate claim as whole seconds; fractions are allowed by RFC 7519
/// and truncated. Negative, non-finite or non-numeric values are `None`.
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // `as` saturates; the range check keeps absurd values out.
    (f.is_finite() && (0.0..1e15).contains(&f)).then_some(f as u64)
}

fn non_empty_string(v: Option<&Value>) -> Result<Option<String>, ()> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// Every claim rule of Back-Channel Logout 1.0 §2.6 (errata 1) and of
/// README "IdP-initiated logout",
/// on a payload whose signature has been verified. `now` is seconds since
/// the epoch. Pure: no clock, no I/O, no panic on any input.
pub fn validate_claims(
    header: &TokenHeader,
    claims: &Value,
    now: u64,
    rules: &ClaimRules<'_>,
) -> Result<LogoutClaims, BackchannelError> {
    use BackchannelError as E;
    if !typ_ok(header.typ.as_deref()) {
        return Err(E::Typ);
    }
    let c = claims
        .as_object()
        .ok_or(E::Malformed("payload is not an object"))?;

    let iss = match c.get("iss") {
        Some(Value::String(s)) if s == rules.issuer => s.clone(),
        _ => return Err(E::Iss),
    };
    let aud_ok = match c.get("aud") {
        Some(Value::String(s)) => s == rules.client_id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(rules.client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(E::Aud);
    }
    let iat = c.get("iat").and_then(numeric_date).ok_or(E::Iat)?;
    if iat > now.saturating_add(MAX_IAT_AHEAD.as_secs())
        || now.saturating_sub(iat) > MAX_IAT_AGE.as_secs()
    {
        return Err(E::Iat);
    }
    match c.get("exp") {
        None if rules.require_exp => return Err(E::Exp),
        None => {}
        Some(v) => match numeric_date(v) {
            Some(exp) if exp > now => {}
            _ => return Err(E::Exp),
        },
    }
    match c.get("events") {
        Some(Value::Object(ev)) if matches!(ev.get(LOGOUT_EVENT), Some(Value::Object(_))) => {}
        _ => return Err(E::Events),
    }
    if c.contains_key("nonce") {
        return Err(E::Nonce);
    }
    let sid = non_empty_string(c.get("sid")).map_err(|()| E::Subject)?;
    let sub = non_empty_string(c.get("sub")).map_err(|()| E::Subject)?;
    if sid.is_none() && sub.is_none() {
        return Err(E::Subject);
    }
    let jti = non_empty_string(c.get("jti"))
        .ok()
        .flatten()
        .ok_or(E::Jti)?;
    Ok(LogoutClaims {
        iss,
        sid,
        sub,
        iat,
        jti,
    })
}

/// Every check that needs no key and no store, on an untrusted request
/// body: [`parse_form`], [`parse_header`], [`decode_claims_unverified`],
/// [`validate_claims`]. The signature is NOT checked: this exists for the
/// fuzz target (`fuzz/`) and tests, never to accept a token.
pub fn check_unverified(
    body: &[u8],
    now: u64,
    rules: &ClaimRules<'_>,
) -> Result<LogoutClaims, BackchannelError> {
    let token = parse_form(body)?;
    let header = parse_header(&token)?;
    let claims = decode_claims_unverified(&token)?;
    validate_claims(&header, &claims, now, rules)
}

/// The buckets, per process: they outlive configuration reloads.
static LIMITER: LazyLock<PeerLimiter> =
    LazyLock::new(|| PeerLimiter::new(RATE_BURST, RATE_PER_SEC, RATE_PEERS));

/// Takes one request from `peer`'s bucket; `false` when it is empty.
fn rate_ok(peer: IpAddr) -> bool {
    LIMITER.allow(peer, Instant::now())
}

impl From<BodyError> for BackchannelError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::ContentType(_) => BackchannelError::ContentType,
            BodyError::TooLarge => BackchannelError::BodyTooLarge,
            BodyError::Unreadable => BackchannelError::BodyRead,
            BodyError::Timeout => BackchannelError::BodyTimeout,
        }
    }
}

/// Verifies the signature with the IdP's key for `header` and returns the
/// payload. Time and audience claims are checked by [`validate_claims`].
async fn verify(
    ctx: &Ctx<'_>,
    token: &str,
    header: &TokenHeader,
) -> Result<Value, BackchannelError> {
    use crate::oidc::OidcError;
    let key = ctx
        .oidc
        .provider()
        .decoding_key(header.kid.as_deref(), header.alg)
        .await
        .map_err(|e| match e {
            OidcError::NotReady => BackchannelError::NotReady,
            OidcError::DisallowedAlg => BackchannelError::Alg,
            _ => BackchannelError::UnknownKey,
        })?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => BackchannelError::Signature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => BackchannelError::Alg,
            _ => BackchannelError::Malformed("token does not decode"),
        })
}

/// Records the token's `jti` and ends the sessions it names, as one store
/// step (see [`crate::session::Sessions::revoke_once`]); the count ended.
async fn end_sessions(ctx: &Ctx<'_>, claims: &LogoutClaims) -> Result<usize, BackchannelError> {
    let what = match (&claims.sid, &claims.sub) {
        (Some(sid), _) => Revoke::Sid(sid),
        // `iat` has whole seconds while sessions record milliseconds: a
        // session created in the token's own second counts as "before"
        // (erring toward ending a session, never toward keeping one).
        (None, Some(sub)) => Revoke::Sub(
            sub,
            Some(UNIX_EPOCH + Duration::from_secs(claims.iat.saturating_add(1))),
        ),
        (None, None) => return Err(BackchannelError::Subject),
    };
    let key = jti_key(&claims.iss, &claims.jti);
    match ctx
        .sessions
        .revoke_once(&key, JTI_TTL, &claims.iss, what)
        .await
    {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(BackchannelError::Replay),
        Err(e) => {
            // Nothing was kept for this jti unless the sessions ended too,
            // so the IdP's retry is not refused as a replay.
            tracing::warn!(error = %e, "back-channel logout: jti and sessions not written");
            Err(BackchannelError::Store)
        }
    }
}

/// The key a `jti` is remembered under.
pub fn jti_key(iss: &str, jti: &str) -> String {
    format!("bcl-jti:{iss}:{jti}")
}

async fn process(ctx: &Ctx<'_>, req: Request<Incoming>) -> Result<usize, BackchannelError> {
    if req.method() != Method::POST {
        return Err(BackchannelError::Method);
    }
    if !rate_ok(ctx.peer) {
        return Err(BackchannelError::RateLimited);
    }
    // The gateway's own paths take their bodies within the head's time.
    let deadline = ctx.config.server.header_read_timeout;
    let body = body::read_within(req, body::FORM, MAX_BODY_BYTES, deadline).await?;
    let token = parse_form(&body)?;
    let header = parse_header(&token)?;
    let meta = ctx
        .oidc
        .provider()
        .metadata()
        .ok_or(BackchannelError::NotReady)?;
    let payload = verify(ctx, &token, &header).await?;
    let require_exp = ctx
        .config
        .oidc
        .as_ref()
        .is_none_or(|o| o.backchannel_require_exp);
    let rules = ClaimRules {
        issuer: &meta.issuer,
        client_id: ctx.oidc.client_id(),
        require_exp,
    };
    let claims = validate_claims(&header, &payload, unix_now(), &rules)?;
    end_sessions(ctx, &claims).await
}

/// Handles a logout token from the IdP: 200 (`no-store`) once the named
/// sessions are gone (also when none matched), 400 JSON naming the failure
/// otherwise, 429 when the client's address exceeds the rate limit.
pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    match process(ctx, req).await {
        Ok(n) => {
            events::record(
                Kind::Backchannel,
                "-",
                if n > 0 { "ok" } else { "no_session" },
                n,
                None,
            );
            let mut resp = Response::new(pages::empty());
            pages::set_common_headers(resp.headers_mut());
            resp
        }
        Err(err) => {
            tracing::warn!(
                request_id = ctx.request_id,
                check = err.check(),
                error = %err,
                "back-channel logout rejected"
            );
            if matches!(err, BackchannelError::Store) {
                events::record(Kind::Backchannel, "-", "store_error", 0, None);
            }
            let mut resp = pages::json(
                err.status(),
                &serde_json::json!({
                    "error": "invalid_request",
                    "error_description": err.to_string(),
                }),
            );
            match err {
                BackchannelError::Method => {
                    resp.headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("POST"));
                }
                BackchannelError::RateLimited => {
                    resp.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                }
                _ => {}
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests;
