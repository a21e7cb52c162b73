//! Header rewriting between client and upstream.
//!
//! RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header
//! field before a message is forwarded and, for each connection-option in
//! this field, remove any header or trailer field(s) from the message with
//! the same name as the connection-option, and then remove the Connection
//! header field itself (or replace it with the intermediary's own control
//! options for the forwarded message)." It also names the fields that are
//! hop-by-hop without being listed: Proxy-Connection, Keep-Alive, TE,
//! Transfer-Encoding and Upgrade.

use http::HeaderMap;
use http::header::{CONNECTION, COOKIE, HeaderName, HeaderValue, SET_COOKIE};

/// Fields that are hop-by-hop whatever `Connection` says: the ones RFC 9110
/// names, plus `Proxy-Authorization` and `Proxy-Authenticate`, which are
/// meant for this hop ("applies only to the next outbound client on the
/// response chain", RFC 9110 §11.7.1): an upstream's proxy challenge is
/// addressed to the gateway, not to the browser.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Whether a field is in [`HOP_BY_HOP`]. Names are lower-case already, and
/// the length alone rules out nearly every other field: this runs for each
/// field of every request and response, so it is one compare, not nine.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    let n = name.as_str();
    match n.len() {
        2 => n == "te",
        7 => n == "trailer" || n == "upgrade",
        10 => n == "connection" || n == "keep-alive",
        16 => n == "proxy-connection",
        17 => n == "transfer-encoding",
        18 => n == "proxy-authenticate",
        19 => n == "proxy-authorization",
        _ => false,
    }
}

/// Whether a `Connection` token names a field in [`HOP_BY_HOP`], in any case.
fn is_hop_by_hop_token(token: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(token))
}

/// Request headers that ask an upstream to route or behave differently;
/// never taken from a client.
const REWRITE_HEADERS: [&str; 7] = [
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-prefix",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// Identity headers the gateway owns whatever `[headers]` says, so a
/// renamed header never lets a client's copy of the default through.
const DEFAULT_IDENTITY_HEADERS: [&str; 5] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
];

/// Client-address and host headers believed only from trusted proxies:
/// besides the `X-Forwarded-*` family, those CDNs and load balancers set
/// and apps read (SPEC, "Limits").
const FORWARDING_HEADERS: [&str; 10] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-host",
    "x-host",
    "x-forwarded-server",
];

