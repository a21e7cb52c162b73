//! The session cookie: `Set-Cookie` values and reading it from a request.

use std::time::Duration;

use cookie::{Cookie, SameSite as CookieSameSite};
use http::HeaderMap;
use http::header::COOKIE;

use super::id::SessionId;
use crate::config::{SameSite, SessionConfig};

fn base<'c>(cfg: &SessionConfig, value: String, secure: bool) -> cookie::CookieBuilder<'c> {
    let mut b = Cookie::build((cfg.cookie_name.clone(), value))
        .http_only(true)
        .path("/")
        .same_site(match cfg.cookie_samesite {
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::None => CookieSameSite::None,
        })
        .secure(secure);
    if let Some(d) = &cfg.cookie_domain {
        b = b.domain(d.clone());
    }
    b
}

/// The `Set-Cookie` value that carries a session. `secure` is true when the
/// public URL is https. `Max-Age` (= `max_lifetime`) only when `persistent`.
pub fn session_cookie(cfg: &SessionConfig, id: &SessionId, secure: bool) -> String {
    let mut b = base(cfg, id.to_cookie_value(), secure);
    if cfg.persistent {
        let secs = i64::try_from(cfg.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        b = b.max_age(cookie::time::Duration::seconds(secs));
    }
    b.build().to_string()
}

/// The `Set-Cookie` value that deletes the session cookie: same name, domain
/// and attributes, empty value, `Max-Age=0`.
pub fn expired_session_cookie(cfg: &SessionConfig, secure: bool) -> String {
    base(cfg, String::new(), secure)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// `Set-Cookie` for one of the gateway's short-lived helper cookies (a
/// login state, a logout in progress); `max_age` zero removes it. Path=/
/// and no Domain keep the `__Host-` prefix valid when the session cookie
/// uses it; Lax lets the IdP's top-level redirect back carry it.
pub fn helper_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; HttpOnly; Path=/; SameSite=Lax; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

/// The values of cookie `name` in the request's `Cookie` headers, in order,
/// as bytes (trimmed, unquoted: RFC 6265 allows a quoted value). Parsed on
/// bytes rather than with `cookie::Cookie::split_parse`, so a header that is
/// not valid UTF-8 (another cookie with odd bytes) neither hides a value
/// nor a second copy of it; split with memchr, since the session cookie's
/// value is long and this runs on every request of a session route.
pub fn cookie_values<'h>(
    headers: &'h HeaderMap,
    name: &'h str,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers.get_all(COOKIE).iter().flat_map(move |header| {
        let bytes = header.as_bytes();
        let mut start = 0;
        memchr::memchr_iter(b';', bytes)
            .chain(std::iter::once(bytes.len()))
            .filter_map(move |end| {
                let pair = bytes[start..end].trim_ascii();
                start = end + 1;
                let eq = memchr::memchr(b'=', pair)?;
                if pair[..eq].trim_ascii() != name.as_bytes() {
                    return None;
                }
                let v = pair[eq + 1..].trim_ascii();
                Some(
                    v.strip_prefix(b"\"")
                        .and_then(|x| x.strip_suffix(b"\""))
                        .unwrap_or(v),
                )
            })
    })
}

/// Every value of the session cookie the request carries (at most
/// [`MAX_SESSION_COOKIE_VALUES`], in order), for `/logout`: there, two values
/// must not hide the session to end (a cookie planted with a longer `Path`
/// by a sibling domain, or over http), while [`read_session_cookie`] treats
/// them as no session at all, as authentication must.
pub fn session_cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    cookie_values(headers, name)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .take(MAX_SESSION_COOKIE_VALUES)
        .map(str::to_owned)
        .collect()
}

/// How many session-cookie values `/logout` looks at.
pub const MAX_SESSION_COOKIE_VALUES: usize = 4;

