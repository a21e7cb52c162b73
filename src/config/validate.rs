//! From TOML text to the validated [`Config`]: parse (spanned), expand
//! `${ENV}`, deserialize each table on its own, then check every rule,
//! collecting every problem rather than stopping at the first.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use url::Url;

use super::diag::{Diagnostic, Location, Sink};
use super::model::*;
use super::raw::*;

/// What validation produced: the config when there were no errors, every
/// diagnostic, and where each listen address was written.
pub(crate) struct Outcome {
    pub config: Option<Config>,
    pub diagnostics: Vec<Diagnostic>,
    pub listen_locations: Vec<(SocketAddr, Location)>,
}

/// Validates `src` (the text of the file at `path`).
pub(crate) fn run(path: &Path, src: &str, env: &dyn Fn(&str) -> Option<String>) -> Outcome {
    let mut v = V {
        sink: Sink::new(path, src),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        listen_locations: Vec::new(),
        broken_keys: Vec::new(),
    };
    let config = match toml::de::DeTable::parse(src) {
        Ok(root) => {
            let span = root.span();
            let mut root = root.into_inner();
            super::env::expand_table(&mut root, env, &mut v.sink, "", &mut v.broken_keys);
            v.document(root, span)
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            v.sink.error(
                &span,
                format!("TOML syntax error: {}", e.message().trim_end()),
            );
            None
        }
    };
    let failed = v.sink.has_errors();
    v.sink.diagnostics.sort_by_key(|d| (d.line, d.column));
    Outcome {
        config: if failed { None } else { config },
        diagnostics: v.sink.diagnostics,
        listen_locations: v.listen_locations,
    }
}

/// A deserialized table with the spans needed to point at its keys.
struct Table<T> {
    raw: T,
    /// Span of the table's name (`server` in `[server]`).
    header: Range<usize>,
    /// Span of each key present.
    keys: HashMap<String, Range<usize>>,
    /// Keys whose value was already reported as wrong and dropped.
    broken: Vec<String>,
}

impl<T> Table<T> {
    /// The key's span, or the table header's when the key is absent.
    fn key(&self, name: &str) -> Range<usize> {
        self.keys.get(name).cloned().unwrap_or(self.header.clone())
    }

    /// Whether the key was given but already reported as wrong.
    fn is_broken(&self, name: &str) -> bool {
        self.broken.iter().any(|b| b == name)
    }
}

/// A table that was absent, broken (already reported), or read.
enum Section<T> {
    Absent,
    Broken,
    Read(Table<T>),
}

/// Validation state.
struct V<'a> {
    sink: Sink<'a>,
    /// Directory relative `_file` and TLS paths are resolved against.
    dir: PathBuf,
    listen_locations: Vec<(SocketAddr, Location)>,
    /// Dotted paths of keys already reported and removed (so they are not
    /// also reported as missing).
    broken_keys: Vec<String>,
}

type Val<'i> = Spanned<DeValue<'i>>;

