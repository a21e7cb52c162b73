//! Request path normalisation.
//!
//! Routing decisions are only as good as the path they look at: if the
//! gateway matched `/public/..%2fadmin` against `/public/` and the upstream
//! then decoded it to `/admin`, a protected route would be bypassed. So the
//! gateway settles one canonical path before matching, rejects every form
//! whose meaning could differ between it and an upstream, and sends the
//! canonical path upstream.
//!
//! RFC 3986 §5.2.4 ("Remove Dot Segments") and §6.2.2.2 ("Percent-Encoding
//! Normalization": "URIs should be normalized by decoding any percent-encoded
//! octet that corresponds to an unreserved character") are applied; on top:
//!
//! - encoded `/` (`%2F`), `\` (`%5C`) and `.` (`%2E`) are rejected, as is a raw
//!   `\` (some servers treat it as `/`);
//! - a dot-segment with parameters (`..;x`, `.;x`, `..%3Bx`) is rejected
//!   (servlet containers treat `/..;/` as `/../`);
//! - a double-encoded percent (`%25` and two hex digits) is rejected: an
//!   upstream that decodes twice would see `/%2561dmin` as `/admin`;
//! - control characters, raw or percent-encoded, and malformed percent
//!   escapes are rejected;
//! - runs of `/` are merged, so `//admin` cannot slip past a `/admin` route
//!   that an upstream would reach by merging them itself.

use thiserror::Error;

/// Why a path was refused (all answered with 400).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (e.g. `*` or an absolute URI form
    /// that was not split).
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding in path")]
    BadEscape,
    /// `%2F`, `%5C` or `%2E`.
    #[error("encoded '/', '\\' or '.' in path")]
    EncodedSeparator,
    /// A raw backslash.
    #[error("backslash in path")]
    Backslash,
    /// A control character, raw or percent-encoded.
    #[error("control character in path")]
    ControlCharacter,
    /// `..;` or `.;` segments (`;` raw or as `%3B`).
    #[error("parameters on a dot-segment in path")]
    DotSegmentParameters,
    /// `%25` followed by two hex digits: an upstream that decodes twice
    /// would see another path than the one matched.
    #[error("double-encoded percent in path")]
    DoubleEncoded,
}

const fn is_unreserved(b: u8) -> bool {
    // '.' is unreserved too, but an encoded dot is refused before this test.
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises a raw request path (without the query) into the canonical
/// form used for matching and sent upstream.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if already_canonical(raw.as_bytes()) {
        return Ok(raw.to_owned());
    }
    normalize_general(raw)
}

/// Whether every rule below would leave `raw` as it is: it starts with `/`
/// and has no `%`, `\`, control character, `//` or segment starting with
/// `.` (so no dot-segment, with or without parameters). Nearly every
/// request's path passes this one scan, which skips the allocations and
/// passes of [`normalize_general`] (the tests check both agree).
fn already_canonical(raw: &[u8]) -> bool {
    if raw.first() != Some(&b'/') {
        return false;
    }
    let mut after_slash = false;
    for &b in raw {
        match b {
            b'%' | b'\\' | 0..=0x1f | 0x7f => return false,
            b'/' | b'.' if after_slash => return false,
            _ => {}
        }
        after_slash = b == b'/';
    }
    true
}

/// [`normalize`] for any path: the rules applied in full.
fn normalize_general(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Pass 1: percent-decode unreserved octets, refuse the dangerous ones,
    // upper-case the hex of the rest, merge slashes.
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = (h << 4) | l;
                if v < 0x20 || v == 0x7f {
                    return Err(PathError::ControlCharacter);
                }
                if matches!(v, b'/' | b'\\' | b'.') {
                    return Err(PathError::EncodedSeparator);
                }
                if is_unreserved(v) {
                    decoded.push(char::from(v));
                } else {
                    decoded.push('%');
                    decoded.push(char::from(b"0123456789ABCDEF"[usize::from(h)]));
                    decoded.push(char::from(b"0123456789ABCDEF"[usize::from(l)]));
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            b'/' if decoded.ends_with('/') => {}
            _ => {
                // The raw path is ASCII (hyper's URI parser guarantees it), but
                // stay correct for any UTF-8 by copying the whole character.
                let ch = raw[i..].chars().next().ok_or(PathError::BadEscape)?;
                decoded.push(ch);
                i += ch.len_utf8();
                continue;
            }
        }
        i += 1;
    }

    // What goes upstream must not decode to another escape: `%25` then two
    // hex digits, checked on the decoded form (`%25a%41` becomes `%25aA`).
    let d = decoded.as_bytes();
    if d.windows(5).any(|w| {
        w[..3].eq_ignore_ascii_case(b"%25")
            && hex_value(w[3]).is_some()
            && hex_value(w[4]).is_some()
    }) {
        return Err(PathError::DoubleEncoded);
    }

    // Pass 2: remove dot-segments (RFC 3986 §5.2.4) over whole segments.
    let trailing_slash = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || decoded == "/.";
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/').skip(1) {
        // Pass 1 upper-cased the hex, so an encoded `;` is always `%3B`.
        let name_end = [segment.find(';'), segment.find("%3B")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(segment.len());
        let name = &segment[..name_end];
        let has_params = name.len() != segment.len();
        match name {
            "." | ".." if has_params => return Err(PathError::DotSegmentParameters),
            "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(segment),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for segment in &out {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() || (trailing_slash && !path.ends_with('/')) {
        path.push('/');
    }
    Ok(path)
}

