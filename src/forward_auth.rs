//! `GET /.portcullis/auth`: the answer to a front proxy's sub-request
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`,
//! Envoy `ext_authz`), for operators who keep their own proxy.
//!
//! The front proxy describes the original request in `X-Forwarded-Method`,
//! `-Proto`, `-Host` and `-Uri` (or `X-Original-URL`); those are believed
//! only from `trusted_proxies`. From there the original request goes
//! through the same steps as on the request path: path canonicalisation,
//! route matching, session admission (refresh and idle slide included) and
//! the route's `allow_*` rules. Only the answers differ: identity headers
//! become response headers, and nginx, which cannot pass a redirect on,
//! gets a 401 naming the login URL.

use std::net::IpAddr;

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use thiserror::Error;

use crate::assertion::Assertions;
use crate::auth::{self, identity};
use crate::config::{AuthMode, Route};
use crate::context::Ctx;
use crate::login;
use crate::pages::{self, Body};
use crate::paths;
use crate::request::path::{self, PathError};
use crate::request::{ClientKind, origin};

/// The login URL on a `?mode=401` answer, for the front proxy's
/// `error_page 401` location to redirect to.
pub const LOGIN_HEADER: HeaderName = HeaderName::from_static("x-portcullis-login");

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");

/// Why a forward-auth request was refused with 400.
#[derive(Debug, Error)]
pub enum ForwardAuthError {
    /// The peer is not one of `trusted_proxies`: nothing it says about the
    /// original request is believed.
    #[error("forward-auth request from {0}, which is not in trusted_proxies")]
    UntrustedPeer(IpAddr),
    /// Neither `X-Forwarded-Uri` nor `X-Original-URL` nor a path under
    /// `/.portcullis/auth/`.
    #[error("no X-Forwarded-Uri or X-Original-URL")]
    MissingUri,
    /// More than one of `X-Forwarded-Uri`, `X-Original-URL` and a path
    /// under `/.portcullis/auth/`: one may come from the client (a front
    /// proxy sets one and may pass another on).
    #[error("more than one original URI (X-Forwarded-Uri, X-Original-URL, path)")]
    Ambiguous,
    /// The original URI is not a request target.
    #[error("the original URI is not a request target")]
    BadUri,
    /// `X-Forwarded-Method` is not a method.
    #[error("X-Forwarded-Method is not a method")]
    BadMethod,
    /// No original host.
    #[error("no original host (X-Forwarded-Host or Host)")]
    MissingHost,
    /// The original host is not one of the public URLs' hosts.
    #[error("the original host is not a public_url host")]
    ForeignHost,
    /// The original path breaks the request path's rules.
    #[error("original path refused: {0}")]
    Path(#[from] PathError),
}

/// A route as forward-auth needs it.
pub struct RouteRef<'a> {
    /// The route's configuration.
    pub route: &'a Route,
    /// The upstream's origin (the assertion's `aud`).
    pub upstream_origin: &'a str,
}

/// What the gateway lends the handler besides the request context.
pub struct Deps<'a> {
    /// The TCP peer (not a forwarded address): trust is decided on it.
    pub tcp_peer: IpAddr,
    /// The request path's route matching: path, authority → route.
    pub route_for: &'a (dyn Fn(&str, Option<&str>) -> Option<RouteRef<'a>> + Sync),
    /// The gateway's identity header cache.
    pub identity_cache: &'a identity::HeaderCache,
    /// The signed assertion, when `[headers] jwt_assertion` is on.
    pub assertions: Option<&'a Assertions>,
}

/// The original request, as the trusted front proxy described it.
#[derive(Debug)]
struct Original {
    method: Method,
    authority: String,
    target: PathAndQuery,
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Reads the original request the front proxy describes: `X-Forwarded-Uri`
/// (Caddy, Traefik), `X-Original-URL` (nginx; an absolute URL, or a path),
/// or the sub-request's own path under `/.portcullis/auth/` (Envoy's
/// `ext_authz` appends the original path to its `path_prefix`) — exactly
/// one of them. The host comes from the URL, else `X-Forwarded-Host`, else
/// the sub-request's `Host` (Envoy keeps the original authority).
fn original(
    headers: &HeaderMap,
    own_method: &Method,
    own_uri: &Uri,
) -> Result<Original, ForwardAuthError> {
    let method = match header_str(headers, &X_FORWARDED_METHOD) {
        Some(m) => {
            Method::from_bytes(m.trim().as_bytes()).map_err(|_| ForwardAuthError::BadMethod)?
        }
        None if headers.contains_key(&X_FORWARDED_METHOD) => {
            return Err(ForwardAuthError::BadMethod);
        }
        // nginx's and Envoy's sub-requests keep the original method.
        None => own_method.clone(),
    };
    let host = header_str(headers, &X_FORWARDED_HOST)
        .or_else(|| header_str(headers, &HOST))
        .map(|h| h.trim().to_owned());
    let suffix = own_uri
        .path()
        .strip_prefix(paths::AUTH)
        .filter(|rest| rest.starts_with('/'))
        .map(|rest| match own_uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        });
    let sources = (
        header_str(headers, &X_FORWARDED_URI),
        header_str(headers, &X_ORIGINAL_URL),
        suffix.as_deref(),
    );
    // A request target has no fragment (RFC 9112 §3.2), so a `#` here is
    // one the front proxy passed on raw (nginx does). Parsing would drop
    // everything from it and judge `/public/` while the app is sent, and may
    // clean, `/public/#/../admin/`: judge nothing instead.
    if [sources.0, sources.1]
        .into_iter()
        .flatten()
        .any(|s| s.contains('#'))
    {
        return Err(ForwardAuthError::BadUri);
    }
    let (authority, target) = match sources {
        (Some(uri), None, None) => (host, origin_form(uri)?),
        (None, Some(url), None) if url.starts_with('/') => (host, origin_form(url)?),
        (None, Some(url), None) => {
            let uri: Uri = url.parse().map_err(|_| ForwardAuthError::BadUri)?;
            match (uri.authority(), uri.path_and_query()) {
                (Some(a), Some(pq)) => (Some(a.as_str().to_owned()), pq.clone()),
                _ => return Err(ForwardAuthError::BadUri),
            }
        }
        (None, None, Some(path)) => (host, origin_form(path)?),
        (None, None, None) => return Err(ForwardAuthError::MissingUri),
        _ => return Err(ForwardAuthError::Ambiguous),
    };
    let authority = authority
        .filter(|a| !a.is_empty())
        .ok_or(ForwardAuthError::MissingHost)?;
    Ok(Original {
        method,
        authority: authority.to_ascii_lowercase(),
        target,
    })
}

