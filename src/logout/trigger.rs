//! Who may trigger a logout (README "Who may trigger `/logout`").
//!
//! A logout is a state change a cross-site page must not cause (logout
//! CSRF lets an attacker sign the victim out, or into the attacker's
//! session next). Browsers tell the gateway where a request comes from with
//! Fetch Metadata (`Sec-Fetch-Site`, `Sec-Fetch-Mode`) and `Origin`;
//! non-browser clients send neither. A request that cannot be shown to come
//! from the app itself, a typed URL or a holder of the session's CSRF token
//! gets a confirmation page (navigations) or 403 instead.

use http::{HeaderMap, Method};

/// What to do with a request to the logout path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Log out now.
    LogOut,
    /// Show the confirmation page (a POST form carrying the CSRF token).
    Confirm,
    /// `403 {"error":"csrf"}`.
    Refuse,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Whether a request is a prefetch or prerender (it must never act).
fn is_prefetch(headers: &HeaderMap) -> bool {
    let names = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.to_ascii_lowercase().contains("prefetch")
                    || v.to_ascii_lowercase().contains("prerender")
            })
    };
    names("sec-purpose") || names("purpose") || names("x-moz") || names("x-purpose")
}

/// Decides. `csrf_valid` is whether the request carried this session's
/// valid CSRF token; `navigation` whether it is a navigation (as
/// [`crate::request::ClientKind`] defines it); `route_origin` is `scheme://host[:port]`.
pub fn decide(
    method: &Method,
    headers: &HeaderMap,
    csrf_valid: bool,
    navigation: bool,
    route_origin: &str,
) -> Decision {
    let fallback = if navigation {
        Decision::Confirm
    } else {
        Decision::Refuse
    };
    let origin = header(headers, "origin");
    if method == Method::HEAD || origin == Some("null") || is_prefetch(headers) {
        return fallback;
    }
    if csrf_valid {
        return Decision::LogOut;
    }
    let site = header(headers, "sec-fetch-site").map(str::to_ascii_lowercase);
    let mode = header(headers, "sec-fetch-mode").map(str::to_ascii_lowercase);
    let allowed = match *method {
        // Fetch Metadata, when sent, is the browser's own statement of the
        // initiator; Origin is the fallback for browsers without it.
        Method::POST => match (site.as_deref(), origin) {
            (Some(site), _) => site == "same-origin",
            (None, Some(origin)) => origin.eq_ignore_ascii_case(route_origin),
            (None, None) => true,
        },
        Method::GET => matches!(
            (site.as_deref(), mode.as_deref()),
            (Some("same-origin"), _) | (Some("none"), Some("navigate"))
        ),
        _ => false,
    };
    if allowed { Decision::LogOut } else { fallback }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://app.example.com";

    fn d(
        method: Method,
        pairs: &[(&'static str, &'static str)],
        csrf: bool,
        nav: bool,
    ) -> Decision {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        decide(&method, &h, csrf, nav, ORIGIN)
    }

    #[test]
    fn spec_cases() {
        use Decision::*;
        // POST
        assert_eq!(
            d(
                Method::POST,
                &[("sec-fetch-site", "same-origin")],
                false,
                false
            ),
            LogOut
        );
        assert_eq!(
            d(
                Method::POST,
                &[("origin", "https://app.example.com")],
                false,
                false
            ),
            LogOut
        );
        assert_eq!(
            d(Method::POST, &[], false, false),
            LogOut,
            "curl / native apps"
        );
        assert_eq!(
            d(
                Method::POST,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://evil.example")
                ],
                false,
                true
            ),
            Confirm
        );
        assert_eq!(
            d(
                Method::POST,
                &[
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://other.example.com")
                ],
                false,
                false
            ),
            Refuse
        );
        assert_eq!(
            d(
                Method::POST,
                &[("origin", "https://evil.example")],
                false,
                false
            ),
            Refuse
        );
        assert_eq!(d(Method::POST, &[("origin", "null")], false, false), Refuse);
        assert_eq!(
            d(Method::POST, &[("origin", "null")], true, false),
            Refuse,
            "Origin: null never"
        );
        // GET
        assert_eq!(
            d(
                Method::GET,
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("sec-fetch-mode", "navigate")
                ],
                false,
                true
            ),
            LogOut
        );
        assert_eq!(
            d(
                Method::GET,
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("sec-fetch-mode", "cors")
                ],
                false,
                false
            ),
            LogOut
        );
        assert_eq!(
            d(
                Method::GET,
                &[("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")],
                false,
                true
            ),
            LogOut,
            "typed or bookmarked"
        );
        assert_eq!(
            d(
                Method::GET,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "navigate")
                ],
                false,
                true
            ),
            Confirm
        );
        assert_eq!(
            d(
                Method::GET,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "no-cors")
                ],
                false,
                false
            ),
            Refuse
        );
        assert_eq!(
            d(Method::GET, &[], false, true),
            Confirm,
            "a GET without metadata is not trusted"
        );
        assert_eq!(d(Method::GET, &[], false, false), Refuse);
        // Token
        assert_eq!(
            d(
                Method::GET,
                &[("sec-fetch-site", "cross-site")],
                true,
                false
            ),
            LogOut
        );
        // Never
        assert_eq!(
            d(
                Method::HEAD,
                &[("sec-fetch-site", "same-origin")],
                true,
                false
            ),
            Refuse
        );
        assert_eq!(
            d(
                Method::GET,
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("sec-purpose", "prefetch")
                ],
                false,
                true
            ),
            Confirm
        );
        assert_eq!(
            d(
                Method::GET,
                &[
                    ("sec-fetch-site", "none"),
                    ("sec-fetch-mode", "navigate"),
                    ("purpose", "prefetch")
                ],
                true,
                true
            ),
            Confirm
        );
        assert_eq!(
            d(
                Method::PUT,
                &[("sec-fetch-site", "same-origin")],
                false,
                false
            ),
            Refuse
        );
    }
}
