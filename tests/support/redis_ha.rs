//! Highly available Redis for the fleet tests: a master with a replica
//! watched by three sentinels (`redis-server --sentinel`, the program
//! Debian's `redis-sentinel` runs), and a three-master cluster created with
//! `redis-cli --cluster create`. Everything on free ports of 127.0.0.1,
//! stopped on drop.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::Redis;
use super::{free_port, wait_for_port};

/// The master set name the sentinels watch.
pub const MASTER_NAME: &str = "portcullis-test";

/// Runs `redis-cli` with `args` against `port` and returns its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); run scripts/test-deps.sh"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One master, one replica, three sentinels (quorum 2) that declare the
/// master down after `down_after`.
pub struct SentinelSet {
    /// The first master (killed by failover tests).
    pub master: Redis,
    /// Its replica (promoted by a failover).
    pub replica: Redis,
    sentinels: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the set and waits until every sentinel knows the master and
    /// the replica is in sync.
    pub fn start(down_after: Duration) -> SentinelSet {
        let master = Redis::start();
        let replica = Redis::start_with(
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port().to_string(),
            ],
            None,
        );
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {mport} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
                     sentinel failover-timeout {MASTER_NAME} 10000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.path().display(),
                    mport = master.port(),
                    down = down_after.as_millis(),
                ),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start redis sentinel ({e})"));
            assert!(
                wait_for_port(
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_secs(10)
                ),
                "sentinel did not listen"
            );
            sentinels.push((port, child));
        }
        let set = SentinelSet {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let synced =
                cli(set.replica.port(), &["INFO", "replication"]).contains("master_link_status:up");
            let known = set.sentinels.iter().all(|(p, _)| {
                cli(*p, &["SENTINEL", "replicas", MASTER_NAME])
                    .contains(&set.replica.port().to_string())
            });
            if synced && known {
                break;
            }
            assert!(Instant::now() < deadline, "sentinel set did not settle");
            std::thread::sleep(Duration::from_millis(100));
        }
        set
    }

    /// The sentinels' URLs, for `sentinels = [...]`.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(p, _)| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The port the sentinels currently name as master.
    pub fn master_port(&self) -> Option<u16> {
        let (p, _) = self.sentinels.first()?;
        let out = cli(*p, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
        out.lines().nth(1)?.trim().parse().ok()
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for (_, c) in &mut self.sentinels {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A cluster of three masters (no replicas), all slots assigned.
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<Redis>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts three nodes, creates the cluster and waits until it is ok.
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Redis> = (0..3)
            .map(|i| {
                Redis::start_with(
                    &[
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        dir.path()
                            .join(format!("nodes-{i}.conf"))
                            .display()
                            .to_string(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                        "--dir".into(),
                        dir.path().display().to_string(),
                    ],
                    None,
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-yes")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| cli(n.port(), &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster { nodes, _dir: dir }
    }

    /// The nodes' URLs, for `cluster = [...]`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect()
    }
}

/// A test CA and a server certificate it signed for 127.0.0.1, as PEM files.
pub struct TestCa {
    /// The CA certificate (what `ca_file` names).
    pub ca: std::path::PathBuf,
    /// The server certificate.
    pub cert: std::path::PathBuf,
    /// The server key.
    pub key: std::path::PathBuf,
}

impl TestCa {
    /// Makes a CA named `name` and a server certificate in `dir`.
    pub fn new(dir: &std::path::Path, name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &*ca)
            .unwrap();
        let files = TestCa {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-server.pem")),
            key: dir.join(format!("{name}-server.key")),
        };
        std::fs::write(&files.ca, ca.pem()).unwrap();
        std::fs::write(&files.cert, leaf.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}
