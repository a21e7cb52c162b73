//! Fuzzes SPEC's `return_to` rule: arbitrary text as the requested
//! destination. A panic is a crash, and so is an accepted destination that
//! leaves the route origin (other than an exact `allowed_return_to` entry)
//! or is longer than the limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::destination::{MAX_RETURN_TO, accept};
use url::Url;

const ORIGIN: &str = "https://app.example.com";
const ALLOWED: &str = "https://www.example.com/signed-out";

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let allowed = [ALLOWED.to_owned()];
    let Some(dest) = accept(raw, ORIGIN, &allowed) else {
        return;
    };
    if dest == ALLOWED {
        assert_eq!(raw, ALLOWED);
        return;
    }
    assert!(dest.len() <= MAX_RETURN_TO && raw.len() <= MAX_RETURN_TO);
    assert!(dest.starts_with('/'), "{dest:?}");
    assert!(!dest.starts_with("//") && !dest.starts_with("/\\"), "{dest:?}");
    assert!(
        !dest.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f),
        "{dest:?}"
    );
    let base = Url::parse(ORIGIN).unwrap();
    let followed = base.join(&dest).unwrap();
    assert_eq!(followed.origin(), base.origin(), "{raw:?} -> {dest:?}");
});
