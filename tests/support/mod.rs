//! Hermetic harness for the integration tests: every test starts the real
//! parts it needs (the gateway binary, an HTTP upstream, redis-server) on
//! free ports of 127.0.0.1 and they are stopped when the handles drop.
//!
//! Include it from a test file with `mod support;` (from a `tests/NAME/main.rs`
//! target, `#[path = "../support/mod.rs"] mod support;`). Each test binary uses only
//! part of it, hence the `dead_code` and `unused_imports` allowances.
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod front_proxy;
pub mod gateway;
pub mod idp;
pub mod idp_legacy;
pub mod partition;
pub mod redis;
pub mod redis_ha;
pub mod setup;
pub mod signing;
pub mod stack;
pub mod upstream;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub use gateway::{
    CheckOutput, Gateway, GatewayBuilder, Signal, StartError, TEST_ADMIN_TOKEN, TEST_CLIENT_SECRET,
    TEST_SESSION_SECRET, log_field, run_check, send_signal,
};
pub use partition::{Cut, Partition};
pub use redis::Redis;
pub use upstream::{
    RecordedRequest, SilentUpstream, Upstream, pattern_bytes, silent_upstream, unused_addr,
};

/// A port on 127.0.0.1 that was free a moment ago, for a server a test
/// starts and binds itself (gateway, redis-server, an IdP at a fixed port).
///
/// Choosing a port and binding it are two steps, so two things must not be
/// able to take the port in between:
/// - an outgoing connection: the kernel gives those local ports from the
///   ephemeral range (Linux: 32768–60999), which is also where `bind(0)`
///   picks. Ports here come from below it, where only explicit binds go;
/// - another test process: nextest runs each test in its own process and
///   numbers the ones running at once (`NEXTEST_TEST_GLOBAL_SLOT`); each slot
///   has its own block of ports. Inside a process a port is never handed out
///   twice, even before the first caller binds it.
///
/// Without nextest (plain `cargo test` runs one test binary at a time) the
/// block follows the process id.
pub fn free_port() -> u16 {
    const FIRST: u32 = 12_000;
    const BLOCK: u32 = 400;
    const BLOCKS: u32 = 48; // 12000..31200, below the ephemeral range
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);

    let slot = std::env::var("NEXTEST_TEST_GLOBAL_SLOT")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or_else(std::process::id)
        % BLOCKS;
    let base = FIRST + slot * BLOCK;
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    // Tests that ran in this slot before used the start of the block; begin
    // elsewhere so a port they released a moment ago is not the first pick.
    let offset = next.get_or_insert_with(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        (nanos ^ std::process::id()) % BLOCK
    });
    for _ in 0..BLOCK {
        let port = (base + *offset % BLOCK) as u16;
        *offset += 1;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{base}..{}", base + BLOCK);
}

/// Waits until something accepts TCP connections at `addr`; false on timeout.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// FNV-1a (64 bit) over `data`, as lowercase hex: the checksum the upstream's
/// `/upload` answers, so a test can compare what it sent with what arrived.
pub fn checksum(data: &[u8]) -> String {
    let mut h = Fnv1a::default();
    h.update(data);
    h.hex()
}

/// Incremental FNV-1a 64, so bodies can be checked without buffering them.
#[derive(Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The digest so far, 16 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Runs `npm ci` in `dir` once, when `node_modules/<package>` is missing.
/// A file lock in the temp directory keeps parallel test processes from
/// installing at the same time.
pub fn npm_ci_once(dir: &std::path::Path, package: &str, env: &[(&str, &str)]) {
    let marker = dir.join("node_modules").join(package).join("package.json");
    if marker.exists() {
        return;
    }
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("npm");
    let lock_path = std::env::temp_dir().join(format!("portcullis-{name}-npm-ci.lock"));
    let lock = std::fs::File::create(&lock_path).expect("create npm lock file");
    lock.lock().expect("lock npm lock file");
    if !marker.exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .envs(env.iter().copied())
            .status()
            .expect("run npm ci (is npm installed?)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    let _ = lock.unlock();
}
