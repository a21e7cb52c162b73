//! From TOML text to the validated [`Config`]: parse (spanned), expand
//! `${ENV}`, deserialize each table on its own, then check every rule,
//! collecting every problem rather than stopping at the first.
//!
//! One file per configuration section, each adding its checks to the
//! validation state [`V`]: [`server`], [`oidc`], [`session`] (with
//! `[session.redis]`), [`route`], [`headers`] and [`logout`]. [`table`] turns
//! one TOML table into its raw type and reports unknown keys and type errors;
//! [`values`] holds the checks several sections share (durations, secrets,
//! addresses). This file reads the document, hands each table to its
//! section, and assembles the [`Config`]; sections that depend on others
//! (`[session]` on `[server]` and `[oidc]`, routes on both) are checked after
//! them and receive what they need as arguments.

mod headers;
mod logout;
mod oidc;
mod route;
mod server;
mod session;
mod session_redis;
mod table;
mod telemetry;
mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, Location, Sink};
use super::model::*;
use super::raw::*;
use table::Section;

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

        let (server, tls, admin_tls) = match take("server") {
            Some((h, val)) => {
                let (s, mut subs) =
                    self.table::<RawServer>("[server]", "server", h, val, &["tls", "admin_tls"]);
                let tls = subs.remove("tls").map(|(h, val)| {
                    self.table::<RawTls>("[server.tls]", "server.tls", h, val, &[])
                        .0
                });
                let admin_tls = subs.remove("admin_tls").map(|(h, val)| {
                    self.table::<RawTls>("[server.admin_tls]", "server.admin_tls", h, val, &[])
                        .0
                });
                (s, tls, admin_tls)
            }
            None => {
                self.sink.error(
                    &(0..0),
                    "missing [server] section (it needs at least `listen` and `public_url`)",
                );
                (Section::Broken, None, None)
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
        let telemetry = match take("telemetry") {
            Some((h, val)) => {
                self.table::<RawTelemetry>("[telemetry]", "telemetry", h, val, &[])
                    .0
            }
            None => Section::Absent,
        };

        let server = self.server(server, tls, admin_tls);
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
        let telemetry = self.telemetry(telemetry);

        Some(Config {
            server: server?,
            oidc: oidc?,
            session: session?,
            routes: routes??,
            headers: headers?,
            logout: logout?,
            telemetry: telemetry?,
        })
    }
}
