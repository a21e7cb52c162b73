//! How the Redis store reaches Redis: one server, the master a set of
//! Sentinels names (followed across failovers), or a Cluster; over TLS
//! verified against the system roots or an operator-named CA file.
//!
//! [`Conn`] hides the three behind redis-rs's [`ConnectionLike`], so the
//! store's commands are written once. What differs beyond that (multi-key
//! scripts, the pub/sub connection, which replicas must confirm a
//! deletion and the `WAIT` that asks them) is asked of [`Backend`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub,
};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind,
    TlsCertificates, TlsMode, Value,
};

use super::StoreError;
use super::redis_replicas::Replicas;
use crate::config::{RedisConfig, RedisTopology};

/// How long a Redis command may take before it counts as unavailable.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting (and, with Sentinel, asking where the master is) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to whichever Redis the configuration names. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server: redis-rs's reconnecting manager.
    Server(ConnectionManager),
    /// The current master of a Sentinel set.
    Sentinel(Arc<SentinelConn>),
    /// A cluster: redis-rs's cluster client routes each command by its key.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => Box::pin(async move {
                let (generation, mut c) = s.current().await?;
                let r = c.req_packed_command(cmd).await;
                if let Err(e) = &r {
                    s.failed(generation, e);
                }
                r
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(s) => Box::pin(async move {
                let (generation, mut c) = s.current().await?;
                let r = c.req_packed_commands(pipeline, offset, count).await;
                if let Err(e) = &r {
                    s.failed(generation, e);
                }
                r
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}

/// The master of a Sentinel set: asked of the sentinels when there is no
/// connection, and asked again after any error that means the master is
/// gone or demoted (a failover), so commands follow the promotion.
pub(crate) struct SentinelConn {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The connection in use and its generation (so a late error on an old
    /// connection does not drop a newer one).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    config: AsyncConnectionConfig,
}

impl SentinelConn {
    async fn current(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.slot().clone() {
            return Ok(c);
        }
        // One discovery at a time; the others wait and use its result.
        let mut sentinel = self.sentinel.lock().await;
        if let Some(c) = self.slot().clone() {
            return Ok(c);
        }
        let dial = async {
            let client = sentinel.async_get_client().await?;
            client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT * 2, dial)
            .await
            .map_err(|_| RedisError::from((ErrorKind::Io, "master discovery timed out")))??;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *self.slot() = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the connection after an error that means "not the master any
    /// more": the next command asks the sentinels again.
    fn failed(&self, generation: u64, e: &RedisError) {
        let gone = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
            || e.to_string().contains("READONLY");
        if gone {
            let mut slot = self.slot();
            if matches!(&*slot, Some((g, _)) if *g == generation) {
                *slot = None;
            }
        }
    }
}

/// Where the pub/sub connection goes.
enum PubSubDial {
    /// The server itself.
    Server(Client),
    /// The current master, asked of the sentinels (classic pub/sub is
    /// replicated, but a promoted replica is where the publishers write).
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    /// Any node: a cluster forwards every classic `PUBLISH` to all nodes.
    Cluster(Vec<Client>),
}

/// The connection, and what the store asks of the deployment beyond
/// commands.
pub(crate) struct Backend {
    /// The command connection.
    pub conn: Conn,
    pubsub: PubSubDial,
    /// Which cluster seed the subscriber tries next.
    next_seed: AtomicU64,
}

fn config_error(what: &str) -> StoreError {
    StoreError::Config(what.to_owned())
}

fn url_info(url: &str, what: &str) -> Result<ConnectionInfo, StoreError> {
    url.into_connection_info()
        .map_err(|e| StoreError::Config(format!("{what}: {:?}", e.kind())))
}

fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), ConnectionAddr::TcpTls { .. })
}

