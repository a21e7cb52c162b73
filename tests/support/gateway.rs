//! The real `portcullis` binary, started per test with a generated config.
//!
//! A test writes its `gateway.toml` as a string with placeholders that the
//! harness fills in before writing it to a temp dir:
//!
//! | placeholder | value |
//! |---|---|
//! | `{port}` | a free port for `server.listen` |
//! | `{listen}` | `127.0.0.1:{port}` |
//! | `{public_url}` | `http://127.0.0.1:{port}` |
//! | `{admin_port}`, `{admin_listen}` | a second free port, and `127.0.0.1:{admin_port}` |
//! | `{dir}` | the temp dir holding the config (and files added with [`GatewayBuilder::file`]) |
//! | `{NAME}` | anything set with [`GatewayBuilder::var`], e.g. `{upstream}` |
//!
//! Other braces (`auth_params = {}`) are left alone. The process gets
//! `PORTCULLIS_SECRET`, `PORTCULLIS_CLIENT_SECRET` and
//! `PORTCULLIS_ADMIN_TOKEN` (test values, overridable with
//! [`GatewayBuilder::env`]) and runs with `--log-format json`; its stdout and
//! stderr lines are kept for assertions and echoed to the test's output
//! (shown when a test fails). It is killed when the handle drops.
//!
//! ```ignore
//! let up = Upstream::start();
//! let gw = Gateway::builder(r#"
//!     [server]
//!     listen = "{listen}"
//!     public_url = "{public_url}"
//!     [[route]]
//!     prefix = "/"
//!     upstream = "{upstream}"
//!     auth = "none"
//! "#).var("upstream", up.url()).start();
//! let body = reqwest::get(gw.url("/hello")).await?.text().await?;
//! ```

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{free_port, wait_for_port};

/// Session secret the harness gives the gateway (`PORTCULLIS_SECRET`).
pub const TEST_SESSION_SECRET: &str = "test-session-secret-0123456789abcdef0123456789abcdef";
/// OIDC client secret the harness gives the gateway (`PORTCULLIS_CLIENT_SECRET`).
pub const TEST_CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";
/// Admin token the harness gives the gateway (`PORTCULLIS_ADMIN_TOKEN`).
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

/// How long [`GatewayBuilder::start`] waits for the listen port by default.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Signals a test can send to the gateway.
#[derive(Clone, Copy, Debug)]
pub enum Signal {
    /// Graceful shutdown.
    Term,
    /// Graceful shutdown (Ctrl-C).
    Int,
    /// Configuration reload.
    Hup,
    /// Immediate death.
    Kill,
    /// Frozen: not scheduled until [`Signal::Cont`] (a process that hangs).
    Stop,
    /// Scheduled again after [`Signal::Stop`].
    Cont,
}

