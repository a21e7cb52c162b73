//! Fuzzes path canonicalisation and route matching: arbitrary bytes as the
//! raw request path. A panic is a crash, and so is a canonical path that is
//! not canonical (not idempotent, `//`, a dot-segment, a double-encoded
//! percent), or one whose route changes once an upstream decodes it again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::request::path::{normalize, under_prefix, without_params};

/// The route an upstream that decodes once more would see `path` under.
fn decoded_once(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = normalize(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains("//"), "{path:?}");
    assert_eq!(normalize(&path).as_deref(), Ok(path.as_str()), "not idempotent");
    let matched = without_params(&path);
    for segment in matched.split('/') {
        assert!(segment != "." && segment != "..", "dot-segment in {path:?}");
    }
    // An upstream decoding once more sees the same first segment: no
    // double-encoded percent, encoded separator or dot survives.
    let again = decoded_once(&path);
    for prefix in ["/admin", "/public", "/a/b"] {
        assert_eq!(
            under_prefix(&matched, prefix),
            under_prefix(&without_params(&again), prefix),
            "{raw:?} -> {path:?} -> {again:?} moves relative to {prefix}"
        );
    }
    assert!(under_prefix(&matched, "/"));
});
