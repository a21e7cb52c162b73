//! `GET /.portcullis/session`: the current session as JSON, for apps and
//! operators. Reading it does not slide the idle timer.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::start;
use crate::clock::unix_secs;
use crate::context::Ctx;
use crate::pages::{self, Body};
use crate::session::cookie::read_session_cookie;

/// Handles the request.
pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return pages::method_not_allowed(ctx.kind, "GET, HEAD");
    }
    let cfg = ctx.session_config;
    let session = match read_session_cookie(req.headers(), &cfg.cookie_name) {
        None => None,
        Some(cookie) => match ctx.sessions.load_without_slide(&cookie).await {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(request_id = ctx.request_id, error = %err, "session store unavailable");
                return pages::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"error": "store_unavailable"}),
                );
            }
        },
    };
    let Some(s) = session else {
        return pages::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "unauthenticated", "login_url": start::login_url(ctx, "/")}),
        );
    };
    let r = &s.record.claims;
    pages::json(
        StatusCode::OK,
        &serde_json::json!({
            "sub": r.sub,
            "email": r.email,
            "email_verified": r.email_verified,
            "preferred_username": r.preferred_username,
            "groups": r.groups,
            "sid": r.sid,
            "created_at": unix_secs(s.created_at()),
            "expires_at": unix_secs(s.expires_at()),
            "idle_expires_at": unix_secs(s.idle_expires_at()),
        }),
    )
}