/// Sends `signal` to process `pid` (the gateway, or a real part the test
/// started: redis-server, the IdP).
pub fn send_signal(pid: u32, signal: Signal) {
    let status = Command::new("kill")
        .args(["-s", signal.name(), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {} {pid} failed", signal.name());
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Int => "INT",
            Signal::Hup => "HUP",
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }
}

/// Why a gateway did not start; carries its output for the failure message.
#[derive(Debug)]
pub struct StartError {
    /// What went wrong.
    pub message: String,
    /// Every stdout/stderr line the process wrote.
    pub logs: Vec<String>,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        for line in &self.logs {
            writeln!(f, "  | {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StartError {}

/// The outcome of `portcullis check`.
#[derive(Debug)]
pub struct CheckOutput {
    /// The exit code (None if killed by a signal).
    pub code: Option<i32>,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// The config file it checked (messages name it); it exists as long as
    /// this value does.
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs `portcullis check` on `config` (placeholders filled as for a start).
pub fn run_check(config: &str) -> CheckOutput {
    Gateway::builder(config).check()
}

/// Configures a gateway before starting it.
pub struct GatewayBuilder {
    config: String,
    vars: Vec<(String, String)>,
    env: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    startup_timeout: Duration,
    port: Option<u16>,
}

impl GatewayBuilder {
    /// Uses this port for `{port}` (e.g. one already registered at an IdP)
    /// instead of a fresh free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Sets placeholder `{name}` to `value`.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.push((name.to_owned(), value.into()));
        self
    }

    /// Sets an environment variable for the process (overrides the defaults).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Writes `contents` to `{dir}/name` before starting (certs, secret files).
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_owned(), contents.into()));
        self
    }

    /// Adds a command-line argument after `--config FILE --log-format json`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// How long to wait for the listen port (default 20 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the gateway and waits for its port; panics with its output if
    /// it does not come up.
    pub fn start(self) -> Gateway {
        self.try_start()
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    /// Starts the gateway and waits for its port (and the admin port, when
    /// the config uses `{admin_port}` or `{admin_listen}`).
    pub fn try_start(self) -> Result<Gateway, StartError> {
        let files = Files::write(&self);
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .arg("--config")
            .arg(&files.config_path)
            .args(["--log-format", "json"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        apply_env(&mut command, &self.env);
        let mut child = command.spawn().map_err(|e| StartError {
            message: format!("cannot run {}: {e}", env!("CARGO_BIN_EXE_portcullis")),
            logs: Vec::new(),
        })?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            spawn_reader(child.stdout.take(), logs.clone()),
            spawn_reader(child.stderr.take(), logs.clone()),
        ];
        let mut gateway = Gateway {
            child,
            logs,
            readers,
            port: files.port,
            admin_port: files.admin_port,
            config_path: files.config_path,
            vars: files.vars,
            dir: files.dir,
        };
        let mut ports = vec![gateway.addr()];
        if files.uses_admin {
            ports.push(SocketAddr::from(([127, 0, 0, 1], gateway.admin_port)));
        }
        let deadline = Instant::now() + self.startup_timeout;
        for addr in ports {
            loop {
                if let Ok(Some(status)) = gateway.child.try_wait() {
                    let logs = gateway.finish_logs();
                    return Err(StartError {
                        message: format!(
                            "portcullis exited with {status} before listening on {addr}"
                        ),
                        logs,
                    });
                }
                if wait_for_port(addr, Duration::from_millis(100)) {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = gateway.child.kill();
                    let logs = gateway.finish_logs();
                    return Err(StartError {
                        message: format!(
                            "portcullis did not listen on {addr} within {:?}",
                            self.startup_timeout
                        ),
                        logs,
                    });
                }
            }
        }
        Ok(gateway)
    }

    /// Runs `portcullis check --config FILE` and returns what it said.
    pub fn check(self) -> CheckOutput {
        let files = Files::write(&self);
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .arg("check")
            .arg("--config")
            .arg(&files.config_path)
            .args(&self.args)
            .stdin(Stdio::null());
        apply_env(&mut command, &self.env);
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run portcullis check: {e}"));
        CheckOutput {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            config_path: files.config_path,
            _dir: files.dir,
        }
    }
}

/// The temp dir with the config written into it.
struct Files {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    port: u16,
    admin_port: u16,
    uses_admin: bool,
    vars: Vec<(String, String)>,
}

impl Files {
    fn write(b: &GatewayBuilder) -> Files {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-test-")
            .tempdir()
            .expect("temp dir");
        let port = b.port.unwrap_or_else(free_port);
        let admin_port = free_port();
        let dir_str = dir.path().display().to_string();
        let mut vars = vec![
            ("port".to_owned(), port.to_string()),
            ("listen".to_owned(), format!("127.0.0.1:{port}")),
            ("public_url".to_owned(), format!("http://127.0.0.1:{port}")),
            ("admin_port".to_owned(), admin_port.to_string()),
            ("admin_listen".to_owned(), format!("127.0.0.1:{admin_port}")),
            ("dir".to_owned(), dir_str),
        ];
        vars.extend(b.vars.iter().cloned());
        let uses_admin = b.config.contains("{admin_port}") || b.config.contains("{admin_listen}");
        for (name, contents) in &b.files {
            std::fs::write(dir.path().join(name), contents).expect("write test file");
        }
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, fill(&b.config, &vars)).expect("write gateway.toml");
        Files {
            dir,
            config_path,
            port,
            admin_port,
            uses_admin,
            vars,
        }
    }
}

/// Replaces every `{name}` of `vars` in `template`; later entries win.
fn fill(template: &str, vars: &[(String, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in vars.iter().rev() {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

fn apply_env(command: &mut Command, env: &[(String, String)]) {
    command
        .env_remove("PORTCULLIS_CONFIG")
        .env("PORTCULLIS_SECRET", TEST_SESSION_SECRET)
        .env("PORTCULLIS_CLIENT_SECRET", TEST_CLIENT_SECRET)
        .env("PORTCULLIS_ADMIN_TOKEN", TEST_ADMIN_TOKEN);
    for (k, v) in env {
        command.env(k, v);
    }
}

fn spawn_reader(
    pipe: Option<impl Read + Send + 'static>,
    logs: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(pipe) = pipe else { return };
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            // Shown only when the test fails (the runner captures output).
            eprintln!("[portcullis] {line}");
            lock(&logs).push(line);
        }
    })
}

fn lock(logs: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running gateway process owned by one test.
pub struct Gateway {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    port: u16,
    admin_port: u16,
    config_path: PathBuf,
    vars: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// A builder for a gateway running `config` (see the module docs).
    pub fn builder(config: &str) -> GatewayBuilder {
        GatewayBuilder {
            config: config.to_owned(),
            vars: Vec::new(),
            env: Vec::new(),
            files: Vec::new(),
            args: Vec::new(),
            startup_timeout: STARTUP_TIMEOUT,
            port: None,
        }
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The listen port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, the `{public_url}` value.
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The public URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The admin listener's URL of `path` (config must use `{admin_listen}`).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The sockets the gateway process holds (listeners included), from
    /// `/proc/<pid>/fd`.
    pub fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read the gateway's fds")
            .filter_map(Result::ok)
            .filter(|e| {
                std::fs::read_link(e.path())
                    .map(|l| l.to_string_lossy().starts_with("socket:"))
                    .unwrap_or(false)
            })
            .count()
    }

    /// The temp dir holding the config.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Overwrites the config file (same placeholder values as at start),
    /// e.g. before [`Signal::Hup`].
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(&self.config_path, fill(config, &self.vars)).expect("rewrite gateway.toml");
    }

    /// Sends `signal` to the process.
    pub fn send_signal(&self, signal: Signal) {
        send_signal(self.pid(), signal);
    }

    /// Resident memory in kB (`VmRSS` of /proc/<pid>/status), while running.
    pub fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Starts a new peak-memory window: the kernel's high-water mark
    /// (`VmHWM`) is reset to the current resident size (`clear_refs` 5).
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .expect("reset the gateway's peak RSS (needs the same user, Linux >= 4.0)");
    }

    /// Peak resident memory in kB since start or [`Gateway::reset_peak_rss`]
    /// (`VmHWM`): catches a buffer that was allocated and freed again.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Waits up to `timeout` for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every output line so far (stdout and stderr interleaved as read).
    pub fn logs(&self) -> Vec<String> {
        lock(&self.logs).clone()
    }

    /// The output lines that parse as JSON objects.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    /// The first JSON log line where `key` equals `value`, looking at the top
    /// level and at tracing's `fields` and `span` objects.
    pub fn find_log(&self, key: &str, value: &str) -> Option<serde_json::Value> {
        self.json_logs()
            .into_iter()
            .find(|line| log_field(line, key) == Some(value))
    }

    /// Like [`Gateway::find_log`], waiting up to `timeout` for the line.
    pub fn wait_for_log(
        &self,
        key: &str,
        value: &str,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.find_log(key, value) {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the output readers after the process ended, then returns
    /// every line.
    fn finish_logs(&mut self) -> Vec<String> {
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.logs()
    }
}

/// `key` of a JSON log line, at the top level or inside `fields`/`span`
/// (where tracing-subscriber's JSON format puts event and span fields).
pub fn log_field<'a>(line: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    [&line[key], &line["fields"][key], &line["span"][key]]
        .into_iter()
        .find_map(|v| v.as_str())
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
