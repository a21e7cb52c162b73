//! `[logout]`: the logout path, the default and allowed modes, where users
//! land afterwards, token revocation, `Clear-Site-Data` and the silent/popup
//! timeout.
//!
//! Why some rules exist:
//! - `default_return_to` must be a same-origin path or an exact entry of
//!   `allowed_return_to`, so the logout endpoint can never be made an open
//!   redirect; the same-origin test also refuses `//host`, `\` and (encoded)
//!   control characters, which browsers treat as another origin or strip.
//! - The logout path may not be under `/.portcullis/`, which the gateway
//!   reserves for its own endpoints.
//! - `clear_site_data = ["cookies"]` is allowed with a warning: browsers
//!   clear the cookies of the whole registrable domain, other apps' included.

use url::Url;

use super::V;
use super::table::Section;
use crate::config::model::*;
use crate::config::raw::*;

impl V<'_> {
    /// `[logout]`; an absent section means every default.
    pub(super) fn logout(&mut self, s: Section<RawLogout>) -> Option<LogoutConfig> {
        let t = match s {
            Section::Broken => return None,
            Section::Absent => None,
            Section::Read(t) => Some(t),
        };
        let empty = RawLogout::default();
        let r = t.as_ref().map(|t| &t.raw).unwrap_or(&empty);
        let mut ok = true;

        let path = match &r.path {
            None => DEFAULT_LOGOUT_PATH.to_string(),
            Some(p) => {
                let raw = p.get_ref();
                let bad_char = raw
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "?#%\\".contains(c));
                if !raw.starts_with('/') || raw.starts_with("//") || bad_char {
                    self.sink.error(
                        &p.span(),
                        format!(
                            "logout path `{raw}` must be a plain path starting with a single `/`"
                        ),
                    );
                    ok = false;
                } else if crate::paths::is_reserved(raw) {
                    self.sink.error(
                        &p.span(),
                        "logout path must not be under /.portcullis/, which the gateway reserves for its own paths",
                    );
                    ok = false;
                }
                raw.clone()
            }
        };

        let mode_of = |this: &mut Self, s: &Str| -> Option<LogoutMode> {
            let m = LogoutMode::parse(s.get_ref());
            if m.is_none() {
                this.sink.error(
                    &s.span(),
                    format!(
                        "invalid logout mode `{}`: expected one of \"redirect\", \"silent\", \"popup\", \"local\"",
                        s.get_ref()
                    ),
                );
            }
            m
        };
        let mut allowed_modes = Vec::new();
        match &r.allowed_modes {
            None => allowed_modes.extend_from_slice(DEFAULT_ALLOWED_MODES),
            Some(list) => {
                for s in list.get_ref() {
                    match mode_of(self, s) {
                        Some(m) if !allowed_modes.contains(&m) => allowed_modes.push(m),
                        Some(_) => {}
                        None => ok = false,
                    }
                }
            }
        }
        let mode = match &r.mode {
            None => DEFAULT_LOGOUT_MODE,
            Some(s) => match mode_of(self, s) {
                Some(m) => m,
                None => {
                    ok = false;
                    DEFAULT_LOGOUT_MODE
                }
            },
        };
        if ok && !allowed_modes.contains(&mode) {
            let span = r
                .mode
                .as_ref()
                .map(|m| m.span())
                .or_else(|| r.allowed_modes.as_ref().map(|m| m.span()));
            self.sink.error(
                &span.unwrap_or(0..0),
                format!(
                    "logout mode `{}` is not listed in allowed_modes",
                    mode.as_str()
                ),
            );
            ok = false;
        }

        let mut allowed_return_to = Vec::new();
        for s in r.allowed_return_to.iter().flat_map(|l| l.get_ref()) {
            let raw = s.get_ref();
            let good = !raw
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
                && Url::parse(raw).is_ok_and(|u| {
                    (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some()
                });
            if good {
                allowed_return_to.push(raw.clone());
            } else {
                self.sink.error(
                    &s.span(),
                    format!(
                        "allowed_return_to entry `{raw}` must be an absolute http or https URL"
                    ),
                );
                ok = false;
            }
        }

        let default_return_to = match &r.default_return_to {
            None => DEFAULT_RETURN_TO.to_string(),
            Some(s) => {
                let raw = s.get_ref();
                if !(is_same_origin_path(raw) || allowed_return_to.contains(raw)) {
                    self.sink.error(
                        &s.span(),
                        format!(
                            "default_return_to `{raw}` must be a path starting with a single `/` (no `\\` or control characters) or one of allowed_return_to"
                        ),
                    );
                    ok = false;
                }
                raw.clone()
            }
        };

        let revoke_tokens = r.revoke_tokens.as_ref().is_none_or(|b| *b.get_ref());

        let mut clear_site_data = Vec::new();
        match &r.clear_site_data {
            None => clear_site_data.extend_from_slice(DEFAULT_CLEAR_SITE_DATA),
            Some(list) => {
                for s in list.get_ref() {
                    let d = match s.get_ref().as_str() {
                        "storage" => ClearSiteData::Storage,
                        "cache" => ClearSiteData::Cache,
                        "cookies" => {
                            self.sink.warn(
                                &s.span(),
                                "clear_site_data \"cookies\" clears the cookies of every host under the registrable domain, \
                                 the IdP's and other apps' included",
                            );
                            ClearSiteData::Cookies
                        }
                        other => {
                            self.sink.error(
                                &s.span(),
                                format!("invalid clear_site_data `{other}`: expected any of \"storage\", \"cache\", \"cookies\""),
                            );
                            ok = false;
                            continue;
                        }
                    };
                    if !clear_site_data.contains(&d) {
                        clear_site_data.push(d);
                    }
                }
            }
        }

        let silent_timeout = self.duration(
            &r.silent_timeout,
            "silent_timeout",
            DEFAULT_SILENT_TIMEOUT,
            true,
        );
        if !ok {
            return None;
        }
        Some(LogoutConfig {
            path,
            mode,
            allowed_modes,
            default_return_to,
            allowed_return_to,
            revoke_tokens,
            clear_site_data,
            silent_timeout: silent_timeout?,
        })
    }
}

/// A same-origin path as the `return_to` rule accepts it (README, "The
/// final destination").
fn is_same_origin_path(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let encoded_control = (0..0x20u8)
        .chain([0x7f])
        .any(|b| lower.contains(&format!("%{b:02x}")));
    s.starts_with('/')
        && !s.starts_with("//")
        && !s.starts_with("/\\")
        && !s.contains('\\')
        && !lower.contains("%5c")
        && !s.chars().any(char::is_control)
        && !encoded_control
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_paths() {
        assert!(is_same_origin_path("/"));
        assert!(is_same_origin_path("/bye?x=1"));
        assert!(!is_same_origin_path("//evil.example"));
        assert!(!is_same_origin_path("/\\evil.example"));
        assert!(!is_same_origin_path("/a%0d%0a"));
        assert!(!is_same_origin_path("https://evil.example/"));
    }
}
