//! Signing keys and ID tokens: JWKS refetch limits, a rotated key, forged tokens claim by claim.

use portcullis::oidc::OidcError;

use super::*;
use crate::support::signing::{
    TEST_KID, idp_jwks, idp_key_pem, other_key_pem, sign_with, unsigned,
};

#[tokio::test]
async fn forged_key_ids_refetch_the_jwks_at_most_once_per_interval() {
    let origin = gateway_origin();
    let idp = Idp::start(IdpOptions {
        log_requests: true,
        ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
    });
    let mut options = fast_options();
    options.provider.jwks_min_refetch_interval = Duration::from_secs(1);
    let client = OidcClient::with_options(&config(idp.issuer()), options).expect("client");
    assert!(client.provider().wait_ready(Duration::from_secs(10)).await);
    assert_eq!(idp.requests("GET", "/jwks"), 1, "one fetch at discovery");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..20 {
        let kid = format!("forged-{i}");
        let result = client
            .provider()
            .decoding_key(Some(&kid), jsonwebtoken::Algorithm::RS256)
            .await;
        assert!(matches!(result, Err(OidcError::UnknownKey)));
    }
    assert_eq!(
        idp.requests("GET", "/jwks"),
        2,
        "twenty unknown kids cause one refetch"
    );
    // The real key still works without another fetch.
    client
        .provider()
        .decoding_key(Some("keystore-CHANGE-ME"), jsonwebtoken::Algorithm::RS256)
        .await
        .expect("known key");
    assert_eq!(idp.requests("GET", "/jwks"), 2);
}

#[tokio::test]
async fn id_tokens_signed_with_a_rotated_key_are_accepted_after_a_refetch() {
    let origin = gateway_origin();
    let port = free_port();
    let registration = || IdpOptions {
        port: Some(port),
        ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
    };
    let before = Idp::start(registration());
    let mut options = fast_options();
    options.provider.jwks_min_refetch_interval = Duration::from_millis(500);
    let client = OidcClient::with_options(&config(before.issuer()), options).expect("client");
    assert!(client.provider().wait_ready(Duration::from_secs(10)).await);
    drop(before);

    // The IdP comes back on the same issuer with a new signing key.
    let after = Idp::start(IdpOptions {
        fresh_signing_key: true,
        log_requests: true,
        ..registration()
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = Setup {
        idp: after,
        client,
        origin,
    };
    let result = full_login(&s, "bob").await;
    assert_eq!(result.claims.sub, "bob");
    assert_eq!(
        s.idp.requests("GET", "/jwks"),
        1,
        "one refetch for the new kid"
    );
    let kid = jsonwebtoken::decode_header(result.id_token.expose())
        .expect("header")
        .kid
        .expect("kid");
    assert!(kid.starts_with("fresh-"), "{kid}");
}

/// ID tokens forged with the key the IdP signs with (and with others) and
/// judged by the gateway's own validation: each claim the gateway checks is
/// broken in turn on an otherwise valid token, which must be refused.
#[tokio::test]
async fn forged_id_tokens_are_refused_claim_by_claim() {
    let origin = gateway_origin();
    let s = setup(
        IdpOptions {
            signing_jwks: Some(idp_jwks()),
            ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
        },
        origin,
    )
    .await;
    let idp_key = jsonwebtoken::EncodingKey::from_rsa_pem(&idp_key_pem()).unwrap();
    let other_key = jsonwebtoken::EncodingKey::from_rsa_pem(&other_key_pem()).unwrap();
    let rs256 = serde_json::json!({"alg": "RS256", "kid": TEST_KID, "typ": "JWT"});
    let now = support::setup::now();
    let claims = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = serde_json::json!({
            "iss": s.idp.issuer(),
            "aud": CLIENT_ID,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "nonce": "n-0S6_WzA2Mj",
            "email": "alice@example.com",
            "email_verified": true,
        });
        edit(&mut c);
        c
    };
    let good = claims(&|_| {});
    let rs = |c: &serde_json::Value, key: &jsonwebtoken::EncodingKey| {
        sign_with(&rs256, c, key, jsonwebtoken::Algorithm::RS256)
    };

    // The control: a well-formed token with the IdP's key passes, so each
    // refusal below is down to the one thing changed.
    let ok = s
        .client
        .validate_id_token(&rs(&good, &idp_key), Some("n-0S6_WzA2Mj"))
        .await
        .expect("a valid token");
    assert_eq!(ok.sub, "alice");
    assert!(ok.email_verified);

    let valid = rs(&good, &idp_key);
    let mut parts: Vec<&str> = valid.split('.').collect();
    let mallory = unsigned(&rs256, &claims(&|c| c["sub"] = "mallory".into()));
    let swapped_payload = mallory.split('.').nth(1).unwrap().to_owned();
    parts[1] = &swapped_payload;
    let tampered = parts.join(".");

    let hs256 = sign_with(
        &serde_json::json!({"alg": "HS256", "typ": "JWT"}),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    );
    let none = format!(
        "{}.",
        unsigned(&serde_json::json!({"alg": "none", "typ": "JWT"}), &good)
    );

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "signed with another key under the IdP's kid",
            rs(&good, &other_key),
            "signature verification failed: Crypto error",
        ),
        (
            "payload changed after signing",
            tampered,
            "signature verification failed: Crypto error",
        ),
        (
            "another audience",
            rs(&claims(&|c| c["aud"] = "someone-else".into()), &idp_key),
            "audience",
        ),
        (
            "another issuer",
            rs(
                &claims(&|c| c["iss"] = "http://evil.example".into()),
                &idp_key,
            ),
            "issuer",
        ),
        (
            "expired",
            rs(
                &claims(&|c| {
                    c["iat"] = (now - 900).into();
                    c["exp"] = (now - 600).into();
                }),
                &idp_key,
            ),
            "xpired",
        ),
        (
            "issued an hour in the future",
            rs(
                &claims(&|c| {
                    c["iat"] = (now + 3600).into();
                    c["exp"] = (now + 7200).into();
                }),
                &idp_key,
            ),
            "iat is in the future",
        ),
        (
            "HS256 with the client secret",
            hs256,
            "algorithm not allowed",
        ),
        ("alg none", none, "algorithm not allowed"),
        (
            "another nonce",
            rs(&claims(&|c| c["nonce"] = "other".into()), &idp_key),
            "nonce",
        ),
    ];
    for (what, token, says) in cases {
        match s
            .client
            .validate_id_token(&token, Some("n-0S6_WzA2Mj"))
            .await
        {
            Ok(c) => panic!("{what}: accepted as {}", c.sub),
            Err(e @ (OidcError::IdToken(_) | OidcError::DisallowedAlg)) => {
                let msg = e.to_string();
                assert!(msg.contains(says), "{what}: refused, but as {msg:?}");
            }
            Err(e) => panic!("{what}: refused for an unrelated reason: {e}"),
        }
    }
}
