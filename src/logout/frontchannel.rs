//! `GET /.portcullis/frontchannel-logout?iss=…&sid=…`: OpenID Connect
//! Front-Channel Logout 1.0 receiver.
//!
//! The IdP renders this URL in a hidden iframe on its logout page. Inside a
//! cross-site frame browsers increasingly send no cookie, so the sessions
//! are found through the server-side `sid` index; a cookie that does arrive
//! is expired as well.

use http::header::{ALLOW, CACHE_CONTROL, PRAGMA, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::context::Ctx;
use crate::logout::events::{self, Kind};
use crate::pages::{self, Body, Framing, Page};
use crate::session::cookie;

/// Why a front-channel request was refused. Messages carry no parameter
/// values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrontchannelError {
    /// Not a GET.
    #[error("method not allowed")]
    Method,
    /// `iss` or `sid` given more than once.
    #[error("repeated query parameter")]
    Repeated,
    /// No (or empty) `sid`: never taken to mean "everyone".
    #[error("missing sid")]
    MissingSid,
    /// `iss` is not the configured issuer.
    #[error("wrong iss")]
    WrongIssuer,
    /// The IdP's metadata is not loaded (its issuer spelling is unknown).
    #[error("identity provider metadata not available")]
    NotReady,
    /// The store could not end the sessions.
    #[error("session store unavailable")]
    Store,
}

/// The `iss` and `sid` of a front-channel request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontchannelQuery {
    /// `iss`, when sent (Microsoft Entra omits it).
    pub iss: Option<String>,
    /// `sid` (required).
    pub sid: String,
}

/// Parses the query: at most one `iss`, exactly one non-empty `sid`.
pub fn parse_query(query: &str) -> Result<FrontchannelQuery, FrontchannelError> {
    let mut iss = None;
    let mut sid = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match name.as_ref() {
            "iss" => &mut iss,
            "sid" => &mut sid,
            _ => continue,
        };
        if slot.is_some() {
            return Err(FrontchannelError::Repeated);
        }
        *slot = Some(value.into_owned());
    }
    let sid = sid
        .filter(|s| !s.is_empty())
        .ok_or(FrontchannelError::MissingSid)?;
    Ok(FrontchannelQuery { iss, sid })
}

/// Whether `iss` names the IdP: its discovery spelling, or the configured
/// issuer allowing for the one trailing slash `url::Url` adds.
fn issuer_matches(iss: &str, discovered: &str, configured: &url::Url) -> bool {
    iss == discovered || iss.trim_end_matches('/') == configured.as_str().trim_end_matches('/')
}

/// The `frame-ancestors` source list: the configured one, else the origins
/// of the issuer and of the end-session endpoint.
fn frame_ancestors(ctx: &Ctx<'_>) -> String {
    let configured = ctx
        .config
        .oidc
        .as_ref()
        .map(|o| o.frontchannel_frame_ancestors.clone())
        .unwrap_or_default();
    if !configured.is_empty() {
        return configured.join(" ");
    }
    let mut list: Vec<String> = Vec::new();
    let provider = ctx.oidc.provider();
    let mut push = |u: &url::Url| {
        let o = u.origin();
        if o.is_tuple() {
            let s = o.ascii_serialization();
            if !list.contains(&s) {
                list.push(s);
            }
        }
    };
    push(provider.issuer_url());
    if let Some(end) = provider
        .metadata()
        .and_then(|m| m.end_session_endpoint.clone())
    {
        push(&end);
    }
    if list.is_empty() {
        "'none'".to_owned()
    } else {
        list.join(" ")
    }
}

async fn process(ctx: &Ctx<'_>, req: &Request<Incoming>) -> Result<usize, FrontchannelError> {
    if req.method() != Method::GET {
        return Err(FrontchannelError::Method);
    }
    let q = parse_query(req.uri().query().unwrap_or(""))?;
    let meta = ctx
        .oidc
        .provider()
        .metadata()
        .ok_or(FrontchannelError::NotReady)?;
    // With a single configured issuer (the only kind of configuration
    // there is), a missing `iss` can only mean that issuer.
    if let Some(iss) = &q.iss
        && !issuer_matches(iss, &meta.issuer, ctx.oidc.provider().issuer_url())
    {
        return Err(FrontchannelError::WrongIssuer);
    }
    ctx.sessions
        .delete_by_sid(&meta.issuer, &q.sid)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "front-channel logout: ending sessions failed");
            FrontchannelError::Store
        })
}

/// Handles a front-channel logout request.
pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    match process(ctx, &req).await {
        Ok(n) => {
            events::record(
                Kind::Frontchannel,
                "-",
                if n > 0 { "ok" } else { "no_session" },
                n,
                None,
            );
            let ancestors = frame_ancestors(ctx);
            let mut resp = Page {
                status: StatusCode::OK,
                title: "Signed out",
                body_html: "<p>Signed out.</p>",
                script: None,
                framing: Framing::Sources(&ancestors),
            }
            .render();
            let h = resp.headers_mut();
            h.insert(
                CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            );
            h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
            if let Some(session) = &ctx.config.session
                && cookie::read_session_cookie(req.headers(), &session.cookie_name).is_some()
                && let Ok(v) =
                    HeaderValue::from_str(&cookie::expired_session_cookie(session, ctx.secure()))
            {
                h.append(SET_COOKIE, v);
            }
            resp
        }
        Err(err) => {
            tracing::warn!(
                request_id = ctx.request_id,
                check = ?err,
                error = %err,
                "front-channel logout rejected"
            );
            let status = match err {
                FrontchannelError::Method => StatusCode::METHOD_NOT_ALLOWED,
                FrontchannelError::NotReady | FrontchannelError::Store => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            let mut resp = pages::error(ctx.kind, status, "invalid_request", &err.to_string());
            if err == FrontchannelError::Method {
                resp.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET"));
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_rules() {
        assert_eq!(
            parse_query("iss=https%3A%2F%2Fidp&sid=abc").unwrap(),
            FrontchannelQuery {
                iss: Some("https://idp".into()),
                sid: "abc".into()
            }
        );
        assert_eq!(parse_query("sid=abc").unwrap().iss, None);
        assert_eq!(
            parse_query("iss=x").err(),
            Some(FrontchannelError::MissingSid)
        );
        assert_eq!(
            parse_query("sid=").err(),
            Some(FrontchannelError::MissingSid)
        );
        assert_eq!(parse_query("").err(), Some(FrontchannelError::MissingSid));
        assert_eq!(
            parse_query("sid=a&sid=b").err(),
            Some(FrontchannelError::Repeated)
        );
    }

    #[test]
    fn issuer_spellings() {
        let cfg = url::Url::parse("http://127.0.0.1:9000").unwrap();
        assert!(issuer_matches(
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000",
            &cfg
        ));
        assert!(issuer_matches(
            "http://127.0.0.1:9000/",
            "http://127.0.0.1:9000",
            &cfg
        ));
        assert!(!issuer_matches(
            "http://127.0.0.1:9001",
            "http://127.0.0.1:9000",
            &cfg
        ));
        assert!(!issuer_matches("", "http://127.0.0.1:9000", &cfg));
    }
}
