//! The test signing keys (fixtures in `tests/fixtures/`) and compact JWS
//! helpers, for forging ID tokens and logout tokens: the back-channel,
//! front-channel and admin tests and the OIDC client tests use them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The `kid` of the fixture signing key.
pub const TEST_KID: &str = "portcullis-test-key";
/// The fixture key the test IdP signs with (PEM, for forging tokens).
pub fn idp_key_pem() -> Vec<u8> {
    std::fs::read(fixture("bcl-idp-key.pem")).expect("read fixture key")
}

/// An unrelated RSA key.
pub fn other_key_pem() -> Vec<u8> {
    std::fs::read(fixture("bcl-other-key.pem")).expect("read fixture key")
}

/// The JWKS the test IdP signs with (private).
pub fn idp_jwks() -> Value {
    let jwk: Value = serde_json::from_slice(
        &std::fs::read(fixture("bcl-idp-key.jwk.json")).expect("read fixture JWK"),
    )
    .expect("fixture JWK is JSON");
    json!({ "keys": [jwk] })
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A compact JWS of `header` and `claims` signed with RS256 and `pem`.
pub fn sign_rs256(header: &Value, claims: &Value, pem: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).expect("RSA PEM");
    sign_with(header, claims, &key, jsonwebtoken::Algorithm::RS256)
}

/// `header.payload` in compact form, unsigned (add `.` for `alg: none`,
/// or splice the payload into another token).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A compact JWS signed with `key` under `alg` (whatever `header` says).
pub fn sign_with(
    header: &Value,
    claims: &Value,
    key: &jsonwebtoken::EncodingKey,
    alg: jsonwebtoken::Algorithm,
) -> String {
    let message = unsigned(header, claims);
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{sig}")
}
