//! `[oidc]`: the issuer, the client, scopes and extra request parameters,
//! the end-session endpoint and the front-/back-channel logout settings.
//!
//! Why some rules exist:
//! - `auth_params` and `logout_params` may not set a parameter the gateway
//!   sets itself (`state`, `nonce`, PKCE, `redirect_uri`, …): a configured
//!   value would silently break or weaken the flow.
//! - `openid` is always requested; without it there is no ID token.
//! - `backchannel_require_exp = false` is accepted with a warning, for IdPs
//!   that predate the back-channel logout errata that made `exp` required.

use toml::Spanned;
use url::Url;

use super::V;
use super::table::Section;
use super::values::is_loopback_host;
use crate::config::model::*;
use crate::config::raw::*;

impl V<'_> {
    /// `Some(None)`: absent; `None`: broken.
    pub(super) fn oidc(
        &mut self,
        s: Section<RawOidc>,
        server: Option<&ServerConfig>,
    ) -> Option<Option<OidcConfig>> {
        let t = match s {
            Section::Absent => return Some(None),
            Section::Broken => return None,
            Section::Read(t) => t,
        };
        let r = &t.raw;
        let mut ok = true;
        let insecure_ok = server.map(|s| s.allow_insecure_http);

        let issuer = match &r.issuer {
            None => {
                self.missing(
                    &t.header,
                    t.is_broken("issuer"),
                    "missing key `issuer` in [oidc]",
                );
                None
            }
            Some(v) => self.http_url(v, "issuer", insecure_ok),
        };
        let client_id = match &r.client_id {
            Some(v) if !v.get_ref().is_empty() => Some(v.get_ref().clone()),
            Some(v) => {
                self.sink.error(&v.span(), "client_id must not be empty");
                None
            }
            None => {
                self.missing(
                    &t.header,
                    t.is_broken("client_id"),
                    "missing key `client_id` in [oidc]",
                );
                None
            }
        };
        let client_secret =
            match self.secret(&t, "client_secret", &r.client_secret, &r.client_secret_file) {
                Err(()) => {
                    ok = false;
                    None
                }
                Ok(None) => None,
                Ok(Some((s, span))) => {
                    if s.is_empty() {
                        self.sink.error(
                            &span,
                            "client_secret is empty (leave it out for a public client)",
                        );
                        ok = false;
                    }
                    Some(Secret::new(s))
                }
            };

        let mut scopes = vec!["openid".to_string()];
        if let Some(list) = &r.scopes {
            for s in list.get_ref() {
                let v = s.get_ref();
                if v.is_empty()
                    || v.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
                {
                    self.sink.error(
                        &s.span(),
                        format!("invalid scope `{v}`: one scope per list item, no spaces"),
                    );
                    ok = false;
                } else if !scopes.contains(v) {
                    scopes.push(v.clone());
                }
            }
        } else {
            scopes = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
        }

        const AUTH_RESERVED: &[&str] = &[
            "client_id",
            "redirect_uri",
            "response_type",
            "response_mode",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
        ];
        const LOGOUT_RESERVED: &[&str] = &[
            "id_token_hint",
            "client_id",
            "post_logout_redirect_uri",
            "state",
        ];
        let auth_params = self.params(&r.auth_params, "auth_params", AUTH_RESERVED, &mut ok);
        let logout_params =
            self.params(&r.logout_params, "logout_params", LOGOUT_RESERVED, &mut ok);

        let end_session_endpoint = match &r.end_session_endpoint {
            Some(v) if !v.get_ref().is_empty() => {
                match self.http_url(v, "end_session_endpoint", insecure_ok) {
                    Some(u) => Some(u),
                    None => {
                        ok = false;
                        None
                    }
                }
            }
            _ => None,
        };

        let mut frontchannel_frame_ancestors = Vec::new();
        if let Some(list) = &r.frontchannel_frame_ancestors {
            for s in list.get_ref() {
                let v = s.get_ref();
                if v.is_empty()
                    || v.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == ';' || c == ',')
                {
                    self.sink.error(
                        &s.span(),
                        format!("invalid frame ancestor `{v}`: one CSP source (e.g. \"https://idp.example.com\") per list item"),
                    );
                    ok = false;
                } else {
                    frontchannel_frame_ancestors.push(v.clone());
                }
            }
        }

        let backchannel_require_exp = match &r.backchannel_require_exp {
            Some(b) if !*b.get_ref() => {
                self.sink.warn(
                    &t.key("backchannel_require_exp"),
                    "backchannel_require_exp = false: logout tokens without `exp` are accepted; use only for IdPs that predate the errata",
                );
                false
            }
            _ => true,
        };

        if !ok {
            return None;
        }
        Some(Some(OidcConfig {
            issuer: issuer?,
            client_id: client_id?,
            client_secret,
            scopes,
            auth_params,
            end_session_endpoint,
            logout_params,
            frontchannel_frame_ancestors,
            backchannel_require_exp,
        }))
    }

    fn params(
        &mut self,
        v: &Option<Spanned<Pairs>>,
        key: &str,
        reserved: &[&str],
        ok: &mut bool,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(p) = v {
            for (name, value) in &p.get_ref().0 {
                if reserved.contains(&name.as_str()) {
                    self.sink.error(
                        &value.span(),
                        format!("{key} must not set `{name}`: the gateway sets it"),
                    );
                    *ok = false;
                } else {
                    out.push((name.clone(), value.get_ref().clone()));
                }
            }
        }
        out
    }

    /// An absolute http(s) URL. `insecure_ok`: whether http on a
    /// non-loopback host is allowed (`None`: unknown, do not check).
    pub(super) fn http_url(
        &mut self,
        v: &Str,
        key: &str,
        insecure_ok: Option<bool>,
    ) -> Option<Url> {
        let raw = v.get_ref();
        let url = match Url::parse(raw) {
            Ok(u) => u,
            Err(e) => {
                self.sink
                    .error(&v.span(), format!("invalid URL `{raw}` for {key}: {e}"));
                return None;
            }
        };
        if url.scheme() != "http" && url.scheme() != "https" {
            self.sink.error(
                &v.span(),
                format!(
                    "{key} `{raw}` must be an http or https URL (scheme is `{}`)",
                    url.scheme()
                ),
            );
            return None;
        }
        if url.host_str().is_none() {
            self.sink
                .error(&v.span(), format!("{key} `{raw}` has no host"));
            return None;
        }
        if url.scheme() == "http" && insecure_ok == Some(false) && !is_loopback_host(&url) {
            self.sink.error(
                &v.span(),
                format!(
                    "{key} `{raw}` is http on a non-loopback host; use https (or set allow_insecure_http = true in [server])"
                ),
            );
            return None;
        }
        Some(url)
    }
}
