//! Checks for values that several sections share: missing keys, durations,
//! socket addresses, secrets given inline or as `<key>_file`, and loopback
//! hosts.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use url::Url;

use super::V;
use super::table::Table;
use crate::config::raw::*;

/// Shortest accepted secret (`admin_token`, each session secret), in
/// bytes: a random secret this long is beyond guessing, while a shorter one
/// is usually a placeholder or a password.
pub(super) const MIN_SECRET_BYTES: usize = 32;

impl V<'_> {
    /// Reports a missing key, unless it was given and already reported.
    pub(super) fn missing(
        &mut self,
        header: &Range<usize>,
        broken: bool,
        message: impl Into<String>,
    ) {
        if !broken {
            self.sink.error(header, message);
        }
    }

    pub(super) fn duration(
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

    pub(super) fn socket_addr(&mut self, v: &Str, key: &str) -> Option<SocketAddr> {
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
    pub(super) fn secret<T>(
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
    pub(super) fn read_secret_file(&mut self, key: &str, f: &Str) -> Option<String> {
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

/// Whether a URL's host is `localhost` or a loopback IP address, where
/// plain http never leaves the machine.
pub(super) fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
