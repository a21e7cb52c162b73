//! Real-browser scenarios: `node tests/browser/<name>.mjs`, which drives a
//! headless Debian Chromium through `playwright-core` against a running
//! [`Stack`]. The scenario prints `PASS <name>` and exits 0, or says what
//! failed; its screenshots go to `<target>/browser-artifacts/<name>/`.
//!
//! Needs `node`, `npm` and `/usr/bin/chromium` (`scripts/test-deps.sh`
//! installs them). `tests/browser/node_modules` is installed with `npm ci`
//! on first use, like the IdP's.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stack::Stack;

/// A scenario that runs longer than this is killed and fails (the scenario
/// itself gives up earlier, at 75 s, with a screenshot).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);

/// The browser binary (Debian's `chromium`); `PORTCULLIS_CHROMIUM`
/// overrides it.
pub fn chromium() -> String {
    std::env::var("PORTCULLIS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where screenshots of scenario `name` go: `target/browser-artifacts/<name>`
/// (under `CARGO_TARGET_DIR` when that is set).
pub fn artifacts_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("browser-artifacts").join(name)
}

/// What a scenario printed.
#[derive(Debug)]
pub struct ScenarioOutput {
    /// Exit code (`None`: killed).
    pub code: Option<i32>,
    /// Its stdout: step notes, screenshot paths, `PASS <name>`.
    pub stdout: String,
    /// Its stderr: the failure, if any.
    pub stderr: String,
}

impl ScenarioOutput {
    /// Whether the scenario said `PASS <name>` and exited 0.
    pub fn passed(&self, name: &str) -> bool {
        self.code == Some(0) && self.stdout.lines().any(|l| l == format!("PASS {name}"))
    }

    /// The lines the app page reported of `kind` (`event`, `resolved`,
    /// `rejected`), as JSON.
    pub fn app_reports(&self, kind: &str) -> Vec<serde_json::Value> {
        let marker = format!("app: {kind} ");
        self.stdout
            .lines()
            .filter_map(|l| l.split_once(&marker).map(|(_, json)| json))
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect()
    }
}

/// Runs scenario `name` against `stack` and returns what it printed; the
/// gateway's and the IdP's output are added to a failure message by
/// [`assert_passed`].
pub fn run(name: &str, stack: &Stack) -> ScenarioOutput {
    run_at(name, stack, &stack.gateway.public_url())
}

/// [`run`] with the browser going to `public_url` instead of the gateway's
/// own port (a front proxy before the gateway).
pub fn run_at(name: &str, stack: &Stack, public_url: &str) -> ScenarioOutput {
    super::npm_ci_once(
        &browser_dir(),
        "playwright-core",
        &[("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")],
    );
    let chromium = chromium();
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test-deps.sh (Debian package `chromium`)"
    );
    let mut child = Command::new("node")
        .arg(browser_dir().join(format!("{name}.mjs")))
        .current_dir(browser_dir())
        .env("GATEWAY_URL", public_url)
        .env("IDP_ISSUER", stack.idp.issuer())
        .env("UPSTREAM_URL", stack.app.url())
        .env("ARTIFACTS_DIR", artifacts_dir(name))
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node (is Node.js installed?)");
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = ScenarioOutput {
        code,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    // The steps, timings and screenshot paths, shown with --nocapture (and
    // by nextest for a failing test).
    println!("--- browser scenario {name} ---\n{}", out.stdout);
    out
}

/// Fails the test with everything useful when the scenario did not pass.
pub fn assert_passed(name: &str, out: &ScenarioOutput, stack: &Stack) {
    assert!(
        out.passed(name),
        "browser scenario {name} failed (exit {:?}); screenshots in {}\n\
         --- scenario stdout ---\n{}\n--- scenario stderr ---\n{}\n\
         --- gateway ---\n{}\n--- IdP stderr ---\n{}",
        out.code,
        artifacts_dir(name).display(),
        out.stdout,
        out.stderr,
        stack.gateway.logs().join("\n"),
        stack.idp.stderr(),
    );
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}