impl V<'_> {
    fn document(&mut self, mut root: DeTable<'_>, doc_span: Range<usize>) -> Option<Config> {
        let mut found: HashMap<&'static str, (Range<usize>, Val<'_>)> = HashMap::new();
        let keys: Vec<_> = root.keys().cloned().collect();
        for key in keys {
            let Some(value) = root.remove(&key) else {
                continue;
            };
            match SECTIONS.iter().find(|s| **s == key.get_ref().as_ref()) {
                Some(name) => {
                    found.insert(name, (key.span(), value));
                }
                None => self.unknown_key(&key, "at the top level", SECTIONS),
            }
        }
        let mut take = |name: &str| found.remove(name);

        let (server, tls) = match take("server") {
            Some((h, val)) => {
                let (s, mut subs) = self.table::<RawServer>("[server]", "server", h, val, &["tls"]);
                let tls = subs.remove("tls").map(|(h, val)| {
                    self.table::<RawTls>("[server.tls]", "server.tls", h, val, &[])
                        .0
                });
                (s, tls)
            }
            None => {
                self.sink.error(
                    &(0..0),
                    "missing [server] section (it needs at least `listen` and `public_url`)",
                );
                (Section::Broken, None)
            }
        };
        let oidc = match take("oidc") {
            Some((h, val)) => self.table::<RawOidc>("[oidc]", "oidc", h, val, &[]).0,
            None => Section::Absent,
        };
        let (session, redis) = match take("session") {
            Some((h, val)) => {
                let (s, mut subs) =
                    self.table::<RawSession>("[session]", "session", h, val, &["redis"]);
                let redis = subs.remove("redis").map(|(h, val)| {
                    self.table::<RawRedis>("[session.redis]", "session.redis", h, val, &[])
                        .0
                });
                (s, redis)
            }
            None => (Section::Absent, None),
        };
        let routes = match take("route") {
            Some((h, val)) => self.routes(h, val),
            None => {
                self.sink.error(
                    &(doc_span.end..doc_span.end),
                    "no [[route]]: at least one route is required",
                );
                None
            }
        };
        let headers = match take("headers") {
            Some((h, val)) => {
                self.table::<RawHeaders>("[headers]", "headers", h, val, &[])
                    .0
            }
            None => Section::Absent,
        };
        let logout = match take("logout") {
            Some((h, val)) => self.table::<RawLogout>("[logout]", "logout", h, val, &[]).0,
            None => Section::Absent,
        };

        let server = self.server(server, tls);
        let oidc_present = match &oidc {
            Section::Absent => Some(false),
            Section::Broken => None,
            Section::Read(_) => Some(true),
        };
        let oidc_header = match &oidc {
            Section::Read(t) => Some(t.header.clone()),
            _ => None,
        };
        let oidc = self.oidc(oidc, server.as_ref());
        let session = self.session(session, redis, server.as_ref(), oidc_header, oidc_present);
        let routes = routes.map(|r| self.route_models(r, server.as_ref(), oidc_present));
        let headers = self.headers(headers);
        let logout = self.logout(logout);

        Some(Config {
            server: server?,
            oidc: oidc?,
            session: session?,
            routes: routes??,
            headers: headers?,
            logout: logout?,
        })
    }

    // ----- generic table handling -----

    fn unknown_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        where_: &str,
        valid: &[&str],
    ) {
        let name = key.get_ref().as_ref();
        let mut msg = format!("unknown key `{name}` {where_}");
        if let Some(best) = closest(name, valid) {
            msg.push_str(&format!("; did you mean `{best}`?"));
        }
        self.sink.error(&key.span(), msg);
    }

    /// Deserializes one table, reporting unknown keys and type errors.
    /// Sub-tables named in `subs` are returned undeserialized.
    #[allow(clippy::type_complexity)]
    fn table<'i, T: DeserializeOwned>(
        &mut self,
        label: &str,
        path: &str,
        header: Range<usize>,
        value: Val<'i>,
        subs: &[&str],
    ) -> (Section<T>, HashMap<String, (Range<usize>, Val<'i>)>) {
        let mut sub_values = HashMap::new();
        let span = value.span();
        let DeValue::Table(mut table) = value.into_inner() else {
            self.sink.error(
                &span,
                format!("{label} must be a table, not a single value"),
            );
            return (Section::Broken, sub_values);
        };
        let fields = field_names::<T>();
        let mut valid: Vec<&str> = fields.to_vec();
        valid.extend_from_slice(subs);
        let mut keys = HashMap::new();
        let names: Vec<_> = table.keys().cloned().collect();
        for key in names {
            let name: &str = key.get_ref().as_ref();
            if subs.contains(&name) {
                if let Some(v) = table.remove(&key) {
                    sub_values.insert(name.to_string(), (key.span(), v));
                }
            } else if !fields.contains(&name) {
                self.unknown_key(&key, &format!("in {label}"), &valid);
                table.remove(&key);
            } else {
                keys.insert(name.to_string(), key.span());
            }
        }
        let mut broken: Vec<String> = self
            .broken_keys
            .iter()
            .filter_map(|p| p.strip_prefix(path)?.strip_prefix('.'))
            .filter(|k| !k.contains('.'))
            .map(str::to_string)
            .collect();
        // On a type error, report it, drop that key and try again, so one
        // wrong value does not hide the problems of the rest of the table.
        loop {
            let value_spans: Vec<(String, Range<usize>)> = table
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), v.span()))
                .collect();
            let de =
                ValueDeserializer::from(Spanned::new(span.clone(), DeValue::Table(table.clone())));
            let e = match T::deserialize(de) {
                Ok(raw) => {
                    let t = Table {
                        raw,
                        header,
                        keys,
                        broken,
                    };
                    return (Section::Read(t), sub_values);
                }
                Err(e) => e,
            };
            let at = e.span().unwrap_or(span.clone());
            let key = value_spans
                .iter()
                .find(|(_, s)| s.start <= at.start && at.start < s.end.max(s.start + 1))
                .map(|(k, _)| k.clone());
            let msg = e.message().trim_end();
            match key {
                Some(k) => {
                    self.sink.error(&at, format!("`{k}` in {label}: {msg}"));
                    let found = table
                        .keys()
                        .find(|n| n.get_ref().as_ref() == k.as_str())
                        .cloned();
                    if let Some(name) = found {
                        table.remove(&name);
                    }
                    broken.push(k);
                }
                None => {
                    self.sink.error(&at, format!("{label}: {msg}"));
                    return (Section::Broken, sub_values);
                }
            }
        }
    }

    // ----- [server] -----

    fn server(
        &mut self,
        s: Section<RawServer>,
        tls: Option<Section<RawTls>>,
    ) -> Option<ServerConfig> {
        let tls = match tls {
            None | Some(Section::Absent) => Some(None),
            Some(Section::Broken) => None,
            Some(Section::Read(t)) => self.tls(t).map(Some),
        };
        let Section::Read(t) = s else {
            return None;
        };
        let r = &t.raw;
        let mut ok = true;

        let allow_insecure_http = r.allow_insecure_http.as_ref().is_some_and(|b| *b.get_ref());
        if allow_insecure_http {
            self.sink.warn(
                &t.key("allow_insecure_http"),
                "allow_insecure_http = true: session cookies may travel in clear text over http",
            );
        }

        let mut listen = Vec::new();
        match &r.listen {
            None => {
                self.missing(
                    &t.header,
                    t.is_broken("listen"),
                    "missing key `listen` in [server] (e.g. \"127.0.0.1:8080\")",
                );
                ok = false;
            }
            Some(l) => {
                let items = OneOrMany::items(l);
                if items.is_empty() {
                    self.sink
                        .error(&l.span(), "`listen` needs at least one address");
                    ok = false;
                }
                for item in items {
                    match self.socket_addr(&item, "listen") {
                        Some(a) if listen.contains(&a) => {
                            self.sink
                                .error(&item.span(), format!("listen address {a} is given twice"));
                            ok = false;
                        }
                        Some(a) => {
                            let loc = self.sink.location(item.span().start);
                            self.listen_locations.push((a, loc));
                            listen.push(a);
                        }
                        None => ok = false,
                    }
                }
            }
        }

        let mut public_urls = Vec::new();
        match &r.public_url {
            None => {
                self.missing(&t.header, t.is_broken("public_url"),
                    "missing key `public_url` in [server] (the origin browsers use, e.g. \"https://app.example.com\")",
                );
                ok = false;
            }
            Some(l) => {
                let items = OneOrMany::items(l);
                if items.is_empty() {
                    self.sink
                        .error(&l.span(), "`public_url` needs at least one URL");
                    ok = false;
                }
                for item in items {
                    match self.public_origin(&item, allow_insecure_http) {
                        Some(o)
                            if public_urls
                                .iter()
                                .any(|p: &PublicOrigin| p.origin == o.origin) =>
                        {
                            self.sink.error(
                                &item.span(),
                                format!("public_url {} is given twice", o.origin),
                            );
                            ok = false;
                        }
                        Some(o) => public_urls.push(o),
                        None => ok = false,
                    }
                }
            }
        }

        let admin_listen = match &r.admin_listen {
            None => None,
            Some(a) => match self.socket_addr(a, "admin_listen") {
                Some(addr) if !addr.ip().is_loopback() => {
                    self.sink.error(
                        &a.span(),
                        format!(
                            "admin_listen {addr} is not a loopback address: the admin listener has no TLS yet, \
                             so the admin API token and metrics would cross the network in clear text; \
                             listen on 127.0.0.1 or ::1 (and put a TLS proxy in front if needed)"
                        ),
                    );
                    ok = false;
                    None
                }
                Some(addr) if listen.contains(&addr) => {
                    self.sink.error(
                        &a.span(),
                        format!("admin_listen {addr} is also a `listen` address"),
                    );
                    ok = false;
                    None
                }
                Some(addr) => {
                    let loc = self.sink.location(a.span().start);
                    self.listen_locations.push((addr, loc));
                    Some(addr)
                }
                None => {
                    ok = false;
                    None
                }
            },
        };

        let admin_token = match self.secret(&t, "admin_token", &r.admin_token, &r.admin_token_file)
        {
            Err(()) => {
                ok = false;
                None
            }
            Ok(None) => None,
            Ok(Some((token, span))) => {
                if token.len() < 32 {
                    self.sink.error(
                        &span,
                        format!(
                            "admin_token must be at least 32 bytes (it has {}); generate one with `openssl rand -base64 32`",
                            token.len()
                        ),
                    );
                    ok = false;
                }
                if admin_listen.is_none() && r.admin_listen.is_none() {
                    self.sink.warn(
                        &span,
                        "admin_token is set but admin_listen is not, so there is no admin API",
                    );
                }
                Some(Secret::new(token))
            }
        };

        let mut trusted_proxies = Vec::new();
        if let Some(list) = &r.trusted_proxies {
            for item in list.get_ref() {
                match parse_cidr(item.get_ref()) {
                    Some(net) => trusted_proxies.push(net),
                    None => {
                        self.sink.error(
                            &item.span(),
                            format!(
                                "invalid CIDR `{}` in trusted_proxies: expected an address range such as \"10.0.0.0/8\" or \"fd00::/8\", or a single IP address",
                                item.get_ref()
                            ),
                        );
                        ok = false;
                    }
                }
            }
        }

        let header_read_timeout = self.duration(
            &r.header_read_timeout,
            "header_read_timeout",
            Duration::from_secs(10),
            true,
        );
        let shutdown_timeout = self.duration(
            &r.shutdown_timeout,
            "shutdown_timeout",
            Duration::from_secs(30),
            false,
        );
        let max_header_bytes = match &r.max_header_bytes {
            None => Some(65536),
            Some(n) => match usize::try_from(*n.get_ref()) {
                // hyper's HTTP/1 reader needs at least 8 KiB of buffer.
                Ok(n) if (8192..=1 << 24).contains(&n) => Some(n),
                _ => {
                    self.sink.error(
                        &n.span(),
                        "max_header_bytes must be between 8192 and 16777216",
                    );
                    None
                }
            },
        };

        let workers = match &r.workers {
            None => Some(0),
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if n <= 1024 => Some(n),
                _ => {
                    self.sink.error(
                        &n.span(),
                        "workers must be between 0 (one per CPU core) and 1024",
                    );
                    None
                }
            },
        };

        if !ok {
            return None;
        }
        Some(ServerConfig {
            listen,
            public_urls,
            admin_listen,
            admin_token,
            trusted_proxies,
            allow_insecure_http,
            tls: tls?,
            header_read_timeout: header_read_timeout?,
            max_header_bytes: max_header_bytes?,
            shutdown_timeout: shutdown_timeout?,
            workers: workers?,
        })
    }

    fn tls(&mut self, t: Table<RawTls>) -> Option<TlsConfig> {
        let cert = self.readable_path(&t, "cert", &t.raw.cert);
        let key = self.readable_path(&t, "key", &t.raw.key);
        Some(TlsConfig {
            cert: cert?,
            key: key?,
        })
    }

    /// A required path to a file that must be readable now.
    fn readable_path<T>(&mut self, t: &Table<T>, key: &str, v: &Option<Str>) -> Option<PathBuf> {
        let Some(v) = v else {
            self.missing(
                &t.header,
                t.is_broken(key),
                format!("missing key `{key}` in [server.tls] (a PEM file)"),
            );
            return None;
        };
        let path = self.dir.join(v.get_ref());
        match std::fs::File::open(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                self.sink.error(
                    &v.span(),
                    format!("cannot read {key} `{}`: {e}", path.display()),
                );
                None
            }
        }
    }

    fn public_origin(&mut self, item: &Str, allow_insecure_http: bool) -> Option<PublicOrigin> {
        let raw = item.get_ref();
        let span = item.span();
        let url = match Url::parse(raw) {
            Ok(u) => u,
            Err(e) => {
                self.sink.error(
                    &span,
                    format!("invalid public_url `{raw}`: {e} (expected e.g. \"https://app.example.com\")"),
                );
                return None;
            }
        };
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                self.sink.error(
                    &span,
                    format!("public_url `{raw}` has scheme `{other}`; it must be http or https"),
                );
                return None;
            }
        };
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            self.sink.error(
                &span,
                format!("public_url `{raw}` must be an origin (scheme://host[:port]) without a path, query or fragment"),
            );
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            self.sink
                .error(&span, "public_url must not contain a user name or password");
            return None;
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            self.sink
                .error(&span, format!("public_url `{raw}` has no host"));
            return None;
        };
        if scheme == Scheme::Http && !allow_insecure_http && !is_loopback_host(&url) {
            self.sink.error(
                &span,
                format!(
                    "public_url `{raw}` is http on a non-loopback host: session cookies would travel in clear text; \
                     use https, or set allow_insecure_http = true if TLS is terminated elsewhere on a trusted network"
                ),
            );
            return None;
        }
        Some(PublicOrigin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            origin: url.origin().ascii_serialization(),
        })
    }

    // ----- [oidc] -----

    /// `Some(None)`: absent; `None`: broken.
    fn oidc(
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
            scopes.push("email".into());
            scopes.push("profile".into());
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
    fn http_url(&mut self, v: &Str, key: &str, insecure_ok: Option<bool>) -> Option<Url> {
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

    // ----- [session] -----

    /// `Some(None)`: no session needed; `None`: broken.
    fn session(
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
                    "missing key `secret` in [session] (≥ 32 bytes; e.g. secret = \"${PORTCULLIS_SECRET}\")",
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
            if s.len() < 32 {
                self.sink.error(
                    span,
                    format!(
                        "session secret must be at least 32 bytes (it has {}); generate one with `openssl rand -base64 48`",
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
                    "__Secure-portcullis".into()
                }
                (Some(true), None, Some(false)) => "__Host-portcullis".into(),
                _ => "portcullis".into(),
            },
        };

        let cookie_samesite = match &r.cookie_samesite {
            None => SameSite::Lax,
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
                    SameSite::Lax
                }
            },
        };

        let persistent = r.persistent.as_ref().is_some_and(|b| *b.get_ref());
        let idle_timeout = self.duration(
            &r.idle_timeout,
            "idle_timeout",
            Duration::from_secs(30 * 60),
            true,
        );
        let max_lifetime = self.duration(
            &r.max_lifetime,
            "max_lifetime",
            Duration::from_secs(12 * 3600),
            true,
        );
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

    fn redis(&mut self, t: Table<RawRedis>) -> Option<RedisConfig> {
        let r = &t.raw;
        let url = match self.secret(&t, "url", &r.url, &r.url_file) {
            Err(()) => None,
            Ok(None) => {
                self.missing(
                    &t.header,
                    t.is_broken("url"),
                    "missing key `url` in [session.redis] (e.g. \"redis://127.0.0.1:6379/0\")",
                );
                None
            }
            Ok(Some((u, span))) => {
                // The URL may carry a password: never echo it.
                // What the store can connect to; Sentinel and Cluster
                // need other clients and are refused here rather than at
                // start-up.
                const SCHEMES: &[&str] = &["redis", "rediss", "redis+unix", "unix"];
                match Url::parse(&u) {
                    Ok(parsed) if SCHEMES.contains(&parsed.scheme()) => Some(Secret::new(u)),
                    Ok(parsed) => {
                        let not_yet = if parsed.scheme().contains("sentinel")
                            || parsed.scheme().contains("cluster")
                        {
                            " (Redis Sentinel and Cluster are not supported yet)"
                        } else {
                            ""
                        };
                        self.sink.error(
                            &span,
                            format!(
                                "Redis URL scheme `{}` is not supported{not_yet}: expected one of {}",
                                parsed.scheme(),
                                SCHEMES.join(", ")
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        self.sink.error(&span, format!("invalid Redis URL: {e}"));
                        None
                    }
                }
            }
        };
        let cache_ttl = self.duration(&r.cache_ttl, "cache_ttl", Duration::from_secs(5), false);
        Some(RedisConfig {
            url: url?,
            cache_ttl: cache_ttl?,
        })
    }

    // ----- [[route]] -----

    fn routes<'i>(
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

    fn route_models(
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
            Duration::from_secs(5),
            true,
        );
        let timeout = self.duration(&r.timeout, "timeout", Duration::from_secs(60), true);

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
        if trimmed == "/.portcullis" || trimmed.starts_with("/.portcullis/") {
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
                self.sink.error(
                    &u.span(),
                    format!("invalid upstream URL `{raw}`: {e} (expected e.g. \"http://127.0.0.1:3000\")"),
                );
                return None;
            }
        };
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
        if !url.username().is_empty() || url.password().is_some() {
            self.sink.error(
                &u.span(),
                "upstream URL must not contain a user name or password",
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

    // ----- [headers] -----

    fn headers(&mut self, s: Section<RawHeaders>) -> Option<HeadersConfig> {
        let t = match s {
            Section::Broken => return None,
            Section::Absent => None,
            Section::Read(t) => Some(t),
        };
        let empty = RawHeaders::default();
        let r = t.as_ref().map(|t| &t.raw).unwrap_or(&empty);
        let mut seen: Vec<http::HeaderName> = Vec::new();
        let mut ok = true;
        let mut header = |this: &mut Self,
                          v: &Option<Str>,
                          key: &str,
                          default: &str|
         -> Option<http::HeaderName> {
            let (raw, span) = match v {
                None => (default.to_string(), None),
                Some(s) if s.get_ref().is_empty() => return None,
                Some(s) => (s.get_ref().clone(), Some(s.span())),
            };
            let name = match http::HeaderName::from_bytes(raw.as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    this.sink.error(
                        &span.unwrap_or(0..0),
                        format!("invalid header name `{raw}` for {key}"),
                    );
                    ok = false;
                    return None;
                }
            };
            const RESERVED: &[&str] = &[
                "host",
                "cookie",
                "set-cookie",
                "authorization",
                "proxy-authorization",
                "content-length",
                "content-type",
                "transfer-encoding",
                "connection",
                "upgrade",
                "te",
                "trailer",
                "keep-alive",
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-real-ip",
                "x-forwarded-access-token",
            ];
            if RESERVED.contains(&name.as_str()) {
                this.sink.error(
                    &span.clone().unwrap_or(0..0),
                    format!("{key} cannot be `{raw}`: the gateway manages that header itself"),
                );
                ok = false;
                return None;
            }
            if seen.contains(&name) {
                this.sink.error(
                    &span.unwrap_or(0..0),
                    format!("header `{raw}` is used for two identity values"),
                );
                ok = false;
                return None;
            }
            seen.push(name.clone());
            Some(name)
        };
        let user = header(self, &r.user, "user", "X-Forwarded-User");
        let email = header(self, &r.email, "email", "X-Forwarded-Email");
        let preferred_username = header(
            self,
            &r.preferred_username,
            "preferred_username",
            "X-Forwarded-Preferred-Username",
        );
        let groups = header(self, &r.groups, "groups", "X-Forwarded-Groups");
        let flag =
            |b: &Option<Spanned<bool>>, default: bool| b.as_ref().map_or(default, |b| *b.get_ref());
        if !ok {
            return None;
        }
        Some(HeadersConfig {
            user,
            email,
            require_verified_email: flag(&r.require_verified_email, true),
            preferred_username,
            groups,
            access_token: flag(&r.access_token, false),
            authorization: flag(&r.authorization, false),
        })
    }

    // ----- [logout] -----

    fn logout(&mut self, s: Section<RawLogout>) -> Option<LogoutConfig> {
        let t = match s {
            Section::Broken => return None,
            Section::Absent => None,
            Section::Read(t) => Some(t),
        };
        let empty = RawLogout::default();
        let r = t.as_ref().map(|t| &t.raw).unwrap_or(&empty);
        let mut ok = true;

        let path = match &r.path {
            None => "/logout".to_string(),
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
                } else if raw == "/.portcullis" || raw.starts_with("/.portcullis/") {
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
            None => allowed_modes.extend([
                LogoutMode::Redirect,
                LogoutMode::Silent,
                LogoutMode::Popup,
                LogoutMode::Local,
            ]),
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
            None => LogoutMode::Redirect,
            Some(s) => match mode_of(self, s) {
                Some(m) => m,
                None => {
                    ok = false;
                    LogoutMode::Redirect
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
            None => "/".to_string(),
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
            None => clear_site_data.push(ClearSiteData::Storage),
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
            Duration::from_secs(5),
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

    // ----- shared helpers -----

    /// Reports a missing key, unless it was given and already reported.
    fn missing(&mut self, header: &Range<usize>, broken: bool, message: impl Into<String>) {
        if !broken {
            self.sink.error(header, message);
        }
    }

    fn duration(
        &mut self,
        v: &Option<Str>,
        key: &str,
        default: Duration,
        nonzero: bool,
    ) -> Option<Duration> {
        let Some(v) = v else {
            return Some(default);
        };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if nonzero && d.is_zero() => {
                self.sink
                    .error(&v.span(), format!("{key} must be longer than zero"));
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                self.sink.error(
                    &v.span(),
                    format!(
                        "invalid duration `{}` for {key}: expected a number and a unit, such as \"30s\", \"15m\", \"12h\" (units: ms, s, m, h, d)",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn socket_addr(&mut self, v: &Str, key: &str) -> Option<SocketAddr> {
        match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.sink.error(
                    &v.span(),
                    format!(
                        "invalid {key} address `{}`: expected IP:port such as \"127.0.0.1:8080\" or \"[::1]:8080\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A secret given as `key` or `key_file`; `Ok(None)` when neither.
    fn secret<T>(
        &mut self,
        t: &Table<T>,
        key: &str,
        value: &Option<Str>,
        file: &Option<Str>,
    ) -> Result<Option<(String, Range<usize>)>, ()> {
        match (value, file) {
            (Some(_), Some(_)) => {
                self.sink.error(
                    &t.key(&format!("{key}_file")),
                    format!("give either `{key}` or `{key}_file`, not both"),
                );
                Err(())
            }
            (Some(v), None) => Ok(Some((v.get_ref().clone(), v.span()))),
            (None, Some(f)) => match self.read_secret_file(&format!("{key}_file"), f) {
                Some(s) => Ok(Some((s, f.span()))),
                None => Err(()),
            },
            (None, None) => Ok(None),
        }
    }

    /// Reads a `<key>_file` secret: relative paths are against the config
    /// file's directory; trailing newlines are dropped.
    fn read_secret_file(&mut self, key: &str, f: &Str) -> Option<String> {
        let path = self.dir.join(f.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => {
                self.sink.error(
                    &f.span(),
                    format!("cannot read {key} `{}`: {e}", path.display()),
                );
                None
            }
        }
    }
}

/// The closest valid name, if one is close enough to be a likely typo
/// (edit distance with transpositions, at most a third of the name).
fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (strsim::osa_distance(name, v), *v))
        .filter(|(d, v)| *d <= (v.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// RFC 6265 `token` characters.
fn is_cookie_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A same-origin path as SPEC's return_to rule accepts it.
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
    fn closest_suggests_typos_only() {
        assert_eq!(closest("listn", &["listen", "public_url"]), Some("listen"));
        assert_eq!(closest("zzz", &["listen", "public_url"]), None);
    }

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
