//! The stored form of a session record, before sealing: a compact binary
//! encoding ([postcard]) behind a one-byte tag, and the JSON that records
//! had before it, still read.
//!
//! A session's bytes are mostly its tokens, and tokens are mostly base64url
//! (an ID token is three base64url parts; opaque tokens usually are one), so
//! such a token is kept packed six bits to a character, which saves a
//! quarter of it; every other token is kept as text.
//! Field names are not stored, nor the claims when the ID token's payload
//! gives them back. A typical session's sealed record is a third smaller
//! than its JSON was (`bench/memory.sh`), in the memory store and in Redis.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::id::is_base64url;
use super::record::SessionRecord;
use crate::config::Secret;
use crate::oidc::IdentityClaims;

/// First byte of a binary record. JSON records start with `{`, so the two
/// cannot be confused; a later layout takes the next number.
const BINARY_V1: u8 = 1;

/// Why a stored record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are neither layout (or are cut short).
    #[error("session record is malformed")]
    Malformed,
    /// The record could not be encoded.
    #[error("session record encoding failed")]
    Encode,
}

/// A token as stored: packed when it is base64url text, else as given.
#[derive(Serialize, Deserialize)]
enum Token<'a> {
    /// Kept as given.
    #[serde(borrow)]
    Text(Cow<'a, str>),
    /// One base64url string.
    Base64(Packed),
    /// A JWS compact serialisation (`header.payload.signature`), each part
    /// packed.
    Jws(Packed, Packed, Packed),
}

/// Base64url characters packed six bits each. Not plain decoding: tokens
/// made of random base64url characters (the test IdP's opaque tokens) do
/// not end on a byte boundary, and their last character's spare bits must
/// come back too. The text is padded with `A` (zero bits) to whole groups of
/// four, decoded, and cut back to `chars` characters when encoded again.
#[derive(Serialize, Deserialize)]
struct Packed {
    chars: u32,
    bytes: ByteBuf,
}

impl Packed {
    fn of(text: &str) -> Option<Self> {
        if !is_base64url(text) {
            return None;
        }
        let chars = u32::try_from(text.len()).ok()?;
        let mut padded = String::with_capacity(text.len() + 3);
        padded.push_str(text);
        while !padded.len().is_multiple_of(4) {
            padded.push('A');
        }
        let bytes = URL_SAFE_NO_PAD.decode(&padded).ok()?;
        Some(Packed {
            chars,
            bytes: ByteBuf::from(bytes),
        })
    }

    /// The bytes the characters encode (without the padding's).
    fn decoded(&self) -> &[u8] {
        let n = usize::try_from(self.chars)
            .unwrap_or(usize::MAX)
            .saturating_mul(3)
            / 4;
        self.bytes.get(..n).unwrap_or(&self.bytes)
    }

    fn write(&self, out: &mut String) {
        let start = out.len();
        URL_SAFE_NO_PAD.encode_string(&self.bytes, out);
        let chars = usize::try_from(self.chars).unwrap_or(usize::MAX);
        out.truncate(start.saturating_add(chars).min(out.len()));
    }
}

impl<'a> Token<'a> {
    fn of(text: &'a str) -> Self {
        let mut parts = text.split('.');
        if let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
            && let (Some(h), Some(p), Some(s)) = (Packed::of(h), Packed::of(p), Packed::of(s))
        {
            return Token::Jws(h, p, s);
        }
        match Packed::of(text) {
            Some(p) => Token::Base64(p),
            None => Token::Text(Cow::Borrowed(text)),
        }
    }

    fn into_secret(self) -> Secret {
        let mut t = String::new();
        match self {
            Token::Text(text) => t = text.into_owned(),
            Token::Base64(p) => p.write(&mut t),
            Token::Jws(h, p, s) => {
                t.reserve((h.bytes.len() + p.bytes.len() + s.bytes.len()) * 4 / 3 + 2);
                h.write(&mut t);
                t.push('.');
                p.write(&mut t);
                t.push('.');
                s.write(&mut t);
            }
        }
        Secret::new(t)
    }
}

/// The claims, when the ID token's payload does not give them back.
#[derive(Serialize, Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    sub: Cow<'a, str>,
    #[serde(borrow)]
    sid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    email: Option<Cow<'a, str>>,
    email_verified: bool,
    #[serde(borrow)]
    preferred_username: Option<Cow<'a, str>>,
    #[serde(borrow)]
    groups: Vec<Cow<'a, str>>,
}

