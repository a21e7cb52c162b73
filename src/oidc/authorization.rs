//! The OIDC authorization request that starts a login: its URL (code flow,
//! PKCE S256, nonce, state, `response_mode=query`) and the state the
//! callback needs. The gateway's login endpoint is [`crate::login::start`].

use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, RedirectUrl, Scope};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use url::Url;

use super::{OidcClient, OidcError};
use crate::clock::unix_now;

/// Bytes of randomness in `state` and `nonce` (256 bits).
const RANDOM_BYTES: u32 = 32;

/// What the callback needs to finish a login. The caller keeps it
/// confidential and tamper-proof (the lead seals it into a short-lived
/// cookie); `Debug` shows none of the secrets.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginState {
    /// The `state` sent to the IdP (256 random bits, base64url).
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
    /// Where to send the user after login (already validated by the caller).
    pub return_to: String,
    /// When the login started (Unix seconds).
    pub created_at: u64,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState")
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A started login: send the user to `authorization_url`, keep `state`.
#[derive(Debug, Clone)]
pub struct LoginStart {
    /// The IdP authorization URL to redirect the browser to.
    pub authorization_url: Url,
    /// The state to keep until the callback.
    pub state: LoginState,
}

impl OidcClient {
    /// Starts a login whose callback is `redirect_uri` (the route origin's
    /// `/.portcullis/callback`). `return_to` is stored as given: validate it
    /// before calling. Fails with [`OidcError::NotReady`] until discovery
    /// has succeeded.
    pub fn start_login(
        &self,
        redirect_uri: &Url,
        return_to: &str,
    ) -> Result<LoginStart, OidcError> {
        let meta = self.provider().require_metadata()?;
        let client = self.token_client(&meta)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256_len(RANDOM_BYTES);
        let redirect = RedirectUrl::from_url(redirect_uri.clone());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                || CsrfToken::new_random_len(RANDOM_BYTES),
                || Nonce::new_random_len(RANDOM_BYTES),
            )
            .set_redirect_uri(Cow::Owned(redirect))
            .set_pkce_challenge(challenge)
            .add_extra_param("response_mode", "query");
        for scope in &self.inner.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (name, value) in &self.inner.auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (authorization_url, csrf, nonce) = request.url();
        Ok(LoginStart {
            authorization_url,
            state: LoginState {
                state: csrf.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                return_to: return_to.to_owned(),
                created_at: unix_now(),
            },
        })
    }
}
