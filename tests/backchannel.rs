//! Back-Channel Logout end to end: the real gateway binary, the real
//! oidc-provider 9.13.3 (signing with a fixture key, so tests can also
//! forge tokens), sessions made by logging in through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::time::Duration;

use serde_json::{Value, json};

use support::idp::browser;
use support::setup::*;
use support::signing::*;
use support::{Cut, Partition, TEST_CLIENT_SECRET};

/// A user logs in through the gateway, then signs out at the IdP from
/// another application in the same IdP browser session: the IdP POSTs a
/// logout token to the gateway, and the gateway session is over.
#[tokio::test(flavor = "multi_thread")]
async fn idp_driven_backchannel_logout_ends_the_gateway_session() {
    let setup = start_gateway(true, "");
    let other = other_client();
    let idp = start_idp(&setup, vec![other.clone()]).await;
    let gw = &setup.gw;

    let b = browser();
    login(gw, &idp, &b, "alice").await;
    let s = session(gw, &b).await.expect("logged in");
    assert_eq!(s["sub"], "alice");
    assert!(s["sid"].is_string(), "IdP sid recorded: {s}");
    assert!(reaches_upstream(gw, &b).await);

    // The other app logs in silently in the same IdP session.
    id_token_via_code(
        &idp,
        &b,
        &other.client_id,
        &other.client_secret,
        &other.redirect_uris[0],
        "alice",
    )
    .await;

    // ... and its user signs out at the IdP, confirming "sign me out".
    let done = idp
        .logout(
            &b,
            &[
                ("client_id", other.client_id.as_str()),
                (
                    "post_logout_redirect_uri",
                    &other.post_logout_redirect_uris[0],
                ),
            ],
        )
        .await;
    assert!(
        done.is_some_and(|u| u.as_str().starts_with("http://127.0.0.1:9/bye")),
        "IdP finished the logout"
    );

    assert_eq!(session(gw, &b).await, None, "gateway session ended");
    assert!(
        !reaches_upstream(gw, &b).await,
        "protected page sends to login again"
    );
    assert!(
        !idp.stderr().contains("backchannel.error"),
        "IdP delivery failed: {}",
        idp.stderr()
    );
    let event = gw
        .wait_for_log("kind", "backchannel", Duration::from_secs(5))
        .expect("logout event logged");
    assert_eq!(support::log_field(&event, "outcome"), Some("ok"), "{event}");
}

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

/// A token with only `sub` ends every session of that user created before
/// its `iat` (not just the newest), and no one else's.
#[tokio::test(flavor = "multi_thread")]
async fn sub_only_token_ends_all_of_that_users_earlier_sessions() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let iss = idp.issuer().to_owned();

    let (a1, a2, bob) = (browser(), browser(), browser());
    login(gw, &idp, &a1, "alice").await;
    login(gw, &idp, &a2, "alice").await;
    login(gw, &idp, &bob, "bob").await;
    let s1 = session(gw, &a1).await.expect("a1");
    let s2 = session(gw, &a2).await.expect("a2");
    assert_ne!(s1["sid"], s2["sid"], "two IdP sessions");

    // A session alice opens after the token's iat stays.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let iat = now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = browser();
    login(gw, &idp, &later, "alice").await;

    let mut claims = logout_claims(&iss, None, Some("alice"));
    claims["iat"] = json!(iat);
    let resp = post_token(gw, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
    assert_eq!(resp.status(), 200);

    assert_eq!(session(gw, &a1).await, None, "alice's first session ended");
    assert_eq!(session(gw, &a2).await, None, "alice's second session ended");
    assert!(!reaches_upstream(gw, &a2).await);
    assert_eq!(
        session(gw, &bob).await.map(|s| s["sub"].clone()),
        Some(json!("bob")),
        "bob's session survives"
    );
    assert!(reaches_upstream(gw, &bob).await);
    assert!(
        session(gw, &later).await.is_some(),
        "a session created after iat survives"
    );
}

/// A token for no known session is still a success (200), and the
/// endpoint only takes POST.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_sessions_and_methods() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let claims = logout_claims(idp.issuer(), Some("nobody-has-this-sid"), None);
    let resp = post_token(gw, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
    assert_eq!(resp.status(), 200);
    let event = gw
        .wait_for_log("kind", "backchannel", Duration::from_secs(5))
        .expect("event");
    assert_eq!(support::log_field(&event, "outcome"), Some("no_session"));

    let get = reqwest::get(gw.url("/.portcullis/backchannel-logout"))
        .await
        .expect("GET");
    assert_eq!(get.status(), 405);
}

