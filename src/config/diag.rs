//! Diagnostics: a message tied to `path:line:column` in the configuration
//! file, and the error type of the configuration module.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The configuration is refused.
    Error,
    /// The configuration is accepted, but a setting is risky.
    Warning,
}

/// A position in the configuration file (1-based line and column; the
/// column counts characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The configuration file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// One problem (or warning) found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The configuration file.
    pub path: PathBuf,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (characters) of the offending key or value.
    pub column: usize,
    /// What is wrong; never contains a secret.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl Diagnostic {
    /// A diagnostic at `location`.
    pub fn new(location: &Location, severity: Severity, message: impl Into<String>) -> Self {
        Diagnostic {
            path: location.path.clone(),
            line: location.line,
            column: location.column,
            message: message.into(),
            severity,
        }
    }

    /// Where the diagnostic points.
    pub fn location(&self) -> Location {
        Location {
            path: self.path.clone(),
            line: self.line,
            column: self.column,
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            ),
            Severity::Warning => write!(
                f,
                "{}:{}:{}: warning: {}",
                self.path.display(),
                self.line,
                self.column,
                self.message
            ),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read configuration: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but has problems; every one found is listed
    /// (errors, and any warnings found along the way).
    #[error("{}", DisplayAll(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The diagnostics, if the file was read.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(d) => d,
        }
    }
}

/// Displays diagnostics one per line.
struct DisplayAll<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayAll<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Turns byte offsets of the source into locations, and collects
/// diagnostics as validation goes.
pub(crate) struct Sink<'a> {
    path: &'a Path,
    src: &'a str,
    /// Everything found so far, in discovery order.
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(path: &'a Path, src: &'a str) -> Self {
        Sink {
            path,
            src,
            diagnostics: Vec::new(),
        }
    }

    /// The location of a byte offset.
    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = floor_char_boundary(self.src, offset.min(self.src.len()));
        let before = &self.src[..offset];
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        Location {
            path: self.path.to_path_buf(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// Records an error at the start of `span`.
    pub(crate) fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let loc = self.location(span.start);
        self.diagnostics
            .push(Diagnostic::new(&loc, Severity::Error, message));
    }

    /// Records a warning at the start of `span`.
    pub(crate) fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let loc = self.location(span.start);
        self.diagnostics
            .push(Diagnostic::new(&loc, Severity::Warning, message));
    }

    /// Whether any error has been recorded.
    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        let sink = Sink::new(Path::new("g.toml"), src);
        assert_eq!(sink.location(0).to_string(), "g.toml:1:1");
        let x = src.find("\"x").unwrap();
        assert_eq!(sink.location(x).to_string(), "g.toml:2:6");
    }

    #[test]
    fn warnings_say_so() {
        let loc = Location {
            path: "g.toml".into(),
            line: 3,
            column: 7,
        };
        let d = Diagnostic::new(&loc, Severity::Warning, "risky");
        assert_eq!(d.to_string(), "g.toml:3:7: warning: risky");
        let e = ConfigError::Invalid(vec![
            Diagnostic::new(&loc, Severity::Error, "one"),
            Diagnostic::new(&loc, Severity::Error, "two"),
        ]);
        assert_eq!(e.to_string(), "g.toml:3:7: one\ng.toml:3:7: two");
    }
}
