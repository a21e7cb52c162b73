//! `/logout` (RP-initiated logout) and its companions `/logout/flow`,
//! `/logout/continue` and `/logout/done`.
//!
//! Every logout, whatever the mode and even with the IdP down: deletes the
//! server-side session and its index entries (other instances are told by
//! the store), expires the cookie with the same name, domain and attributes,
//! answers `no-store`, revokes the tokens at the IdP in the background, and
//! records one `logout` event. Then the user goes where the mode says: to the
//! IdP's end-session endpoint (OpenID Connect RP-Initiated Logout 1.0 §2:
//! "the RP requests that the OP log out the End-User by redirecting the
//! End-User's User Agent to the OP's Logout Endpoint") with `id_token_hint`,
//! `client_id`, `post_logout_redirect_uri` and a single-use `state`, or
//! straight to the final destination.
//!
//! `Clear-Site-Data` goes only on the response that ends the flow, never on
//! one that sends the browser to the IdP: `"cookies"` would delete the IdP's
//! session cookie (same registrable domain) before the IdP could use it.

use std::time::{Duration, SystemTime};

use http::header::{CONTENT_SECURITY_POLICY, SET_COOKIE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use url::Url;

use super::anon_state::AnonState;
use super::events::{self, Kind};
use super::html::{self, ConfirmFields, ContinueMode, DoneTarget};
use super::idp_probe;
use super::state::{self, LogoutState};
use super::trigger::{self, Decision};
use crate::config::{ClearSiteData, LogoutMode};
use crate::context::Ctx;
use crate::destination;
use crate::pages::{self, Body};
use crate::paths;
use crate::request::ClientKind;
use crate::request::body;
use crate::session::Session;
use crate::session::cookie::{
    cookie_values, expired_session_cookie, helper_cookie, read_session_cookie,
    session_cookie_values,
};

/// The Content-Security-Policy of `/logout/done`'s redirects: the README's
/// policy for that path ("Where the user goes"), less the script nonce (a redirect has no script).
const DONE_REDIRECT_CSP: &str = "default-src 'none'; frame-ancestors 'self'";

/// Largest logout form body read.
const MAX_FORM: usize = 16 * 1024;

/// The parameters of a logout request (query, then form body).
#[derive(Debug, Default)]
struct Params {
    csrf: Option<String>,
    mode: Option<String>,
    return_to: Option<String>,
    scope: Option<String>,
}

impl Params {
    fn absorb(&mut self, bytes: &[u8]) {
        for (k, v) in form_urlencoded::parse(bytes) {
            let slot = match &*k {
                "csrf" => &mut self.csrf,
                "mode" => &mut self.mode,
                "return_to" => &mut self.return_to,
                "scope" => &mut self.scope,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
    }
}

async fn read_params(
    req: Request<Incoming>,
    deadline: Duration,
) -> Result<(http::request::Parts, Params), (StatusCode, &'static str)> {
    let (parts, body) = req.into_parts();
    let mut params = Params::default();
    if let Some(q) = parts.uri.query() {
        params.absorb(q.as_bytes());
    }
    if params.csrf.is_none() {
        params.csrf = parts
            .headers
            .get("x-portcullis-csrf")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
    }
    // Only a form body is read; another type's body is ignored, as it
    // always was, so the request counts as one without form fields.
    if parts.method == Method::POST && body::has_media_type(&parts.headers, body::FORM) {
        // The gateway's own paths take their bodies within the head's time.
        let bytes = body::read_checked_within(&parts.headers, body, MAX_FORM, deadline)
            .await
            .map_err(|e| match e {
                body::BodyError::Timeout => (
                    StatusCode::REQUEST_TIMEOUT,
                    "logout form not received in time",
                ),
                _ => (
                    StatusCode::BAD_REQUEST,
                    "logout form too large or unreadable",
                ),
            })?;
        params.absorb(&bytes);
    }
    Ok((parts, params))
}

/// The `Clear-Site-Data` value, or `None` when configured empty.
fn clear_site_data(ctx: &Ctx<'_>) -> Option<HeaderValue> {
    let list: Vec<&str> = ctx
        .config
        .logout
        .clear_site_data
        .iter()
        .map(|d| match d {
            ClearSiteData::Storage => "\"storage\"",
            ClearSiteData::Cache => "\"cache\"",
            ClearSiteData::Cookies => "\"cookies\"",
        })
        .collect();
    if list.is_empty() {
        return None;
    }
    HeaderValue::from_str(&list.join(", ")).ok()
}

fn add(resp: &mut Response<Body>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(name, v);
    }
}

fn redirect(location: &str) -> Response<Body> {
    pages::redirect(StatusCode::SEE_OTHER, location)
}

/// The response that ends the flow: 303 to the destination (or JSON for
/// JSON clients), with `Clear-Site-Data`.
fn finish(ctx: &Ctx<'_>, mode: LogoutMode, destination: &str) -> Response<Body> {
    let mut resp = if ctx.kind == ClientKind::Json {
        pages::json(
            StatusCode::OK,
            &serde_json::json!({"logged_out": true, "mode": mode.as_str(), "return_to": destination}),
        )
    } else {
        redirect(destination)
    };
    if let Some(csd) = clear_site_data(ctx) {
        resp.headers_mut()
            .insert(HeaderName::from_static("clear-site-data"), csd);
    }
    resp
}

/// The session store could not end the session: 503, and the cookie is
/// expired anyway so this browser at least stops sending it.
fn store_unavailable(ctx: &Ctx<'_>) -> Response<Body> {
    let mut resp = pages::store_unavailable(
        ctx.kind,
        "Sign-out could not be completed right now. Try again shortly.",
    );
    add(
        &mut resp,
        SET_COOKIE,
        &expired_session_cookie(ctx.session_config, ctx.secure()),
    );
    resp
}

/// A session's refresh and access tokens, for revocation.
fn tokens_of(session: &Session) -> crate::oidc::revoke::SessionTokens {
    (
        session.record.refresh_token.clone(),
        Some(session.record.access_token.clone()),
    )
}

fn session_age(session: &Session) -> Option<Duration> {
    SystemTime::now().duration_since(session.created_at()).ok()
}

/// `GET|POST /logout`.
pub async fn handle(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::POST && req.method() != Method::HEAD {
        return pages::method_not_allowed(ctx.kind, "GET, HEAD, POST");
    }
    let session_cfg = ctx.session_config;
    let (parts, params) = match read_params(req, ctx.config.server.header_read_timeout).await {
        Ok(p) => p,
        Err((status, why)) => {
            let mut resp = pages::error(ctx.kind, status, "bad_request", why);
            if status == StatusCode::REQUEST_TIMEOUT {
                // The rest of the body may still trickle in: end it here.
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            return resp;
        }
    };
    let logout_cfg = &ctx.config.logout;

    // Every value of the session cookie: a second one (planted with a
    // longer Path by a sibling domain, or over http) must not hide the
    // session this browser asks to end. The first that names a session is
    // the one ended.
    // A store failure is acted on only once the request is known to be
    // allowed to log out: a cross-site, HEAD or prefetch request must not
    // get the cookie expired (nor a logout event) just because the store
    // is down.
    // Read from the store itself, not an instance's cache: with Redis a
    // cached copy may hold a refresh token another instance has replaced,
    // and revoking that one would leave the live one valid.
    let mut loaded = Ok(None);
    for value in session_cookie_values(&parts.headers, &session_cfg.cookie_name) {
        match ctx.sessions.load_fresh(&value).await {
            Ok(None) => {}
            found @ Ok(Some(_)) => {
                loaded = found;
                break;
            }
            Err(err) => loaded = Err(err),
        }
    }

    // Who may trigger it. Without the session its token cannot be checked.
    let csrf_valid = match (&loaded, &params.csrf) {
        (Ok(Some(s)), Some(token)) => ctx.sessions.verify_csrf(s, token),
        _ => false,
    };
    let navigation = ctx.kind == ClientKind::Navigation;
    match trigger::decide(
        &parts.method,
        &parts.headers,
        csrf_valid,
        navigation,
        &ctx.origin.origin,
    ) {
        Decision::LogOut => {}
        Decision::Confirm => {
            let token = match &loaded {
                Ok(Some(s)) => Some(ctx.sessions.csrf_token(s)),
                _ => None,
            };
            return html::confirm(&ConfirmFields {
                action: &logout_cfg.path,
                csrf: token.as_deref(),
                mode: params.mode.as_deref(),
                return_to: params.return_to.as_deref(),
                scope: params.scope.as_deref(),
                redirect_origins: &redirect_origins(ctx),
            });
        }
        Decision::Refuse => {
            tracing::warn!(
                request_id = ctx.request_id,
                "logout refused: no proof the request is not cross-site"
            );
            return pages::json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "csrf", "error_description": "This logout request did not come from this site."}),
            );
        }
    }
    let session = match loaded {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(request_id = ctx.request_id, error = %err, "session store unavailable at logout");
            events::record(Kind::RpInitiated, "-", "store_error", 0, None);
            return store_unavailable(ctx);
        }
    };

    let mode = params
        .mode
        .as_deref()
        .and_then(LogoutMode::parse)
        .filter(|m| logout_cfg.allowed_modes.contains(m))
        .unwrap_or(logout_cfg.mode);
    let destination = destination::resolve(
        params.return_to.as_deref(),
        &ctx.origin.origin,
        &logout_cfg.allowed_return_to,
        &logout_cfg.default_return_to,
    );

    // 1. End the session(s) server-side.
    let mut ended = 0;
    let mut outcome = "no_session";
    if let Some(s) = &session {
        // Every session ended gets its tokens revoked, not only this one:
        // the others' refresh tokens would otherwise outlive "sign out
        // everywhere" at the IdP.
        let mut others = Vec::new();
        let result = if params.scope.as_deref() == Some("all") {
            ctx.sessions
                .take_by_sub(
                    &s.record.claims.iss,
                    &s.record.claims.sub,
                    crate::oidc::revoke::MAX_SESSIONS_REVOKED,
                )
                .await
                .map(|(n, taken)| {
                    others = taken.into_iter().filter(|t| t.key() != s.key()).collect();
                    n
                })
        } else {
            ctx.sessions.delete(s).await.map(usize::from)
        };
        match result {
            Ok(n) => {
                ended = n;
                outcome = "ok";
            }
            Err(err) => {
                tracing::error!(request_id = ctx.request_id, error = %err, "session could not be deleted at logout");
                events::record(
                    Kind::RpInitiated,
                    mode.as_str(),
                    "store_error",
                    0,
                    session_age(s),
                );
                return store_unavailable(ctx);
            }
        }
        // 3. Revoke the tokens at the IdP, in the background.
        if logout_cfg.revoke_tokens {
            if others.is_empty() {
                let (refresh, access) = tokens_of(s);
                ctx.oidc.spawn_revoke(refresh, access);
            } else {
                // This session's first; the list is bounded by the read limit.
                let all = std::iter::once(s).chain(&others).map(tokens_of).collect();
                ctx.oidc.spawn_revoke_all(all);
            }
        }
    }

    // Where the user goes.
    let end_session = if mode == LogoutMode::Local {
        None
    } else {
        idp_leg(ctx, session.as_ref(), mode, &destination).await
    };
    let mut bind_to_this_browser = false;
    let (mut resp, outcome) = match end_session {
        None if mode != LogoutMode::Local && outcome == "ok" => {
            (finish(ctx, mode, &destination), "ok_local_only")
        }
        None => (finish(ctx, mode, &destination), outcome),
        Some(IdpLeg::Unreachable) => (finish(ctx, mode, &destination), "idp_unreachable"),
        Some(IdpLeg::Continue { state, url }) => {
            bind_to_this_browser = true;
            let continue_url = ctx.url(&format!("{}?state={state}", paths::LOGOUT_CONTINUE));
            let idp_origin = Url::parse(&url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            let resp = if ctx.kind == ClientKind::Json {
                pages::json(
                    StatusCode::OK,
                    &serde_json::json!({"logged_out": true, "mode": mode.as_str(), "continue_url": continue_url, "return_to": destination}),
                )
            } else {
                match mode {
                    LogoutMode::Silent => html::continue_page(
                        ContinueMode::Silent,
                        &continue_url,
                        &destination,
                        &idp_origin,
                    ),
                    LogoutMode::Popup => html::continue_page(
                        ContinueMode::Popup,
                        &continue_url,
                        &destination,
                        &idp_origin,
                    ),
                    _ => redirect(&url),
                }
            };
            (resp, outcome)
        }
    };
    // 2. Expire the cookie.
    add(
        &mut resp,
        SET_COOKIE,
        &expired_session_cookie(session_cfg, ctx.secure()),
    );
    if bind_to_this_browser {
        add(
            &mut resp,
            SET_COOKIE,
            &helper_cookie(
                &binding_cookie_name(session_cfg),
                "1",
                state::TTL,
                ctx.secure(),
            ),
        );
    }
    // 4. One event and metric.
    events::record(
        Kind::RpInitiated,
        mode.as_str(),
        outcome,
        ended,
        session.as_ref().and_then(session_age),
    );
    resp
}

