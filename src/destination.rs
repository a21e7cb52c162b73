//! Where a user may be sent after login or logout: the `return_to` rule of
//! README "The final destination (`return_to`)",
//! shared by `/.portcullis/login`, the page first asked for at login, and
//! every logout mode. No input ever sends a user to a host the
//! configuration does not name.
//!
//! The rule: a value is a same-origin destination when, parsed as a URL
//! against the route origin, its origin is unchanged, the raw value starts
//! with `/` not followed by `/` or `\`, and it contains no `\` and no control
//! character, raw or percent-encoded; the emitted value is then the parsed
//! path, query and fragment. Otherwise it must equal one `allowed_return_to`
//! entry byte for byte; otherwise the default applies.
//!
//! The raw checks come before parsing because URL parsers repair input
//! (WHATWG strips tabs and newlines, treats `\` as `/` in special schemes):
//! what the gateway validates must be what the browser will follow.

use url::Url;

/// Longest `return_to` accepted, raw and as emitted: a longer one is treated
/// as absent (SPEC, "Limits"), so no client can make the gateway keep or
/// carry a large value.
pub const MAX_RETURN_TO: usize = 2048;

/// The destination to send the user to: `raw` when it passes the rule,
/// else `default`.
pub fn resolve(raw: Option<&str>, route_origin: &str, allowed: &[String], default: &str) -> String {
    raw.and_then(|raw| accept(raw, route_origin, allowed))
        .unwrap_or_else(|| default.to_owned())
}

/// `Some(destination)` when `raw` passes the rule.
pub fn accept(raw: &str, route_origin: &str, allowed: &[String]) -> Option<String> {
    if raw.len() > MAX_RETURN_TO {
        return None;
    }
    same_origin_path(raw, route_origin)
        // Parsing may percent-encode: the emitted value is capped too.
        .filter(|out| out.len() <= MAX_RETURN_TO)
        .or_else(|| allowed.iter().find(|a| a.as_str() == raw).cloned())
}

fn same_origin_path(raw: &str, route_origin: &str) -> Option<String> {
    let rest = raw.strip_prefix('/')?;
    if rest.starts_with('/') || rest.starts_with('\\') {
        return None;
    }
    if raw.bytes().any(|b| b == b'\\' || is_control(b)) || has_encoded_danger(raw) {
        return None;
    }
    let base = Url::parse(route_origin).ok()?;
    let url = base.join(raw).ok()?;
    if url.origin() != base.origin() {
        return None;
    }
    let mut out = url.path().to_owned();
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = url.fragment() {
        out.push('#');
        out.push_str(f);
    }
    // Parsing removes dot-segments, so `/.//evil.com` passes the raw checks
    // and comes out as `//evil.com`: the emitted value must pass them too.
    let emitted = out.strip_prefix('/')?;
    if emitted.starts_with('/') || emitted.starts_with('\\') {
        return None;
    }
    Some(out)
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// A percent-encoded control character or backslash.
fn has_encoded_danger(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%'
            && match (hex(w[1]), hex(w[2])) {
                (Some(h), Some(l)) => {
                    let v = (h << 4) | l;
                    is_control(v) || v == b'\\'
                }
                _ => false,
            }
    })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://app.example.com";

    fn allowed() -> Vec<String> {
        vec!["https://www.example.com/goodbye".to_string()]
    }

    #[test]
    fn same_origin_paths_pass_and_are_emitted_parsed() {
        let cases = [
            ("/", "/"),
            ("/dashboard", "/dashboard"),
            ("/a/b?x=1&y=2#frag", "/a/b?x=1&y=2#frag"),
            ("/a/../b", "/b"),
            ("/@evil.com", "/@evil.com"),
            ("/ /evil.com", "/%20/evil.com"),
            ("/%2F%2Fevil.com", "/%2F%2Fevil.com"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/?next=https://evil.com", "/?next=https://evil.com"),
        ];
        for (raw, want) in cases {
            assert_eq!(accept(raw, ORIGIN, &[]).as_deref(), Some(want), "{raw:?}");
        }
    }

    /// Open-redirect payloads from public advisories and lists: oauth2-proxy
    /// (GHSA-5m6c-jp6f-2vcv, CVE-2020-4037, CVE-2021-21291),
    /// mod_auth_openidc (CVE-2019-14857, CVE-2021-39191, CVE-2022-23527 and
    /// follow-ups), OWASP's unvalidated-redirects cheat sheet and the
    /// PayloadsAllTheThings open-redirect list.
    #[test]
    fn open_redirect_payloads_fall_back_to_default() {
        let payloads = [
            "//evil.com",
            "///evil.com",
            "////evil.com",
            "/\\evil.com",
            "/\\/evil.com",
            "\\\\evil.com",
            "\\/evil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "/%5C%5Cevil.com",
            "/\t/evil.com",
            "/%09/evil.com",
            "/\r\n/evil.com",
            "/%0d%0a/evil.com",
            "/%0D%0ALocation:%20https://evil.com",
            "/\x00/evil.com",
            "/%00/evil.com",
            "/%7f/evil.com",
            "\t//evil.com",
            " //evil.com",
            "https://evil.com",
            "http://evil.com",
            "https:evil.com",
            "https:/evil.com",
            "https:\\\\evil.com",
            "//evil.com/%2F..",
            "//app.example.com@evil.com",
            "https://app.example.com@evil.com",
            "https://app.example.com.evil.com",
            "https://evil.com#https://app.example.com",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.com",
            "@evil.com",
            ".evil.com",
            "",
            "%2F%2Fevil.com",
            "%2f%2fevil.com",
            "/%2f%5cevil.com",
            "http://127.0.0.1",
            "https://www.example.com/goodbye/",
            "https://www.example.com/goodbye?x",
            "HTTPS://www.example.com/goodbye",
            // Dot-segments that collapse into a protocol-relative URL once parsed.
            "/.//evil.com",
            "/./\\evil.com",
            "/..//evil.com",
            "/a/..//evil.com",
            "/a/b/../..//evil.com",
            "/%2e//evil.com",
            "/%2E%2E//evil.com",
            "/.%2e//evil.com",
        ];
        for raw in payloads {
            assert_eq!(
                resolve(Some(raw), ORIGIN, &allowed(), "/"),
                "/",
                "{raw:?} was accepted"
            );
        }
    }

    #[test]
    fn allowed_absolute_urls_are_byte_exact() {
        assert_eq!(
            resolve(
                Some("https://www.example.com/goodbye"),
                ORIGIN,
                &allowed(),
                "/"
            ),
            "https://www.example.com/goodbye"
        );
        assert_eq!(resolve(None, ORIGIN, &allowed(), "/bye"), "/bye");
    }

    #[test]
    fn a_full_url_on_the_route_origin_is_not_a_path() {
        // The raw value must start with a single '/': an absolute URL, even
        // to the route origin itself, needs an allowed_return_to entry.
        assert_eq!(
            resolve(Some("https://app.example.com/x"), ORIGIN, &[], "/"),
            "/"
        );
    }
}
