//! Highly available Redis for the fleet tests: a master with a replica
//! watched by three sentinels (`redis-server --sentinel`, the program
//! Debian's `redis-sentinel` runs), and a three-master cluster created with
//! `redis-cli --cluster create` (replicas added on demand). Everything on free ports of 127.0.0.1,
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
    cli_with(port, None, None, args)
}

/// [`cli`] over TLS (verified with the test CA) and/or with a password.
pub fn cli_with(port: u16, tls: Option<&TestCa>, password: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(ca) = tls {
        cmd.arg("--tls").arg("--cacert").arg(&ca.ca);
    }
    if let Some(pw) = password {
        cmd.args(["-a", pw, "--no-auth-warning"]);
    }
    let out = cmd
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
    tls: bool,
    _dir: tempfile::TempDir,
}

/// How a [`SentinelSet`] is secured.
#[derive(Default)]
pub struct SentinelOptions<'a> {
    /// `requirepass` of master and replica (and their `masterauth`).
    pub master_password: Option<&'a str>,
    /// `requirepass` of the sentinels.
    pub sentinel_password: Option<&'a str>,
    /// TLS everywhere (clients, replication, sentinels), certificates from
    /// this CA.
    pub tls: Option<&'a TestCa>,
}

/// Arguments that secure one data node as `o` says.
fn node_args(o: &SentinelOptions<'_>) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(pw) = o.master_password {
        a.extend([
            "--requirepass".into(),
            pw.into(),
            "--masterauth".into(),
            pw.into(),
        ]);
    }
    if let Some(ca) = o.tls {
        a.extend([
            "--tls-ca-cert-file".into(),
            ca.ca.display().to_string(),
            "--tls-replication".into(),
            "yes".into(),
        ]);
    }
    a
}

impl SentinelSet {
    /// Starts the set and waits until every sentinel knows the master and
    /// the replica is in sync.
    pub fn start(down_after: Duration) -> SentinelSet {
        Self::start_with(down_after, &SentinelOptions::default())
    }

