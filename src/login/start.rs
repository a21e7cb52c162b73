//! Starting a login: the redirect to the IdP (with its login-state cookie),
//! `/.portcullis/login?return_to=`, and the answers to requests that need a
//! session and have none.

use http::header::SET_COOKIE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use url::Url;

use super::state_cookie;
use crate::context::Ctx;
use crate::destination;
use crate::pages::{self, Body, Framing, Page};
use crate::paths;
use crate::request::ClientKind;

/// The validated destination for a raw `return_to`.
pub fn destination(ctx: &Ctx<'_>, raw: Option<&str>) -> String {
    let logout = &ctx.config.logout;
    destination::resolve(raw, &ctx.origin.origin, &logout.allowed_return_to, "/")
}

/// `<origin>/.portcullis/login?return_to=<dest>`.
pub fn login_url(ctx: &Ctx<'_>, return_to: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    ctx.url(&format!("{}?{query}", paths::LOGIN))
}

/// The redirect URI registered at the IdP for this origin.
pub fn redirect_uri(ctx: &Ctx<'_>) -> Option<Url> {
    Url::parse(&ctx.url(paths::CALLBACK)).ok()
}

/// 302 to the IdP's authorization endpoint with a fresh login state.
pub fn redirect_to_idp(
    ctx: &Ctx<'_>,
    req_headers: &http::HeaderMap,
    return_to: &str,
) -> Response<Body> {
    let session_cfg = ctx.session_config;
    let Some(redirect_uri) = redirect_uri(ctx) else {
        return pages::error(
            ctx.kind,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Bad public URL.",
        );
    };
    let start = match ctx.oidc.start_login(&redirect_uri, return_to) {
        Ok(start) => start,
        Err(err) => {
            tracing::warn!(request_id = ctx.request_id, error = %err, "cannot start a login");
            return pages::error(
                ctx.kind,
                StatusCode::SERVICE_UNAVAILABLE,
                "idp_unavailable",
                "The identity provider cannot be reached right now. Try again shortly.",
            );
        }
    };
    let keys = ctx.sessions.keys();
    let name = state_cookie::cookie_name(session_cfg, &start.state.state);
    let Some(value) = state_cookie::seal(keys, &name, &start.state) else {
        return pages::error(
            ctx.kind,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Could not start the login.",
        );
    };
    let mut resp = pages::redirect(StatusCode::FOUND, start.authorization_url.as_str());
    let h = resp.headers_mut();
    let present = state_cookie::present(session_cfg, req_headers);
    for old in state_cookie::to_evict(keys, &present) {
        if let Ok(v) = HeaderValue::from_str(&state_cookie::expire_cookie(&old, ctx.secure())) {
            h.append(SET_COOKIE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&state_cookie::set_cookie(&name, &value, ctx.secure())) {
        h.append(SET_COOKIE, v);
    }
    resp
}

/// `GET /.portcullis/login?return_to=`: starts a login explicitly.
pub async fn handle(ctx: &Ctx<'_>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return pages::method_not_allowed(ctx.kind, "GET, HEAD");
    }
    let raw = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned())
    });
    let return_to = destination(ctx, raw.as_deref());
    redirect_to_idp(ctx, req.headers(), &return_to)
}

/// The answer to a request that needs a session and has none: navigations
/// (GET/HEAD) go to the IdP, JSON clients get 401 JSON with a login URL,
/// anything else a 401 page linking to the login.
pub fn unauthenticated<B>(ctx: &Ctx<'_>, req: &Request<B>, path_and_query: &str) -> Response<Body> {
    let return_to = destination(ctx, Some(path_and_query));
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    match ctx.kind {
        ClientKind::Navigation if is_get => redirect_to_idp(ctx, req.headers(), &return_to),
        ClientKind::Json => pages::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({ "error": "unauthenticated", "login_url": login_url(ctx, &return_to) }),
        ),
        _ => {
            let body = format!(
                "<h1>Sign in required</h1><p>You need to sign in to see this page.</p>\
                 <p><a href=\"{}\">Sign in</a></p>",
                pages::escape(&login_url(ctx, &return_to))
            );
            Page {
                status: StatusCode::UNAUTHORIZED,
                title: "Sign in required",
                body_html: &body,
                script: None,
                framing: Framing::Deny,
            }
            .render()
        }
    }
}
