//! Runs the operator's curl-only smoke test (`tests/smoke.sh`) against a
//! real IdP + gateway + app, so the script itself stays correct.

mod support;

use support::stack::{Stack, StackOptions};

#[test]
fn smoke_script_passes_against_the_test_setup() {
    let stack = Stack::start(StackOptions::default());
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke.sh"))
        .env("GATEWAY_URL", stack.gateway.public_url())
        .env("ADMIN_URL", stack.gateway.admin_url(""))
        .output()
        .expect("run tests/smoke.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "smoke test failed:\n{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
