//! The signed identity assertion (`[headers] jwt_assertion`): a short-lived
//! ES256 JWT per proxied request and per forward-auth 200, so an upstream
//! can verify who the user is instead of trusting bare headers; and the
//! public keys at [`crate::paths::JWKS`].
//!
//! The signing keys outlive reloads ([`Signer`], owned by the application):
//! a reload that changes `jwt_signing_key_file` rotates, and the previous
//! key stays published until every token it signed has expired. Tokens are
//! cached by what they say (the session's claims, route origin and
//! upstream; [`Assertions`], one per gateway), so the hot path signs about
//! once every four minutes per session rather than once per request.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use thiserror::Error;

use crate::clock;
use crate::config::{HeadersConfig, Secret};
use crate::oidc::IdentityClaims;
use crate::pages::{self, Body};
use crate::session::SessionRecord;

/// How long a token is valid. SPEC caps it at five minutes.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// A cached token is reused while at least this much of its life is left,
/// so an upstream never receives one about to expire in flight.
const MIN_REMAINING: Duration = Duration::from_secs(60);

/// How long a retired key stays published: its last token's lifetime plus
/// a margin for clock skew between the gateway and verifiers.
const RETIRED_KEY_GRACE: Duration = Duration::from_secs(300 + 60);

/// Most cached tokens per gateway (one per session and route origin/upstream pair).
const TOKEN_CACHE_CAPACITY: u64 = 65_536;

/// Why a signing key could not be loaded or a token signed.
#[derive(Debug, Error)]
pub enum AssertionError {
    /// `jwt_signing_key_file` is not a P-256 PKCS#8 PEM key.
    #[error("jwt_signing_key_file is not a P-256 private key in PKCS#8 PEM")]
    BadKey,
    /// No key could be generated.
    #[error("cannot generate a signing key")]
    Generate,
    /// Signing failed.
    #[error("cannot sign the assertion: {0}")]
    Sign(String),
}

/// One signing key with its published form.
struct Key {
    encoding: EncodingKey,
    jwk: Jwk,
    kid: String,
    /// The PEM it was read from; `None` for a key made at start.
    source: Option<Secret>,
}

impl Key {
    fn from_pkcs8_der(der: &[u8], source: Option<Secret>) -> Result<Key, AssertionError> {
        Key::build(EncodingKey::from_ec_der(der), source)
    }

    fn from_pem(pem: &Secret) -> Result<Key, AssertionError> {
        let encoding = EncodingKey::from_ec_pem(pem.expose().as_bytes())
            .map_err(|_| AssertionError::BadKey)?;
        Key::build(encoding, Some(pem.clone()))
    }

    fn generate() -> Result<Key, AssertionError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| AssertionError::Generate)?;
        Key::from_pkcs8_der(doc.as_ref(), None)
    }

    fn build(encoding: EncodingKey, source: Option<Secret>) -> Result<Key, AssertionError> {
        // Reading the public point also proves the key is P-256.
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|_| AssertionError::BadKey)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        Ok(Key {
            encoding,
            jwk,
            kid,
            source,
        })
    }
}

/// The current key and the retired ones still published.
struct KeySet {
    current: Arc<Key>,
    /// Retired keys and when they stop being published.
    retired: Vec<(Arc<Key>, SystemTime)>,
}

/// The gateway's signing keys; lives as long as the process, across reloads.
pub struct Signer {
    keys: ArcSwap<KeySet>,
    /// Serialises rotations (a reload racing another).
    rotate: Mutex<()>,
}

impl Signer {
    /// Loads `jwt_signing_key_file`'s key, or makes one.
    pub fn new(cfg: &HeadersConfig) -> Result<Signer, AssertionError> {
        let current = match &cfg.jwt_signing_key {
            Some(pem) => Key::from_pem(pem)?,
            None => Key::generate()?,
        };
        Ok(Signer {
            keys: ArcSwap::from_pointee(KeySet {
                current: Arc::new(current),
                retired: Vec::new(),
            }),
            rotate: Mutex::new(()),
        })
    }

