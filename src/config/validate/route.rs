//! `[[route]]`: each route's prefix, host, upstream, authentication mode,
//! authorisation lists and upstream timeouts.
//!
//! Why some rules exist:
//! - Prefixes are normalised (no trailing `/`, no empty, `.` or `..`
//!   segment, no percent-encoding) so that matching on whole segments is
//!   exact and cannot be steered by how a client spells the path.
//! - A prefix under `/.portcullis/` is refused: the gateway answers there
//!   itself, so the route could never be reached.
//! - `allow_*` on an `auth = "none"` route is an error, not a no-op: it looks
//!   like protection but grants everyone access.
//! - A route host must be one of the public URLs' hosts, or no request could
//!   ever match it.

use std::ops::Range;

use toml::Spanned;
use toml::de::DeValue;
use url::Url;

use super::table::{Section, Table};
use super::{V, Val};
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::route_lint;

impl V<'_> {
    /// Deserializes each `[[route]]` table; the checks come later, in
    /// [`Self::route_models`], once `[server]` and `[oidc]` are known.
    pub(super) fn routes<'i>(
        &mut self,
        header: Range<usize>,
        value: Val<'i>,
    ) -> Option<Vec<(usize, Section<RawRoute>)>> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.sink.error(
                &span,
                "`route` must be an array of tables: write each route as [[route]]",
            );
            return None;
        };
        let mut out = Vec::new();
        if items.is_empty() {
            self.sink
                .error(&header, "no [[route]]: at least one route is required");
            return None;
        }
        for (i, item) in items.iter().enumerate() {
            let label = format!("[[route]] #{}", i + 1);
            let item_header = item.span().start..item.span().start;
            let (s, _) = self.table::<RawRoute>(
                &label,
                &format!("route.{i}"),
                item_header,
                item.clone(),
                &[],
            );
            out.push((i, s));
        }
        Some(out)
    }

    /// Checks every route and warns about one that an earlier route with the
    /// same host and prefix shadows.
    pub(super) fn route_models(
        &mut self,
        routes: Vec<(usize, Section<RawRoute>)>,
        server: Option<&ServerConfig>,
        oidc_present: Option<bool>,
    ) -> Option<Vec<Route>> {
        let mut out = Vec::new();
        let mut ok = true;
        let mut seen: Vec<(Option<String>, String, usize)> = Vec::new();
        for (index, s) in routes {
            let Section::Read(t) = s else {
                ok = false;
                continue;
            };
            match self.route(index, &t, server, oidc_present) {
                Some(route) => {
                    if let Some((_, _, first)) = seen
                        .iter()
                        .find(|(h, p, _)| *h == route.host && *p == route.prefix)
                    {
                        self.sink.warn(
                            &t.key("prefix"),
                            format!(
                                "this route never matches: route #{} has the same host and prefix and comes first",
                                first + 1
                            ),
                        );
                    }
                    seen.push((route.host.clone(), route.prefix.clone(), index));
                    if let Some(session) = route_lint::shadowed_session_route(&out, &route) {
                        self.sink
                            .warn(&t.key("prefix"), route_lint::warning(session));
                    }
                    out.push(route);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn route(
        &mut self,
        index: usize,
        t: &Table<RawRoute>,
        server: Option<&ServerConfig>,
        oidc_present: Option<bool>,
    ) -> Option<Route> {
        let r = &t.raw;
        let label = format!("[[route]] #{}", index + 1);
        let mut ok = true;

        let prefix = match &r.prefix {
            None => {
                self.missing(
                    &t.header,
                    t.is_broken("prefix"),
                    format!("missing key `prefix` in {label} (e.g. \"/\")"),
                );
                None
            }
            Some(p) => self.prefix(p),
        };

        let host = match &r.host {
            None => None,
            Some(h) => {
                let host = h.get_ref().to_ascii_lowercase();
                if let Some(server) = server {
                    let known = server
                        .public_urls
                        .iter()
                        .any(|o| o.host == host || o.authority() == host);
                    if !known {
                        let hosts: Vec<_> =
                            server.public_urls.iter().map(|o| o.authority()).collect();
                        self.sink.error(
                            &h.span(),
                            format!(
                                "route host `{host}` is not the host of any public_url (public hosts: {})",
                                hosts.join(", ")
                            ),
                        );
                        ok = false;
                    }
                }
                Some(host)
            }
        };

        let upstream = match &r.upstream {
            None => {
                self.missing(
                    &t.header,
                    t.is_broken("upstream"),
                    format!("missing key `upstream` in {label} (e.g. \"http://127.0.0.1:3000\")"),
                );
                None
            }
            Some(u) => self.upstream(u),
        };

        let auth = match r.auth.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
            None | Some(("session", _)) => {
                if oidc_present == Some(false) {
                    self.sink.error(
                        &t.key("auth"),
                        format!(
                            "{label} needs a session (auth = \"session\" is the default) but there is no [oidc] section; \
                             add [oidc] and [session], or set auth = \"none\""
                        ),
                    );
                    ok = false;
                }
                Some(AuthMode::Session)
            }
            Some(("none", _)) => Some(AuthMode::None),
            Some((other, span)) => {
                self.sink.error(
                    &span,
                    format!("invalid auth `{other}`: expected one of \"session\", \"none\""),
                );
                None
            }
        };

        let allow_groups =
            self.string_list(&r.allow_groups, "allow_groups", |s| Some(s.to_string()));
        let allow_emails = self.string_list(&r.allow_emails, "allow_emails", |s| {
            let s = s.to_ascii_lowercase();
            (s.contains('@') && !s.starts_with('@') && !s.ends_with('@')).then_some(s)
        });
        let allow_email_domains =
            self.string_list(&r.allow_email_domains, "allow_email_domains", |s| {
                let s = s.trim_start_matches('@').to_ascii_lowercase();
                (!s.is_empty() && !s.contains('@')).then_some(s)
            });
        if auth == Some(AuthMode::None) {
            for key in ["allow_groups", "allow_emails", "allow_email_domains"] {
                if t.keys.contains_key(key) {
                    self.sink.error(
                        &t.key(key),
                        format!("{key} has no effect on an auth = \"none\" route; remove it or use auth = \"session\""),
                    );
                    ok = false;
                }
            }
        }

        let connect_timeout = self.duration(
            &r.connect_timeout,
            "connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
            true,
        );
        let timeout = self.duration(&r.timeout, "timeout", DEFAULT_UPSTREAM_TIMEOUT, true);

        if !ok {
            return None;
        }
        Some(Route {
            index,
            prefix: prefix?,
            host,
            upstream: upstream?,
            auth: auth?,
            allow_groups: allow_groups?,
            allow_emails: allow_emails?,
            allow_email_domains: allow_email_domains?,
            connect_timeout: connect_timeout?,
            timeout: timeout?,
        })
    }

    /// Checks and normalises a route prefix: stored without a trailing `/`,
    /// except the root `/`.
    fn prefix(&mut self, p: &Str) -> Option<String> {
        let raw = p.get_ref();
        if !raw.starts_with('/') {
            self.sink.error(
                &p.span(),
                format!("route prefix `{raw}` must start with `/`"),
            );
            return None;
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/".contains(c);
        if let Some(bad) = raw.chars().find(|c| !allowed(*c)) {
            self.sink.error(
                &p.span(),
                format!(
                    "route prefix `{raw}` contains {bad:?}: only letters, digits and -._~!$&'()*+,;=:@/ are allowed (no percent-encoding, query or fragment)"
                ),
            );
            return None;
        }
        let trimmed = raw.trim_end_matches('/');
        if trimmed
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            self.sink.error(
                &p.span(),
                format!("route prefix `{raw}` has an empty, `.` or `..` segment"),
            );
            return None;
        }
        if crate::paths::is_reserved(trimmed) {
            self.sink.error(
                &p.span(),
                "route prefix is under /.portcullis/, which the gateway reserves; it would never reach the upstream",
            );
            return None;
        }
        Some(if trimmed.is_empty() {
            "/".into()
        } else {
            trimmed.into()
        })
    }

    fn upstream(&mut self, u: &Str) -> Option<Url> {
        let raw = u.get_ref();
        let url = match Url::parse(raw) {
            Ok(url) => url,
            Err(e) => {
                // Echoed only when it cannot hold a password (no `@`).
                let shown = if raw.contains('@') {
                    String::new()
                } else {
                    format!(" `{raw}`")
                };
                self.sink.error(
                    &u.span(),
                    format!(
                        "invalid upstream URL{shown}: {e} (expected e.g. \"http://127.0.0.1:3000\")"
                    ),
                );
                return None;
            }
        };
        // First, so that no message below echoes a password.
        if !url.username().is_empty() || url.password().is_some() {
            self.sink.error(
                &u.span(),
                "upstream URL must not contain a user name or password",
            );
            return None;
        }
        if url.scheme() != "http" && url.scheme() != "https" {
            self.sink.error(
                &u.span(),
                format!(
                    "upstream `{raw}` has scheme `{}`; it must be http or https",
                    url.scheme()
                ),
            );
            return None;
        }
        if url.host_str().is_none() {
            self.sink
                .error(&u.span(), format!("upstream `{raw}` has no host"));
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() {
            self.sink.error(
                &u.span(),
                format!("upstream `{raw}` must not have a query or fragment"),
            );
            return None;
        }
        Some(url)
    }

    /// A list of strings, each checked and mapped by `f` (`None`: invalid).
    fn string_list(
        &mut self,
        v: &Option<Spanned<Vec<Str>>>,
        key: &str,
        f: impl Fn(&str) -> Option<String>,
    ) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut ok = true;
        for item in v.iter().flat_map(|l| l.get_ref()) {
            match f(item.get_ref()) {
                Some(s) => out.push(s),
                None => {
                    self.sink.error(
                        &item.span(),
                        format!("invalid entry `{}` in {key}", item.get_ref()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}
