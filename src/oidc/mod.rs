//! The OpenID Connect client, protocol only: discovery, the authorization
//! request, the code and refresh grants, ID-token validation, revocation,
//! the end-session URL. The gateway's endpoints live in [`crate::login`]
//! and [`crate::logout`].
//!
//! [`OidcClient`] is the one entry point the gateway holds. It knows nothing
//! of cookies or sessions: [`OidcClient::start_login`] returns the IdP URL
//! and a [`LoginState`] for the caller to keep (sealed in a cookie),
//! [`OidcClient::finish_login`] turns that state and the callback query into
//! a [`LoginResult`], [`OidcClient::refresh`] and [`OidcClient::revoke`] act
//! on a session's tokens, and [`OidcClient::end_session_url`] builds the
//! IdP logout redirect. [`Provider::decoding_key`] serves back-channel
//! logout token validation. Redirect URIs are per public origin
//! (`<origin>/.portcullis/callback`), so callers pass them in.

pub mod authorization;
pub mod code_grant;
pub mod end_session;
pub mod http;
pub mod id_token;
pub mod provider;
pub mod refresh_grant;
pub mod revoke;

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse,
};
use openidconnect::{
    AuthType, AuthUrl, Client, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IssuerUrl,
    RequestTokenError, StandardErrorResponse, TokenUrl,
};

use crate::config::OidcConfig;

pub use authorization::{LoginStart, LoginState};
pub use code_grant::{CallbackQuery, LoginResult};
pub use http::{HttpClient, HttpError};
pub use id_token::{GatewayClaims, IdentityClaims};
pub use provider::{IdpMetadata, KeySet, Provider, ProviderOptions};
pub use refresh_grant::{RefreshError, Refreshed};

/// Why an OIDC operation failed. Messages name what went wrong, never a
/// token, code, secret or response body.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The IdP's metadata is not loaded yet (the IdP has not answered).
    #[error("the identity provider is not available yet")]
    NotReady,
    /// The `[oidc]` configuration cannot be used.
    #[error("invalid OIDC configuration: {0}")]
    Config(String),
    /// Talking to the IdP failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The discovery document is unusable.
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The key set is unusable.
    #[error("key set: {0}")]
    Jwks(String),
    /// No IdP key matches the token's `kid`/`alg`, even after a refetch.
    #[error("no matching signing key")]
    UnknownKey,
    /// The token's `alg` is not one the IdP advertises for ID tokens, or is
    /// symmetric or `none`.
    #[error("signing algorithm not allowed")]
    DisallowedAlg,
    /// The callback's `state` is missing or not the one this login sent.
    #[error("state mismatch")]
    StateMismatch,
    /// The callback's `iss` (RFC 9207) is not the configured issuer.
    #[error("issuer mismatch in authorization response")]
    IssuerMismatch,
    /// The IdP promises `iss` in authorization responses, and it is missing.
    #[error("authorization response without iss")]
    MissingIssuer,
    /// The login state is older than the login lifetime.
    #[error("login expired")]
    LoginExpired,
    /// The IdP answered the authorization request with an error.
    #[error("authorization failed: {error}")]
    Authorization {
        /// The OAuth error code (`access_denied`, `login_required`, …).
        error: String,
        /// The IdP's description, shortened and stripped of control characters.
        description: Option<String>,
    },
    /// The callback carries neither `code` nor `error`.
    #[error("authorization response without code")]
    MissingCode,
    /// The callback query is malformed (e.g. a repeated parameter).
    #[error("malformed callback: {0}")]
    BadCallback(&'static str),
    /// The token endpoint refused or failed.
    #[error("token request failed: {0}")]
    Token(String),
    /// The IdP says the grant (code or refresh token) is invalid or expired.
    #[error("invalid_grant")]
    InvalidGrant,
    /// The token response carries no ID token.
    #[error("token response without id_token")]
    MissingIdToken,
    /// The ID token failed validation.
    #[error("invalid ID token: {0}")]
    IdToken(String),
    /// Token revocation failed.
    #[error("revocation failed: {0}")]
    Revocation(String),
}

/// Tuning for [`OidcClient`]; the defaults suit production.
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// Deadline per request to the IdP.
    pub http_timeout: Duration,
    /// Largest response body accepted from the IdP.
    pub max_response_bytes: usize,
    /// Discovery retry and key refetch timing.
    pub provider: ProviderOptions,
    /// How long a started login may take to come back.
    pub login_max_age: Duration,
    /// Tolerated clock difference with the IdP (`iat` in the future).
    pub clock_skew: Duration,
}

impl Default for OidcOptions {
    fn default() -> Self {
        OidcOptions {
            http_timeout: http::DEFAULT_TIMEOUT,
            max_response_bytes: http::DEFAULT_MAX_BODY,
            provider: ProviderOptions::default(),
            login_max_age: Duration::from_secs(600),
            clock_skew: Duration::from_secs(60),
        }
    }
}

/// Authorization parameters the gateway sets itself; `auth_params` may not
/// override them (that would break state, nonce or PKCE protection).
const RESERVED_AUTH_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "request",
    "request_uri",
];

/// End-session parameters the gateway sets itself.
const RESERVED_LOGOUT_PARAMS: &[&str] = &[
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
];

struct ClientInner {
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    scopes: Vec<String>,
    auth_params: Vec<(String, String)>,
    logout_params: Vec<(String, String)>,
    end_session_override: Option<url::Url>,
    provider: Provider,
    http: HttpClient,
    options: OidcOptions,
}

