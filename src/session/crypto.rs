//! Keys derived from `[session] secret`: authenticated encryption for blobs
//! the gateway stores or hands to browsers, and MACs for tokens it checks.
//!
//! Every configured secret yields one key per *purpose* (HKDF-SHA256, the
//! purpose as `info`), so a blob sealed for one purpose never opens as
//! another. The first secret seals and signs; every secret opens and
//! verifies, which is how rotation works: put the new secret first, keep the
//! old one until every blob it sealed has expired.
//!
//! Sealed blob layout (all binary; encode it yourself, e.g. base64url, when it
//! must travel as text):
//!
//! ```text
//! version (1 byte, = 1) | key id (4 bytes) | salt (16) | nonce (12) | AES-256-GCM ciphertext + tag (16)
//! ```
//!
//! The key id is the first 4 bytes of SHA-256 of the purpose key, so a blob
//! names the key that sealed it without revealing anything about it. Each
//! blob is sealed under its own one-time key derived from the purpose key and
//! the random salt, so the random 96-bit nonce never comes near GCM's
//! collision bound however many blobs one secret seals.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hkdf, hmac};

use crate::config::Secret;

/// Purpose of session records in the store (AAD: the store key).
pub const PURPOSE_SESSION_RECORD: &str = "session-record";
/// Purpose of the login-state cookie (state, nonce, PKCE verifier, return URL).
pub const PURPOSE_LOGIN_STATE: &str = "login-state";
/// Purpose of the single-use logout `state`.
pub const PURPOSE_LOGOUT_STATE: &str = "logout-state";
/// Purpose of the logout CSRF token (a MAC).
pub const PURPOSE_LOGOUT_CSRF: &str = "logout-csrf";
/// Purpose of the MAC that hashes index keys (`iss`+`sid`, `iss`+`sub`).
pub const PURPOSE_SESSION_INDEX: &str = "session-index";

const VERSION: u8 = 1;
const KID_LEN: usize = 4;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = aead::NONCE_LEN;
const HEADER_LEN: usize = 1 + KID_LEN + SALT_LEN + NONCE_LEN;
/// Fixed HKDF salt: domain separation from any other use of the secret.
const HKDF_SALT: &[u8] = b"portcullis/v1 session keys";

/// Errors of this module. They never carry key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// No secret was configured.
    #[error("no session secret configured")]
    NoSecret,
    /// The blob is malformed, was sealed under a key not in the ring, was
    /// sealed for another purpose or AAD, or was altered.
    #[error("sealed blob does not open")]
    Open,
    /// The system random generator failed.
    #[error("random generator failed")]
    Random,
}

/// 32 bytes of key material for one purpose.
#[derive(Clone)]
struct PurposeKey {
    bytes: [u8; 32],
    kid: [u8; KID_LEN],
}

impl PurposeKey {
    fn derive(secret: &[u8], purpose: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let mut bytes = [0u8; 32];
        let info = [purpose.as_bytes()];
        // 32 bytes is far below HKDF-SHA256's 255*32 limit, so this cannot fail.
        if let Ok(okm) = prk.expand(&info, Len32) {
            let _ = okm.fill(&mut bytes);
        }
        let hash = digest::digest(&digest::SHA256, &bytes);
        let mut kid = [0u8; KID_LEN];
        kid.copy_from_slice(&hash.as_ref()[..KID_LEN]);
        PurposeKey { bytes, kid }
    }
}

/// HKDF output length marker for 32 bytes.
struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// All keys derived from the configured secrets. Cheap to clone.
#[derive(Clone)]
pub struct KeyRing {
    /// Raw secrets, first = current. Kept to derive purpose keys on demand.
    secrets: Vec<Vec<u8>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({} secret(s), <redacted>)", self.secrets.len())
    }
}

