//! `[server]`, `[server.tls]` and `[server.admin_tls]`: listeners, public origins, the admin
//! listener and token, trusted proxies, TLS files and the connection limits.
//!
//! Why some rules exist:
//! - An `http` public URL on a non-loopback host is refused unless
//!   `allow_insecure_http` says TLS ends elsewhere: the session cookie would
//!   otherwise cross the network in clear text.
//! - `admin_listen` may be any address (probes and scrapes reach a pod by
//!   its IP), but the admin API's token must not cross a network in clear
//!   text: off loopback the API needs `[server.admin_tls]`, else it is off
//!   there and a configured token gets a warning.
//! - `max_header_bytes` has a floor of 8 KiB because hyper's HTTP/1 reader
//!   needs at least that much buffer.
//! - TLS files are opened now, so a typo fails `check` rather than start-up.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use url::Url;

use super::V;
use super::table::{Section, Table};
use super::values::{MIN_SECRET_BYTES, is_loopback_host};
use crate::config::model::*;
use crate::config::raw::*;

/// Smallest `max_header_bytes`: hyper's HTTP/1 reader needs at least 8 KiB
/// of buffer.
const MIN_MAX_HEADER_BYTES: usize = 8192;

/// Largest `max_header_bytes` (16 MiB): far above any real request head, a
/// bound on what a mistyped value can make one connection cost.
const MAX_MAX_HEADER_BYTES: usize = 1 << 24;

/// Most serving threads; more than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;

impl V<'_> {
    /// `[server]` with its `[server.tls]`; `None` when anything is wrong.
    pub(super) fn server(
        &mut self,
        s: Section<RawServer>,
        tls: Option<Section<RawTls>>,
        admin_tls: Option<Section<RawTls>>,
    ) -> Option<ServerConfig> {
        let mut tls_section = |t: Option<Section<RawTls>>, label: &str| match t {
            None | Some(Section::Absent) => Some(None),
            Some(Section::Broken) => None,
            Some(Section::Read(t)) => self.tls(t, label).map(Some),
        };
        let tls = tls_section(tls, "[server.tls]");
        let admin_tls = tls_section(admin_tls, "[server.admin_tls]");
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
                if token.len() < MIN_SECRET_BYTES {
                    self.sink.error(
                        &span,
                        format!(
                            "admin_token must be at least {MIN_SECRET_BYTES} bytes (it has {}); generate one with `openssl rand -base64 32`",
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
                let plain = matches!(admin_tls, Some(None));
                if plain && admin_listen.is_some_and(|a: SocketAddr| !a.ip().is_loopback()) {
                    self.sink.warn(
                        &span,
                        "admin API disabled on a non-loopback listener without [server.admin_tls]: \
                         admin_listen serves /healthz, /readyz and /metrics only; add [server.admin_tls] \
                         (cert, key) to serve the admin API there, or listen on 127.0.0.1",
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
            DEFAULT_HEADER_READ_TIMEOUT,
            true,
        );
        let shutdown_timeout = self.duration(
            &r.shutdown_timeout,
            "shutdown_timeout",
            DEFAULT_SHUTDOWN_TIMEOUT,
            false,
        );
        let max_header_bytes = match &r.max_header_bytes {
            None => Some(DEFAULT_MAX_HEADER_BYTES),
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if (MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&n) => Some(n),
                _ => {
                    self.sink.error(
                        &n.span(),
                        format!("max_header_bytes must be between {MIN_MAX_HEADER_BYTES} and {MAX_MAX_HEADER_BYTES}"),
                    );
                    None
                }
            },
        };

        let workers = match &r.workers {
            None => Some(DEFAULT_WORKERS),
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if n <= MAX_WORKERS => Some(n),
                _ => {
                    self.sink.error(
                        &n.span(),
                        format!("workers must be between 0 (one per CPU core) and {MAX_WORKERS}"),
                    );
                    None
                }
            },
        };

        let idle_timeout = self.duration(
            &r.idle_timeout,
            "idle_timeout",
            DEFAULT_SERVER_IDLE_TIMEOUT,
            true,
        );
        let max_connections = match &r.max_connections {
            None => Some(DEFAULT_MAX_CONNECTIONS),
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => Some(n),
                _ => {
                    self.sink.error(
                        &n.span(),
                        format!("max_connections must be between 1 and {MAX_MAX_CONNECTIONS}"),
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
            admin_tls: admin_tls?,
            header_read_timeout: header_read_timeout?,
            max_header_bytes: max_header_bytes?,
            shutdown_timeout: shutdown_timeout?,
            workers: workers?,
            idle_timeout: idle_timeout?,
            max_connections: max_connections?,
        })
    }

    fn tls(&mut self, t: Table<RawTls>, section: &str) -> Option<TlsConfig> {
        let cert = self.readable_path(&t, section, "cert", &t.raw.cert);
        let key = self.readable_path(&t, section, "key", &t.raw.key);
        Some(TlsConfig {
            cert: cert?,
            key: key?,
        })
    }

    /// A required path to a file that must be readable now.
    fn readable_path<T>(
        &mut self,
        t: &Table<T>,
        section: &str,
        key: &str,
        v: &Option<Str>,
    ) -> Option<PathBuf> {
        let Some(v) = v else {
            self.missing(
                &t.header,
                t.is_broken(key),
                format!("missing key `{key}` in {section} (a PEM file)"),
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
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
