//! `GET /.portcullis/callback`: the OIDC redirect URI. Finds the login
//! state by its cookie, makes sure it is used once, lets the OIDC client
//! check `state` and `iss` and exchange the code, then creates a brand-new
//! session and sends the user to the page first asked for.
//!
//! With `cookie_samesite = "strict"` that last step is a tiny page rather
//! than a 303: the callback is reached through a redirect chain started on
//! the IdP's site, and browsers do not send a Strict cookie on a redirect
//! that continues such a chain, so a 303 would land on the app without the
//! new session and send the user back to the IdP, in a loop. A navigation
//! the gateway's own page starts is same-site, so the cookie goes along.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{start, state_cookie};
use crate::config::SameSite;
use crate::context::Ctx;
use crate::oidc::code_grant::MAX_EXPIRES_AT;
use crate::oidc::{CallbackQuery, LoginResult, OidcError};
use crate::pages::{self, Body, Framing, Page};
use crate::session::cookie as session_cookie;
use crate::session::{NewSession, SessionError};

/// A 400 page that explains and links to a fresh start.
fn start_again(
    ctx: &Ctx<'_>,
    message: &str,
    return_to: &str,
    expire: Option<&str>,
) -> Response<Body> {
    let body = format!(
        "<h1>Sign-in could not be completed</h1><p>{}</p><p><a href=\"{}\">Start again</a></p>",
        pages::escape(message),
        pages::escape(&start::login_url(ctx, return_to))
    );
    let mut resp = Page {
        status: StatusCode::BAD_REQUEST,
        title: "Sign-in could not be completed",
        body_html: &body,
        script: None,
        framing: Framing::Deny,
    }
    .render();
    if ctx.kind.wants_json() {
        resp = pages::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_callback", "error_description": message,
                                 "login_url": start::login_url(ctx, return_to)}),
        );
    }
    if let Some(name) = expire
        && let Ok(v) = HeaderValue::from_str(&state_cookie::expire_cookie(name, ctx.secure()))
    {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

/// A Unix time in seconds as a `SystemTime`. The value comes from the IdP
/// (`expires_in`); `UNIX_EPOCH + d` panics when `d` overflows the clock, so
/// it is clamped to a date later than any real token lifetime.
fn unix_time(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs.min(MAX_EXPIRES_AT)))
        .unwrap_or(UNIX_EPOCH)
}

fn new_session(result: LoginResult) -> NewSession {
    NewSession {
        claims: result.claims,
        id_token: result.id_token,
        access_token: result.access_token,
        access_token_expires_at: result.access_token_expires_at.map(unix_time),
        refresh_token: result.refresh_token,
    }
}

fn store_unavailable(ctx: &Ctx<'_>, err: &SessionError) -> Response<Body> {
    tracing::error!(request_id = ctx.request_id, error = %err, "session store unavailable at callback");
    pages::store_unavailable(
        ctx.kind,
        "Sessions cannot be stored right now. Try again shortly.",
    )
}