/// With `store = "redis"`, a fleet shares the outcome: a logout token
/// delivered to one instance ends the session on another at once (the
/// revocation is broadcast: the other instance had the session cached for
/// up to 60 s), and its `jti` is spent for all of them.
#[tokio::test(flavor = "multi_thread")]
async fn redis_fleet_shares_logouts_and_replay_cache() {
    let redis = support::Redis::start();
    let session = format!(
        "store = \"redis\"\n[session.redis]\nurl = \"{}\"\ncache_ttl = \"60s\"",
        redis.url()
    );
    let one = start_gateway_on(support::free_port(), true, "", &session);
    let two = start_gateway_on(one.idp_port, true, "", &session);
    let idp = start_idp(&one, vec![]).await;
    wait_ready(&two.gw).await;
    let iss = idp.issuer().to_owned();

    // The browser's cookie for 127.0.0.1 reaches both instances; both have
    // the session in their local cache now.
    let b = browser();
    login(&one.gw, &idp, &b, "alice").await;
    assert!(support::setup::session(&one.gw, &b).await.is_some());
    let sid = support::setup::session(&two.gw, &b)
        .await
        .expect("the other instance sees the session")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();

    let token = sign_rs256(
        &logout_header(),
        &logout_claims(&iss, Some(&sid), None),
        &idp_key_pem(),
    );
    assert_eq!(post_token(&two.gw, &token).await.status(), 200);
    // Well inside cache_ttl: only the broadcast can have reached instance one.
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    while support::setup::session(&one.gw, &b).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "instance one still serves the session: the revocation was not broadcast"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replay = post_token(&one.gw, &token).await;
    assert_eq!(replay.status(), 400, "jti spent fleet-wide");
    let check = one
        .gw
        .wait_for_log("check", "jti_replay", Duration::from_secs(5));
    assert!(check.is_some(), "replay logged as such");
}

/// A Redis outage in the middle of a back-channel logout never loses the
/// logout. The link to Redis is cut while Redis keeps its data (a network
/// partition, or a failover that kept it), at two points:
/// - before the request reaches Redis: 400 and nothing written; once the
///   link is back, the IdP's retry of the very same token is accepted and
///   ends the session, and a replay after that is refused;
/// - after Redis ran it, before the reply: 400 (the gateway cannot tell),
///   yet the logout happened. Recording the `jti` in a step of its own
///   fails here: the `jti` is kept, the session lives, and every retry is
///   refused as a replay.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_mid_logout_never_loses_the_logout() {
    let redis = support::Redis::start();
    let link = Partition::start(redis.addr()).await;
    let session_cfg = format!(
        "store = \"redis\"\n[session.redis]\nurl = \"{}\"\ncache_ttl = \"60s\"",
        link.redis_url()
    );
    let setup = start_gateway_on(support::free_port(), true, "", &session_cfg);
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let iss = idp.issuer().to_owned();

    let (b1, b2) = (browser(), browser());
    login(gw, &idp, &b1, "alice").await;
    login(gw, &idp, &b2, "alice").await;
    let sid_of = |s: Option<Value>| -> String {
        s.expect("logged in")["sid"]
            .as_str()
            .expect("sid")
            .to_owned()
    };
    let sid1 = sid_of(session(gw, &b1).await);
    let sid2 = sid_of(session(gw, &b2).await);
    let token_for = |sid: &str| {
        let claims = logout_claims(&iss, Some(sid), None);
        let jti = claims["jti"].as_str().expect("jti").to_owned();
        (sign_rs256(&logout_header(), &claims, &idp_key_pem()), jti)
    };

    // 1. The link goes down as the logout is on its way to Redis.
    let (t1, jti1) = token_for(&sid1);
    link.cut_at(jti1.as_bytes(), Cut::BeforeRequest);
    let resp = post_token(gw, &t1).await;
    assert_eq!(resp.status(), 400, "never acknowledged without the store");
    assert!(link.is_down(), "the link went down during this logout");
    assert!(
        gw.wait_for_log("check", "store", Duration::from_secs(5))
            .is_some(),
        "store failure logged"
    );
    link.heal();
    wait_ready(gw).await;
    assert!(session(gw, &b1).await.is_some(), "nothing happened yet");
    // The IdP retries the very same token: accepted, and the session ends.
    assert_eq!(
        post_token(gw, &t1).await.status(),
        200,
        "the IdP's retry was taken for a replay"
    );
    assert_eq!(session(gw, &b1).await, None);
    assert!(!reaches_upstream(gw, &b1).await);
    // A replay after that success is refused.
    assert_eq!(post_token(gw, &t1).await.status(), 400);
    assert!(
        gw.wait_for_log("check", "jti_replay", Duration::from_secs(5))
            .is_some()
    );

    // 2. The link goes down after Redis ran the logout, before its reply.
    assert!(session(gw, &b2).await.is_some());
    let (t2, jti2) = token_for(&sid2);
    link.cut_at(jti2.as_bytes(), Cut::BeforeReply);
    assert_eq!(post_token(gw, &t2).await.status(), 400);
    assert!(link.is_down(), "the link went down during this logout");
    link.heal();
    wait_ready(gw).await;
    // The logout happened all the same. (The instance's revocation
    // subscription went down with the link and may have missed the
    // broadcast; it drops its local cache when it resubscribes, within its
    // reconnect backoff of at most 2 s.)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while session(gw, &b2).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived its logout: the jti was kept without it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!reaches_upstream(gw, &b2).await);
    // The IdP's retry finds the jti spent, along with the session.
    assert_eq!(post_token(gw, &t2).await.status(), 400);
}

