//! RFC 7009 token revocation at logout: the refresh token first (at most
//! IdPs that also ends the grant, hence its access tokens), then the access
//! token. Best effort and off the request path: the caller spawns it.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{OidcClient, OidcError};
use crate::config::Secret;

/// Upper bound on a whole background revocation (both requests).
pub const REVOKE_DEADLINE: Duration = Duration::from_secs(20);

/// Most sessions whose tokens one logout revokes (`?scope=all`): a user
/// with more ends them all but has only this many revoked, so one request
/// cannot start an unbounded amount of work.
pub const MAX_SESSIONS_REVOKED: usize = 64;
/// Sessions revoked at once by [`OidcClient::spawn_revoke_all`].
const REVOKE_ALL_CONCURRENCY: usize = 4;
/// Upper bound on a whole background revocation of many sessions.
pub const REVOKE_ALL_DEADLINE: Duration = Duration::from_secs(60);

/// One session's tokens to revoke: refresh token, access token.
pub type SessionTokens = (Option<Secret>, Option<Secret>);

impl OidcClient {
    /// Revokes the given tokens at the IdP's revocation endpoint, refresh
    /// token first, each with its `token_type_hint`. Both are attempted;
    /// the first failure is returned. Without a revocation endpoint this
    /// does nothing and succeeds.
    pub async fn revoke(
        &self,
        refresh_token: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<(), OidcError> {
        let meta = self.provider().require_metadata()?;
        let Some(endpoint) = meta.revocation_endpoint.clone() else {
            return Ok(());
        };
        let mut first_error = None;
        let tokens = [
            (refresh_token, "refresh_token"),
            (access_token, "access_token"),
        ];
        for (token, hint) in tokens {
            let Some(token) = token else { continue };
            let request = self.revocation_request(&meta, &endpoint, token, hint);
            let result = match request {
                Ok(request) => match self.http().execute(request).await {
                    // RFC 7009 §2.2: 200 whether or not the token was valid.
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(OidcError::Revocation(format!(
                        "{hint}: the IdP answered HTTP {}",
                        r.status().as_u16()
                    ))),
                    Err(e) => Err(OidcError::Revocation(format!("{hint}: {e}"))),
                },
                Err(_) => Err(OidcError::Revocation(format!("{hint}: bad request"))),
            };
            if let Err(e) = result
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The revocation POST for one token. Built apart from the sending so
    /// no form serializer (not `Send`) lives across an await.
    fn revocation_request(
        &self,
        meta: &super::IdpMetadata,
        endpoint: &url::Url,
        token: &str,
        hint: &str,
    ) -> Result<http::Request<Vec<u8>>, http::Error> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        form.append_pair("token_type_hint", hint);
        let builder = http::Request::builder()
            .method(http::Method::POST)
            .uri(endpoint.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        let builder = self.authenticate_form(meta, builder, &mut form);
        builder.body(form.finish().into_bytes())
    }

    /// Spawns [`OidcClient::revoke`] in the background with an overall
    /// deadline and logs the outcome (never a token value). For logout:
    /// the user never waits for the IdP.
    pub fn spawn_revoke(
        &self,
        refresh_token: Option<Secret>,
        access_token: Option<Secret>,
    ) -> JoinHandle<()> {
        let client = self.clone();
        tokio::spawn(async move {
            let run = client.revoke(
                refresh_token.as_ref().map(Secret::expose),
                access_token.as_ref().map(Secret::expose),
            );
            match tokio::time::timeout(REVOKE_DEADLINE, run).await {
                Ok(Ok(())) => tracing::debug!("tokens revoked at the IdP"),
                Ok(Err(e)) => tracing::warn!(error = %e, "token revocation failed"),
                Err(_) => tracing::warn!("token revocation timed out"),
            }
        })
    }

    /// Revokes the tokens of several sessions (`?scope=all`) in the
    /// background, a few sessions at a time, at most
    /// [`MAX_SESSIONS_REVOKED`] of them and within
    /// [`REVOKE_ALL_DEADLINE`]; logs how many failed (never a token).
    pub fn spawn_revoke_all(&self, sessions: Vec<SessionTokens>) -> JoinHandle<()> {
        use futures_util::StreamExt as _;
        let client = self.clone();
        tokio::spawn(async move {
            let total = sessions.len().min(MAX_SESSIONS_REVOKED);
            let run = futures_util::stream::iter(sessions.into_iter().take(total))
                .map(|(refresh, access)| {
                    let client = &client;
                    async move {
                        client
                            .revoke(
                                refresh.as_ref().map(Secret::expose),
                                access.as_ref().map(Secret::expose),
                            )
                            .await
                    }
                })
                .buffer_unordered(REVOKE_ALL_CONCURRENCY)
                .fold(0usize, |failed, r| async move {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "token revocation failed");
                        failed + 1
                    } else {
                        failed
                    }
                });
            match tokio::time::timeout(REVOKE_ALL_DEADLINE, run).await {
                Ok(0) => tracing::debug!(sessions = total, "tokens revoked at the IdP"),
                Ok(failed) => {
                    tracing::warn!(sessions = total, failed, "some token revocations failed");
                }
                Err(_) => tracing::warn!(sessions = total, "token revocation timed out"),
            }
        })
    }
}