/// The policy of the Strict hop page: it runs no script and loads nothing,
/// so it needs no nonce.
const HOP_CSP: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// 200 with a page whose meta refresh (and a link, for browsers that refuse
/// refreshes) goes to `destination`: a navigation started by this origin, so
/// a `SameSite=Strict` session cookie is sent on it. No script, not
/// cacheable, never framed, and no `Referer` carrying the callback's code.
fn strict_hop(destination: &str) -> Response<Body> {
    let dest = pages::escape(destination);
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url={dest}\">\
         <title>Signed in</title></head><body><main><h1>Signed in</h1>\
         <p><a href=\"{dest}\">Continue</a></p></main></body></html>"
    );
    let mut resp = Response::new(pages::full(html));
    let h = resp.headers_mut();
    pages::set_common_headers(h);
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(HOP_CSP));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// Handles the callback.
pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return pages::method_not_allowed(ctx.kind, "GET");
    }
    let session_cfg = ctx.session_config;
    let query = match CallbackQuery::parse(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(err) => {
            tracing::warn!(request_id = ctx.request_id, error = %err, "malformed callback");
            return start_again(ctx, "The sign-in response was malformed.", "/", None);
        }
    };
    let Some(state) = query.state.as_deref() else {
        return start_again(ctx, "The sign-in response carried no state.", "/", None);
    };
    let name = state_cookie::cookie_name(session_cfg, state);
    let keys = ctx.sessions.keys();
    let login_cookie = session_cookie::read_session_cookie(req.headers(), &name);
    let Some(login) = login_cookie.and_then(|v| state_cookie::open(keys, &name, &v)) else {
        tracing::warn!(
            request_id = ctx.request_id,
            "callback without a matching login state (expired, used or forged)"
        );
        return start_again(
            ctx,
            "This sign-in has expired or was already used.",
            "/",
            Some(&name),
        );
    };

    // A state is good for one callback, across the fleet.
    match ctx
        .sessions
        .claim_login_state(&name, state_cookie::MAX_AGE)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(request_id = ctx.request_id, "callback replayed");
            return start_again(
                ctx,
                "This sign-in was already used.",
                &login.return_to,
                Some(&name),
            );
        }
        Err(err) => return store_unavailable(ctx, &err),
    }

    let Some(redirect_uri) = start::redirect_uri(ctx) else {
        return pages::error(
            ctx.kind,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Bad public URL.",
        );
    };
    let result = match ctx.oidc.finish_login(&login, &query, &redirect_uri).await {
        Ok(result) => result,
        Err(OidcError::NotReady) => {
            return pages::error(
                ctx.kind,
                StatusCode::SERVICE_UNAVAILABLE,
                "idp_unavailable",
                "The identity provider cannot be reached right now. Try again shortly.",
            );
        }
        Err(err) => {
            tracing::warn!(request_id = ctx.request_id, error = %err, "login rejected at callback");
            let message = match &err {
                OidcError::Authorization { error, .. } if error == "access_denied" => {
                    "The identity provider did not allow this sign-in."
                }
                OidcError::IssuerMismatch | OidcError::MissingIssuer => {
                    "The sign-in response came from an unexpected identity provider."
                }
                _ => "The sign-in response could not be verified.",
            };
            return start_again(ctx, message, &login.return_to, Some(&name));
        }
    };

    // A login always creates a new session; a previous one in this browser
    // is ended so it cannot be replayed.
    if let Some(old) = session_cookie::read_session_cookie(req.headers(), &session_cfg.cookie_name)
        && let Ok(Some(old)) = ctx.sessions.load_without_slide(&old).await
    {
        let _ = ctx.sessions.delete(&old).await;
    }
    let (id, _session) = match ctx.sessions.create(new_session(result)).await {
        Ok(created) => created,
        Err(err) => return store_unavailable(ctx, &err),
    };
    tracing::info!(request_id = ctx.request_id, "login completed");

    let destination = start::destination(ctx, Some(&login.return_to));
    let mut resp = if session_cfg.cookie_samesite == SameSite::Strict {
        strict_hop(&destination)
    } else {
        // A 303: lax and none cookies travel on it.
        pages::redirect(StatusCode::SEE_OTHER, &destination)
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&session_cookie::session_cookie(
        session_cfg,
        &id,
        ctx.secure(),
    )) {
        h.append(SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&state_cookie::expire_cookie(&name, ctx.secure())) {
        h.append(SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::oidc::IdentityClaims;

    fn login_result(expires_at: Option<u64>) -> LoginResult {
        LoginResult {
            claims: IdentityClaims {
                iss: "https://idp.example".into(),
                sub: "alice".into(),
                sid: None,
                email: None,
                email_verified: false,
                preferred_username: None,
                groups: Vec::new(),
            },
            id_token: Secret::new("id"),
            access_token: Secret::new("at"),
            access_token_expires_at: expires_at,
            refresh_token: None,
        }
    }

    #[test]
    fn an_absurd_token_lifetime_does_not_panic() {
        // expires_in saturates at u64::MAX seconds upstream; a SystemTime
        // cannot hold that, and `UNIX_EPOCH + d` would panic.
        let n = new_session(login_result(Some(u64::MAX)));
        let at = n.access_token_expires_at.expect("kept");
        assert!(at > SystemTime::now() + Duration::from_secs(10 * 365 * 24 * 3600));
        let n = new_session(login_result(Some(1_700_000_000)));
        assert_eq!(
            n.access_token_expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            new_session(login_result(None)).access_token_expires_at,
            None
        );
    }
}
