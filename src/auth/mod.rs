//! Who gets through an `auth = "session"` route: the session behind the
//! cookie (refreshed when its access token has expired), the route's
//! authorisation rules, and the identity headers for the upstream. A
//! request without a session is sent to [`crate::login`].

pub mod identity;
pub mod refresh;

use std::sync::Arc;
use std::time::SystemTime;

use http::header::SET_COOKIE;
use http::{HeaderValue, Request, Response, StatusCode};

use crate::config::Route;
use crate::context::Ctx;
use crate::login;
use crate::pages::{self, Body};
use crate::proxy::upgrade::{self, Deadline};
use crate::session::cookie::{expired_session_cookie, read_session_cookie};
use crate::session::{SessionRecord, Sessions, StoreKey};

/// The outcome of checking a request on a session route.
pub enum Admission {
    /// Proxy it, with these identity headers; an upgraded connection closes
    /// at `deadline`.
    Admit {
        /// Identity headers to set upstream.
        headers: identity::IdentityHeaders,
        /// When a WebSocket tunnel must close.
        deadline: Option<Deadline>,
        /// The session's claims (for the signed assertion).
        record: Arc<SessionRecord>,
    },
    /// Answer with this response; the label says why, for the access log.
    Answer(Response<Body>, &'static str),
}

fn store_unavailable(ctx: &Ctx<'_>) -> Admission {
    Admission::Answer(
        pages::store_unavailable(
            ctx.kind,
            "Sessions cannot be checked right now. Try again shortly.",
        ),
        "store_unavailable",
    )
}

/// Checks the session for a request on a session route. `path` is the
/// canonical path; with the request's query it is where the user returns
/// after login.
pub async fn admit<B>(
    ctx: &Ctx<'_>,
    req: &Request<B>,
    route: &Route,
    path: &str,
    identity_cache: &identity::HeaderCache,
) -> Admission {
    let cfg = ctx.session_config;
    let cookie = read_session_cookie(req.headers(), &cfg.cookie_name);
    // A WebSocket's tunnel watches for its session's revocation, and starts
    // listening before the session is read: a revocation that lands while
    // it is read or refreshed (a refresh that fails keeps the session as it
    // was read) still reaches the tunnel, which then closes at once.
    let watch = upgrade::is_websocket(req).then(|| Watch {
        revoked: ctx.sessions.revocations(),
        resync: ctx.sessions.store().resyncs(),
    });
    let loaded = match &cookie {
        None => None,
        Some(value) => match ctx.sessions.load(value).await {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(request_id = ctx.request_id, error = %err, "session store unavailable");
                return store_unavailable(ctx);
            }
        },
    };
    let session = match (loaded, &cookie) {
        (Some(session), Some(value)) => match refresh::ensure_fresh(ctx, value, session).await {
            Ok(refresh::Outcome::Session(s)) => Some(*s),
            Ok(refresh::Outcome::Ended) => None,
            Err(err) => {
                tracing::error!(request_id = ctx.request_id, error = %err, "session store unavailable during refresh");
                return store_unavailable(ctx);
            }
        },
        _ => None,
    };
    let Some(session) = session else {
        let path_and_query = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let mut resp = login::start::unauthenticated(ctx, req, &path_and_query);
        if cookie.is_some()
            && let Ok(v) = HeaderValue::from_str(&expired_session_cookie(cfg, ctx.secure()))
        {
            // A cookie for a session that no longer exists: clear it.
            resp.headers_mut().append(SET_COOKIE, v);
        }
        return Admission::Answer(resp, "unauthenticated");
    };
    if !identity::allowed(route, &session.record) {
        return Admission::Answer(
            pages::error(
                ctx.kind,
                StatusCode::FORBIDDEN,
                "forbidden",
                "Your account is not allowed to use this application.",
            ),
            "forbidden",
        );
    }
    let deadline = watch.map(|watch| {
        session_deadline(
            ctx.sessions.clone(),
            session.key().clone(),
            cookie.unwrap_or_default(),
            session.expires_at(),
            session.idle_expires_at(),
            watch,
        )
    });
    Admission::Admit {
        headers: identity_cache.get(&ctx.config.headers, &session.record),
        deadline,
        record: session.record.clone(),
    }
}

/// What a tunnel's deadline listens to: revocations, and (Redis) the
/// subscription coming back after messages may have been lost.
struct Watch {
    revoked: tokio::sync::broadcast::Receiver<StoreKey>,
    resync: Option<tokio::sync::watch::Receiver<u64>>,
}

/// Resolves when the session is revoked (announced on the store's
/// revocation channel: at once for the memory store, by pub/sub for Redis),
/// reaches its idle timeout (unless other requests slid it meanwhile) or
/// its absolute lifetime. When the store may have missed revocations (the
/// Redis subscription came back after a loss), the session is looked up
/// again.
fn session_deadline(
    sessions: Sessions,
    key: StoreKey,
    cookie: String,
    expires_at: SystemTime,
    idle_expires_at: SystemTime,
    watch: Watch,
) -> Deadline {
    let Watch {
        mut revoked,
        mut resync,
    } = watch;
    Box::pin(async move {
        let still_valid = || async {
            matches!(sessions.load_without_slide(&cookie).await, Ok(Some(s)) if *s.key() == key)
        };
        let mut idle_at = idle_expires_at;
        loop {
            let next = idle_at.min(expires_at);
            let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
            let resynced = async {
                match resync.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {
                    if next >= expires_at {
                        return;
                    }
                    // Idle deadline: requests on other connections may
                    // have slid it; the stored record decides.
                    match sessions.load_without_slide(&cookie).await {
                        Ok(Some(s)) if *s.key() == key && s.idle_expires_at() > idle_at => {
                            idle_at = s.idle_expires_at();
                        }
                        _ => return,
                    }
                }
                msg = revoked.recv() => match msg {
                    Ok(k) if k == key => return,
                    Ok(_) => {}
                    // Missed messages: look the session up instead.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if !still_valid().await {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                live = resynced => {
                    if !live {
                        resync = None;
                    } else if !still_valid().await {
                        return;
                    }
                }
            }
        }
    })
}