/// Reads the CA file into the form redis-rs takes. `None`: system roots.
fn certificates(cfg: &RedisConfig) -> Result<Option<TlsCertificates>, StoreError> {
    let Some(path) = &cfg.ca_file else {
        return Ok(None);
    };
    let pem =
        std::fs::read(path).map_err(|e| StoreError::Config(format!("cannot read ca_file: {e}")))?;
    // Refuse a file with no certificate now rather than fail every handshake.
    let mut certs = <rustls_pki_types::CertificateDer<'static> as rustls_pki_types::pem::PemObject>::pem_slice_iter(&pem);
    if !certs.any(|c| c.is_ok()) {
        return Err(config_error("ca_file holds no PEM certificate"));
    }
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

fn client(info: ConnectionInfo, certs: &Option<TlsCertificates>) -> Result<Client, StoreError> {
    let r = match certs {
        Some(c) if is_tls(&info) => Client::build_with_tls(info, c.clone()),
        _ => Client::open(info),
    };
    r.map_err(|e| StoreError::Config(format!("Redis client: {:?}", e.kind())))
}

impl Backend {
    /// Builds the connection for `cfg`. Nothing is connected yet (the
    /// gateway starts while Redis is down and says so in readiness); a
    /// malformed URL or an unreadable CA file is an error.
    pub(crate) fn open(cfg: &RedisConfig) -> Result<Backend, StoreError> {
        let certs = certificates(cfg)?;
        let data = match &cfg.url {
            Some(u) => Some(url_info(u.expose(), "url")?),
            None => None,
        };
        match &cfg.topology {
            RedisTopology::Server => {
                let info = data.ok_or_else(|| config_error("url is required"))?;
                let client = client(info, &certs)?;
                let mcfg = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), mcfg)
                    .map_err(|e| StoreError::Config(format!("{:?}", e.kind())))?;
                Ok(Backend {
                    conn: Conn::Server(conn),
                    pubsub: PubSubDial::Server(client),
                    next_seed: AtomicU64::new(0),
                })
            }
            RedisTopology::Sentinel { sentinels, master } => {
                let sentinel = || sentinel_client(sentinels, master, data.as_ref(), &certs);
                let conn = SentinelConn {
                    sentinel: tokio::sync::Mutex::new(sentinel()?),
                    current: Mutex::new(None),
                    generation: AtomicU64::new(0),
                    config: AsyncConnectionConfig::new()
                        .set_response_timeout(Some(RESPONSE_TIMEOUT))
                        .set_connection_timeout(Some(CONNECT_TIMEOUT)),
                };
                Ok(Backend {
                    conn: Conn::Sentinel(Arc::new(conn)),
                    pubsub: PubSubDial::Sentinel(tokio::sync::Mutex::new(sentinel()?)),
                    next_seed: AtomicU64::new(0),
                })
            }
            RedisTopology::Cluster { nodes } => {
                let (conn, seeds) = cluster(nodes, data.as_ref(), &certs)?;
                Ok(Backend {
                    conn: Conn::Cluster(conn),
                    pubsub: PubSubDial::Cluster(seeds),
                    next_seed: AtomicU64::new(0),
                })
            }
        }
    }

    /// Whether multi-key scripts must be split (keys of one operation may
    /// live in different slots).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// A pub/sub connection for the revocation channel.
    pub(crate) async fn pubsub(&self) -> RedisResult<PubSub> {
        match &self.pubsub {
            PubSubDial::Server(c) => c.get_async_pubsub().await,
            PubSubDial::Sentinel(s) => {
                let client = s.lock().await.async_get_client().await?;
                client.get_async_pubsub().await
            }
            PubSubDial::Cluster(seeds) => {
                let n = seeds.len().max(1) as u64;
                let i = self.next_seed.fetch_add(1, Ordering::Relaxed) % n;
                let seed = seeds
                    .get(usize::try_from(i).unwrap_or(0))
                    .ok_or_else(|| RedisError::from((ErrorKind::Client, "no cluster seed")))?;
                seed.get_async_pubsub().await
            }
        }
    }

    /// The replicas that must confirm a deletion, as they are now: the
    /// master's (`ROLE`), or each cluster master's with its slots
    /// (`CLUSTER NODES`).
    pub(crate) async fn replicas(&self) -> RedisResult<Replicas> {
        let mut c = self.conn.clone();
        match &self.conn {
            Conn::Cluster(_) => {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut c)
                    .await?;
                Ok(Replicas::from_cluster_nodes(&nodes))
            }
            _ => {
                let role: redis::Role = redis::cmd("ROLE").query_async(&mut c).await?;
                Ok(Replicas::Master(match role {
                    redis::Role::Primary { replicas, .. } => replicas.len(),
                    _ => 0,
                }))
            }
        }
    }

    /// `WAIT 1 <timeout>`: how many replicas (0 or 1) have every write this
    /// process sent to the master. On a cluster, asked of the master that
    /// owns `key`'s slot (`None`: of every master, the fewest answered).
    pub(crate) async fn wait_for_replica(
        &self,
        key: Option<&str>,
        timeout: Duration,
    ) -> RedisResult<i64> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(super::ms(timeout));
        match (&self.conn, key) {
            (Conn::Cluster(c), Some(key)) => {
                // WAIT counts the writes of the connection it arrives on.
                // The cluster client keeps one multiplexed connection per
                // node (its connection map is keyed by address; clones
                // share the socket), and routes a command for a slot, keyed
                // or routed as here, through its slot map to the same
                // master's connection: so this WAIT follows, on the same
                // socket, the deletion just sent for `key`.
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let acked = c.clone().route_command(wait, to).await?;
                Ok(redis::from_redis_value(acked)?)
            }
            _ => wait.query_async(&mut self.conn.clone()).await,
        }
    }
}