/// Compares a header name to a canonical lower-case, `-`-separated name the
/// way a lenient upstream (CGI, PHP, Rails) would: `_` and `-` alike.
fn same_lenient(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// The set of identity header names for one configuration, in canonical
/// lower-case form.
#[derive(Debug, Clone)]
pub struct IdentityNames {
    names: Vec<String>,
}

impl IdentityNames {
    /// The defaults plus the configured names.
    pub fn new<'a>(configured: impl Iterator<Item = &'a HeaderName>) -> Self {
        let mut names: Vec<String> = DEFAULT_IDENTITY_HEADERS
            .iter()
            .map(|s| (*s).into())
            .collect();
        for n in configured {
            let n = n.as_str().replace('_', "-");
            if !names.contains(&n) {
                names.push(n);
            }
        }
        IdentityNames { names }
    }

    fn matches(&self, name: &str) -> bool {
        self.names.iter().any(|c| same_lenient(name, c))
    }
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Collected first (the map cannot change while it is read); both lists
    // are empty for most requests, and an empty Vec does not allocate.
    // The usual tokens ("keep-alive", "close", "upgrade") name no extra
    // field, so only other tokens are parsed into names.
    // Tokens are read as bytes: one that is not a field name is skipped by
    // `HeaderName::from_bytes`, without hiding its neighbours.
    let mut doomed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.eq_ignore_ascii_case(b"close") && !is_hop_by_hop_token(t))
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect();
    doomed.extend(headers.keys().filter(|n| is_hop_by_hop(n)).cloned());
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes what a client must never set: identity headers (any case, `_`
/// for `-`), rewrite headers, and, from untrusted peers, every
/// `X-Forwarded-*`, `Forwarded` and `X-Real-IP`.
pub fn strip_client_controlled(headers: &mut HeaderMap, identity: &IdentityNames, trusted: bool) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            identity.matches(n)
                || REWRITE_HEADERS.iter().any(|c| same_lenient(n, c))
                || (!trusted
                    && (n.starts_with("x-forwarded-")
                        || n.starts_with("x_forwarded_")
                        || n.starts_with("x-forwarded_")
                        || n.starts_with("x_forwarded-")
                        || FORWARDING_HEADERS.iter().any(|c| same_lenient(n, c))))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`. From a trusted proxy the
/// received chain is extended and its proto/host kept; otherwise they are
/// the gateway's own view: the peer address and the configured public
/// origin the request matched.
pub fn set_forwarded(headers: &mut HeaderMap, peer: &str, trusted: bool, proto: &str, host: &str) {
    let xff = X_FORWARDED_FOR;
    let chain = if trusted {
        let prior: Vec<&str> = headers
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            peer.to_owned()
        } else {
            format!("{}, {}", prior.join(", "), peer)
        }
    } else {
        peer.to_owned()
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        headers.insert(xff, v);
    }
    let proto_name = X_FORWARDED_PROTO;
    if !(trusted && headers.contains_key(&proto_name)) {
        headers.insert(
            proto_name,
            HeaderValue::from_static(if proto == "https" { "https" } else { "http" }),
        );
    }
    let host_name = X_FORWARDED_HOST;
    if !(trusted && headers.contains_key(&host_name))
        && let Ok(v) = HeaderValue::from_str(host)
    {
        headers.insert(host_name, v);
    }
}

/// Joins the `Cookie` header lines into one (HTTP/2 clients may split
/// them; HTTP/1.1 upstreams expect one) and drops the named cookies (the
/// gateway's own). An emptied header is removed.
pub fn filter_cookies(headers: &mut HeaderMap, is_gateway_cookie: impl Fn(&str) -> bool) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<&str> = Vec::new();
    for line in headers.get_all(COOKIE) {
        let Ok(line) = line.to_str() else { continue };
        for pair in line.split(';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split('=').next().unwrap_or(pair).trim();
            if !is_gateway_cookie(name) {
                kept.push(pair);
            }
        }
    }
    let joined = kept.join("; ");
    headers.remove(COOKIE);
    if !joined.is_empty()
        && let Ok(v) = HeaderValue::from_str(&joined)
    {
        headers.insert(COOKIE, v);
    }
}

/// The cookie name of a `Set-Cookie` value, read from its bytes: the text
/// before the first `=` or `;`, without surrounding whitespace (as browsers
/// read it). Working on bytes matters: a value with any non-ASCII byte, even
/// in an attribute far after the name, fails `to_str()`, and a name read that
/// way would come out empty and let the line through.
fn set_cookie_name(value: &[u8]) -> std::borrow::Cow<'_, str> {
    let end = value
        .iter()
        .position(|&b| b == b'=' || b == b';')
        .unwrap_or(value.len());
    String::from_utf8_lossy(value[..end].trim_ascii())
}

/// Drops upstream `Set-Cookie` lines that would set one of the gateway's
/// cookies, and those with an empty name: a browser sends such a cookie
/// back as its bare value, so `=portcullis=evil` would return as
/// `portcullis=evil`.
pub fn filter_set_cookies(headers: &mut HeaderMap, is_gateway_cookie: impl Fn(&str) -> bool) {
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| {
            let name = set_cookie_name(v.as_bytes());
            !name.is_empty() && !is_gateway_cookie(&name)
        })
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_length_switch_knows_every_hop_by_hop_field() {
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "tf",
            "trailers",
            "connections",
            "x-upgrade",
            "cookie",
            "host",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));

        // A token with a non-ASCII byte names no field, and does not hide
        // the fields its neighbours name.
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"x-hop-a, caf\xe9, x-hop-b").unwrap(),
        );
        h.insert("x-hop-a", HeaderValue::from_static("1"));
        h.insert("x-hop-b", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);

        let mut h = map(&[
            ("connection", "Close, UPGRADE, X-Other"),
            ("x-other", "1"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn identity_variants_removed() {
        let custom = HeaderName::from_static("x-auth-user");
        let ids = IdentityNames::new([&custom].into_iter());
        let mut h = map(&[
            ("x-forwarded-user", "mallory"),
            ("x_forwarded_user", "mallory"),
            ("x-forwarded_email", "m@x"),
            ("x_auth_user", "mallory"),
            ("x-original-url", "/admin"),
            ("x_http_method_override", "DELETE"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("authorization", "Bearer client"),
        ]);
        strip_client_controlled(&mut h, &ids, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("authorization"));

        let mut h = map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-user", "m")]);
        strip_client_controlled(&mut h, &ids, true);
        assert!(h.contains_key("x-forwarded-for"));
        assert!(!h.contains_key("x-forwarded-user"));
    }

    #[test]
    fn forwarded_chain() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(&mut h, "10.0.0.1", true, "http", "app:8080");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app:8080");
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, "127.0.0.1", false, "http", "app");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn cookies_filtered_and_joined() {
        let mut h = map(&[("cookie", "a=1; portcullis=secret"), ("cookie", "b=2")]);
        filter_cookies(&mut h, |n| n == "portcullis");
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "a=1; b=2");
        let mut h = map(&[("cookie", "portcullis=x")]);
        filter_cookies(&mut h, |n| n == "portcullis");
        assert!(!h.contains_key(COOKIE));

        let mut h = map(&[
            ("set-cookie", "portcullis=evil; Path=/"),
            ("set-cookie", "app=1; Path=/"),
        ]);
        filter_set_cookies(&mut h, |n| n == "portcullis");
        assert_eq!(h.get_all(SET_COOKIE).iter().count(), 1);
        assert_eq!(h[SET_COOKIE], "app=1; Path=/");
    }

    #[test]
    fn set_cookie_names_are_read_from_bytes() {
        let mut h = HeaderMap::new();
        for v in [
            &b"portcullis=x; a=\xff"[..],
            b"  portcullis =x",
            b"portcullis\xff=x",
            b"app=\xff; Path=/",
        ] {
            h.append(SET_COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        filter_set_cookies(&mut h, |n| n == "portcullis");
        let kept: Vec<&[u8]> = h.get_all(SET_COOKIE).iter().map(|v| v.as_bytes()).collect();
        assert_eq!(kept, [&b"portcullis\xff=x"[..], b"app=\xff; Path=/"]);
        assert_eq!(set_cookie_name(b"no-equals"), "no-equals");
        assert_eq!(set_cookie_name(b"=v"), "");
    }
}
