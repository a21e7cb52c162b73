//! Fuzzes the `Cookie` header parsers: arbitrary bytes as one or two
//! `Cookie` lines. A panic is a crash, and so is a session cookie that the
//! upstream filter lets through, or a value read with a `;` in it.

#![no_main]

use http::header::{COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::proxy::headers::filter_cookies;
use portcullis::session::cookie::read_session_cookie;

const NAME: &str = "portcullis";

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // A 0xFF byte splits the input into two header lines (HTTP/2 clients
    // send one per cookie).
    for line in data.split(|b| *b == 0xff).take(2) {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }
    if let Some(v) = read_session_cookie(&headers, NAME) {
        assert!(!v.contains(';'), "{v:?}");
    }
    filter_cookies(&mut headers, |n| n == NAME);
    assert_eq!(
        read_session_cookie(&headers, NAME),
        None,
        "the session cookie went upstream: {:?}",
        headers.get(COOKIE)
    );
    assert!(headers.get_all(COOKIE).iter().count() <= 1);
});