/// The session cookie's value from the request's `Cookie` headers. `None`
/// when it is absent or present more than once (across one or several
/// headers): a second value may be planted by a sibling subdomain, so the
/// request is treated as having no session.
pub fn read_session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = cookie_values(headers, name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    std::str::from_utf8(first).ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, StoreConfig};
    use crate::session::crypto::KeyRing;
    use http::HeaderValue;
    use std::time::Duration;

    fn cfg() -> SessionConfig {
        SessionConfig {
            secrets: vec![Secret::new("0123456789abcdef0123456789abcdef")],
            cookie_name: "__Host-portcullis".into(),
            cookie_domain: None,
            cookie_samesite: SameSite::Lax,
            persistent: false,
            idle_timeout: Duration::from_secs(1800),
            max_lifetime: Duration::from_secs(43200),
            store: StoreConfig::Memory,
        }
    }

    fn attrs(s: &str) -> Vec<String> {
        s.split(';').skip(1).map(|a| a.trim().to_owned()).collect()
    }

    #[test]
    fn session_cookie_attributes() {
        let keys = KeyRing::new(&cfg().secrets).unwrap();
        let id = SessionId::generate(&keys).unwrap();
        let c = session_cookie(&cfg(), &id, true);
        assert!(c.starts_with(&format!("__Host-portcullis={};", id.to_cookie_value())));
        let a = attrs(&c);
        for want in ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"] {
            assert!(a.contains(&want.to_string()), "{want} missing in {c}");
        }
        assert!(!c.contains("Max-Age") && !c.contains("Domain"), "{c}");

        let mut http_cfg = cfg();
        http_cfg.cookie_name = "portcullis".into();
        http_cfg.cookie_samesite = SameSite::Strict;
        http_cfg.persistent = true;
        http_cfg.cookie_domain = Some("example.com".into());
        let c = session_cookie(&http_cfg, &id, false);
        let a = attrs(&c);
        assert!(!a.contains(&"Secure".to_string()), "{c}");
        for want in ["SameSite=Strict", "Max-Age=43200", "Domain=example.com"] {
            assert!(a.contains(&want.to_string()), "{want} missing in {c}");
        }
    }

    #[test]
    fn expired_cookie_mirrors_attributes() {
        let mut c = cfg();
        c.cookie_domain = Some("example.com".into());
        c.cookie_samesite = SameSite::None;
        let e = expired_session_cookie(&c, true);
        assert!(e.starts_with("__Host-portcullis=;"), "{e}");
        let a = attrs(&e);
        for want in [
            "HttpOnly",
            "Path=/",
            "SameSite=None",
            "Secure",
            "Domain=example.com",
            "Max-Age=0",
        ] {
            assert!(a.contains(&want.to_string()), "{want} missing in {e}");
        }
    }

    #[test]
    fn every_value_for_logout() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("sc=a; x=1; sc=\"b\""));
        h.append(COOKIE, HeaderValue::from_static("sc=c; sc=d; sc=e; s=f"));
        assert_eq!(session_cookie_values(&h, "sc"), ["a", "b", "c", "d"]);
        assert!(session_cookie_values(&h, "none").is_empty());
    }

    #[test]
    fn reads_single_cookie_and_rejects_doubles() {
        let mut h = HeaderMap::new();
        assert_eq!(read_session_cookie(&h, "sc"), None);
        h.insert(COOKIE, HeaderValue::from_static("a=1; sc=abc; b=2"));
        assert_eq!(read_session_cookie(&h, "sc").as_deref(), Some("abc"));
        // A cookie whose name merely contains ours is not ours.
        assert_eq!(read_session_cookie(&h, "s"), None);

        h.insert(COOKIE, HeaderValue::from_static("sc=abc; sc=def"));
        assert_eq!(read_session_cookie(&h, "sc"), None);

        h.insert(COOKIE, HeaderValue::from_static("sc=abc"));
        h.append(COOKIE, HeaderValue::from_static("x=1; sc=abc"));
        assert_eq!(read_session_cookie(&h, "sc"), None, "across headers");

        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("x=1"));
        h.append(COOKIE, HeaderValue::from_static("sc=zz"));
        assert_eq!(read_session_cookie(&h, "sc").as_deref(), Some("zz"));

        // Odd bytes in another cookie neither hide ours nor hide a double.
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_bytes(b"x=\xff\xfe; sc=abc").unwrap(),
        );
        assert_eq!(read_session_cookie(&h, "sc").as_deref(), Some("abc"));
        h.append(COOKIE, HeaderValue::from_bytes(b"y=\xff; sc=evil").unwrap());
        assert_eq!(read_session_cookie(&h, "sc"), None);
        // Quoted values and spaces around '=' are the same cookie.
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("sc=\"abc\""));
        assert_eq!(read_session_cookie(&h, "sc").as_deref(), Some("abc"));
        h.append(COOKIE, HeaderValue::from_static("sc =def"));
        assert_eq!(read_session_cookie(&h, "sc"), None);
        // A non-UTF-8 value of ours is no session.
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_bytes(b"sc=\xff").unwrap());
        assert_eq!(read_session_cookie(&h, "sc"), None);
    }
}