    /// [`SentinelSet::start`] with passwords and/or TLS.
    pub fn start_with(down_after: Duration, o: &SentinelOptions<'_>) -> SentinelSet {
        let tls = o.tls.map(|ca| (ca.cert.as_path(), ca.key.as_path()));
        let master = Redis::start_with(&node_args(o), tls);
        let mut replica_args = node_args(o);
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port().to_string(),
        ]);
        let replica = Redis::start_with(&replica_args, tls);
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            let mut text = match o.tls {
                None => format!("port {port}\n"),
                Some(ca) => format!(
                    "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                    ca.cert.display(),
                    ca.key.display(),
                    ca.ca.display()
                ),
            };
            text.push_str(&format!(
                "bind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {mport} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.path().display(),
                mport = master.port(),
                down = down_after.as_millis(),
            ));
            if let Some(pw) = o.master_password {
                text.push_str(&format!("sentinel auth-pass {MASTER_NAME} {pw}\n"));
            }
            if let Some(pw) = o.sentinel_password {
                text.push_str(&format!("requirepass {pw}\n"));
            }
            std::fs::write(&conf, text).unwrap();
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
            tls: o.tls.is_some(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let synced = cli_with(
                set.replica.port(),
                o.tls,
                o.master_password,
                &["INFO", "replication"],
            )
            .contains("master_link_status:up");
            let known = set.sentinels.iter().all(|(p, _)| {
                cli_with(
                    *p,
                    o.tls,
                    o.sentinel_password,
                    &["SENTINEL", "replicas", MASTER_NAME],
                )
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

    /// The sentinels' URLs, for `sentinels = [...]` (`rediss://` with TLS;
    /// `userinfo` such as `:pw@` goes before the host).
    pub fn urls_with(&self, userinfo: &str) -> Vec<String> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        self.sentinels
            .iter()
            .map(|(p, _)| format!("{scheme}://{userinfo}127.0.0.1:{p}"))
            .collect()
    }

    /// The sentinels' URLs, without credentials.
    pub fn urls(&self) -> Vec<String> {
        self.urls_with("")
    }

    /// The port the sentinels currently name as master (plain sentinels
    /// without a password only).
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

/// A cluster of three masters, all slots assigned; no replicas until
/// [`Cluster::add_replica`] gives one to a master.
pub struct Cluster {
    /// The masters.
    pub nodes: Vec<Redis>,
    /// Replicas added by [`Cluster::add_replica`].
    pub replicas: Vec<Redis>,
    tls: Option<TestCa>,
    dir: tempfile::TempDir,
}

/// Starts one cluster-mode node (`name` names its config file in `dir`),
/// TLS only (clients, cluster bus, replication) when `tls`.
fn cluster_node(dir: &std::path::Path, name: &str, tls: Option<&TestCa>) -> Redis {
    let mut args: Vec<String> = vec![
        "--cluster-enabled".into(),
        "yes".into(),
        "--cluster-config-file".into(),
        dir.join(format!("nodes-{name}.conf")).display().to_string(),
        "--cluster-node-timeout".into(),
        "2000".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    if let Some(ca) = tls {
        args.extend([
            "--tls-cluster".into(),
            "yes".into(),
            "--tls-replication".into(),
            "yes".into(),
            "--tls-ca-cert-file".into(),
            ca.ca.display().to_string(),
        ]);
    }
    Redis::start_with(&args, tls.map(|ca| (ca.cert.as_path(), ca.key.as_path())))
}

/// `redis-cli --cluster <args>` (over TLS when `tls`); panics when it fails.
fn cluster_cli(tls: Option<&TestCa>, args: &[String]) {
    let mut cmd = Command::new("redis-cli");
    if let Some(ca) = tls {
        cmd.arg("--tls").arg("--cacert").arg(&ca.ca);
    }
    let out = cmd.arg("--cluster").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "redis-cli --cluster {} failed: {}",
        args.first().map(String::as_str).unwrap_or(""),
        String::from_utf8_lossy(&out.stdout)
    );
}

impl Cluster {
    /// Starts three nodes, creates the cluster and waits until it is ok.
    pub fn start() -> Cluster {
        Self::start_with(None)
    }

    /// [`Cluster::start`], TLS only (clients and cluster bus) when `tls`.
    pub fn start_with(tls: Option<&TestCa>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Redis> = (0..3)
            .map(|i| cluster_node(dir.path(), &i.to_string(), tls))
            .collect();
        let mut create = vec!["create".to_owned()];
        create.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
        create.push("--cluster-yes".into());
        cluster_cli(tls, &create);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| {
            cli_with(n.port(), tls, None, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
        }) {
            assert!(Instant::now() < deadline, "cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster {
            nodes,
            replicas: Vec::new(),
            tls: tls.cloned(),
            dir,
        }
    }

    /// Gives `nodes[master]` a replica (`redis-cli --cluster add-node
    /// --cluster-slave`) and waits until it is in sync and every node
    /// lists it as a replica. Returns its index in `replicas`.
    pub fn add_replica(&mut self, master: usize) -> usize {
        let tls = self.tls.as_ref();
        let name = format!("replica-{}", self.replicas.len());
        let replica = cluster_node(self.dir.path(), &name, tls);
        let master_port = self.nodes[master].port();
        let master_id = cli_with(master_port, tls, None, &["CLUSTER", "MYID"]);
        cluster_cli(
            tls,
            &[
                "add-node".into(),
                format!("127.0.0.1:{}", replica.port()),
                format!("127.0.0.1:{master_port}"),
                "--cluster-slave".into(),
                "--cluster-master-id".into(),
                master_id.trim().to_owned(),
            ],
        );
        let listed = format!("127.0.0.1:{}@", replica.port());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let synced = cli_with(replica.port(), tls, None, &["INFO", "replication"])
                .contains("master_link_status:up");
            let known = self.nodes.iter().all(|n| {
                cli_with(n.port(), tls, None, &["CLUSTER", "NODES"])
                    .lines()
                    .any(|l| l.contains(&listed) && l.contains("slave") && !l.contains("fail"))
            });
            if synced && known {
                break;
            }
            assert!(Instant::now() < deadline, "cluster replica did not settle");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.replicas.push(replica);
        self.replicas.len() - 1
    }

    /// The index in `nodes` of the master that holds `key` (which must
    /// exist): a node answers `EXISTS` for a key of another's slot with a
    /// `MOVED` redirection.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            cli_with(n.port(), self.tls.as_ref(), None, &["EXISTS", key]).trim() == "1"
        })
    }

    /// The nodes' URLs, for `cluster = [...]` (`rediss://` with TLS).
    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.nodes
            .iter()
            .map(|n| format!("{scheme}://127.0.0.1:{}", n.port()))
            .collect()
    }
}

/// A test CA and a server certificate it signed for 127.0.0.1, as PEM files.
#[derive(Clone)]
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
