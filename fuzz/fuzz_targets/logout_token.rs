//! Fuzzes the back-channel logout token path: arbitrary bytes as the
//! request body (form parsing, JWT header and payload decoding, every claim
//! rule). A panic or a token accepted without its required claims is a
//! crash.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::logout::backchannel::{ClaimRules, check_unverified};

const ISSUER: &str = "https://idp.example";
const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let rules = ClaimRules {
        issuer: ISSUER,
        client_id: "gateway",
        require_exp: data.first().is_some_and(|b| b & 1 == 0),
    };
    if let Ok(c) = check_unverified(data, NOW, &rules) {
        assert_eq!(c.iss, ISSUER);
        assert!(c.sid.is_some() || c.sub.is_some());
        assert!(!c.jti.is_empty());
        assert!(c.iat + 300 >= NOW && c.iat <= NOW + 60);
    }
});