    /// Applies a reloaded `[headers]`: a different key file (or none, after
    /// one) rotates; the previous key stays published for a token lifetime.
    /// A made-at-start key is kept across reloads.
    pub fn reconfigure(&self, cfg: &HeadersConfig) -> Result<(), AssertionError> {
        let _guard = self.rotate.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.keys.load_full();
        let next = match (&cfg.jwt_signing_key, &old.current.source) {
            (Some(new), Some(cur)) if new == cur => return Ok(()),
            (None, None) => return Ok(()),
            (Some(new), _) => Key::from_pem(new)?,
            (None, Some(_)) => Key::generate()?,
        };
        let now = SystemTime::now();
        let mut retired: Vec<_> = old
            .retired
            .iter()
            .filter(|(_, until)| *until > now)
            .cloned()
            .collect();
        retired.push((old.current.clone(), now + RETIRED_KEY_GRACE));
        tracing::info!(kid = %next.kid, previous_kid = %old.current.kid, "assertion signing key rotated");
        self.keys.store(Arc::new(KeySet {
            current: Arc::new(next),
            retired,
        }));
        Ok(())
    }

    /// The `kid` of the key that signs now.
    pub fn current_kid(&self) -> String {
        self.keys.load().current.kid.clone()
    }

    /// The JWKS: the current key and retired keys still in their grace time.
    pub fn jwks(&self) -> JwkSet {
        let set = self.keys.load();
        let now = SystemTime::now();
        let mut keys = vec![set.current.jwk.clone()];
        keys.extend(
            set.retired
                .iter()
                .filter(|(_, until)| *until > now)
                .map(|(k, _)| k.jwk.clone()),
        );
        JwkSet { keys }
    }

    /// `GET /.portcullis/jwks.json`.
    pub fn jwks_response(&self) -> Response<Body> {
        match serde_json::to_value(self.jwks()) {
            Ok(v) => pages::json(StatusCode::OK, &v),
            Err(_) => pages::json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({ "error": "internal" }),
            ),
        }
    }

    /// Signs `claims` with the current key; returns the token and the key
    /// it was signed with.
    fn sign(&self, claims: &Claims<'_>) -> Result<(String, Arc<Key>), AssertionError> {
        let key = self.keys.load().current.clone();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| AssertionError::Sign(e.to_string()))?;
        Ok((token, key))
    }
}

/// The claims SPEC lists.
#[derive(Debug, serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    email_verified: bool,
    groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    iat: u64,
    exp: u64,
}

/// What a token says, owned: a cached token is reused only for exactly
/// these values (so a refresh that changes a claim gets a new token, and
/// the copy of a record an idle-timer write makes keeps the old one).
#[derive(Clone, PartialEq, Eq)]
struct Subject {
    iss: Arc<str>,
    aud: Arc<str>,
    claims: IdentityClaims,
    session_end: u64,
}

impl Subject {
    fn new(record: &SessionRecord, iss: &str, aud: &str) -> Subject {
        Subject {
            iss: iss.into(),
            aud: aud.into(),
            claims: record.claims.clone(),
            session_end: record.expires_at,
        }
    }

    fn is(&self, record: &SessionRecord, iss: &str, aud: &str) -> bool {
        *self.iss == *iss
            && *self.aud == *aud
            && self.session_end == record.expires_at
            && self.claims == record.claims
    }
}

/// One cached token.
#[derive(Clone)]
struct Cached {
    subject: Arc<Subject>,
    /// The key that signed it: a rotation makes the entry stale.
    key: Weak<Key>,
    value: HeaderValue,
    reuse_until: Instant,
}

/// Assertions for one gateway configuration: the header name and the
/// per-session token cache.
pub struct Assertions {
    header: HeaderName,
    signer: Arc<Signer>,
    /// Keyed by a hash of the [`Subject`]; a hit is compared in full.
    cache: moka::sync::Cache<u64, Cached>,
    hasher: std::collections::hash_map::RandomState,
}

