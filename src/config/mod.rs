//! Configuration: `gateway.toml` parsed into raw serde types ([`raw`]), then
//! checked and turned into the runtime [`Config`] ([`model`]). Every problem is
//! reported as `path:line:column: message`.

pub mod model;

pub use model::*;

// --- Temporary stand-in until the config loader lands (same public API). ---
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A position in the configuration file.
#[derive(Debug, Clone)]
pub struct Location {
    /// File.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// A validated configuration and what the check noticed.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings for risky settings.
    pub warnings: Vec<String>,
}

impl Loaded {
    /// Where a listen address was configured.
    pub fn listen_location(&self, _addr: SocketAddr) -> Option<Location> {
        None
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not yet implemented.
    #[error("{0}")]
    Invalid(String),
}

/// Loads and validates a configuration file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    Err(ConfigError::Invalid(format!(
        "{}: loader not built yet",
        path.display()
    )))
}

/// Tries to bind every listen address.
pub fn check_listeners(_loaded: &Loaded) -> Vec<String> {
    Vec::new()
}
