//! Keeping the access token fresh: the first request after it expires
//! refreshes it with the refresh token; one refresh per session is in
//! flight across the fleet (a lock in the session store) and other requests
//! wait for it, bounded. `invalid_grant` ends the session; a network error
//! or 5xx keeps it (the IdP being briefly down must not log everyone out).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::context::Ctx;
use crate::logout::events::{self, Kind};
use crate::oidc::IdentityClaims;
use crate::session::{Session, SessionError, SessionRecord};

/// How long the refresh lock is held at most (a crashed holder frees it).
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a request waits for another request's refresh.
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// What became of the session.
pub enum Outcome {
    /// Use this session (refreshed, or still good, or kept after a
    /// transient failure).
    Session(Box<Session>),
    /// The IdP refused the refresh: the session has ended.
    Ended,
}

fn needs_refresh(record: &SessionRecord) -> bool {
    let Some(expires) = record.access_token_expires_at else {
        return false;
    };
    if record.refresh_token.is_none() {
        return false;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // README "Sessions": the first request after the token has expired
    // refreshes it.
    u128::from(expires) <= now
}

/// Refreshes the session's tokens if the access token has expired.
pub async fn ensure_fresh(
    ctx: &Ctx<'_>,
    cookie: &str,
    session: Session,
) -> Result<Outcome, SessionError> {
    if !needs_refresh(&session.record) {
        return Ok(Outcome::Session(Box::new(session)));
    }
    let lock_key = format!("refresh:{}", session.key());
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut current = session;
    loop {
        if let Some(token) = ctx.sessions.try_lock(&lock_key, LOCK_TTL).await? {
            // Another request may have refreshed while we waited for the
            // lock, maybe on another instance: read the store itself, since
            // a cached copy (Redis) could still hold the refresh token that
            // refresh has just used up.
            let fresh = ctx.sessions.load_fresh(cookie).await;
            let result = match fresh {
                Ok(Some(s)) if needs_refresh(&s.record) => refresh_now(ctx, s).await,
                Ok(Some(s)) => Ok(Outcome::Session(Box::new(s))),
                Ok(None) => Ok(Outcome::Ended),
                Err(e) => Err(e),
            };
            let _ = ctx.sessions.unlock(&lock_key, &token).await;
            return result;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                request_id = ctx.request_id,
                "waited too long for a token refresh; using the current token"
            );
            return Ok(Outcome::Session(Box::new(current)));
        }
        tokio::time::sleep(POLL).await;
        match ctx.sessions.load_without_slide(cookie).await? {
            None => return Ok(Outcome::Ended),
            Some(s) if !needs_refresh(&s.record) => return Ok(Outcome::Session(Box::new(s))),
            Some(s) => current = s,
        }
    }
}

async fn refresh_now(ctx: &Ctx<'_>, mut session: Session) -> Result<Outcome, SessionError> {
    let Some(refresh_token) = session.record.refresh_token.clone() else {
        return Ok(Outcome::Session(Box::new(session)));
    };
    match ctx
        .oidc
        .refresh(refresh_token.expose(), &session.record.claims)
        .await
    {
        Ok(r) => {
            let record = std::sync::Arc::make_mut(&mut session.record);
            record.access_token = r.access_token;
            record.access_token_expires_at =
                r.access_token_expires_at.map(|s| s.saturating_mul(1000));
            if let Some(rt) = r.refresh_token {
                record.refresh_token = Some(rt);
            }
            if let Some(id_token) = r.id_token {
                record.id_token = id_token;
            }
            if let Some(c) = r.claims {
                // The sid stays as at login: it keys the session's index
                // entry for IdP-initiated logout, which an update does not
                // rewrite (and a refresh does not change the IdP session).
                // (The grant has checked that iss and sub are unchanged.)
                let sid = record.claims.sid.take();
                record.claims = IdentityClaims { sid, ..c };
            }
            if !ctx.sessions.update(&session).await? {
                // Deleted meanwhile (logout elsewhere): never bring it back.
                return Ok(Outcome::Ended);
            }
            tracing::info!(request_id = ctx.request_id, "access token refreshed");
            Ok(Outcome::Session(Box::new(session)))
        }
        Err(err) if err.ends_session() => {
            tracing::info!(request_id = ctx.request_id, error = %err, "refresh refused; ending the session");
            let age = SystemTime::now().duration_since(session.created_at()).ok();
            ctx.sessions.delete(&session).await?;
            events::record(Kind::Gateway, "-", "refresh_refused", 1, age);
            Ok(Outcome::Ended)
        }
        Err(err) => {
            tracing::warn!(request_id = ctx.request_id, error = %err, "refresh failed transiently; keeping the session");
            Ok(Outcome::Session(Box::new(session)))
        }
    }
}