impl Assertions {
    /// `None` when `[headers] jwt_assertion` is off.
    pub fn new(cfg: &HeadersConfig, signer: Arc<Signer>) -> Option<Assertions> {
        let header = cfg.jwt_assertion.clone()?;
        Some(Assertions {
            header,
            signer,
            cache: moka::sync::Cache::builder()
                .max_capacity(TOKEN_CACHE_CAPACITY)
                .time_to_live(TOKEN_LIFETIME - MIN_REMAINING)
                .build(),
            hasher: std::collections::hash_map::RandomState::new(),
        })
    }

    /// The header's name.
    pub fn header_name(&self) -> &HeaderName {
        &self.header
    }

    /// The signer (for the JWKS).
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The assertion header for `record` on a route with origin `iss` and
    /// upstream origin `aud`: a cached token for the same claims while it
    /// has at least a minute left and its key still signs, else a fresh
    /// one. `None` (logged) only if signing fails.
    pub fn header(
        &self,
        record: &SessionRecord,
        iss: &str,
        aud: &str,
    ) -> Option<(HeaderName, HeaderValue)> {
        let c = &record.claims;
        let key = self.hasher.hash_one((
            iss,
            aud,
            &c.sub,
            &c.email,
            c.email_verified,
            &c.groups,
            &c.sid,
            record.expires_at,
        ));
        let now = Instant::now();
        if let Some(hit) = self.cache.get(&key)
            && hit.reuse_until > now
            && hit.subject.is(record, iss, aud)
            && hit
                .key
                .upgrade()
                .is_some_and(|k| Arc::ptr_eq(&k, &self.signer.keys.load().current))
        {
            return Some((self.header.clone(), hit.value));
        }
        let (value, signed_by, lifetime) = match self.sign(record, iss, aud) {
            Ok(v) => v,
            Err(err) => {
                tracing::error!(error = %err, "cannot sign the identity assertion; header left out");
                return None;
            }
        };
        self.cache.insert(
            key,
            Cached {
                subject: Arc::new(Subject::new(record, iss, aud)),
                key: Arc::downgrade(&signed_by),
                value: value.clone(),
                reuse_until: now + lifetime.saturating_sub(MIN_REMAINING),
            },
        );
        Some((self.header.clone(), value))
    }

