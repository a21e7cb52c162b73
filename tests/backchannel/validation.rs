//! Token validation: hostile or malformed requests refused, the session intact; typ `JWT` taken.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::support::TEST_CLIENT_SECRET;
use crate::support::idp::browser;
use crate::support::setup::*;
use crate::support::signing::*;

/// One hostile or malformed request.
struct Case {
    name: &'static str,
    /// The check the gateway's log line must name.
    check: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn form(token: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", token)
        .finish()
        .into_bytes()
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn case(name: &'static str, check: &'static str, token: &str) -> Case {
    Case {
        name,
        check,
        content_type: FORM,
        body: form(token),
    }
}

/// Every hostile token is refused with 400 and leaves the session alive;
/// then a valid token for the same session ends it (so the suite is not
/// passing merely because nothing is ever accepted).
#[tokio::test(flavor = "multi_thread")]
async fn hostile_logout_tokens_are_refused_and_the_session_survives() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let iss = idp.issuer().to_owned();

    let b = browser();
    login(gw, &idp, &b, "alice").await;
    let sid = session(gw, &b).await.expect("logged in")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();

    // A real ID token of the gateway's own client, from the same IdP.
    let id_token = id_token_via_code(
        &idp,
        &b,
        CLIENT_ID,
        TEST_CLIENT_SECRET,
        &gw.url("/.portcullis/callback"),
        "alice",
    )
    .await;
    assert_eq!(
        session(gw, &b).await.map(|s| s["sub"].clone()),
        Some(json!("alice"))
    );

    let key = idp_key_pem();
    let good = || logout_claims(&iss, Some(&sid), None);
    let signed = |claims: &Value| sign_rs256(&logout_header(), claims, &key);
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = good();
        f(c.as_object_mut().expect("object"));
        signed(&c)
    };
    let t = now();

    // A replay: the first delivery (for another IdP session) is accepted.
    let replayed = signed(&logout_claims(&iss, Some("some-other-idp-session"), None));
    let first = post_token(gw, &replayed).await;
    assert_eq!(
        first.status(),
        200,
        "a fresh token for another sid is accepted"
    );

    let valid = signed(&good());
    let tampered = {
        let other = signed(&logout_claims(&iss, Some("not-alice"), None));
        let parts: Vec<&str> = other.split('.').collect();
        let alice: Vec<&str> = valid.split('.').collect();
        format!("{}.{}.{}", parts[0], alice[1], parts[2])
    };

