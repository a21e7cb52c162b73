//! RFC 7009 token revocation at logout: the refresh token first (at most
//! IdPs that also ends the grant, hence its access tokens), then the access
//! token. Best effort and off the request path: the caller spawns it.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{OidcClient, OidcError};
use crate::config::Secret;

/// Upper bound on a whole background revocation (both requests).
pub const REVOKE_DEADLINE: Duration = Duration::from_secs(20);

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
}