/// Where the answer to a logout form may redirect besides this origin: the
/// end-session endpoint's origin and those of absolute `allowed_return_to`
/// entries (the confirmation page lists them in `form-action`).
fn redirect_origins(ctx: &Ctx<'_>) -> Vec<String> {
    let mut origins = Vec::new();
    if let Some(url) = Url::parse(&ctx.url(paths::LOGOUT_DONE))
        .ok()
        .and_then(|done| ctx.oidc.end_session_url(None, &done, ""))
    {
        origins.push(url.origin().ascii_serialization());
    }
    for allowed in &ctx.config.logout.allowed_return_to {
        if let Ok(url) = Url::parse(allowed) {
            let origin = url.origin().ascii_serialization();
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
    }
    origins
}

/// The IdP part of a logout.
enum IdpLeg {
    /// Go through the IdP: `state` is saved; `url` is the end-session URL.
    Continue { state: String, url: String },
    /// The IdP does not answer: finish locally.
    Unreachable,
}

/// Prepares the IdP leg; `None` when the IdP publishes no end-session
/// endpoint (and none is configured).
async fn idp_leg(
    ctx: &Ctx<'_>,
    session: Option<&Session>,
    mode: LogoutMode,
    destination: &str,
) -> Option<IdpLeg> {
    let post_logout = Url::parse(&ctx.url(paths::LOGOUT_DONE)).ok()?;
    // Probed before anything is prepared; the answer is shared for a few
    // seconds, so a flood of logouts opens no flood of connections.
    let probe_url = ctx.oidc.end_session_url(None, &post_logout, "")?;
    if !idp_probe::reachable(&probe_url).await {
        tracing::warn!(
            request_id = ctx.request_id,
            "IdP unreachable at logout; the gateway session is ended, the IdP's may not be"
        );
        return Some(IdpLeg::Unreachable);
    }
    let Some(session) = session else {
        // Nothing stored for a logout that ended no session: the state
        // carries what /logout/done needs, sealed and time-limited.
        let state = AnonState::new(destination, mode, crate::clock::unix_now())
            .seal(ctx.sessions.keys())?;
        let url = ctx.oidc.end_session_url(None, &post_logout, &state)?;
        return Some(IdpLeg::Continue {
            state,
            url: url.to_string(),
        });
    };
    let state = state::new_state(ctx.sessions.keys())?;
    let url =
        ctx.oidc
            .end_session_url(Some(session.record.id_token.expose()), &post_logout, &state)?;
    let record = LogoutState {
        destination: destination.to_owned(),
        mode: mode.as_str().to_owned(),
        end_session_url: url.to_string(),
        expires_at: 0,
    };
    if let Err(err) = state::save(ctx.sessions, &state, &record).await {
        // The IdP leg still runs; /logout/done will send the user to the
        // default destination since it cannot find the state.
        tracing::warn!(request_id = ctx.request_id, error = %err, "logout state not saved");
    }
    Some(IdpLeg::Continue {
        state,
        url: url.to_string(),
    })
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn state_param(req: &Request<Incoming>) -> Option<String> {
    query_param(req, "state")
}

/// `GET /.portcullis/logout/continue?state=`: 303 to the IdP end-session
/// URL of a logout already done (JSON clients and the silent/popup pages
/// use it, so the ID token never appears in their JSON or HTML).
/// `&fallback=redirect` turns a silent or popup logout into a redirect one
/// (logout.js's top-level fallback), so `/logout/done` redirects at once.
pub async fn continue_(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return pages::method_not_allowed(ctx.kind, "GET");
    }
    let state = state_param(&req);
    let fallback = query_param(&req, "fallback").as_deref() == Some("redirect");
    if let Some(anon) = state
        .as_deref()
        .and_then(|s| AnonState::open(ctx.sessions.keys(), s, crate::clock::unix_now()))
    {
        return continue_anonymous(ctx, anon, state.as_deref().unwrap_or_default(), fallback);
    }
    let found = match &state {
        Some(s) => state::peek(ctx.sessions, s).await,
        None => Ok(None),
    };
    match found {
        Ok(Some(mut record)) => {
            // logout.js falling back from a silent or popup attempt to the
            // top level: /logout/done should then just redirect, not
            // render the page that announces to a parent or opener.
            if fallback
                && record.mode() != LogoutMode::Redirect
                && let Some(s) = &state
            {
                record.mode = LogoutMode::Redirect.as_str().to_owned();
                // Only while unused: a /logout/done that took the state
                // meanwhile keeps it taken.
                match state::update(ctx.sessions, s, &record).await {
                    Ok(true) => {}
                    Ok(false) => return redirect(&ctx.config.logout.default_return_to),
                    Err(err) => {
                        tracing::warn!(request_id = ctx.request_id, error = %err, "logout state not updated")
                    }
                }
            }
            redirect(&record.end_session_url)
        }
        Ok(None) => redirect(&ctx.config.logout.default_return_to),
        Err(err) => {
            tracing::error!(request_id = ctx.request_id, error = %err, "logout state lookup failed");
            redirect(&ctx.config.logout.default_return_to)
        }
    }
}

/// `/logout/continue` for a logout that ended no session: the IdP URL is
/// rebuilt from the configuration; a fallback to the top level reseals the
/// state in redirect mode (nothing is stored either way).
fn continue_anonymous(
    ctx: &Ctx<'_>,
    mut anon: AnonState,
    state: &str,
    fallback: bool,
) -> Response<Body> {
    let mut state = state.to_owned();
    if fallback && anon.mode() != LogoutMode::Redirect {
        anon.mode = LogoutMode::Redirect.as_str().to_owned();
        match anon.seal(ctx.sessions.keys()) {
            Some(resealed) => state = resealed,
            None => return redirect(&anon.destination),
        }
    }
    let url = Url::parse(&ctx.url(paths::LOGOUT_DONE))
        .ok()
        .and_then(|done| ctx.oidc.end_session_url(None, &done, &state));
    match url {
        Some(url) => redirect(url.as_str()),
        None => redirect(&anon.destination),
    }
}

/// `GET /.portcullis/logout/done?state=`: the post-logout redirect URI.
/// A state it issued, once: 303 to the final destination (redirect mode, or
/// a silent logout that fell back to the top level) or the page that
/// announces the end to its parent or opener. Anything else: the default
/// destination, never elsewhere.
pub async fn done(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    let mut resp = done_response(ctx, req).await;
    // The README's headers for /logout/done hold for its redirects too: the state
    // in this URL must not leak to the destination as a Referer.
    resp.headers_mut().insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The pages bring their own nonce-bearing policy; a redirect runs no
    // script, so it gets that policy without a script source.
    if !resp.headers().contains_key(CONTENT_SECURITY_POLICY) {
        resp.headers_mut().insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DONE_REDIRECT_CSP),
        );
    }
    resp
}

