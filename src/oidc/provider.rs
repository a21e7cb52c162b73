//! The IdP's metadata and signing keys.
//!
//! Discovery (`<issuer>/.well-known/openid-configuration`) and the JWKS are
//! loaded by a background task that retries with exponential backoff, so the
//! gateway starts and reports not-ready while the IdP is unreachable instead
//! of exiting, and becomes ready on its own once the IdP answers. Both are
//! reloaded periodically afterwards; a failed reload keeps the last good copy.
//!
//! The key set is refetched when a token names a key we do not have (the
//! IdP rotated its keys), at most once per `jwks_min_refetch_interval`, so
//! tokens with forged `kid`s cannot turn the gateway into a load amplifier
//! against the IdP.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, JwsSigningAlgorithm};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use url::Url;

use super::OidcError;
use super::http::HttpClient;

/// Timing knobs for discovery and key refetching.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// First retry delay after a failed discovery; doubles per failure.
    pub initial_backoff: Duration,
    /// Largest retry delay.
    pub max_backoff: Duration,
    /// How often metadata and keys are reloaded once loaded.
    pub refresh_interval: Duration,
    /// Least time between two JWKS fetches triggered by unknown key ids.
    pub jwks_min_refetch_interval: Duration,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(3600),
            jwks_min_refetch_interval: Duration::from_secs(30),
        }
    }
}

/// Discovery fields openidconnect's `ProviderMetadata` does not model.
/// Endpoints are kept as strings and parsed leniently: a malformed optional
/// endpoint disables that feature instead of failing discovery.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraProviderMetadata {
    /// RP-Initiated Logout 1.0.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// RFC 7009 token revocation.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RFC 7662 token introspection.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// RFC 9207: the IdP sends `iss` with every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Back-Channel Logout 1.0.
    #[serde(default)]
    pub backchannel_logout_supported: Option<bool>,
    /// Back-Channel Logout 1.0: logout tokens carry `sid`.
    #[serde(default)]
    pub backchannel_logout_session_supported: Option<bool>,
    /// Front-Channel Logout 1.0.
    #[serde(default)]
    pub frontchannel_logout_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraProviderMetadata {}

/// The discovery document as openidconnect parses it.
pub type DiscoveryDocument = openidconnect::ProviderMetadata<
    ExtraProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What the gateway uses from the IdP's discovery document.
#[derive(Debug, Clone)]
pub struct IdpMetadata {
    /// The issuer exactly as the IdP spells it (compared byte for byte with
    /// `iss` in tokens and authorization responses).
    pub issuer: String,
    /// Authorization endpoint.
    pub authorization_endpoint: Url,
    /// Token endpoint.
    pub token_endpoint: Url,
    /// JWKS location.
    pub jwks_uri: Url,
    /// End-session endpoint: the configured override, else the discovered one.
    pub end_session_endpoint: Option<Url>,
    /// RFC 7009 revocation endpoint, if published.
    pub revocation_endpoint: Option<Url>,
    /// RFC 7662 introspection endpoint, if published.
    pub introspection_endpoint: Option<Url>,
    /// ID-token signing algorithms the IdP advertises, asymmetric ones only
    /// (never `none`, never HMAC): the only ones the gateway accepts.
    pub id_token_signing_algs: Vec<CoreJwsSigningAlgorithm>,
    /// Token endpoint client authentication methods (empty: not published,
    /// which means `client_secret_basic`).
    pub token_endpoint_auth_methods: Vec<CoreClientAuthMethod>,
    /// Whether authorization responses always carry `iss` (RFC 9207).
    pub iss_parameter_supported: bool,
    /// Whether the IdP supports Back-Channel Logout.
    pub backchannel_logout_supported: bool,
    /// Whether the IdP supports Front-Channel Logout.
    pub frontchannel_logout_supported: bool,
    /// The full parsed document, for anything not lifted out above.
    pub document: DiscoveryDocument,
}

impl IdpMetadata {
    /// The ID-token algorithms as `jsonwebtoken` names them, for validating
    /// back-channel logout tokens (which use the same algorithms).
    pub fn jwt_algorithms(&self) -> Vec<jsonwebtoken::Algorithm> {
        self.id_token_signing_algs
            .iter()
            .filter_map(to_jwt_algorithm)
            .collect()
    }