/// The gateway's OIDC client: configuration, the IdP's metadata and keys,
/// and the HTTP client, together. Cheap to clone.
#[derive(Clone)]
pub struct OidcClient {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("client_id", &self.inner.client_id.as_str())
            .field("provider", &self.inner.provider)
            .finish()
    }
}

/// The openidconnect client type used for token requests.
pub(crate) type TokenClient = Client<
    GatewayClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    id_token::GatewayTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

impl OidcClient {
    /// Builds the client and starts discovery in the background (see
    /// [`Provider`]); never fails because the IdP is down. Fails on
    /// reserved `auth_params`/`logout_params`, on a TLS setup error, or
    /// outside a Tokio runtime.
    pub fn new(cfg: &OidcConfig) -> Result<Self, OidcError> {
        Self::with_options(cfg, OidcOptions::default())
    }

    /// [`OidcClient::new`] with explicit timing (tests use short backoffs).
    pub fn with_options(cfg: &OidcConfig, options: OidcOptions) -> Result<Self, OidcError> {
        if let Some((name, _)) = cfg
            .auth_params
            .iter()
            .find(|(n, _)| RESERVED_AUTH_PARAMS.contains(&n.as_str()))
        {
            return Err(OidcError::Config(format!(
                "auth_params may not set {name:?}: the gateway sets it"
            )));
        }
        if let Some((name, _)) = cfg
            .logout_params
            .iter()
            .find(|(n, _)| RESERVED_LOGOUT_PARAMS.contains(&n.as_str()))
        {
            return Err(OidcError::Config(format!(
                "logout_params may not set {name:?}: the gateway sets it"
            )));
        }
        let allow_http = cfg.issuer.scheme() == "http";
        let http = HttpClient::new(allow_http, options.http_timeout, options.max_response_bytes)?;
        let provider = Provider::start(
            &cfg.issuer,
            cfg.end_session_endpoint.clone(),
            http.clone(),
            options.provider.clone(),
        )?;
        Ok(OidcClient {
            inner: Arc::new(ClientInner {
                client_id: ClientId::new(cfg.client_id.clone()),
                client_secret: cfg
                    .client_secret
                    .as_ref()
                    .map(|s| ClientSecret::new(s.expose().to_owned())),
                // openidconnect always adds `openid` itself.
                scopes: cfg
                    .scopes
                    .iter()
                    .filter(|s| s.as_str() != "openid")
                    .cloned()
                    .collect(),
                auth_params: cfg.auth_params.clone(),
                logout_params: cfg.logout_params.clone(),
                end_session_override: cfg.end_session_endpoint.clone(),
                provider,
                http,
                options,
            }),
        })
    }

    /// Whether the IdP's metadata and keys are loaded.
    pub fn ready(&self) -> bool {
        self.inner.provider.ready()
    }

    /// The IdP: metadata, keys, readiness.
    pub fn provider(&self) -> &Provider {
        &self.inner.provider
    }

    /// The configured client id.
    pub fn client_id(&self) -> &str {
        self.inner.client_id.as_str()
    }

    /// The HTTP client used for the IdP.
    pub fn http(&self) -> &HttpClient {
        &self.inner.http
    }

    pub(crate) fn options(&self) -> &OidcOptions {
        &self.inner.options
    }

    /// An openidconnect client for the token endpoint of `meta`.
    pub(crate) fn token_client(&self, meta: &IdpMetadata) -> Result<TokenClient, OidcError> {
        let issuer = IssuerUrl::new(meta.issuer.clone())
            .map_err(|e| OidcError::Discovery(format!("issuer is not a URL: {e}")))?;
        let mut client = Client::new(
            self.inner.client_id.clone(),
            issuer,
            CoreJsonWebKeySet::new(Vec::new()),
        )
        .set_auth_uri(AuthUrl::from_url(meta.authorization_endpoint.clone()))
        .set_token_uri(TokenUrl::from_url(meta.token_endpoint.clone()));
        if let Some(secret) = &self.inner.client_secret {
            client = client.set_client_secret(secret.clone());
        }
        if meta.prefers_client_secret_post() {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(client)
    }

    /// Adds client authentication to a form POST to the IdP (revocation),
    /// the way the token endpoint gets it: HTTP Basic with form-encoded id
    /// and secret (RFC 6749 §2.3.1), or form fields for
    /// `client_secret_post`, or only `client_id` for public clients.
    pub(crate) fn authenticate_form(
        &self,
        meta: &IdpMetadata,
        request: ::http::request::Builder,
        form: &mut form_urlencoded::Serializer<'_, String>,
    ) -> ::http::request::Builder {
        let id = self.inner.client_id.as_str();
        match &self.inner.client_secret {
            Some(secret) if !meta.prefers_client_secret_post() => {
                use base64::Engine;
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(id), enc(secret.secret()));
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                request.header(::http::header::AUTHORIZATION, format!("Basic {basic}"))
            }
            Some(secret) => {
                form.append_pair("client_id", id);
                form.append_pair("client_secret", secret.secret());
                request
            }
            None => {
                form.append_pair("client_id", id);
                request
            }
        }
    }
}

/// A token-endpoint failure as an [`OidcError`], without the response body
/// (a body that failed to parse may be a token response).
pub(crate) fn token_error(
    e: RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            CoreErrorResponseType::InvalidGrant => OidcError::InvalidGrant,
            other => OidcError::Token(format!("the IdP answered {}", other.as_ref())),
        },
        RequestTokenError::Request(e) => OidcError::Http(e),
        RequestTokenError::Parse(e, _body) => {
            OidcError::Token(format!("unreadable response at {}", e.path()))
        }
        RequestTokenError::Other(msg) => OidcError::Token(msg),
    }
}
