//! Loading and validating `gateway.toml`: every problem is reported with
//! `path:line:column`, all at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

use std::path::Path;

use portcullis::config::{self, ConfigError, Diagnostic, Severity};

mod diagnostics;
mod loading;
mod logout;
mod redis;
mod routes;
mod secrets;
mod server;
mod session;

const SECRET: &str = "0123456789abcdef0123456789abcdef0123";

fn env(name: &str) -> Option<String> {
    match name {
        "PORTCULLIS_SECRET" => Some(SECRET.into()),
        "PORTCULLIS_CLIENT_SECRET" => Some("client-secret".into()),
        "UPSTREAM_PORT" => Some("3001".into()),
        _ => None,
    }
}

/// A small valid configuration; tests append to or replace parts of it.
const BASE: &str = r#"[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"

[oidc]
issuer = "http://127.0.0.1:9000"
client_id = "portcullis"

[session]
secret = "${PORTCULLIS_SECRET}"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:3000"
"#;

fn load(src: &str) -> Result<config::Loaded, ConfigError> {
    config::load_from_str(Path::new("gw.toml"), src, &env)
}

fn diagnostics(src: &str) -> Vec<Diagnostic> {
    match load(src) {
        Ok(l) => panic!(
            "expected errors, config loaded (warnings: {:?})",
            l.warnings
        ),
        Err(ConfigError::Invalid(d)) => d,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn errors(src: &str) -> Vec<Diagnostic> {
    diagnostics(src)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

/// Asserts exactly one error, at `line:col`, whose message contains `fragment`.
#[track_caller]
fn assert_one_error(src: &str, line: usize, col: usize, fragment: &str) {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:#?}");
    let e = &errs[0];
    assert_eq!(
        (e.line, e.column),
        (line, col),
        "wrong position for {}",
        e.message
    );
    assert!(
        e.message.contains(fragment),
        "`{}` does not contain `{fragment}`",
        e.message
    );
    assert!(
        e.to_string()
            .starts_with(&format!("gw.toml:{line}:{col}: "))
    );
}

/// Replaces the first occurrence of `from` in BASE.
fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from}");
    BASE.replacen(from, to, 1)
}
