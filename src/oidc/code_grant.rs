//! The authorization-code grant that finishes a login: check the
//! authorization response's `state` and `iss` (RFC 9207), exchange the code
//! with the PKCE verifier, validate the ID token, and return the identity
//! and tokens for the caller's new session. The gateway's endpoint that
//! calls it is [`crate::login::callback`].

use std::borrow::Cow;
use std::time::Duration;

use openidconnect::{
    AuthorizationCode, Nonce, OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl, TokenResponse,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use url::Url;

use super::authorization::LoginState;
use super::id_token::{IdentityClaims, NonceCheck};
use super::{OidcClient, OidcError, token_error};
use crate::clock::unix_now;
use crate::config::Secret;

/// Longest IdP `error_description` kept (it ends up in a log line).
const MAX_DESCRIPTION: usize = 200;

/// The query of a request to the callback.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The state the IdP echoes back.
    pub state: Option<String>,
    /// RFC 9207 issuer identifier.
    pub iss: Option<String>,
    /// OAuth error code, when the IdP refused.
    pub error: Option<String>,
    /// Human-readable error text from the IdP.
    pub error_description: Option<String>,
}

impl std::fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The code is a credential until redeemed: never print it.
        f.debug_struct("CallbackQuery")
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field("iss", &self.iss)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl CallbackQuery {
    /// Parses a raw query string. A repeated parameter is rejected: which
    /// copy wins is exactly what mix-up and injection attacks play on.
    pub fn parse(query: &str) -> Result<Self, OidcError> {
        let mut out = CallbackQuery::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut out.code,
                "state" => &mut out.state,
                "iss" => &mut out.iss,
                "error" => &mut out.error,
                "error_description" => &mut out.error_description,
                _ => continue,
            };
            if slot.is_some() {
                return Err(OidcError::BadCallback("repeated parameter"));
            }
            *slot = Some(value.into_owned());
        }
        Ok(out)
    }
}

/// A finished login: identity and tokens. Token values are [`Secret`]s so
/// that `Debug` never prints them.
#[derive(Debug, Clone)]
pub struct LoginResult {
    /// The identity.
    pub claims: IdentityClaims,
    /// The raw ID token (for `id_token_hint` at logout).
    pub id_token: Secret,
    /// The access token.
    pub access_token: Secret,
    /// When the access token expires (Unix seconds), if the IdP said.
    pub access_token_expires_at: Option<u64>,
    /// The refresh token, if the IdP issued one.
    pub refresh_token: Option<Secret>,
}

/// Shortens an IdP-supplied text for logs: control characters dropped,
/// at most [`MAX_DESCRIPTION`] characters.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION)
        .collect()
}

/// Latest access-token expiry kept (9999-12-31T23:59:59Z): an IdP's
/// absurd `expires_in` must not overflow time arithmetic downstream.
pub(crate) const MAX_EXPIRES_AT: u64 = 253_402_300_799;

/// Unix time `expires_in` from now, at most [`MAX_EXPIRES_AT`].
pub(crate) fn expires_at(expires_in: Option<Duration>) -> Option<u64> {
    expires_in.map(|d| unix_now().saturating_add(d.as_secs()).min(MAX_EXPIRES_AT))
}

impl OidcClient {
    /// Finishes a login. `redirect_uri` must be the one the login was
    /// started with. Checks, in order: `state` (constant time), `iss`
    /// (RFC 9207: must equal the issuer when sent, and must be sent when the
    /// IdP advertises it), an IdP error, the login's age; then exchanges the
    /// code and validates the ID token, nonce included.
    pub async fn finish_login(
        &self,
        login: &LoginState,
        query: &CallbackQuery,
        redirect_uri: &Url,
    ) -> Result<LoginResult, OidcError> {
        let meta = self.provider().require_metadata()?;

        let state_ok = query
            .state
            .as_deref()
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(login.state.as_bytes())));
        if !state_ok {
            return Err(OidcError::StateMismatch);
        }
        match query.iss.as_deref() {
            Some(iss) if iss != meta.issuer => return Err(OidcError::IssuerMismatch),
            None if meta.iss_parameter_supported => return Err(OidcError::MissingIssuer),
            _ => {}
        }
        if let Some(error) = &query.error {
            return Err(OidcError::Authorization {
                error: sanitize(error),
                description: query.error_description.as_deref().map(sanitize),
            });
        }
        let age = unix_now().saturating_sub(login.created_at);
        if age > self.options().login_max_age.as_secs() {
            return Err(OidcError::LoginExpired);
        }
        let code = query.code.as_ref().ok_or(OidcError::MissingCode)?;

        let client = self.token_client(&meta)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()))
            .set_redirect_uri(Cow::Owned(RedirectUrl::from_url(redirect_uri.clone())))
            .request_async(self.http())
            .await
            .map_err(token_error)?;

        let id_token = response.id_token().ok_or(OidcError::MissingIdToken)?;
        let nonce = Nonce::new(login.nonce.clone());
        let claims = self
            .verify_id_token(
                id_token,
                &meta,
                NonceCheck::Expect(&nonce),
                Some(response.access_token()),
            )
            .await?;

        Ok(LoginResult {
            claims: IdentityClaims::from_id_token(&claims),
            id_token: Secret::new(id_token.to_string()),
            access_token: Secret::new(response.access_token().secret().clone()),
            access_token_expires_at: expires_at(response.expires_in()),
            refresh_token: response
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_callback_and_rejects_repeats() {
        let q = CallbackQuery::parse("code=abc&state=xyz&iss=http%3A%2F%2Fidp&other=1")
            .expect("parses");
        assert_eq!(q.code.as_deref(), Some("abc"));
        assert_eq!(q.state.as_deref(), Some("xyz"));
        assert_eq!(q.iss.as_deref(), Some("http://idp"));
        assert!(matches!(
            CallbackQuery::parse("code=a&state=s&iss=x&iss=y"),
            Err(OidcError::BadCallback(_))
        ));
        assert!(
            !format!("{q:?}").contains("abc"),
            "code is redacted in Debug"
        );
    }

    #[test]
    fn absurd_expires_in_is_clamped() {
        assert_eq!(expires_at(Some(Duration::MAX)), Some(MAX_EXPIRES_AT));
        assert_eq!(
            expires_at(Some(Duration::from_secs(u64::MAX))),
            Some(MAX_EXPIRES_AT)
        );
        let soon = expires_at(Some(Duration::from_secs(60))).unwrap_or(0);
        assert!(soon > unix_now() && soon <= unix_now() + 60);
        assert_eq!(expires_at(None), None);
    }

    #[test]
    fn idp_descriptions_are_sanitised() {
        let long = "x".repeat(1000);
        assert_eq!(sanitize(&long).len(), MAX_DESCRIPTION);
        assert_eq!(sanitize("bad\r\nline"), "badline");
    }
}
