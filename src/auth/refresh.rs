//! Keeping the access token fresh: the first request after it expires
//! refreshes it with the refresh token; one refresh per session is in
//! flight across the fleet (a lock in the session store) and other requests
//! wait for it, bounded. `invalid_grant` ends the session; a network error
//! or 5xx keeps it (the IdP being briefly down must not log everyone out).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::context::Ctx;
use crate::logout::events::{self, Kind};
use crate::oidc::{IdentityClaims, OidcClient};
use crate::session::{Session, SessionError, SessionRecord, Sessions};

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
            // The locked part runs in a task of its own, which finishes
            // even when this request is dropped (its client went away, its
            // connection was cut): once the IdP has rotated the refresh
            // token, the new one exists only here until it is stored, and
            // the lock must be released either way.
            let locked = Locked {
                sessions: ctx.sessions.clone(),
                oidc: ctx.oidc.clone(),
                request_id: ctx.request_id.to_owned(),
            };
            let cookie = cookie.to_owned();
            let task = tokio::spawn(async move {
                // Another request may have refreshed while we waited for
                // the lock, maybe on another instance: read the store
                // itself, since a cached copy (Redis) could still hold the
                // refresh token that refresh has just used up.
                let fresh = locked.sessions.load_fresh(&cookie).await;
                let result = match fresh {
                    Ok(Some(s)) if needs_refresh(&s.record) => locked.refresh_now(s).await,
                    Ok(Some(s)) => Ok(Outcome::Session(Box::new(s))),
                    Ok(None) => Ok(Outcome::Ended),
                    Err(e) => Err(e),
                };
                let _ = locked.sessions.unlock(&lock_key, &token).await;
                result
            });
            return task.await.unwrap_or_else(|_| {
                // The task panicked (a bug) or the runtime is stopping.
                tracing::error!(request_id = ctx.request_id, "token refresh did not finish");
                Ok(Outcome::Session(Box::new(current)))
            });
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

/// What the lock holder's refresh needs, owned (it runs in its own task).
struct Locked {
    sessions: Sessions,
    oidc: OidcClient,
    request_id: String,
}

impl Locked {
    async fn refresh_now(&self, mut session: Session) -> Result<Outcome, SessionError> {
        let (sessions, request_id) = (&self.sessions, self.request_id.as_str());
        let Some(refresh_token) = session.record.refresh_token.clone() else {
            return Ok(Outcome::Session(Box::new(session)));
        };
        match self
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
                if !store_refreshed(sessions, request_id, &session).await? {
                    // Deleted meanwhile (logout elsewhere): never bring it back.
                    return Ok(Outcome::Ended);
                }
                tracing::info!(request_id, "access token refreshed");
                Ok(Outcome::Session(Box::new(session)))
            }
            Err(err) if err.ends_session() => {
                tracing::info!(request_id, error = %err, "refresh refused; ending the session");
                let age = SystemTime::now().duration_since(session.created_at()).ok();
                sessions.delete(&session).await?;
                events::record(Kind::Gateway, "-", "refresh_refused", 1, age);
                Ok(Outcome::Ended)
            }
            Err(err) => {
                tracing::warn!(request_id, error = %err, "refresh failed transiently; keeping the session");
                Ok(Outcome::Session(Box::new(session)))
            }
        }
    }
}

/// How often, and how far apart, the refreshed record is written before
/// giving up (the store is down).
const STORE_TRIES: u32 = 3;
const STORE_RETRY: Duration = Duration::from_millis(300);

/// Stores a refreshed record, trying again briefly when the store fails:
/// the IdP may have rotated the refresh token, and the new one exists
/// nowhere else; lost, the next refresh sends the old one and the session
/// ends (an IdP that detects reuse revokes the whole grant).
async fn store_refreshed(
    sessions: &Sessions,
    request_id: &str,
    session: &Session,
) -> Result<bool, SessionError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match sessions.update(session).await {
            Err(err) if tries < STORE_TRIES => {
                tracing::warn!(request_id, error = %err, "refreshed tokens not stored; trying again");
                tokio::time::sleep(STORE_RETRY).await;
            }
            Err(err) => {
                tracing::error!(request_id, error = %err, "refreshed tokens could not be stored; the session ends at its next refresh if the IdP rotated its refresh token");
                return Err(err);
            }
            Ok(stored) => return Ok(stored),
        }
    }
}