    /// Whether the token endpoint wants the client secret in the form body
    /// (`client_secret_post`) rather than HTTP Basic.
    pub fn prefers_client_secret_post(&self) -> bool {
        let has = |m: CoreClientAuthMethod| self.token_endpoint_auth_methods.contains(&m);
        !self.token_endpoint_auth_methods.is_empty()
            && !has(CoreClientAuthMethod::ClientSecretBasic)
            && has(CoreClientAuthMethod::ClientSecretPost)
    }
}

/// Maps an openidconnect algorithm to jsonwebtoken's; `None` for symmetric,
/// `none` and algorithms jsonwebtoken cannot verify.
fn to_jwt_algorithm(alg: &CoreJwsSigningAlgorithm) -> Option<jsonwebtoken::Algorithm> {
    use CoreJwsSigningAlgorithm as C;
    use jsonwebtoken::Algorithm as J;
    Some(match alg {
        C::RsaSsaPkcs1V15Sha256 => J::RS256,
        C::RsaSsaPkcs1V15Sha384 => J::RS384,
        C::RsaSsaPkcs1V15Sha512 => J::RS512,
        C::RsaSsaPssSha256 => J::PS256,
        C::RsaSsaPssSha384 => J::PS384,
        C::RsaSsaPssSha512 => J::PS512,
        C::EcdsaP256Sha256 => J::ES256,
        C::EcdsaP384Sha384 => J::ES384,
        C::EdDsa => J::EdDSA,
        _ => return None,
    })
}

/// The IdP's public signing keys, in the two forms the gateway verifies
/// with: openidconnect's (ID tokens) and jsonwebtoken's (logout tokens).
#[derive(Debug)]
pub struct KeySet {
    /// For openidconnect's ID-token verifier.
    pub oidc: CoreJsonWebKeySet,
    /// For jsonwebtoken; keys it cannot parse are skipped.
    pub jwt: Vec<jsonwebtoken::jwk::Jwk>,
}

impl KeySet {
    fn empty() -> Self {
        KeySet {
            oidc: CoreJsonWebKeySet::new(Vec::new()),
            jwt: Vec::new(),
        }
    }

    /// Parses a JWKS document.
    pub fn parse(body: &[u8]) -> Result<Self, OidcError> {
        let oidc: CoreJsonWebKeySet = serde_json::from_slice(body)
            .map_err(|e| OidcError::Jwks(format!("invalid key set: {e}")))?;
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| OidcError::Jwks(format!("invalid key set: {e}")))?;
        let jwt = raw
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value(k).ok())
            .collect();
        Ok(KeySet { oidc, jwt })
    }

    /// The key that may verify a token signed with `alg` and naming `kid`:
    /// not an encryption key, of the algorithm's key type, with a matching
    /// `alg` if the key names one. Without a `kid` exactly one key must fit.
    pub fn find(
        &self,
        kid: Option<&str>,
        alg: jsonwebtoken::Algorithm,
    ) -> Option<&jsonwebtoken::jwk::Jwk> {
        use jsonwebtoken::jwk::{AlgorithmParameters, PublicKeyUse};
        use jsonwebtoken::{Algorithm, AlgorithmFamily};
        let alg_name = serde_json::to_value(alg).ok();
        let mut fitting = self.jwt.iter().filter(|k| {
            if kid.is_some() && k.common.key_id.as_deref() != kid {
                return false;
            }
            if matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                return false;
            }
            if let Some(key_alg) = &k.common.key_algorithm
                && serde_json::to_value(key_alg).ok() != alg_name
            {
                return false;
            }
            match (&k.algorithm, alg.family()) {
                (AlgorithmParameters::RSA(_), AlgorithmFamily::Rsa) => true,
                (AlgorithmParameters::EllipticCurve(_), AlgorithmFamily::Ec) => true,
                (AlgorithmParameters::OctetKeyPair(_), AlgorithmFamily::Ed) => {
                    alg == Algorithm::EdDSA
                }
                _ => false,
            }
        });
        let first = fitting.next()?;
        if kid.is_none() && fitting.next().is_some() {
            return None;
        }
        Some(first)
    }
}

struct Inner {
    issuer: Url,
    discovery_url: Url,
    end_session_override: Option<Url>,
    http: HttpClient,
    options: ProviderOptions,
    metadata: ArcSwapOption<IdpMetadata>,
    keys: ArcSwap<KeySet>,
    /// When the key set was last fetched; also serialises refetches.
    last_key_fetch: Mutex<Option<Instant>>,
    ready: watch::Sender<bool>,
    /// Stops the background task when the last `Provider` clone is dropped.
    _stop: DropGuard,
}

