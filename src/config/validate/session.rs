//! `[session]` and `[session.redis]`: secrets, the session cookie, the idle
//! and absolute lifetimes, and the session store.
//!
//! Why some rules exist:
//! - Secrets must be at least 32 bytes: the session cookie's encryption
//!   keys are derived from them.
//! - The cookie name's `__Host-`/`__Secure-` prefixes, `SameSite=None` and
//!   `cookie_domain` are checked against the public URLs, because browsers
//!   silently drop a cookie that breaks their rules; the failure would show
//!   up only as an endless login loop.
//! - Redis URLs are secrets (they may carry a password) and are never echoed
//!   in a message; Sentinel and Cluster URLs are refused here rather than at
//!   start-up.

use std::ops::Range;

use super::V;
use super::table::Section;
use super::values::MIN_SECRET_BYTES;
use crate::config::model::*;
use crate::config::raw::*;

impl V<'_> {
    /// `Some(None)`: no session needed; `None`: broken.
    pub(super) fn session(
        &mut self,
        s: Section<RawSession>,
        redis: Option<Section<RawRedis>>,
        server: Option<&ServerConfig>,
        oidc_header: Option<Range<usize>>,
        oidc_present: Option<bool>,
    ) -> Option<Option<SessionConfig>> {
        let t = match s {
            Section::Absent => {
                if let Some(h) = oidc_header {
                    self.sink
                        .error(&h, "[oidc] needs a [session] section (at least `secret`)");
                    return None;
                }
                return Some(None);
            }
            Section::Broken => return None,
            Section::Read(t) => t,
        };
        let r = &t.raw;
        let mut ok = true;
        if oidc_present == Some(false) {
            self.sink.warn(
                &t.header,
                "[session] has no effect without [oidc]: no route can have a session",
            );
        }
        let public = server.map(|s| s.public_urls.as_slice());
        let any_http = public.map(|p| p.iter().any(|o| o.scheme == Scheme::Http));
        let first_https = public
            .and_then(|p| p.first())
            .map(|o| o.scheme == Scheme::Https);

        // secret / secret_file
        let mut secrets = Vec::new();
        match (&r.secret, &r.secret_file) {
            (Some(_), Some(f)) => {
                self.sink.error(
                    &t.key("secret_file"),
                    "give either `secret` or `secret_file` in [session], not both",
                );
                let _ = f;
                ok = false;
            }
            (None, None) => {
                self.missing(&t.header, t.is_broken("secret"),
                    format!("missing key `secret` in [session] (≥ {MIN_SECRET_BYTES} bytes; e.g. secret = \"${{PORTCULLIS_SECRET}}\")"),
                );
                ok = false;
            }
            (Some(list), None) => {
                let items = OneOrMany::items(list);
                if items.is_empty() {
                    self.sink
                        .error(&list.span(), "`secret` needs at least one value");
                    ok = false;
                }
                for item in items {
                    secrets.push((item.get_ref().clone(), item.span()));
                }
            }
            (None, Some(f)) => match self.read_secret_file("secret_file", f) {
                Some(text) => {
                    // One secret per line: the first encrypts, any decrypts.
                    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                        secrets.push((line.to_string(), f.span()));
                    }
                    if secrets.is_empty() {
                        self.sink.error(&f.span(), "secret_file is empty");
                        ok = false;
                    }
                }
                None => ok = false,
            },
        }
        for (s, span) in &secrets {
            if s.len() < MIN_SECRET_BYTES {
                self.sink.error(
                    span,
                    format!(
                        "session secret must be at least {MIN_SECRET_BYTES} bytes (it has {}); generate one with `openssl rand -base64 48`",
                        s.len()
                    ),
                );
                ok = false;
            }
        }

        let cookie_domain = match &r.cookie_domain {
            Some(v) if !v.get_ref().is_empty() => {
                let d = v.get_ref().trim_start_matches('.').to_ascii_lowercase();
                if d.is_empty()
                    || d.chars()
                        .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
                {
                    self.sink.error(
                        &v.span(),
                        format!("invalid cookie_domain `{}`: expected a domain name such as \"example.com\"", v.get_ref()),
                    );
                    ok = false;
                } else if let Some(p) = public {
                    for o in p {
                        if !(o.host == d || o.host.ends_with(&format!(".{d}"))) {
                            self.sink.error(
                                &v.span(),
                                format!(
                                    "cookie_domain `{d}` does not cover public_url host `{}`; browsers would reject the cookie there",
                                    o.host
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                Some((d, v.span()))
            }
            _ => None,
        };

        let cookie_name = match &r.cookie_name {
            Some(v) => {
                let name = v.get_ref().clone();
                if name.is_empty() || !name.bytes().all(is_cookie_token) {
                    self.sink.error(
                        &v.span(),
                        format!(
                            "invalid cookie_name `{name}`: letters, digits and !#$%&'*+-.^_`|~ only"
                        ),
                    );
                    ok = false;
                }
                let host = name.starts_with("__Host-");
                if (host || name.starts_with("__Secure-")) && any_http == Some(true) {
                    self.sink.error(
                        &v.span(),
                        format!(
                            "cookie_name `{name}`: the {} prefix needs https, but a public_url is http; browsers would drop the cookie",
                            if host { "__Host-" } else { "__Secure-" }
                        ),
                    );
                    ok = false;
                }
                if host && cookie_domain.is_some() {
                    self.sink.error(
                        &v.span(),
                        "a __Host- cookie cannot have a Domain; with cookie_domain use the __Secure- prefix",
                    );
                    ok = false;
                }
                name
            }
            None => match (first_https, &cookie_domain, any_http) {
                (Some(true), _, Some(false)) if cookie_domain.is_some() => {
                    format!("__Secure-{DEFAULT_COOKIE_NAME}")
                }
                (Some(true), None, Some(false)) => format!("__Host-{DEFAULT_COOKIE_NAME}"),
                _ => DEFAULT_COOKIE_NAME.into(),
            },
        };

        let cookie_samesite = match &r.cookie_samesite {
            None => DEFAULT_SAMESITE,
            Some(v) => match v.get_ref().as_str() {
                "lax" => SameSite::Lax,
                "strict" => SameSite::Strict,
                "none" => {
                    if any_http == Some(true) {
                        self.sink.error(
                            &v.span(),
                            "cookie_samesite = \"none\" needs https (browsers require Secure), but a public_url is http",
                        );
                        ok = false;
                    }
                    SameSite::None
                }
                other => {
                    self.sink.error(
                        &v.span(),
                        format!("invalid cookie_samesite `{other}`: expected one of \"lax\", \"strict\", \"none\""),
                    );
                    ok = false;
                    DEFAULT_SAMESITE
                }
            },
        };

        let persistent = r.persistent.as_ref().is_some_and(|b| *b.get_ref());
        let idle_timeout =
            self.duration(&r.idle_timeout, "idle_timeout", DEFAULT_IDLE_TIMEOUT, true);
        let max_lifetime =
            self.duration(&r.max_lifetime, "max_lifetime", DEFAULT_MAX_LIFETIME, true);
        if let (Some(i), Some(m)) = (idle_timeout, max_lifetime)
            && i > m
        {
            self.sink.warn(
                &t.key("idle_timeout"),
                "idle_timeout is longer than max_lifetime, so it never applies",
            );
        }

        let store = match r.store.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("memory", _)) => {
                if let Some(Section::Read(rt)) = &redis {
                    self.sink.warn(
                        &rt.header,
                        "[session.redis] is ignored because store is not \"redis\"",
                    );
                }
                Some(StoreConfig::Memory)
            }
            Some(("redis", span)) => match redis {
                None | Some(Section::Absent) => {
                    self.sink.error(
                        &span,
                        "store = \"redis\" needs a [session.redis] section with `url`",
                    );
                    None
                }
                Some(Section::Broken) => None,
                Some(Section::Read(rt)) => self.redis(rt).map(StoreConfig::Redis),
            },
            Some((other, span)) => {
                self.sink.error(
                    &span,
                    format!("invalid store `{other}`: expected one of \"memory\", \"redis\""),
                );
                None
            }
        };

        if !ok {
            return None;
        }
        if oidc_present == Some(false) {
            return Some(None);
        }
        Some(Some(SessionConfig {
            secrets: secrets.into_iter().map(|(s, _)| Secret::new(s)).collect(),
            cookie_name,
            cookie_domain: cookie_domain.map(|(d, _)| d),
            cookie_samesite,
            persistent,
            idle_timeout: idle_timeout?,
            max_lifetime: max_lifetime?,
            store: store?,
        }))
    }
}

/// RFC 6265 `token` characters.
fn is_cookie_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
