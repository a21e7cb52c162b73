//! What kind of client sent a request (README "Paths" says what each kind
//! gets): it decides
//! whether the gateway answers with a redirect, an HTML page or JSON.

use http::HeaderMap;
use http::header::ACCEPT;

/// How the gateway should answer a request it does not proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A top-level navigation: `Sec-Fetch-Mode: navigate`, or, without that
    /// header, an `Accept` naming `text/html` explicitly.
    Navigation,
    /// A non-navigation whose `Accept` names `application/json` explicitly.
    Json,
    /// Anything else (scripts, images, curl with `*/*`).
    Other,
}

impl ClientKind {
    /// Classifies a request by its headers.
    pub fn of(headers: &HeaderMap) -> Self {
        let accept_names = |wanted: &str| {
            headers.get_all(ACCEPT).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',').any(|item| {
                        let media = item.split(';').next().unwrap_or("").trim();
                        media.eq_ignore_ascii_case(wanted)
                    })
                })
            })
        };
        let navigation = match headers.get("sec-fetch-mode") {
            Some(mode) => mode.as_bytes().eq_ignore_ascii_case(b"navigate"),
            None => accept_names("text/html"),
        };
        if navigation {
            ClientKind::Navigation
        } else if accept_names("application/json") {
            ClientKind::Json
        } else {
            ClientKind::Other
        }
    }

    /// Whether an error body should be JSON rather than HTML.
    pub fn wants_json(self) -> bool {
        self == ClientKind::Json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(pairs: &[(&'static str, &'static str)]) -> ClientKind {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        ClientKind::of(&h)
    }

    #[test]
    fn classification_follows_spec() {
        assert_eq!(
            kind(&[("sec-fetch-mode", "navigate")]),
            ClientKind::Navigation
        );
        assert_eq!(
            kind(&[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]),
            ClientKind::Navigation
        );
        // Sec-Fetch-Mode wins over Accept when present.
        assert_eq!(
            kind(&[("sec-fetch-mode", "cors"), ("accept", "text/html")]),
            ClientKind::Other
        );
        assert_eq!(
            kind(&[("sec-fetch-mode", "cors"), ("accept", "application/json")]),
            ClientKind::Json
        );
        assert_eq!(kind(&[("accept", "application/json")]), ClientKind::Json);
        assert_eq!(kind(&[("accept", "*/*")]), ClientKind::Other);
        assert_eq!(kind(&[]), ClientKind::Other);
        assert_eq!(kind(&[("accept", "text/htmlx")]), ClientKind::Other);
    }
}
