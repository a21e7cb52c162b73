//! The refresh-token grant (the gateway decides when, in
//! [`crate::auth::refresh`]). The outcome tells the caller whether the
//! session must end (`invalid_grant`, or an ID token that is not this
//! user's) or may be kept and retried later (network trouble, 5xx).

use openidconnect::{OAuth2TokenResponse, RefreshToken, TokenResponse};

use super::code_grant::expires_at;
use super::id_token::{IdentityClaims, NonceCheck};
use super::{OidcClient, OidcError, token_error};
use crate::config::Secret;

/// New tokens from a refresh.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The new access token.
    pub access_token: Secret,
    /// When it expires (Unix seconds), if the IdP said.
    pub access_token_expires_at: Option<u64>,
    /// A rotated refresh token; `None` means keep using the old one.
    pub refresh_token: Option<Secret>,
    /// A new, validated ID token, if the IdP sent one: it replaces the
    /// stored one (for `id_token_hint`).
    pub id_token: Option<Secret>,
    /// The identity from the new ID token (same `iss` and `sub`; groups or
    /// email may have changed).
    pub claims: Option<IdentityClaims>,
}

/// Why a refresh failed, and what that means for the session.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The IdP refused the refresh token (`invalid_grant`): revoked,
    /// expired, or the IdP session ended. End the session.
    #[error("the refresh token is no longer valid")]
    InvalidGrant,
    /// The IdP answered with an ID token that fails validation or names
    /// another user. End the session.
    #[error("refresh returned an unacceptable ID token: {0}")]
    Rejected(OidcError),
    /// Anything else (IdP unreachable, timeout, 5xx, not ready): keep the
    /// session and try again on a later request.
    #[error("refresh failed, will retry: {0}")]
    Transient(OidcError),
}

impl RefreshError {
    /// Whether the session must end.
    pub fn ends_session(&self) -> bool {
        !matches!(self, RefreshError::Transient(_))
    }
}

impl OidcClient {
    /// Runs the refresh-token grant for a session whose identity is
    /// `current`. A new ID token must be valid (nonce not required, OIDC
    /// Core §12.2) and carry the same `iss` and `sub`.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        current: &IdentityClaims,
    ) -> Result<Refreshed, RefreshError> {
        let meta = self
            .provider()
            .require_metadata()
            .map_err(RefreshError::Transient)?;
        let client = self.token_client(&meta).map_err(RefreshError::Transient)?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .request_async(self.http())
            .await
            .map_err(|e| match token_error(e) {
                OidcError::InvalidGrant => RefreshError::InvalidGrant,
                other => RefreshError::Transient(other),
            })?;

        let (id_token, claims) = match response.id_token() {
            Some(raw) => {
                let validated = self
                    .verify_id_token(
                        raw,
                        &meta,
                        NonceCheck::NotRequired,
                        Some(response.access_token()),
                    )
                    .await
                    .map_err(|e| match e {
                        // Keys could not be fetched: not the token's fault.
                        OidcError::Http(_) => RefreshError::Transient(e),
                        other => RefreshError::Rejected(other),
                    })?;
                let mut claims = IdentityClaims::from_id_token(&validated);
                // Some IdPs omit sid on refresh; the session is the same one.
                if claims.sid.is_none() {
                    claims.sid.clone_from(&current.sid);
                }
                if claims.iss != current.iss || claims.sub != current.sub {
                    return Err(RefreshError::Rejected(OidcError::IdToken(
                        "refreshed ID token names another subject".into(),
                    )));
                }
                (Some(Secret::new(raw.to_string())), Some(claims))
            }
            None => (None, None),
        };

        Ok(Refreshed {
            access_token: Secret::new(response.access_token().secret().clone()),
            access_token_expires_at: expires_at(response.expires_in()),
            refresh_token: response
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
            id_token,
            claims,
        })
    }
}