    let hs256 = sign_with(
        &json!({"alg": "HS256", "kid": TEST_KID, "typ": "logout+jwt"}),
        &good(),
        &jsonwebtoken::EncodingKey::from_secret(TEST_CLIENT_SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    );
    let alg_none = {
        use base64::Engine as _;
        let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            e(&json!({"alg": "none", "typ": "logout+jwt"})),
            e(&good())
        )
    };
    let rs384 = sign_with(
        &json!({"alg": "RS384", "kid": TEST_KID, "typ": "logout+jwt"}),
        &good(),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&key).expect("pem"),
        jsonwebtoken::Algorithm::RS384,
    );

    let mut oversized = form(&valid);
    oversized.extend_from_slice(b"&padding=");
    oversized.extend(std::iter::repeat_n(b'x', 17 * 1024));
    let mut duplicated = form(&valid);
    duplicated.push(b'&');
    duplicated.extend(form(&valid));

    let cases = vec![
        case(
            "right kid, other key",
            "signature",
            &sign_rs256(&logout_header(), &good(), &other_key_pem()),
        ),
        case("alg none", "alg", &alg_none),
        case("HS256 keyed with the client secret", "alg", &hs256),
        case(
            "RS384 (not an advertised algorithm for this key)",
            "alg",
            &rs384,
        ),
        case(
            "unknown kid",
            "kid",
            &sign_rs256(
                &json!({"alg": "RS256", "kid": "forged-kid", "typ": "logout+jwt"}),
                &good(),
                &key,
            ),
        ),
        case(
            "payload swapped under another token's signature",
            "signature",
            &tampered,
        ),
        case(
            "typ secevent+jwt",
            "typ",
            &sign_rs256(
                &json!({"alg": "RS256", "kid": TEST_KID, "typ": "secevent+jwt"}),
                &good(),
                &key,
            ),
        ),
        case(
            "typ at+jwt",
            "typ",
            &sign_rs256(
                &json!({"alg": "RS256", "kid": TEST_KID, "typ": "application/at+jwt"}),
                &good(),
                &key,
            ),
        ),
        case("missing exp", "exp", &edit(&|c| drop(c.remove("exp")))),
        case(
            "expired",
            "exp",
            &edit(&|c| {
                c.insert("iat".into(), json!(t - 200));
                c.insert("exp".into(), json!(t - 10));
            }),
        ),
        case(
            "iat too old",
            "iat",
            &edit(&|c| drop(c.insert("iat".into(), json!(t - 400)))),
        ),
        case(
            "iat too far ahead",
            "iat",
            &edit(&|c| drop(c.insert("iat".into(), json!(t + 300)))),
        ),
        case("missing iat", "iat", &edit(&|c| drop(c.remove("iat")))),
        case(
            "missing events",
            "events",
            &edit(&|c| drop(c.remove("events"))),
        ),
        case(
            "events not an object",
            "events",
            &edit(&|c| drop(c.insert("events".into(), json!("logout")))),
        ),
        case(
            "events without the logout member",
            "events",
            &edit(&|c| drop(c.insert("events".into(), json!({"http://example.com/other": {}})))),
        ),
        case(
            "logout event not an object",
            "events",
            &edit(&|c| drop(c.insert("events".into(), json!({EVENT: true})))),
        ),
        case(
            "nonce present",
            "nonce",
            &edit(&|c| drop(c.insert("nonce".into(), json!("n-1")))),
        ),
        case(
            "neither sid nor sub",
            "sid_sub",
            &edit(&|c| drop(c.remove("sid"))),
        ),
        case(
            "wrong aud",
            "aud",
            &edit(&|c| drop(c.insert("aud".into(), json!("someone-else")))),
        ),
        case(
            "aud list without us",
            "aud",
            &edit(&|c| drop(c.insert("aud".into(), json!(["a", "b"])))),
        ),
        case(
            "wrong iss",
            "iss",
            &edit(&|c| drop(c.insert("iss".into(), json!("http://127.0.0.1:1")))),
        ),
        case("missing jti", "jti", &edit(&|c| drop(c.remove("jti")))),
        case("replayed jti", "jti_replay", &replayed),
        case("an ID token", "events", &id_token),
        case("garbage", "malformed", "this-is-not-a-jwt"),
        case("three dots of nothing", "malformed", ".."),
        Case {
            name: "empty logout_token",
            check: "logout_token_missing",
            content_type: FORM,
            body: b"logout_token=".to_vec(),
        },
        Case {
            name: "missing parameter",
            check: "logout_token_missing",
            content_type: FORM,
            body: b"token=abc".to_vec(),
        },
        Case {
            name: "empty body",
            check: "logout_token_missing",
            content_type: FORM,
            body: Vec::new(),
        },
        Case {
            name: "duplicated logout_token",
            check: "logout_token_duplicate",
            content_type: FORM,
            body: duplicated,
        },
        Case {
            name: "body over 16 KiB",
            check: "body_size",
            content_type: FORM,
            body: oversized,
        },
        Case {
            name: "JSON content type",
            check: "content_type",
            content_type: Some("application/json"),
            body: form(&valid),
        },
        Case {
            name: "no content type",
            check: "content_type",
            content_type: None,
            body: form(&valid),
        },
        Case {
            name: "JSON body",
            check: "content_type",
            content_type: Some("application/json"),
            body: json!({"logout_token": valid}).to_string().into_bytes(),
        },
    ];
    assert!(cases.len() >= 20);

    let refusals = || {
        gw.json_logs()
            .into_iter()
            .filter(|l| l.to_string().contains("back-channel logout rejected"))
            .collect::<Vec<_>>()
    };
    for c in cases {
        let before = refusals().len();
        let resp = post_backchannel(gw, c.content_type, c.body).await;
        let status = resp.status();
        let cache = resp
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 400, "{}: {body}", c.name);
        assert_eq!(body["error"], "invalid_request", "{}", c.name);
        assert!(body["error_description"].is_string(), "{}", c.name);
        assert_eq!(cache.as_deref(), Some("no-store"), "{}", c.name);
        assert!(
            session(gw, &b).await.is_some(),
            "{}: the session must survive",
            c.name
        );
        // Exactly one log line, naming the check that failed (the log is
        // written asynchronously: wait for it).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut lines = refusals();
        while lines.len() <= before && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            lines = refusals();
        }
        assert_eq!(lines.len(), before + 1, "{}: one log line", c.name);
        let check = lines.last().and_then(|l| support::log_field(l, "check"));
        assert_eq!(check, Some(c.check), "{}", c.name);
    }

    // The valid token itself is accepted and ends the session.
    let resp = post_token(gw, &valid).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(session(gw, &b).await, None);
    // Its replay is now refused.
    assert_eq!(post_token(gw, &valid).await.status(), 400);
}

/// A logout token typed `JWT` (as Glewlwyd 2.7 and older Keycloak releases
/// send) is taken as untyped: it is accepted and ends the session, while the
/// same claims typed `at+jwt` are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_logout_token_typed_jwt_is_taken_as_untyped() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let iss = idp.issuer().to_owned();

    let b = browser();
    login(gw, &idp, &b, "alice").await;
    let sid = session(gw, &b).await.expect("logged in")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let key = idp_key_pem();
    let typed = |typ: &str| {
        sign_rs256(
            &json!({"alg": "RS256", "kid": TEST_KID, "typ": typ}),
            &logout_claims(&iss, Some(&sid), None),
            &key,
        )
    };

    let refused = post_token(gw, &typed("application/at+jwt")).await;
    assert_eq!(refused.status(), 400, "an access-token type is refused");
    assert!(session(gw, &b).await.is_some(), "the session survives");

    let accepted = post_token(gw, &typed("JWT")).await;
    assert_eq!(accepted.status(), 200, "typ JWT is taken as untyped");
    assert_eq!(session(gw, &b).await, None, "the session is over");
    let event = gw
        .wait_for_log("kind", "backchannel", Duration::from_secs(5))
        .expect("logout event logged");
    assert_eq!(support::log_field(&event, "outcome"), Some("ok"), "{event}");
}