fn origin_form(raw: &str) -> Result<PathAndQuery, ForwardAuthError> {
    if !raw.starts_with('/') {
        return Err(ForwardAuthError::BadUri);
    }
    raw.parse().map_err(|_| ForwardAuthError::BadUri)
}

fn refuse(ctx: &Ctx<'_>, err: &ForwardAuthError) -> Response<Body> {
    tracing::warn!(request_id = ctx.request_id, reason = %err, "forward-auth request refused");
    pages::error(
        ctx.kind,
        StatusCode::BAD_REQUEST,
        "bad_request",
        &err.to_string(),
    )
}

/// Whether `path` (canonical, without parameters) is forward-auth's:
/// `/.portcullis/auth`, or under it (Envoy's `path_prefix` form).
pub fn is_auth_path(path: &str) -> bool {
    path.strip_prefix(paths::AUTH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether the sub-request asked for nginx's `?mode=401` (on
/// `/.portcullis/auth` itself: under it, the query is the original's).
fn wants_401(uri: &Uri) -> bool {
    uri.path() == paths::AUTH
        && uri.query().is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "mode" && v == "401")
        })
}

/// `/.portcullis/auth`.
pub async fn handle<B>(ctx: &Ctx<'_>, req: Request<B>, deps: Deps<'_>) -> Response<Body> {
    let trusted = origin::is_trusted(deps.tcp_peer, &ctx.config.server.trusted_proxies);
    if !trusted {
        return refuse(ctx, &ForwardAuthError::UntrustedPeer(deps.tcp_peer));
    }
    let orig = match original(req.headers(), req.method(), req.uri()) {
        Ok(o) => o,
        Err(err) => return refuse(ctx, &err),
    };
    let origins = &ctx.config.server.public_urls;
    let Some(public) =
        origin::matching_origin(origins, Some(&orig.authority)).and_then(|i| origins.get(i))
    else {
        return refuse(ctx, &ForwardAuthError::ForeignHost);
    };
    let canonical = match path::normalize(orig.target.path()) {
        Ok(p) => p,
        Err(err) => return refuse(ctx, &err.into()),
    };
    let match_path = path::without_params(&canonical);
    let route = if paths::is_reserved(&match_path) || match_path == ctx.config.logout.path {
        // The front proxy must route these to the gateway, never ask about them.
        None
    } else {
        (deps.route_for)(&match_path, Some(&orig.authority))
    };
    let Some(route) = route else {
        tracing::warn!(
            request_id = ctx.request_id,
            "forward-auth: no route matches the original path"
        );
        return pages::error(
            ctx.kind,
            StatusCode::NOT_FOUND,
            "not_found",
            "No route matches this path.",
        );
    };

    let mode_401 = wants_401(req.uri());
    let is_get = orig.method == Method::GET || orig.method == Method::HEAD;
    let login_header = mode_401 && ctx.kind == ClientKind::Navigation && is_get;
    let ctx = Ctx {
        origin: public,
        // nginx cannot pass a redirect on: answer navigations with the 401
        // page, and name the login in a header its error_page can use.
        kind: if login_header {
            ClientKind::Other
        } else {
            ctx.kind
        },
        ..*ctx
    };
    if route.route.auth == AuthMode::None {
        return allowed(&ctx, &[], None);
    }

    // The original request: the sub-request's headers (cookie, Accept, …)
    // with the original method and target, for the request path's admission.
    let (mut parts, _) = req.into_parts();
    parts.method = orig.method;
    parts.uri = Uri::from(orig.target);
    // A WebSocket the front proxy tunnels is its own to close: no deadline.
    parts.headers.remove(http::header::UPGRADE);
    let original = Request::from_parts(parts, ());
    match auth::admit(
        &ctx,
        &original,
        route.route,
        &canonical,
        deps.identity_cache,
    )
    .await
    {
        auth::Admission::Admit {
            headers, record, ..
        } => {
            let assertion = deps
                .assertions
                .and_then(|a| a.header(&record, &public.origin, route.upstream_origin));
            allowed(&ctx, &headers, assertion)
        }
        auth::Admission::Answer(mut resp, why) => {
            if why == "unauthenticated" && login_header {
                let path_and_query = match original.uri().query() {
                    Some(q) => format!("{canonical}?{q}"),
                    None => canonical.clone(),
                };
                let return_to = login::start::destination(&ctx, Some(&path_and_query));
                if let Ok(v) = HeaderValue::from_str(&login::start::login_url(&ctx, &return_to)) {
                    resp.headers_mut().insert(LOGIN_HEADER, v);
                }
            }
            resp
        }
    }
}

