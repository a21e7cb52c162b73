//! Unit tests of the logout-token checks (kept apart so the receiver reads
//! in one screenful of files under 800 lines).

use super::*;
use serde_json::json;

const ISS: &str = "https://idp.example";
const NOW: u64 = 1_700_000_000;

fn rules() -> ClaimRules<'static> {
    ClaimRules {
        issuer: ISS,
        client_id: "gw",
        require_exp: true,
    }
}

fn header(typ: Option<&str>) -> TokenHeader {
    TokenHeader {
        alg: jsonwebtoken::Algorithm::RS256,
        kid: Some("k".into()),
        typ: typ.map(str::to_owned),
    }
}

fn good() -> Value {
    json!({
        "iss": ISS, "aud": "gw", "iat": NOW, "exp": NOW + 120, "jti": "j1",
        "sid": "s1", "events": { LOGOUT_EVENT: {} }
    })
}

fn with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut v = good();
    if let Some(o) = v.as_object_mut() {
        f(o);
    }
    v
}

#[test]
fn accepts_a_valid_token() {
    let c = validate_claims(&header(Some("logout+jwt")), &good(), NOW, &rules()).unwrap();
    assert_eq!(c.sid.as_deref(), Some("s1"));
    assert_eq!(c.jti, "j1");
    for typ in [
        "application/logout+jwt",
        "Logout+JWT",
        "APPLICATION/LOGOUT+JWT",
        // `JWT` is taken as untyped, spelled any way.
        "JWT",
        "jwt",
        "application/jwt",
        "Application/JWT",
    ] {
        assert!(validate_claims(&header(Some(typ)), &good(), NOW, &rules()).is_ok());
    }
    assert!(validate_claims(&header(None), &good(), NOW, &rules()).is_ok());
}

#[test]
fn rejects_each_broken_claim() {
    use BackchannelError as E;
    let cases: Vec<(Value, E)> = vec![
        (with(|o| drop(o.remove("iss"))), E::Iss),
        (
            with(|o| drop(o.insert("iss".into(), json!("https://evil")))),
            E::Iss,
        ),
        (
            with(|o| drop(o.insert("aud".into(), json!("other")))),
            E::Aud,
        ),
        (
            with(|o| drop(o.insert("aud".into(), json!([1, 2])))),
            E::Aud,
        ),
        (with(|o| drop(o.remove("aud"))), E::Aud),
        (with(|o| drop(o.remove("iat"))), E::Iat),
        (
            with(|o| drop(o.insert("iat".into(), json!(NOW - 301)))),
            E::Iat,
        ),
        (
            with(|o| drop(o.insert("iat".into(), json!(NOW + 61)))),
            E::Iat,
        ),
        (with(|o| drop(o.insert("iat".into(), json!("now")))), E::Iat),
        (with(|o| drop(o.remove("exp"))), E::Exp),
        (with(|o| drop(o.insert("exp".into(), json!(NOW)))), E::Exp),
        (with(|o| drop(o.insert("exp".into(), json!(-5)))), E::Exp),
        (with(|o| drop(o.remove("events"))), E::Events),
        (
            with(|o| drop(o.insert("events".into(), json!("x")))),
            E::Events,
        ),
        (
            with(|o| drop(o.insert("events".into(), json!({LOGOUT_EVENT: "x"})))),
            E::Events,
        ),
        (
            with(|o| drop(o.insert("events".into(), json!({"other": {}})))),
            E::Events,
        ),
        (
            with(|o| drop(o.insert("nonce".into(), json!("n")))),
            E::Nonce,
        ),
        (
            with(|o| {
                o.remove("sid");
            }),
            E::Subject,
        ),
        (with(|o| drop(o.insert("sid".into(), json!(5)))), E::Subject),
        (
            with(|o| drop(o.insert("sid".into(), json!("")))),
            E::Subject,
        ),
        (with(|o| drop(o.remove("jti"))), E::Jti),
        (json!([1, 2]), E::Malformed("payload is not an object")),
    ];
    for (i, (claims, want)) in cases.into_iter().enumerate() {
        let got = validate_claims(&header(Some("logout+jwt")), &claims, NOW, &rules());
        assert_eq!(got.err(), Some(want), "case {i}: {claims}");
    }
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "secevent+jwt",
        "JWS",
        "jwt+logout",
        "",
        "application/",
        "logout",
    ] {
        let got = validate_claims(&header(Some(typ)), &good(), NOW, &rules());
        assert_eq!(got.err(), Some(E::Typ), "typ {typ:?}");
    }
}