/// The IdP as the gateway knows it: metadata and keys, loaded and kept
/// fresh in the background. Cheap to clone.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.inner.issuer.as_str())
            .field("ready", &self.ready())
            .finish()
    }
}

impl Provider {
    /// Starts loading the IdP's metadata and keys in the background; the
    /// provider is not ready until both are loaded. Needs a Tokio runtime
    /// (an error, not a panic, without one). The task stops when the last
    /// clone is dropped (e.g. after a configuration reload).
    pub fn start(
        issuer: &Url,
        end_session_override: Option<Url>,
        http: HttpClient,
        options: ProviderOptions,
    ) -> Result<Provider, OidcError> {
        let discovery_url = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            issuer.as_str().trim_end_matches('/')
        ))
        .map_err(|e| OidcError::Config(format!("issuer: {e}")))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| OidcError::Config("the OIDC client needs a Tokio runtime".into()))?;
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            issuer: issuer.clone(),
            discovery_url,
            end_session_override,
            http,
            options,
            metadata: ArcSwapOption::empty(),
            keys: ArcSwap::from_pointee(KeySet::empty()),
            last_key_fetch: Mutex::new(None),
            ready: watch::channel(false).0,
            _stop: stop.clone().drop_guard(),
        });
        runtime.spawn(keep_loaded(Arc::downgrade(&inner), stop));
        Ok(Provider { inner })
    }

    /// Whether metadata and keys are loaded (`/readyz`).
    pub fn ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until ready, at most `timeout`; returns readiness.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.ready.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The IdP's metadata, once loaded.
    pub fn metadata(&self) -> Option<Arc<IdpMetadata>> {
        self.inner.metadata.load_full()
    }

    /// The metadata, or [`OidcError::NotReady`].
    pub fn require_metadata(&self) -> Result<Arc<IdpMetadata>, OidcError> {
        self.metadata().ok_or(OidcError::NotReady)
    }

    /// The current key set.
    pub fn keys(&self) -> Arc<KeySet> {
        self.inner.keys.load_full()
    }

    /// The configured issuer URL.
    pub fn issuer_url(&self) -> &Url {
        &self.inner.issuer
    }

    /// Refetches the key set unless it was fetched within
    /// `jwks_min_refetch_interval`. Concurrent callers wait for one fetch.
    /// Afterwards, read [`Provider::keys`] again.
    pub async fn refetch_keys_limited(&self) {
        let mut last = self.inner.last_key_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.inner.options.jwks_min_refetch_interval) {
            return;
        }
        *last = Some(Instant::now());
        let Some(meta) = self.metadata() else { return };
        match fetch_keys(&self.inner.http, &meta.jwks_uri).await {
            Ok(keys) => {
                tracing::info!(keys = keys.jwt.len(), "refetched the IdP's signing keys");
                self.inner.keys.store(Arc::new(keys));
            }
            Err(e) => tracing::warn!(error = %e, "refetching the IdP's signing keys failed"),
        }
    }

    /// A key to verify a JWT from the IdP (back-channel logout tokens) with
    /// jsonwebtoken: `alg` must be one of the IdP's advertised asymmetric
    /// ID-token algorithms, and the key must fit it (see [`KeySet::find`]).
    /// An unknown `kid` triggers one rate-limited refetch of the key set.
    pub async fn decoding_key(
        &self,
        kid: Option<&str>,
        alg: jsonwebtoken::Algorithm,
    ) -> Result<jsonwebtoken::DecodingKey, OidcError> {
        let meta = self.require_metadata()?;
        if !meta.jwt_algorithms().contains(&alg) {
            return Err(OidcError::DisallowedAlg);
        }
        let lookup = |keys: &KeySet| keys.find(kid, alg).map(jsonwebtoken::DecodingKey::from_jwk);
        let found = match lookup(&self.keys()) {
            Some(k) => Some(k),
            None => {
                self.refetch_keys_limited().await;
                lookup(&self.keys())
            }
        };
        match found {
            Some(Ok(key)) => Ok(key),
            Some(Err(e)) => Err(OidcError::Jwks(format!("unusable key: {e}"))),
            None => Err(OidcError::UnknownKey),
        }
    }

    async fn load(&self) -> Result<(), OidcError> {
        let inner = &self.inner;
        let meta = discover(
            &inner.http,
            &inner.discovery_url,
            &inner.issuer,
            inner.end_session_override.as_ref(),
        )
        .await?;
        let keys = {
            let mut last = inner.last_key_fetch.lock().await;
            let keys = fetch_keys(&inner.http, &meta.jwks_uri).await?;
            *last = Some(Instant::now());
            keys
        };
        inner.keys.store(Arc::new(keys));
        inner.metadata.store(Some(Arc::new(meta)));
        inner.ready.send_replace(true);
        Ok(())
    }
}