fn sentinel_client(
    sentinels: &[crate::config::Secret],
    master: &str,
    data: Option<&ConnectionInfo>,
    certs: &Option<TlsCertificates>,
) -> Result<SentinelClient, StoreError> {
    let infos = sentinels
        .iter()
        .map(|s| url_info(s.expose(), "sentinels"))
        .collect::<Result<Vec<_>, _>>()?;
    let first = infos.first().ok_or_else(|| config_error("no sentinels"))?;
    let mut b = SentinelClientBuilder::new(
        infos.iter().map(|i| i.addr().clone()),
        master,
        SentinelServerType::Master,
    )
    .map_err(|e| StoreError::Config(format!("sentinels: {:?}", e.kind())))?;
    // The sentinels' own credentials (from their URLs; `check` makes sure
    // they agree), separate from the data nodes'.
    let s = first.redis_settings();
    if let Some(u) = s.username() {
        b = b.set_client_to_sentinel_username(u);
    }
    if let Some(p) = s.password() {
        b = b.set_client_to_sentinel_password(p);
    }
    if is_tls(first)
        && let Some(c) = certs
    {
        b = b.set_client_to_sentinel_certificates(c.clone());
    }
    if let Some(d) = data {
        let r = d.redis_settings();
        if let Some(u) = r.username() {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = r.password() {
            b = b.set_client_to_redis_password(p);
        }
        b = b.set_client_to_redis_db(r.db());
        if is_tls(d) {
            b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
            if let Some(c) = certs {
                b = b.set_client_to_redis_certificates(c.clone());
            }
        }
    }
    b.build()
        .map_err(|e| StoreError::Config(format!("sentinels: {:?}", e.kind())))
}

fn cluster(
    nodes: &[crate::config::Secret],
    data: Option<&ConnectionInfo>,
    certs: &Option<TlsCertificates>,
) -> Result<(ClusterConnection, Vec<Client>), StoreError> {
    let tls = data.is_some_and(is_tls);
    let mut infos = Vec::new();
    for n in nodes {
        let mut info = url_info(n.expose(), "cluster")?;
        // The data nodes' credentials and TLS come from `url` when given.
        if let Some(d) = data {
            info = info.set_redis_settings(d.redis_settings().clone());
        }
        infos.push(info);
    }
    let mut b = ClusterClientBuilder::new(infos.clone())
        .retries(2)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT);
    if tls {
        b = b.tls(TlsMode::Secure);
    }
    if let Some(c) = certs
        && (tls || infos.iter().any(is_tls))
    {
        b = b.certs(c.clone());
    }
    let cc = b
        .build()
        .map_err(|e| StoreError::Config(format!("cluster: {:?}", e.kind())))?;
    let conn = cc.get_pending_async_connection_with_config(
        ClusterConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT),
    );
    let mut seeds = Vec::new();
    for info in infos {
        let info = if tls && !is_tls(&info) {
            let (host, port) = match info.addr() {
                ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
                _ => return Err(config_error("cluster: seed nodes must be host:port")),
            };
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
            .into_connection_info()
            .map_err(|_| config_error("cluster: seed node"))?
            .set_redis_settings(info.redis_settings().clone())
        } else {
            info
        };
        seeds.push(client(info, certs)?);
    }
    Ok((conn, seeds))
}