async fn done_response(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return pages::method_not_allowed(ctx.kind, "GET");
    }
    let state = state_param(&req);
    let anon = state
        .as_deref()
        .and_then(|s| AnonState::open(ctx.sessions.keys(), s, crate::clock::unix_now()));
    let found = match (&state, anon) {
        (_, Some(anon)) => Ok(Some(LogoutState {
            mode: anon.mode.clone(),
            destination: anon.destination,
            end_session_url: String::new(),
            expires_at: anon.expires_at,
        })),
        (Some(s), None) => state::take(ctx.sessions, s).await,
        (None, None) => Ok(None),
    };
    let record = match found {
        Ok(Some(record)) => record,
        Ok(None) => {
            tracing::info!(
                request_id = ctx.request_id,
                "logout done with an unknown or used state"
            );
            return redirect(&ctx.config.logout.default_return_to);
        }
        Err(err) => {
            tracing::error!(request_id = ctx.request_id, error = %err, "logout state lookup failed");
            return redirect(&ctx.config.logout.default_return_to);
        }
    };
    let framed = req
        .headers()
        .get("sec-fetch-dest")
        .is_some_and(|d| d.as_bytes() != b"document");
    let mut resp = match (record.mode(), state) {
        (LogoutMode::Silent, Some(s)) if framed => html::done(
            DoneTarget::Parent,
            &s,
            &ctx.origin.origin,
            &record.destination,
        ),
        (LogoutMode::Popup, Some(s)) => html::done(
            DoneTarget::Opener,
            &s,
            &ctx.origin.origin,
            &record.destination,
        ),
        _ => redirect(&record.destination),
    };
    // Clear-Site-Data only for the browser that started this logout: a
    // state is not a secret of one browser (an anonymous one can be replayed
    // for its ten minutes, anyone can stop short of the IdP with their own),
    // and sent to a victim's browser /logout/done would wipe its storage,
    // or its cookies when so configured, past the logout's CSRF rules.
    let binding = binding_cookie_name(ctx.session_config);
    if cookie_values(req.headers(), &binding).next().is_some() {
        if let Some(csd) = clear_site_data(ctx) {
            resp.headers_mut()
                .insert(HeaderName::from_static("clear-site-data"), csd);
        }
        add(
            &mut resp,
            SET_COOKIE,
            &helper_cookie(&binding, "", Duration::ZERO, ctx.secure()),
        );
    } else if !ctx.config.logout.clear_site_data.is_empty() {
        tracing::info!(
            request_id = ctx.request_id,
            "logout done in a browser that did not start it: no Clear-Site-Data"
        );
    }
    resp
}

