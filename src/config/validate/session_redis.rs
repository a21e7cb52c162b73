//! `[session.redis]`: one server (`url`), Sentinel (`sentinels` +
//! `sentinel_master`) or Cluster (`cluster`), and the CA file for TLS.
//! Every mistake is named here rather than found at start-up.

use toml::Spanned;
use url::Url;

use super::V;
use super::table::Table;
use crate::config::model::{DEFAULT_REDIS_CACHE_TTL, RedisConfig, RedisTopology, Secret};
use crate::config::raw::{RawRedis, Str};

/// Schemes of a single server's `url`.
const SERVER_SCHEMES: &[&str] = &["redis", "rediss", "redis+unix", "unix"];
/// Schemes of sentinels, cluster nodes and a `url` beside them.
const TCP_SCHEMES: &[&str] = &["redis", "rediss"];

/// The database a Redis URL selects (its path), 0 when none.
fn db_of(u: &Url) -> Option<i64> {
    let p = u.path().trim_matches('/');
    if p.is_empty() {
        Some(0)
    } else {
        p.parse().ok()
    }
}

impl V<'_> {
    pub(super) fn redis(&mut self, t: Table<RawRedis>) -> Option<RedisConfig> {
        let r = &t.raw;
        // A `sentinels` or `cluster` of the wrong type has had its error;
        // what depends on the topology would only add wrong ones.
        let mut ok = !(t.is_broken("sentinels") || t.is_broken("cluster"));
        let sentinels = self.redis_urls(&r.sentinels, "sentinels", &mut ok);
        let cluster = self.redis_urls(&r.cluster, "cluster", &mut ok);
        let url = match self.secret(&t, "url", &r.url, &r.url_file) {
            Err(()) => {
                ok = false;
                None
            }
            Ok(None) => None,
            Ok(Some((u, span))) => match Url::parse(&u) {
                // The URL may carry a password: never echo it.
                Ok(parsed) => Some((u, parsed, span)),
                Err(e) => {
                    self.sink.error(&span, format!("invalid Redis URL: {e}"));
                    ok = false;
                    None
                }
            },
        };
        let topology = match (&sentinels, &cluster) {
            (Some(_), Some(_)) => {
                self.sink.error(
                    &t.key("cluster"),
                    "give either `sentinels` (Redis Sentinel) or `cluster` (Redis Cluster) in [session.redis], not both",
                );
                ok = false;
                None
            }
            (Some(s), None) => match &r.sentinel_master {
                Some(m) if !m.get_ref().trim().is_empty() => Some(RedisTopology::Sentinel {
                    sentinels: s.iter().map(|(u, _, _)| Secret::new(u.clone())).collect(),
                    master: m.get_ref().clone(),
                }),
                Some(m) => {
                    self.sink.error(
                        &m.span(),
                        "sentinel_master must name the master set the sentinels watch",
                    );
                    ok = false;
                    None
                }
                None => {
                    self.sink.error(
                        &t.key("sentinels"),
                        "`sentinels` needs `sentinel_master`: the name of the master set they watch (e.g. \"mymaster\")",
                    );
                    ok = false;
                    None
                }
            },
            (None, Some(c)) => Some(RedisTopology::Cluster {
                nodes: c.iter().map(|(u, _, _)| Secret::new(u.clone())).collect(),
            }),
            (None, None) => Some(RedisTopology::Server),
        };
        if r.sentinels.is_none()
            && !t.is_broken("sentinels")
            && let Some(m) = &r.sentinel_master
        {
            self.sink.error(
                &m.span(),
                "`sentinel_master` needs `sentinels`: the Sentinel URLs to ask for that master",
            );
            ok = false;
        }
        match (&topology, &url) {
            (Some(RedisTopology::Server), None) if ok => {
                self.missing(
                    &t.header,
                    t.is_broken("url"),
                    "missing key `url` in [session.redis] (e.g. \"redis://127.0.0.1:6379/0\"), or `sentinels` + `sentinel_master`, or `cluster`",
                );
                ok = false;
            }
            (Some(RedisTopology::Server), Some((_, u, span)))
                if !SERVER_SCHEMES.contains(&u.scheme()) =>
            {
                self.sink.error(
                        span,
                        format!(
                            "Redis URL scheme `{}` is not supported: expected one of {} (for Sentinel or Cluster use `sentinels` or `cluster`)",
                            u.scheme(),
                            SERVER_SCHEMES.join(", ")
                        ),
                    );
                ok = false;
            }
            (Some(RedisTopology::Server), Some(_)) => {}
            (Some(topo), Some((_, u, span))) => {
                if !TCP_SCHEMES.contains(&u.scheme()) {
                    self.sink.error(
                        span,
                        format!(
                            "with `sentinels` or `cluster`, url only gives the data nodes' credentials, db and TLS: its scheme must be redis or rediss, not `{}`",
                            u.scheme()
                        ),
                    );
                    ok = false;
                } else if matches!(topo, RedisTopology::Cluster { .. }) && db_of(u) != Some(0) {
                    self.sink.error(
                        span,
                        "a Redis Cluster has only database 0: remove the db from url",
                    );
                    ok = false;
                }
            }
            _ => {}
        }
        if let Some(c) = &cluster {
            for (_, u, span) in c {
                if db_of(u) != Some(0) {
                    self.sink.error(
                        span,
                        "a Redis Cluster has only database 0: remove the db from this node's URL",
                    );
                    ok = false;
                }
            }
        }
        if let Some(s) = &sentinels {
            ok &= self.same_sentinel_settings(s);
        }
        let any_tls = url.as_ref().is_some_and(|(_, u, _)| u.scheme() == "rediss")
            || [&sentinels, &cluster]
                .iter()
                .any(|l| l.iter().flatten().any(|(_, u, _)| u.scheme() == "rediss"));
        let ca_file = match &r.ca_file {
            None => None,
            Some(f) => {
                let path = self.dir.join(f.get_ref());
                if !any_tls {
                    self.sink.warn(
                        &f.span(),
                        "ca_file has no effect: no Redis URL in [session.redis] uses rediss://",
                    );
                }
                match std::fs::read(&path) {
                    Ok(pem) if has_certificate(&pem) => Some(path),
                    Ok(_) => {
                        self.sink.error(
                            &f.span(),
                            format!("ca_file `{}` holds no PEM certificate", path.display()),
                        );
                        ok = false;
                        None
                    }
                    Err(e) => {
                        self.sink.error(
                            &f.span(),
                            format!("cannot read ca_file `{}`: {e}", path.display()),
                        );
                        ok = false;
                        None
                    }
                }
            }
        };
        let cache_ttl = self.duration(&r.cache_ttl, "cache_ttl", DEFAULT_REDIS_CACHE_TTL, false);
        if !ok {
            return None;
        }
        Some(RedisConfig {
            url: url.map(|(u, _, _)| Secret::new(u)),
            topology: topology?,
            ca_file,
            cache_ttl: cache_ttl?,
        })
    }

    /// Parses a list of `redis://` / `rediss://` node URLs; `None` when the
    /// key is absent or an entry is wrong (reported).
    fn redis_urls(
        &mut self,
        list: &Option<Spanned<Vec<Str>>>,
        key: &str,
        ok: &mut bool,
    ) -> Option<Vec<(String, Url, std::ops::Range<usize>)>> {
        let list = list.as_ref()?;
        if list.get_ref().is_empty() {
            self.sink
                .error(&list.span(), format!("`{key}` must list at least one URL"));
            *ok = false;
            return None;
        }
        let mut out = Vec::new();
        for item in list.get_ref() {
            match Url::parse(item.get_ref()) {
                Ok(u) if TCP_SCHEMES.contains(&u.scheme()) && u.host_str().is_some() => {
                    out.push((item.get_ref().clone(), u, item.span()));
                }
                // Never echo the entry: it may carry a password.
                Ok(u) => {
                    self.sink.error(
                        &item.span(),
                        format!(
                            "each entry of `{key}` must be a redis:// or rediss:// URL with a host, not `{}:`",
                            u.scheme()
                        ),
                    );
                    *ok = false;
                }
                Err(e) => {
                    self.sink
                        .error(&item.span(), format!("invalid URL in `{key}`: {e}"));
                    *ok = false;
                }
            }
        }
        (*ok).then_some(out)
    }

    /// The sentinels share one set of credentials and one TLS setting (the
    /// client authenticates to all of them alike), and select no database.
    fn same_sentinel_settings(&mut self, s: &[(String, Url, std::ops::Range<usize>)]) -> bool {
        let mut ok = true;
        let first = &s[0].1;
        for (_, u, span) in s {
            if u.username() != first.username() || u.password() != first.password() {
                self.sink.error(
                    span,
                    "all `sentinels` must carry the same credentials (the data nodes' go in url)",
                );
                ok = false;
            }
            if u.scheme() != first.scheme() {
                self.sink.error(
                    span,
                    "all `sentinels` must use the same scheme: all redis:// or all rediss://",
                );
                ok = false;
            }
            if db_of(u) != Some(0) {
                self.sink.error(
                    span,
                    "a sentinel URL selects no database: give the db in url",
                );
                ok = false;
            }
        }
        ok
    }
}

/// Whether `pem` holds at least one certificate.
fn has_certificate(pem: &[u8]) -> bool {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem).any(|c| c.is_ok())
}
