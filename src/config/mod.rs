//! Configuration: `gateway.toml` parsed into raw serde types ([`raw`]), then
//! checked and turned into the runtime [`Config`] ([`model`]). Every problem is
//! reported as `path:line:column: message`, and all problems are reported at
//! once, not just the first.
//!
//! String values may contain `${ENV_VAR}` (see [`env`] for the rules, `$${`
//! for a literal `${`). Secrets may be given as `<key>_file` instead:
//! `admin_token_file`, `client_secret_file`, `secret_file` (one secret per
//! line, first encrypts) and `[session.redis] url_file`; relative paths are
//! resolved against the configuration file's directory.

mod diag;
pub mod env;
mod listen;
pub mod model;
pub mod raw;
pub mod route_lint;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use diag::{ConfigError, Diagnostic, Location, Severity};
pub use listen::check_listeners;
pub use model::*;

/// A validated configuration and what was learnt while reading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings about risky settings (the configuration is still valid).
    pub warnings: Vec<Diagnostic>,
    /// The configuration file it was read from.
    pub path: PathBuf,
    /// Where each `listen` and `admin_listen` address was written.
    listen_locations: Vec<(SocketAddr, Location)>,
}

impl Loaded {
    /// Where `addr` (a `listen` or `admin_listen` address) was written, so a
    /// bind failure can be reported as `path:line:column: …`.
    pub fn listen_location(&self, addr: SocketAddr) -> Option<Location> {
        self.listen_locations
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, l)| l.clone())
    }

    /// An error diagnostic at the place `addr` was written (falls back to
    /// line 1 if the address is not from the file).
    pub fn listen_diagnostic(&self, addr: SocketAddr, message: impl Into<String>) -> Diagnostic {
        let loc = self.listen_location(addr).unwrap_or_else(|| Location {
            path: self.path.clone(),
            line: 1,
            column: 1,
        });
        Diagnostic::new(&loc, Severity::Error, message)
    }
}

/// Reads and validates the configuration file at `path`, expanding
/// `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_from_str(path, &src, &|name| std::env::var(name).ok())
}

/// Validates configuration text. `path` is used in messages and to resolve
/// relative `_file` and TLS paths; `env` looks up `${VAR}` values.
pub fn load_from_str(
    path: &Path,
    src: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let out = validate::run(path, src, env);
    match out.config {
        Some(config) => Ok(Loaded {
            config,
            warnings: out.diagnostics,
            listen_locations: out.listen_locations,
            path: path.to_path_buf(),
        }),
        None => Err(ConfigError::Invalid(out.diagnostics)),
    }
}
