//! A real `redis-server` on a free port, without persistence, stopped on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for_port};

/// A running redis-server owned by one test.
pub struct Redis {
    port: u16,
    child: Option<Child>,
    /// Certificate and key files when the server speaks only TLS.
    tls: Option<(PathBuf, PathBuf)>,
    /// More arguments (replication, cluster mode).
    extra: Vec<String>,
    /// Its working directory: a replica stores the master's snapshot there,
    /// which must land neither in the repository nor beside another's.
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server` on a free port of 127.0.0.1 and waits until it
    /// accepts connections. Panics with a hint when it is not installed
    /// (`scripts/test-deps.sh` installs it).
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
            tls: None,
            extra: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        redis.spawn();
        redis
    }

    /// Starts a server that accepts only TLS (`rediss://`), with the given
    /// PEM certificate and key, and no client certificates.
    pub fn start_tls(cert: &Path, key: &Path) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
            tls: Some((cert.to_owned(), key.to_owned())),
            extra: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        redis.spawn();
        redis
    }

    /// Starts `redis-server` with more arguments (e.g. `--replicaof`,
    /// `--cluster-enabled yes`), and TLS only when `tls` is given.
    pub fn start_with(extra: &[String], tls: Option<(&Path, &Path)>) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
            tls: tls.map(|(c, k)| (c.to_owned(), k.to_owned())),
            extra: extra.to_vec(),
            dir: tempfile::tempdir().unwrap(),
        };
        redis.spawn();
        redis
    }

    /// The process id while it runs (to freeze it with SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process still runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `redis://127.0.0.1:<port>/0`, as `session.redis.url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (for "Redis is unreachable" tests); data is lost.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port after [`Redis::stop`].
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some((cert, key)) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(cert),
        };
        let child = cmd
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            // A test's server needs no protection from other local users.
            .args(["--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); run scripts/test-deps.sh")
            });
        self.child = Some(child);
        if !wait_for_port(self.addr(), Duration::from_secs(10)) {
            self.stop();
            panic!(
                "redis-server did not listen on port {} within 10 s",
                self.port
            );
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