/// The canonical path with each segment's `;parameters` removed, for
/// matching only (the canonical path itself still goes upstream). Servlet
/// containers and others ignore path parameters, so `/admin;x/panel` must
/// be matched like `/admin/panel`, or it would slip past an `/admin` route.
pub fn without_params(path: &str) -> std::borrow::Cow<'_, str> {
    // `%3B` too (pass 1 upper-cases the hex): an upstream that decodes it
    // and then drops parameters would see `/admin%3B/x` as `/admin/x`.
    if !path.contains(';') && !path.contains("%3B") {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let end = [segment.find(';'), segment.find("%3B")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(segment.len());
        out.push_str(&segment[..end]);
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `path` (normalised) lies under `prefix` on whole segments:
/// `/public` matches `/public` and `/public/x`, never `/publicity`.
/// `prefix` is stored without a trailing slash, except the root `/`.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-scan shortcut must never change an answer: every path of up
    /// to six characters over the bytes the rules care about, as the
    /// shortcut and the full rules see it.
    #[test]
    fn the_shortcut_agrees_with_the_full_rules() {
        const ALPHABET: &[u8] = b"/.a;%2F\\\x01";
        let mut checked = 0;
        let mut shortcuts = 0;
        for len in 1..=6u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                let mut raw = String::new();
                for _ in 0..len {
                    raw.push(char::from(ALPHABET[n % ALPHABET.len()]));
                    n /= ALPHABET.len();
                }
                if already_canonical(raw.as_bytes()) {
                    shortcuts += 1;
                    assert_eq!(normalize_general(&raw), Ok(raw.clone()), "{raw:?}");
                }
                assert_eq!(normalize(&raw), normalize_general(&raw), "{raw:?}");
                checked += 1;
            }
        }
        assert!(
            shortcuts > 1000 && checked > shortcuts,
            "{shortcuts} of {checked}"
        );
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/public/../admin", "/admin"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/%61dmin", "/admin"),
            ("/a%7e%2d%5F", "/a~-_"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb%3F", "/a%3Fb%3F"),
            ("/a;jsessionid=1/b", "/a;jsessionid=1/b"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/..b/c", "/a/..b/c"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn refused_forms() {
        let cases = [
            ("/public/..%2fadmin", PathError::EncodedSeparator),
            ("/public/%2e%2e/admin", PathError::EncodedSeparator),
            ("/public/%2E./admin", PathError::EncodedSeparator),
            ("/public/..%5cadmin", PathError::EncodedSeparator),
            ("/public\\..\\admin", PathError::Backslash),
            ("/public/..;/admin", PathError::DotSegmentParameters),
            ("/public/.;x/admin", PathError::DotSegmentParameters),
            ("/a%00b", PathError::ControlCharacter),
            ("/a%0d%0aSet-Cookie:x", PathError::ControlCharacter),
            ("/a%7F", PathError::ControlCharacter),
            ("/a\tb", PathError::ControlCharacter),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), Err(want), "{raw}");
        }
    }

    /// Random paths from an alphabet of the interesting characters: no
    /// panic, and the canonical form is a fixed point (normalising it again
    /// changes nothing), so an upstream that normalises once more sees the
    /// same path the gateway routed.
    #[test]
    fn random_paths_normalise_to_a_fixed_point() {
        const ALPHABET: &[&str] = &[
            "/", "/", "a", "b", ".", "..", "%2e", "%2F", "%5c", "%41", "%7e", "%25", "%", ";",
            "\\", "%00", "\u{e9}", "?", "~",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..50_000 {
            let len = (next() % 12) as usize;
            let mut raw = String::from("/");
            for _ in 0..len {
                raw.push_str(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
            }
            if let Ok(canonical) = normalize(&raw) {
                assert!(canonical.starts_with('/'), "{raw:?} -> {canonical:?}");
                assert!(!canonical.contains("//"), "{raw:?} -> {canonical:?}");
                assert_eq!(
                    normalize(&canonical).as_deref(),
                    Ok(canonical.as_str()),
                    "{raw:?}"
                );
            }
        }
    }

    #[test]
    fn parameters_are_ignored_for_matching() {
        assert_eq!(without_params("/admin;x/panel"), "/admin/panel");
        assert_eq!(without_params("/a;jsessionid=1"), "/a");
        assert_eq!(without_params("/plain/path"), "/plain/path");
        // Found by the path_route fuzz target: an encoded `;` is a
        // parameter for an upstream that decodes before dropping them.
        assert_eq!(without_params("/admin%3B/x"), "/admin/x");
        assert!(under_prefix(&without_params("/admin;x/panel"), "/admin"));
        assert!(under_prefix(&without_params("/admin;x"), "/admin"));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under_prefix("/public", "/public"));
        assert!(under_prefix("/public/", "/public"));
        assert!(under_prefix("/public/x", "/public"));
        assert!(!under_prefix("/publicity", "/public"));
        assert!(!under_prefix("/", "/public"));
        assert!(under_prefix("/anything", "/"));
    }
}