impl KeyRing {
    /// Builds the ring from the configured secrets (first = current).
    pub fn new(secrets: &[Secret]) -> Result<Self, CryptoError> {
        if secrets.is_empty() {
            return Err(CryptoError::NoSecret);
        }
        Ok(KeyRing {
            secrets: secrets
                .iter()
                .map(|s| s.expose().as_bytes().to_vec())
                .collect(),
            rng: SystemRandom::new(),
        })
    }

    /// An encrypter/decrypter for one purpose (see the `PURPOSE_*` constants).
    /// Build it once and keep it: derivation runs here, not per call.
    pub fn sealer(&self, purpose: &'static str) -> Sealer {
        Sealer {
            keys: self
                .secrets
                .iter()
                .map(|s| PurposeKey::derive(s, purpose))
                .collect(),
            rng: self.rng.clone(),
        }
    }

    /// A MAC signer/verifier for one purpose (see the `PURPOSE_*` constants).
    pub fn mac(&self, purpose: &'static str) -> Mac {
        Mac {
            keys: self
                .secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, &PurposeKey::derive(s, purpose).bytes))
                .collect(),
        }
    }

    /// Fills `buf` from the system random generator.
    pub fn fill_random(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        self.rng.fill(buf).map_err(|_| CryptoError::Random)
    }
}

/// Seals and opens blobs for one purpose. The first key seals; any opens.
#[derive(Clone)]
pub struct Sealer {
    keys: Vec<PurposeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

fn message_key(key: &PurposeKey, salt: &[u8]) -> Option<LessSafeKey> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&key.bytes);
    let okm = prk.expand(&[b"aead"], &aead::AES_256_GCM).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

impl Sealer {
    /// Encrypts and authenticates `plaintext`, binding it to `aad` (which is
    /// not stored: the same `aad` must be given to [`Sealer::open`]).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.keys.first().ok_or(CryptoError::NoSecret)?;
        let mut header = [0u8; HEADER_LEN];
        header[0] = VERSION;
        header[1..1 + KID_LEN].copy_from_slice(&key.kid);
        self.rng
            .fill(&mut header[1 + KID_LEN..])
            .map_err(|_| CryptoError::Random)?;
        let salt = &header[1 + KID_LEN..1 + KID_LEN + SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[1 + KID_LEN + SALT_LEN..]);
        let mkey = message_key(key, salt).ok_or(CryptoError::Random)?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + aead::MAX_TAG_LEN);
        out.extend_from_slice(&header);
        let mut body = plaintext.to_vec();
        mkey.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| CryptoError::Random)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a blob sealed by [`Sealer::seal`] under any key of the ring for
    /// this purpose and the same `aad`. Any failure is [`CryptoError::Open`].
    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if blob.len() < HEADER_LEN + aead::MAX_TAG_LEN || blob[0] != VERSION {
            return Err(CryptoError::Open);
        }
        let kid = &blob[1..1 + KID_LEN];
        let salt = &blob[1 + KID_LEN..1 + KID_LEN + SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[1 + KID_LEN + SALT_LEN..HEADER_LEN]);
        // Two secrets could share a 4-byte id by chance: try every match.
        for key in self.keys.iter().filter(|k| k.kid == kid) {
            let Some(mkey) = message_key(key, salt) else {
                continue;
            };
            let mut body = blob[HEADER_LEN..].to_vec();
            if let Ok(plain) = mkey.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            ) {
                return Ok(plain.to_vec());
            }
        }
        Err(CryptoError::Open)
    }
}

/// HMAC-SHA256 for one purpose. The first key signs; any verifies.
#[derive(Clone)]
pub struct Mac {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mac(<redacted>)")
    }
}

