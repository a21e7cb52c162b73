//! Runs the operator's curl-only smoke test (`tests/smoke.sh`) against a
//! real IdP + gateway + app, so the script itself stays correct — in the
//! default configuration and in logout configurations where its checks must
//! take other paths (no `local` mode to ask for; a `local` default; only
//! `silent`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use support::stack::{DEFAULT_ROUTES, Stack, StackOptions};

/// Starts a stack with `logout` as its `[logout]` section (none: the
/// defaults) and runs the script with `CLEAR_SITE_DATA=clear_site_data`.
fn smoke(logout: Option<&str>, clear_site_data: &str) {
    let stack = Stack::start(StackOptions {
        rest: logout.map(|l| format!("{DEFAULT_ROUTES}\n[logout]\n{l}")),
        ..Default::default()
    });
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke.sh"))
        .env("GATEWAY_URL", stack.gateway.public_url())
        .env("ADMIN_URL", stack.gateway.admin_url(""))
        .env("CLEAR_SITE_DATA", clear_site_data)
        .output()
        .expect("run tests/smoke.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "smoke test failed:\n{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // The flow-end checks ran (not skipped by the configuration).
    assert!(
        stdout.contains("ok    Clear-Site-Data on the response that ends the flow"),
        "{stdout}"
    );
}

#[test]
fn smoke_script_passes_against_the_test_setup() {
    smoke(None, "\"storage\"");
}

#[test]
fn smoke_script_tests_open_redirects_when_local_logout_is_not_allowed() {
    smoke(
        Some(
            "allowed_modes = [\"redirect\"]\ndefault_return_to = \"/bye\"\n\
             clear_site_data = [\"storage\", \"cache\"]\n",
        ),
        "\"storage\", \"cache\"",
    );
}

#[test]
fn smoke_script_passes_with_local_logout_by_default() {
    smoke(
        Some("mode = \"local\"\nallowed_modes = [\"local\"]\nclear_site_data = []\n"),
        "",
    );
}

#[test]
fn smoke_script_passes_with_silent_logout_only() {
    // A browser would get the silent page (200) here; the script's checks
    // must not depend on a redirect.
    smoke(
        Some("mode = \"silent\"\nallowed_modes = [\"silent\"]\n"),
        "\"storage\"",
    );
}