/// `200` with every configured identity header, present but empty when the
/// session has no such claim, so a front proxy copying a fixed list never
/// passes a client's value or a placeholder on.
fn allowed(
    ctx: &Ctx<'_>,
    set: &[(HeaderName, HeaderValue)],
    assertion: Option<(HeaderName, HeaderValue)>,
) -> Response<Body> {
    let mut resp = pages::text(StatusCode::OK, "");
    let h = resp.headers_mut();
    let cfg = &ctx.config.headers;
    let optional = [
        cfg.access_token
            .then(|| HeaderName::from_static("x-forwarded-access-token")),
        cfg.authorization.then_some(http::header::AUTHORIZATION),
    ];
    for name in cfg.configured_names().chain(optional.iter().flatten()) {
        h.insert(name.clone(), HeaderValue::from_static(""));
    }
    for (name, value) in set.iter().cloned().chain(assertion) {
        h.insert(name, value);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn reads_the_caddy_and_traefik_headers() {
        let o = original(
            &headers(&[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-host", "App.Example.com"),
                ("x-forwarded-uri", "/a/../b?x=1"),
            ]),
            &Method::GET,
            &AUTH.parse().unwrap(),
        )
        .unwrap();
        assert_eq!(o.method, Method::POST);
        assert_eq!(o.authority, "app.example.com");
        assert_eq!(
            o.target.as_str(),
            "/a/../b?x=1",
            "canonicalised later, as on the request path"
        );
    }

    /// A raw `#` is refused, not cut: what follows it reaches the app.
    #[test]
    fn a_raw_fragment_is_refused_not_cut() {
        for pairs in [
            [("x-original-url", "http://h/public/#/../admin/panel")],
            [("x-original-url", "/public/#/../admin/panel")],
            [("x-forwarded-uri", "/public/#/../admin/panel")],
        ] {
            let mut all = pairs.to_vec();
            all.push(("x-forwarded-host", "h"));
            assert!(
                matches!(
                    original(&headers(&all), &Method::GET, &AUTH.parse().unwrap()),
                    Err(ForwardAuthError::BadUri)
                ),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn reads_nginx_x_original_url() {
        let o = original(
            &headers(&[("x-original-url", "https://app.example.com:8443/p?q")]),
            &Method::HEAD,
            &AUTH.parse().unwrap(),
        )
        .unwrap();
        assert_eq!(o.method, Method::HEAD, "the sub-request's own method");
        assert_eq!(o.authority, "app.example.com:8443");
        assert_eq!(o.target.as_str(), "/p?q");
        let o = original(
            &headers(&[("x-original-url", "/p"), ("x-forwarded-host", "h")]),
            &Method::GET,
            &AUTH.parse().unwrap(),
        )
        .unwrap();
        assert_eq!((o.authority.as_str(), o.target.as_str()), ("h", "/p"));
    }

    #[test]
    fn refuses_what_is_not_an_original_request() {
        let bad = |pairs: &[(&'static str, &'static str)]| {
            original(&headers(pairs), &Method::GET, &AUTH.parse().unwrap())
        };
        assert!(matches!(bad(&[]), Err(ForwardAuthError::MissingUri)));
        assert!(matches!(
            bad(&[
                ("x-forwarded-uri", "/x"),
                ("x-forwarded-host", "h"),
                ("x-original-url", "http://h/y")
            ]),
            Err(ForwardAuthError::Ambiguous)
        ));
        assert!(matches!(
            bad(&[("x-forwarded-uri", "/x")]),
            Err(ForwardAuthError::MissingHost)
        ));
        assert!(matches!(
            bad(&[
                ("x-forwarded-uri", "http://evil/x"),
                ("x-forwarded-host", "h")
            ]),
            Err(ForwardAuthError::BadUri)
        ));
        assert!(matches!(
            bad(&[
                ("x-forwarded-uri", "/x"),
                ("x-forwarded-host", "h"),
                ("x-forwarded-method", "G T")
            ]),
            Err(ForwardAuthError::BadMethod)
        ));
    }

    const AUTH: &str = "/.portcullis/auth";

    #[test]
    fn reads_envoy_s_path_prefix_form() {
        let own: Uri = "/.portcullis/auth/app/x?y=1".parse().unwrap();
        let o = original(&headers(&[("host", "App.example.com")]), &Method::PUT, &own).unwrap();
        assert_eq!(o.method, Method::PUT);
        assert_eq!(o.authority, "app.example.com");
        assert_eq!(o.target.as_str(), "/app/x?y=1");
        assert!(!wants_401(
            &"/.portcullis/auth/app?mode=401".parse().unwrap()
        ));
        assert!(matches!(
            original(
                &headers(&[("host", "h"), ("x-forwarded-uri", "/public/")]),
                &Method::GET,
                &own
            ),
            Err(ForwardAuthError::Ambiguous)
        ));
        assert!(is_auth_path("/.portcullis/auth") && is_auth_path("/.portcullis/auth/x"));
        assert!(!is_auth_path("/.portcullis/authx"));
    }

    #[test]
    fn mode_401_is_read_from_the_query() {
        assert!(wants_401(&"/.portcullis/auth?mode=401".parse().unwrap()));
        assert!(!wants_401(&"/.portcullis/auth?mode=302".parse().unwrap()));
        assert!(!wants_401(&"/.portcullis/auth".parse().unwrap()));
    }
}