impl<'a> Claims<'a> {
    fn of(c: &'a IdentityClaims) -> Self {
        let borrowed = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
        Claims {
            iss: Cow::Borrowed(&c.iss),
            sub: Cow::Borrowed(&c.sub),
            sid: borrowed(&c.sid),
            email: borrowed(&c.email),
            email_verified: c.email_verified,
            preferred_username: borrowed(&c.preferred_username),
            groups: c.groups.iter().map(|g| Cow::Borrowed(g.as_str())).collect(),
        }
    }

    fn into_owned(self) -> IdentityClaims {
        IdentityClaims {
            iss: self.iss.into_owned(),
            sub: self.sub.into_owned(),
            sid: self.sid.map(Cow::into_owned),
            email: self.email.map(Cow::into_owned),
            email_verified: self.email_verified,
            preferred_username: self.preferred_username.map(Cow::into_owned),
            groups: self.groups.into_iter().map(Cow::into_owned).collect(),
        }
    }
}

/// The claims an ID token stored as a JWS carries in its payload.
fn payload_claims(id_token: &Token<'_>) -> Option<IdentityClaims> {
    match id_token {
        Token::Jws(_, payload, _) => IdentityClaims::from_payload(payload.decoded()),
        _ => None,
    }
}

/// The binary layout. The field order is the layout: a change takes a new
/// tag.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    created_at: u64,
    last_seen: u64,
    expires_at: u64,
    access_token_expires_at: Option<u64>,
    /// `None` when the ID token's payload gives the very same claims (the
    /// usual case): they are not stored twice.
    #[serde(borrow)]
    claims: Option<Claims<'a>>,
    #[serde(borrow)]
    id_token: Token<'a>,
    #[serde(borrow)]
    access_token: Token<'a>,
    #[serde(borrow)]
    refresh_token: Option<Token<'a>>,
}

/// The record's bytes for sealing, in the binary layout.
pub fn encode(r: &SessionRecord) -> Result<Vec<u8>, CodecError> {
    let id_token = Token::of(r.id_token.expose());
    let claims = match payload_claims(&id_token) {
        Some(c) if c == r.claims => None,
        _ => Some(Claims::of(&r.claims)),
    };
    let stored = Stored {
        created_at: r.created_at,
        last_seen: r.last_seen,
        expires_at: r.expires_at,
        access_token_expires_at: r.access_token_expires_at,
        claims,
        id_token,
        access_token: Token::of(r.access_token.expose()),
        refresh_token: r.refresh_token.as_ref().map(|t| Token::of(t.expose())),
    };
    postcard::to_extend(&stored, vec![BINARY_V1]).map_err(|_| CodecError::Encode)
}