impl Mac {
    /// The 32-byte tag of `msg` under the current key.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self.keys.first() {
            Some(k) => hmac::sign(k, msg).as_ref().to_vec(),
            None => Vec::new(),
        }
    }

    /// Whether `tag` is the tag of `msg` under any key of the ring. The
    /// comparison is constant-time (`ring::hmac::verify`).
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        !tag.is_empty() && self.keys.iter().any(|k| hmac::verify(k, msg, tag).is_ok())
    }

    /// The tags of `msg` under every key, current first: for lookups of
    /// values hashed under an older secret.
    pub fn sign_all(&self, msg: &[u8]) -> Vec<Vec<u8>> {
        self.keys
            .iter()
            .map(|k| hmac::sign(k, msg).as_ref().to_vec())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(secrets: &[&str]) -> KeyRing {
        let s: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        KeyRing::new(&s).unwrap()
    }

    const A: &str = "0123456789abcdef0123456789abcdef-A";
    const B: &str = "0123456789abcdef0123456789abcdef-B";

    #[test]
    fn round_trip_and_aad_binding() {
        let s = ring(&[A]).sealer(PURPOSE_SESSION_RECORD);
        let blob = s.seal(b"key1", b"hello").unwrap();
        assert_eq!(s.open(b"key1", &blob).unwrap(), b"hello");
        assert!(s.open(b"key2", &blob).is_err(), "other AAD must not open");
        // Two seals of the same plaintext differ (random salt and nonce).
        assert_ne!(blob, s.seal(b"key1", b"hello").unwrap());
    }

    #[test]
    fn purposes_are_separate() {
        let r = ring(&[A]);
        let blob = r.sealer(PURPOSE_LOGIN_STATE).seal(b"", b"x").unwrap();
        assert!(r.sealer(PURPOSE_LOGOUT_STATE).open(b"", &blob).is_err());
    }

    #[test]
    fn rotation_old_blob_opens_after_new_secret_is_prepended() {
        let old = ring(&[A]).sealer(PURPOSE_SESSION_RECORD);
        let blob = old.seal(b"k", b"record").unwrap();
        let rotated = ring(&[B, A]).sealer(PURPOSE_SESSION_RECORD);
        assert_eq!(rotated.open(b"k", &blob).unwrap(), b"record");
        // New blobs are sealed with the new key; the old ring cannot open them.
        let fresh = rotated.seal(b"k", b"new").unwrap();
        assert_ne!(fresh[1..5], blob[1..5], "key id names the new key");
        assert!(old.open(b"k", &fresh).is_err());
        // Once the old secret is dropped its blobs no longer open.
        assert!(
            ring(&[B])
                .sealer(PURPOSE_SESSION_RECORD)
                .open(b"k", &blob)
                .is_err()
        );
    }

    #[test]
    fn tampered_or_short_blobs_fail() {
        let s = ring(&[A]).sealer(PURPOSE_SESSION_RECORD);
        let blob = s.seal(b"k", b"some plaintext").unwrap();
        for i in 0..blob.len() {
            let mut t = blob.clone();
            t[i] ^= 0x01;
            assert!(s.open(b"k", &t).is_err(), "flip at byte {i} must fail");
        }
        for n in 0..blob.len() {
            assert!(s.open(b"k", &blob[..n]).is_err());
        }
        assert!(s.open(b"k", b"").is_err());
    }

    #[test]
    fn mac_sign_verify_rotation() {
        let old = ring(&[A]).mac(PURPOSE_LOGOUT_CSRF);
        let tag = old.sign(b"session");
        assert_eq!(tag.len(), 32);
        assert!(old.verify(b"session", &tag));
        assert!(!old.verify(b"other", &tag));
        assert!(!old.verify(b"session", &tag[..31]));
        assert!(!old.verify(b"session", b""));
        let rotated = ring(&[B, A]).mac(PURPOSE_LOGOUT_CSRF);
        assert!(rotated.verify(b"session", &tag));
        assert_ne!(rotated.sign(b"session"), tag);
        assert_eq!(rotated.sign_all(b"session")[1], tag);
        // Another purpose's key does not verify.
        assert!(
            !ring(&[A])
                .mac(PURPOSE_SESSION_INDEX)
                .verify(b"session", &tag)
        );
    }
}