/// The cookie that marks the browser a logout with an IdP leg started in
/// (10 minutes, as its state): `/logout/done` sends `Clear-Site-Data` only
/// to it.
pub fn binding_cookie_name(cfg: &crate::config::SessionConfig) -> String {
    format!("{}{BINDING_SUFFIX}", cfg.cookie_name)
}

/// The suffix of [`binding_cookie_name`] after the session cookie's name.
pub const BINDING_SUFFIX: &str = "-logout";

/// `GET /.portcullis/logout/flow`: a CSRF token bound to the current
/// session, for single-page apps that log out later (or cross-site).
pub async fn flow(ctx: &Ctx<'_>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET {
        return pages::method_not_allowed(ctx.kind, "GET");
    }
    let session = match read_session_cookie(req.headers(), &ctx.session_config.cookie_name) {
        Some(cookie) => ctx.sessions.load_without_slide(&cookie).await,
        None => Ok(None),
    };
    match session {
        Ok(Some(s)) => {
            let token = ctx.sessions.csrf_token(&s);
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("csrf", &token)
                .finish();
            pages::json(
                StatusCode::OK,
                &serde_json::json!({
                    "logout_url": ctx.url(&format!("{}?{query}", ctx.config.logout.path)),
                    "csrf": token,
                }),
            )
        }
        Ok(None) => pages::json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "unauthenticated"}),
        ),
        Err(err) => {
            tracing::error!(request_id = ctx.request_id, error = %err, "session store unavailable");
            pages::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "store_unavailable"}),
            )
        }
    }
}