    fn sign(
        &self,
        record: &SessionRecord,
        iss: &str,
        aud: &str,
    ) -> Result<(HeaderValue, Arc<Key>, Duration), AssertionError> {
        let iat = clock::unix_now();
        // Never outlive the session itself.
        let session_left =
            Duration::from_millis(record.expires_at).saturating_sub(Duration::from_secs(iat));
        let lifetime = TOKEN_LIFETIME.min(session_left);
        let c = &record.claims;
        let claims = Claims {
            iss,
            aud,
            sub: &c.sub,
            email: c.email.as_deref(),
            email_verified: c.email_verified,
            groups: &c.groups,
            sid: c.sid.as_deref(),
            iat,
            exp: iat + lifetime.as_secs(),
        };
        let (token, key) = self.signer.sign(&claims)?;
        let value =
            HeaderValue::from_str(&token).map_err(|e| AssertionError::Sign(e.to_string()))?;
        Ok((value, key, lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn record() -> Arc<SessionRecord> {
        let now = clock::unix_now() * 1000;
        Arc::new(SessionRecord {
            claims: IdentityClaims {
                iss: "http://idp".into(),
                sub: "alice".into(),
                sid: Some("sid-1".into()),
                email: Some("alice@example.com".into()),
                email_verified: true,
                preferred_username: None,
                groups: vec!["admins".into(), "a,b".into()],
            },
            id_token: Secret::new("id"),
            access_token: Secret::new("at"),
            access_token_expires_at: None,
            refresh_token: None,
            created_at: now,
            last_seen: now,
            expires_at: now + 3_600_000,
        })
    }

    fn headers_cfg(pem: Option<&str>) -> HeadersConfig {
        HeadersConfig {
            user: None,
            email: None,
            require_verified_email: true,
            preferred_username: None,
            groups: None,
            access_token: false,
            authorization: false,
            jwt_assertion: Some(HeaderName::from_static("x-portcullis-jwt-assertion")),
            jwt_signing_key: pem.map(Secret::new),
        }
    }

    fn verify(signer: &Signer, token: &str, aud: &str) -> serde_json::Value {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let jwks = signer.jwks();
        let jwk = jwks.find(&kid).expect("kid published");
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[aud]);
        v.set_issuer(&["https://app.example.com"]);
        jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap()
            .claims
    }

    #[test]
    fn signs_the_spec_claims_and_verifies_against_the_jwks() {
        let cfg = headers_cfg(None);
        let signer = Arc::new(Signer::new(&cfg).unwrap());
        let a = Assertions::new(&cfg, signer.clone()).unwrap();
        let rec = record();
        let (name, value) = a
            .header(&rec, "https://app.example.com", "http://10.0.0.1:3000")
            .unwrap();
        assert_eq!(name, "x-portcullis-jwt-assertion");
        let claims = verify(&signer, value.to_str().unwrap(), "http://10.0.0.1:3000");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["groups"], serde_json::json!(["admins", "a,b"]));
        assert_eq!(claims["sid"], "sid-1");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert!(exp > iat && exp - iat <= 300);
    }

    #[test]
    fn tokens_are_cached_per_claims_origin_and_upstream() {
        let cfg = headers_cfg(None);
        let a = Assertions::new(&cfg, Arc::new(Signer::new(&cfg).unwrap())).unwrap();
        let rec = record();
        let first = a
            .header(&rec, "https://app.example.com", "http://u1")
            .unwrap()
            .1;
        // Signing again a second later would change `iat`; the cache does not.
        std::thread::sleep(Duration::from_millis(1100));
        let again = a
            .header(&rec, "https://app.example.com", "http://u1")
            .unwrap()
            .1;
        assert_eq!(first, again, "the hot path reuses the signed token");
        let other_aud = a
            .header(&rec, "https://app.example.com", "http://u2")
            .unwrap()
            .1;
        assert_ne!(first, other_aud);
        // A copy of the record (an idle-timer write) keeps the token...
        let mut copy = (*rec).clone();
        copy.last_seen += 5_000;
        let copied = a
            .header(&copy, "https://app.example.com", "http://u1")
            .unwrap()
            .1;
        assert_eq!(first, copied);
        // ...a refresh that changed a claim gets a new one.
        let mut changed = record();
        Arc::make_mut(&mut changed).claims.groups = vec!["staff".into()];
        let fresh = a
            .header(&changed, "https://app.example.com", "http://u1")
            .unwrap()
            .1;
        assert_ne!(first, fresh);
    }

    #[test]
    fn rotation_keeps_the_previous_key_published_and_re_signs() {
        let cfg = headers_cfg(None);
        let signer = Arc::new(Signer::new(&cfg).unwrap());
        let a = Assertions::new(&cfg, signer.clone()).unwrap();
        let rec = record();
        let before = a
            .header(&rec, "https://app.example.com", "http://u")
            .unwrap()
            .1;
        let old_kid = signer.current_kid();
        // The same (absent) key file: nothing changes.
        signer.reconfigure(&cfg).unwrap();
        assert_eq!(signer.current_kid(), old_kid);
        // A key file appears: rotate.
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, doc.as_ref())
        );
        signer.reconfigure(&headers_cfg(Some(&pem))).unwrap();
        assert_ne!(signer.current_kid(), old_kid);
        let kids: Vec<_> = signer
            .jwks()
            .keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect();
        assert!(
            kids.contains(&old_kid),
            "the retired key is still published"
        );
        // The old token still verifies; new requests get the new key.
        verify(&signer, before.to_str().unwrap(), "http://u");
        let after = a
            .header(&rec, "https://app.example.com", "http://u")
            .unwrap()
            .1;
        let kid = jsonwebtoken::decode_header(after.to_str().unwrap())
            .unwrap()
            .kid;
        assert_eq!(kid.as_deref(), Some(signer.current_kid().as_str()));
    }

    #[test]
    fn a_key_that_is_not_p256_pkcs8_is_refused() {
        assert!(matches!(
            Signer::new(&headers_cfg(Some(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ))),
            Err(AssertionError::BadKey)
        ));
    }
}
