//! ID-token types and validation.
//!
//! Validation is openidconnect's verifier (signature against the IdP's keys,
//! `alg` among the IdP's advertised asymmetric algorithms, `iss`, `aud`,
//! `exp`, nonce), plus an `iat` bound and an `at_hash` check. A token signed
//! with a key we do not have triggers one rate-limited refetch of the keys,
//! then one more attempt.

use openidconnect::core::{
    CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreTokenType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, ClaimsVerificationError, ClientId,
    EmptyExtraTokenFields, IdToken, IdTokenClaims, IdTokenFields, IdTokenVerifier, IssuerUrl,
    Nonce, SignatureVerificationError, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

use super::provider::{IdpMetadata, KeySet};
use super::{OidcClient, OidcError};
use crate::clock::unix_now;

/// Claims the gateway reads beyond the standard ones. Kept as raw JSON so
/// an IdP that sends an odd shape (a single group as a string, numbers in
/// the list) still logs the user in; [`IdentityClaims`] normalises them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatewayClaims {
    /// The IdP session id (OIDC Back-Channel/Front-Channel Logout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<serde_json::Value>,
    /// Group names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<serde_json::Value>,
}

impl AdditionalClaims for GatewayClaims {}

/// An ID token with the gateway's claims.
pub type GatewayIdToken = IdToken<
    GatewayClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// Validated ID-token claims.
pub type GatewayIdTokenClaims = IdTokenClaims<GatewayClaims, CoreGenderClaim>;

/// Token-response fields carrying the ID token.
pub type GatewayIdTokenFields = IdTokenFields<
    GatewayClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The token endpoint's response.
pub type GatewayTokenResponse = StandardTokenResponse<GatewayIdTokenFields, CoreTokenType>;

/// Which nonce the ID token must carry.
#[derive(Clone, Copy)]
pub(crate) enum NonceCheck<'a> {
    /// Login: exactly this nonce.
    Expect(&'a Nonce),
    /// Refresh: OIDC Core §12.2 does not require one.
    NotRequired,
}

enum Failure {
    NoMatchingKey,
    Other(OidcError),
}

/// One validation attempt against the given keys.
fn verify_with(
    token: &GatewayIdToken,
    client_id: &ClientId,
    meta: &IdpMetadata,
    keys: &KeySet,
    nonce: NonceCheck<'_>,
    access_token: Option<&AccessToken>,
    skew_secs: u64,
) -> Result<GatewayIdTokenClaims, Failure> {
    let issuer = IssuerUrl::new(meta.issuer.clone())
        .map_err(|e| Failure::Other(OidcError::Discovery(format!("issuer: {e}"))))?;
    let now = unix_now();
    let verifier = IdTokenVerifier::new_public_client(client_id.clone(), issuer, keys.oidc.clone())
        .set_allowed_algs(meta.id_token_signing_algs.clone())
        .set_issue_time_verifier_fn(move |iat| {
            let iat = u64::try_from(iat.timestamp()).unwrap_or(0);
            if iat > now + skew_secs {
                Err("iat is in the future".to_owned())
            } else {
                Ok(())
            }
        });
    let result = match nonce {
        NonceCheck::Expect(n) => token.claims(&verifier, n),
        NonceCheck::NotRequired => token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    };
    let claims = match result {
        Ok(c) => c,
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => return Err(Failure::NoMatchingKey),
        // `none`, HMAC (the client secret is no signing key here) and any
        // algorithm the IdP does not advertise: said as such, not as a
        // failed signature.
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::DisallowedAlg(_)
            | SignatureVerificationError::UnsupportedAlg(_)
            | SignatureVerificationError::NoSignature,
        )) => return Err(Failure::Other(OidcError::DisallowedAlg)),
        Err(e) => return Err(Failure::Other(OidcError::IdToken(describe(&e)))),
    };

    // OIDC Core §3.1.3.8: when at_hash is present it must match the access
    // token that came with the ID token.
    if let (Some(expected), Some(at)) = (claims.access_token_hash(), access_token) {
        let invalid = |m: &str| Failure::Other(OidcError::IdToken(m.to_owned()));
        let alg = token.signing_alg().map_err(|_| invalid("unsigned"))?;
        let key = token
            .signing_key(&verifier)
            .map_err(|_| invalid("no key"))?;
        let actual = AccessTokenHash::from_token(at, alg, key)
            .map_err(|_| invalid("at_hash cannot be computed"))?;
        if actual != *expected {
            return Err(invalid("at_hash does not match the access token"));
        }
    }
    Ok(claims.clone())
}

/// A verifier error as a short message. openidconnect's messages name
/// claims and algorithms, never token contents beyond `iss`/`aud` values.
fn describe(e: &ClaimsVerificationError) -> String {
    match e {
        ClaimsVerificationError::InvalidNonce(_) => "nonce mismatch".to_owned(),
        // Its Display drops the reason (bad signature, unusable key).
        ClaimsVerificationError::SignatureVerification(inner) => {
            format!("signature verification failed: {inner}")
        }
        other => other.to_string(),
    }
}