#[test]
fn audience_lists_and_optional_exp() {
    let list = with(|o| drop(o.insert("aud".into(), json!(["a", "gw"]))));
    assert!(validate_claims(&header(None), &list, NOW, &rules()).is_ok());
    let no_exp = with(|o| drop(o.remove("exp")));
    let lax = ClaimRules {
        require_exp: false,
        ..rules()
    };
    assert!(validate_claims(&header(None), &no_exp, NOW, &lax).is_ok());
    let sub_only = with(|o| {
        o.remove("sid");
        o.insert("sub".into(), json!("alice"));
    });
    let c = validate_claims(&header(None), &sub_only, NOW, &rules()).unwrap();
    assert_eq!((c.sid, c.sub.as_deref()), (None, Some("alice")));
}

#[test]
fn form_parsing() {
    assert_eq!(parse_form(b"logout_token=abc&x=1").unwrap(), "abc");
    assert_eq!(parse_form(b"logout_token=a%2Eb").unwrap(), "a.b");
    assert_eq!(parse_form(b"").err(), Some(BackchannelError::MissingToken));
    assert_eq!(
        parse_form(b"logout_token=").err(),
        Some(BackchannelError::MissingToken)
    );
    assert_eq!(
        parse_form(b"logout_token=a&logout_token=a").err(),
        Some(BackchannelError::DuplicateToken)
    );
    assert!(parse_form(&[0xff, 0xfe, b'=', 0x80]).is_err());
}

/// A bounded, deterministic fuzz loop over mutations of a valid body
/// (runs with plain `cargo test`; `fuzz/` has the coverage-guided one).
#[test]
fn mutated_bodies_never_panic_and_never_widen() {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.c2ln",
        enc(&json!({"alg": "RS256", "kid": "k", "typ": "logout+jwt"})),
        enc(&good())
    );
    let seed = format!("logout_token={token}").into_bytes();
    assert!(check_unverified(&seed, NOW, &rules()).is_ok());
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for _ in 0..20_000 {
        let mut body = seed.clone();
        for _ in 0..(next() % 8 + 1) {
            let at = (next() as usize) % body.len().max(1);
            let last = body.len().saturating_sub(1);
            match next() % 5 {
                0 if !body.is_empty() => body[at.min(last)] = next() as u8,
                1 => body.insert(at.min(body.len()), next() as u8),
                2 if !body.is_empty() => drop(body.remove(at.min(last))),
                3 => body.truncate(at),
                _ => body.extend_from_slice(b"&logout_token=x"),
            }
        }
        if let Ok(c) = check_unverified(&body, NOW, &rules()) {
            assert_eq!(c.iss, ISS);
            assert!(c.sid.is_some() || c.sub.is_some());
            assert!(!c.jti.is_empty());
        }
    }
}

#[test]
fn header_parsing() {
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let tok = |h: Value| format!("{}.{}.sig", enc(h), enc(json!({})));
    let h = parse_header(&tok(
        json!({"alg": "RS256", "kid": "k", "typ": "logout+jwt"}),
    ))
    .unwrap();
    assert_eq!(h.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(
        parse_header(&tok(json!({"alg": "none"}))).err(),
        Some(BackchannelError::Alg)
    );
    assert!(parse_header(&tok(json!({"alg": "RS256", "kid": 5}))).is_err());
    assert!(parse_header(&tok(json!({"alg": "RS256", "crit": ["x"]}))).is_err());
    assert!(parse_header("a.b").is_err());
    assert!(parse_header("a.b.c.d").is_err());
    assert!(parse_header("!!.b.c").is_err());
}