/// A flood is cut off with 429 (before any key lookup or store write), and
/// the endpoint serves again once the bucket refills.
#[tokio::test(flavor = "multi_thread")]
async fn floods_are_rate_limited() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let http = reqwest::Client::new();
    let url = gw.url("/.portcullis/backchannel-logout");
    let mut tasks = Vec::new();
    for _ in 0..600 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("logout_token=garbage")
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("task") {
            429 => limited += 1,
            400 => {}
            other => panic!("flood answered {other}"),
        }
    }
    assert!(limited > 0, "no request was rate limited");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let claims = logout_claims(idp.issuer(), Some("after-the-flood"), None);
    let resp = post_token(gw, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
    assert_eq!(resp.status(), 200, "served again after the refill");
}

/// Sixteen tasks posting garbage tokens to `url` with `http` (and
/// `X-Forwarded-For: xff` when given) as fast as they can, far above the
/// limit, until [`Flood::stop`]; counts 429s and answers other than 400/429.
struct Flood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limited: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    odd: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    fn start(http: &reqwest::Client, url: &str, xff: Option<&'static str>) -> Flood {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let limited = Arc::new(AtomicUsize::new(0));
        let odd = Arc::new(AtomicUsize::new(0));
        let workers = (0..16)
            .map(|_| {
                let (http, url) = (http.clone(), url.to_owned());
                let (stop, limited, odd) = (stop.clone(), limited.clone(), odd.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let mut req = http
                            .post(&url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body("logout_token=garbage");
                        if let Some(xff) = xff {
                            req = req.header("x-forwarded-for", xff);
                        }
                        match req.send().await.map(|r| r.status().as_u16()) {
                            Ok(429) => drop(limited.fetch_add(1, Ordering::Relaxed)),
                            Ok(400) => {}
                            _ => drop(odd.fetch_add(1, Ordering::Relaxed)),
                        }
                    }
                })
            })
            .collect();
        Flood {
            stop,
            limited,
            odd,
            workers,
        }
    }

    /// How many requests got 429 so far.
    fn limited(&self) -> usize {
        self.limited.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (up to 10 s) until the flood is being limited.
    async fn wait_limited(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.limited() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the flood was never limited"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the tasks; the count of answers other than 400/429.
    async fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in self.workers {
            w.await.expect("flood worker");
        }
        self.odd.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The rate limit is per client address: while a flood from one address is
/// being cut off with 429, the IdP's logout tokens from another address
/// are all served.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_from_one_address_does_not_block_another() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let flooder = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client on 127.0.0.2");
    let flood = Flood::start(&flooder, &gw.url("/.portcullis/backchannel-logout"), None);
    flood.wait_limited().await;

    // The IdP posts from 127.0.0.1 meanwhile.
    let limited_before = flood.limited();
    for i in 0..10 {
        let claims = logout_claims(idp.issuer(), Some(&format!("during-the-flood-{i}")), None);
        let resp = post_token(gw, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
        assert_eq!(
            resp.status(),
            200,
            "logout token {i} from the IdP refused during another address's flood"
        );
    }
    let limited_during = flood.limited() - limited_before;
    let odd = flood.stop().await;
    assert!(
        limited_during > 0,
        "the flood was not being limited while the IdP was served"
    );
    assert_eq!(odd, 0, "flood answered other than 400/429");
}

/// Behind a load balancer in `trusted_proxies`, every request comes from
/// its address; the limit then counts the client address it forwarded, so
/// a flood through the balancer does not cut off the IdP behind it either.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_the_limit_counts_the_forwarded_client() {
    let setup = support::setup::start_gateway_with_server("trusted_proxies = [\"127.0.0.0/8\"]");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let url = gw.url("/.portcullis/backchannel-logout");
    let http = reqwest::Client::new();
    let flood = Flood::start(&http, &url, Some("198.51.100.1"));
    flood.wait_limited().await;
    // The IdP, forwarded by the same balancer, from its own address.
    for i in 0..10 {
        let claims = logout_claims(idp.issuer(), Some(&format!("behind-the-lb-{i}")), None);
        let token = sign_rs256(&logout_header(), &claims, &idp_key_pem());
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", &token)
            .finish();
        let resp = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", "203.0.113.50")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "logout token {i} behind the balancer");
    }
    // The flooding client itself stays limited.
    let resp = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", "198.51.100.1")
        .body("logout_token=garbage")
        .send()
        .await
        .unwrap();
    let odd = flood.stop().await;
    assert_eq!(resp.status(), 429, "the flooding client is still limited");
    assert_eq!(odd, 0, "flood answered other than 400/429");
}