impl OidcClient {
    /// Validates an ID token (see the module docs); on an unknown signing
    /// key, refetches the IdP's keys (rate-limited) and tries once more.
    pub(crate) async fn verify_id_token(
        &self,
        token: &GatewayIdToken,
        meta: &IdpMetadata,
        nonce: NonceCheck<'_>,
        access_token: Option<&AccessToken>,
    ) -> Result<GatewayIdTokenClaims, OidcError> {
        let client_id = ClientId::new(self.client_id().to_owned());
        let skew = self.options().clock_skew.as_secs();
        let provider = self.provider();
        match verify_with(
            token,
            &client_id,
            meta,
            &provider.keys(),
            nonce,
            access_token,
            skew,
        ) {
            Ok(c) => return Ok(c),
            Err(Failure::Other(e)) => return Err(e),
            Err(Failure::NoMatchingKey) => {}
        }
        provider.refetch_keys_limited().await;
        match verify_with(
            token,
            &client_id,
            meta,
            &provider.keys(),
            nonce,
            access_token,
            skew,
        ) {
            Ok(c) => Ok(c),
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::NoMatchingKey) => Err(OidcError::UnknownKey),
        }
    }
}

impl OidcClient {
    /// Validates a compact ID token exactly as a login does (signature
    /// against the IdP's keys, allowed algorithms, `iss`, `aud`, `exp`,
    /// `iat`, and `nonce` when given) and returns the identity it names.
    /// For tools and tests that judge an ID token obtained elsewhere; the
    /// login and refresh paths validate theirs the same way.
    pub async fn validate_id_token(
        &self,
        raw: &str,
        nonce: Option<&str>,
    ) -> Result<IdentityClaims, OidcError> {
        let meta = self.provider().require_metadata()?;
        let token: GatewayIdToken = raw
            .parse()
            .map_err(|_| OidcError::IdToken("malformed token".into()))?;
        let nonce = nonce.map(|n| Nonce::new(n.to_owned()));
        let check = match &nonce {
            Some(n) => NonceCheck::Expect(n),
            None => NonceCheck::NotRequired,
        };
        let claims = self.verify_id_token(&token, &meta, check, None).await?;
        Ok(IdentityClaims::from_id_token(&claims))
    }
}

/// Who logged in, from the validated ID token. This is what sessions store
/// and what identity headers and `allow_*` rules read.
///
/// Session records embed it with `#[serde(flatten)]`; the optional claims
/// default when absent so records written before a claim existed still
/// open.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityClaims {
    /// Issuer, exactly as in the token.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// The IdP's session id, when the IdP sends one (needed for
    /// back-channel and front-channel logout by `sid`).
    #[serde(default)]
    pub sid: Option<String>,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the IdP verified the email (absent means false).
    #[serde(default)]
    pub email_verified: bool,
    /// Preferred user name.
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// Group names from the `groups` claim.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl IdentityClaims {
    /// The identity the gateway keeps from validated ID-token claims.
    pub fn from_id_token(claims: &GatewayIdTokenClaims) -> Self {
        let extra = claims.additional_claims();
        IdentityClaims {
            iss: claims.issuer().as_str().to_owned(),
            sub: claims.subject().as_str().to_owned(),
            sid: match &extra.sid {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            },
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified().unwrap_or(false),
            preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
            groups: groups_from(extra.groups.as_ref()),
        }
    }
}

/// The claims [`IdentityClaims::from_id_token`] keeps, as they appear in an
/// ID token's payload (JSON). Read by [`IdentityClaims::from_payload`].
#[derive(serde::Deserialize)]
struct PayloadClaims {
    iss: String,
    sub: String,
    #[serde(default)]
    sid: Option<serde_json::Value>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    groups: Option<serde_json::Value>,
}

impl IdentityClaims {
    /// The identity read from the payload of an ID token validated earlier
    /// (a stored session's), the way [`IdentityClaims::from_id_token`] reads
    /// it. The session codec stores claims only when this does not give
    /// them back exactly, so a difference costs bytes, never correctness.
    pub fn from_payload(json: &[u8]) -> Option<Self> {
        let p: PayloadClaims = serde_json::from_slice(json).ok()?;
        Some(IdentityClaims {
            iss: p.iss,
            sub: p.sub,
            sid: match p.sid {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
                _ => None,
            },
            email: p.email,
            email_verified: p.email_verified.unwrap_or(false),
            preferred_username: p.preferred_username,
            groups: groups_from(p.groups.as_ref()),
        })
    }
}

/// `groups` as a list of names: an array's strings, or a single string.
fn groups_from(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_accept_lists_and_single_strings() {
        assert_eq!(
            groups_from(Some(&json!(["admins", 3, "staff"]))),
            vec!["admins".to_owned(), "staff".to_owned()]
        );
        assert_eq!(groups_from(Some(&json!("staff"))), vec!["staff".to_owned()]);
        assert!(groups_from(Some(&json!({"a": 1}))).is_empty());
        assert!(groups_from(None).is_empty());
    }
}