/// A record from its opened bytes: the binary layout, or the JSON of
/// records written before it (which may still be in Redis).
pub fn decode(bytes: &[u8]) -> Result<SessionRecord, CodecError> {
    match bytes.split_first() {
        Some((&BINARY_V1, rest)) => {
            let s: Stored<'_> = postcard::from_bytes(rest).map_err(|_| CodecError::Malformed)?;
            let claims = match s.claims {
                Some(c) => c.into_owned(),
                None => payload_claims(&s.id_token).ok_or(CodecError::Malformed)?,
            };
            Ok(SessionRecord {
                claims,
                id_token: s.id_token.into_secret(),
                access_token: s.access_token.into_secret(),
                access_token_expires_at: s.access_token_expires_at,
                refresh_token: s.refresh_token.map(Token::into_secret),
                created_at: s.created_at,
                last_seen: s.last_seen,
                expires_at: s.expires_at,
            })
        }
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|_| CodecError::Malformed),
        _ => Err(CodecError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::session::record::NewSession;

    fn record(id_token: &str, access: &str, refresh: Option<&str>) -> SessionRecord {
        SessionRecord::new(
            NewSession {
                claims: IdentityClaims {
                    iss: "https://idp.example".into(),
                    sub: "alice".into(),
                    sid: Some("s-1".into()),
                    email: Some("alice@example.com".into()),
                    email_verified: true,
                    preferred_username: Some("al".into()),
                    groups: vec!["staff".into(), "ops é".into()],
                },
                id_token: Secret::new(id_token),
                access_token: Secret::new(access),
                access_token_expires_at: Some(SystemTime::now()),
                refresh_token: refresh.map(Secret::new),
            },
            SystemTime::now(),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn every_token_shape_comes_back_exactly() {
        let jwt = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"alice"}"#),
            URL_SAFE_NO_PAD.encode([7u8; 256])
        );
        // Packed: base64url of any length (random characters that do not
        // end on a byte boundary too); text: padding, standard base64, a
        // JWE's five parts, spaces, non-ASCII.
        for (id, access, refresh) in [
            (jwt.as_str(), "abc_DEF-123", Some("Zm9v")),
            ("a.b.c", "Zm9v=", None),
            ("eyJ.x.", "Zm9=", Some("")),
            ("a.b.c.d.e", "ab+/", Some("two words")),
            ("..", "", Some("Zh")),
            ("_-_-_.z9.Q", "zzzzz", Some("é")),
        ] {
            let r = record(id, access, refresh);
            let bytes = encode(&r).unwrap();
            assert_eq!(bytes[0], BINARY_V1);
            assert_eq!(decode(&bytes).unwrap(), r, "{id} {access} {refresh:?}");
        }
    }

    #[test]
    fn a_base64url_token_is_stored_packed() {
        let sig = URL_SAFE_NO_PAD.encode([9u8; 256]);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.{sig}");
        // 43 random base64url characters, as the test IdP's opaque tokens.
        let r = record(&jwt, "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF", None);
        let binary = encode(&r).unwrap();
        let json = serde_json::to_vec(&r).unwrap();
        // The signature alone saves 86 bytes; field names the rest.
        assert!(
            binary.len() + 250 < json.len(),
            "{} vs {}",
            binary.len(),
            json.len()
        );
    }

    /// An ID token whose payload carries `record()`'s claims.
    fn matching_id_token(groups: &str) -> String {
        let payload = format!(
            r#"{{"iss":"https://idp.example","sub":"alice","sid":"s-1","email":"alice@example.com","email_verified":true,"preferred_username":"al","groups":{groups},"nonce":"n","aud":"x","exp":2}}"#
        );
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode([3u8; 256])
        )
    }

    #[test]
    fn claims_the_id_token_carries_are_not_stored_twice() {
        let same = record(&matching_id_token(r#"["staff","ops é"]"#), "a", None);
        // Claims that differ from the payload's (here the groups) are kept.
        let other = record(&matching_id_token(r#"["staff"]"#), "a", None);
        let (same_bytes, other_bytes) = (encode(&same).unwrap(), encode(&other).unwrap());
        assert!(
            same_bytes.len() + 50 < other_bytes.len(),
            "{} vs {}",
            same_bytes.len(),
            other_bytes.len()
        );
        assert_eq!(decode(&same_bytes).unwrap(), same);
        assert_eq!(decode(&other_bytes).unwrap(), other);
        assert_eq!(decode(&other_bytes).unwrap().claims.groups.len(), 2);
    }

    /// Records outlive the version that wrote them (in Redis, across a
    /// rolling upgrade): these bytes must keep opening to this record.
    #[test]
    fn the_binary_layout_is_stable() {
        let hex = "010102030105010b68747470733a2f2f69647005616c6963650102733100000001016702130f7b22616c67223a226e6f6e65227d00140f7b22737562223a22616c696365227d0403736967010c096adfd99bdbd8985cbe01000d7265667265736820746f6b656e";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let r = decode(&bytes).unwrap();
        assert_eq!(r.claims.iss, "https://idp");
        assert_eq!(r.claims.sid.as_deref(), Some("s1"));
        assert_eq!(r.claims.groups, vec!["g".to_owned()]);
        assert_eq!(
            r.id_token.expose(),
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2ln"
        );
        assert_eq!(r.access_token.expose(), "at_Zm9vYmFy-");
        assert_eq!(
            r.refresh_token.as_ref().map(Secret::expose),
            Some("refresh token")
        );
        assert_eq!(
            (
                r.access_token_expires_at,
                r.created_at,
                r.last_seen,
                r.expires_at
            ),
            (Some(5), 1, 2, 3)
        );
        assert_eq!(encode(&r).unwrap(), bytes);
    }

    #[test]
    fn json_records_of_earlier_versions_still_open() {
        let stored = r#"{"iss":"https://idp","sub":"alice","sid":"s1","id_token":"i","access_token":"a","created_at":1,"last_seen":2,"expires_at":3}"#;
        let r = decode(stored.as_bytes()).unwrap();
        assert_eq!((r.claims.sub.as_str(), r.id_token.expose()), ("alice", "i"));
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let good = encode(&record("a.b.c", "x", Some("y"))).unwrap();
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "cut at {n}");
        }
        for bad in [
            &b""[..],
            b"\x02abc",
            b"{not json",
            b"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            assert!(decode(bad).is_err());
        }
    }
}