/// The background loop: load, then reload every `refresh_interval`;
/// retry failures with exponential backoff (plus jitter, so a fleet does
/// not hammer an IdP that just came back).
async fn keep_loaded(inner: Weak<Inner>, stop: CancellationToken) {
    let mut backoff: Option<Duration> = None;
    let mut failures: u32 = 0;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let provider = Provider { inner: strong };
        let options = provider.inner.options.clone();
        let wait = match provider.load().await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "identity provider metadata loaded");
                }
                failures = 0;
                backoff = None;
                options.refresh_interval
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(
                    error = %e,
                    attempt = failures,
                    ready = provider.ready(),
                    "loading identity provider metadata failed; retrying"
                );
                let next = backoff
                    .map(|b| (b * 2).min(options.max_backoff))
                    .unwrap_or(options.initial_backoff);
                backoff = Some(next);
                next + jitter(next)
            }
        };
        drop(provider);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Up to 10% of `d`, random.
fn jitter(d: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 1];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        return Duration::ZERO;
    }
    d.mul_f64(f64::from(b[0]) / 255.0 * 0.1)
}

/// Fetches and checks the discovery document.
async fn discover(
    http: &HttpClient,
    url: &Url,
    configured_issuer: &Url,
    end_session_override: Option<&Url>,
) -> Result<IdpMetadata, OidcError> {
    let response = http.get_json(url).await?;
    if response.status() != http::StatusCode::OK {
        return Err(OidcError::Discovery(format!(
            "{url} answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let document: DiscoveryDocument = serde_json::from_slice(response.body())
        .map_err(|e| OidcError::Discovery(format!("invalid discovery document: {e}")))?;

    // OIDC Discovery §4.3: the document's issuer must be the one we asked
    // about. `Url` adds a trailing slash to an empty path, so accept the
    // configured issuer with or without it, then use the IdP's spelling.
    let issuer = document.issuer().as_str().to_owned();
    let configured = configured_issuer.as_str();
    if issuer != configured && issuer != configured.trim_end_matches('/') {
        return Err(OidcError::Discovery(format!(
            "discovery document names issuer {issuer:?}, expected {configured:?}"
        )));
    }

    let token_endpoint = document
        .token_endpoint()
        .map(|t| t.url().clone())
        .ok_or_else(|| OidcError::Discovery("no token_endpoint".into()))?;
    let extra = document.additional_metadata().clone();
    let optional_url = |name: &str, value: &Option<String>| -> Option<Url> {
        let v = value.as_deref()?;
        match Url::parse(v) {
            Ok(u) if matches!(u.scheme(), "https" | "http") => Some(u),
            _ => {
                tracing::warn!(
                    field = name,
                    "ignoring malformed endpoint in discovery document"
                );
                None
            }
        }
    };
    let id_token_signing_algs: Vec<CoreJwsSigningAlgorithm> = document
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|a| !a.uses_shared_secret() && **a != CoreJwsSigningAlgorithm::None)
        .cloned()
        .collect();
    if id_token_signing_algs.is_empty() {
        return Err(OidcError::Discovery(
            "the IdP advertises no asymmetric ID-token signing algorithm".into(),
        ));
    }

    Ok(IdpMetadata {
        issuer,
        authorization_endpoint: document.authorization_endpoint().url().clone(),
        token_endpoint,
        jwks_uri: document.jwks_uri().url().clone(),
        end_session_endpoint: end_session_override
            .cloned()
            .or_else(|| optional_url("end_session_endpoint", &extra.end_session_endpoint)),
        revocation_endpoint: optional_url("revocation_endpoint", &extra.revocation_endpoint),
        introspection_endpoint: optional_url(
            "introspection_endpoint",
            &extra.introspection_endpoint,
        ),
        id_token_signing_algs,
        token_endpoint_auth_methods: document
            .token_endpoint_auth_methods_supported()
            .cloned()
            .unwrap_or_default(),
        iss_parameter_supported: extra
            .authorization_response_iss_parameter_supported
            .unwrap_or(false),
        backchannel_logout_supported: extra.backchannel_logout_supported.unwrap_or(false),
        frontchannel_logout_supported: extra.frontchannel_logout_supported.unwrap_or(false),
        document,
    })
}

/// Fetches and parses the key set.
async fn fetch_keys(http: &HttpClient, jwks_uri: &Url) -> Result<KeySet, OidcError> {
    let response = http.get_json(jwks_uri).await?;
    if response.status() != http::StatusCode::OK {
        return Err(OidcError::Jwks(format!(
            "{jwks_uri} answered HTTP {}",
            response.status().as_u16()
        )));
    }
    KeySet::parse(response.body())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWKS: &str = r#"{"keys":[
      {"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","e":"AQAB",
       "n":"xjlCRBqkQRfd0eXwR1JCNNzvpJzJWIvaQXcsn1GapVpF_cdcc_1YWoJ3f9QoSPHHS6stqGHRP6pxJVcPKNvfCVXi4g_h4QAOvyOQz7gSrNuORaLXTxG-VHFUJfLLDRGKPGkKpMWfKZTAX2Oe62AkfOhdcCOKEjoK-e7pZtTBPjDeDHF2gKuY0G4EPvq5ELxu9PlGlBaC3H85bM0KPDCWPjbH2tJMHqf2tWLIn6I3z8cnEdX5UtH9Bsnh6s8Lr5QdjkPMY9DFuQsn2JzgWQU3c82Sci1CxZbU4sF2VU8fj7RRlJGXAz8F9W8a4yYZDtEYnknyzmGA_4L6cw8hKj3hxw"},
      {"kty":"EC","kid":"k2","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
      {"kty":"RSA","kid":"enc","use":"enc","e":"AQAB","n":"xjlCRBqkQRfd0eXwR1JCNNzvpJzJWIvaQXcsn1GapVpF_cdcc_1YWoJ3f9QoSPHHS6stqGHRP6pxJVcPKNvfCVXi4g_h4QAOvyOQz7gSrNuORaLXTxG-VHFUJfLLDRGKPGkKpMWfKZTAX2Oe62AkfOhdcCOKEjoK-e7pZtTBPjDeDHF2gKuY0G4EPvq5ELxu9PlGlBaC3H85bM0KPDCWPjbH2tJMHqf2tWLIn6I3z8cnEdX5UtH9Bsnh6s8Lr5QdjkPMY9DFuQsn2JzgWQU3c82Sci1CxZbU4sF2VU8fj7RRlJGXAz8F9W8a4yYZDtEYnknyzmGA_4L6cw8hKj3hxw"},
      {"kty":"weird","kid":"k3"}
    ]}"#;

    #[test]
    fn finds_keys_by_kid_and_type() {
        use jsonwebtoken::Algorithm;
        let keys = KeySet::parse(RSA_JWKS.as_bytes()).expect("parses");
        assert_eq!(keys.jwt.len(), 3, "unknown key types are skipped");
        assert!(keys.find(Some("k1"), Algorithm::RS256).is_some());
        // The key says alg RS256: not usable for PS256.
        assert!(keys.find(Some("k1"), Algorithm::PS256).is_none());
        // An EC key never verifies an RSA algorithm, and vice versa.
        assert!(keys.find(Some("k2"), Algorithm::RS256).is_none());
        assert!(keys.find(Some("k2"), Algorithm::ES256).is_some());
        // Encryption keys are never used for signatures.
        assert!(keys.find(Some("enc"), Algorithm::RS256).is_none());
        assert!(keys.find(Some("nope"), Algorithm::RS256).is_none());
        // Without kid: exactly one fitting key, else nothing.
        assert!(keys.find(None, Algorithm::ES256).is_some());
    }

    #[test]
    fn outside_a_runtime_start_is_an_error_not_a_panic() {
        let http = HttpClient::new(true, Duration::from_secs(1), 1024).expect("client");
        let issuer = Url::parse("http://127.0.0.1:9").expect("url");
        let result = Provider::start(&issuer, None, http, ProviderOptions::default());
        assert!(matches!(result, Err(OidcError::Config(_))));
    }
}
