//! The session layer against real stores: the embedded memory store and a
//! real `redis-server` started per test on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

use std::time::{Duration, SystemTime};

use portcullis::config::{RedisConfig, SameSite, Secret, SessionConfig, StoreConfig};
use portcullis::oidc::IdentityClaims;
use portcullis::session::{NewSession, SessionError, Sessions};

use support::Redis;

#[path = "../support/mod.rs"]
mod support;

const SECRET_A: &str = "test-secret-A-0123456789abcdef0123456789";
const SECRET_B: &str = "test-secret-B-0123456789abcdef0123456789";
const ISS: &str = "https://idp.example";

/// A raw connection to a test's redis-server, to change data behind the
/// gateway's back.
async fn raw(r: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(r.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn config(store: StoreConfig, idle: Duration, max: Duration) -> SessionConfig {
    SessionConfig {
        secrets: vec![Secret::new(SECRET_A)],
        cookie_name: "portcullis".into(),
        cookie_domain: None,
        cookie_samesite: SameSite::Lax,
        persistent: false,
        idle_timeout: idle,
        max_lifetime: max,
        store,
    }
}

fn redis_store(r: &Redis, cache_ttl: Duration) -> StoreConfig {
    StoreConfig::Redis(RedisConfig::server(r.url(), cache_ttl))
}

fn login(sub: &str, sid: Option<&str>) -> NewSession {
    NewSession {
        claims: IdentityClaims {
            iss: ISS.into(),
            sub: sub.into(),
            sid: sid.map(Into::into),
            email: Some(format!("{sub}@example.com")),
            email_verified: true,
            preferred_username: Some(sub.into()),
            groups: vec!["staff".into()],
        },
        id_token: Secret::new(format!("id-token-of-{sub}")),
        access_token: Secret::new(format!("access-token-of-{sub}")),
        access_token_expires_at: Some(SystemTime::now() + Duration::from_secs(300)),
        refresh_token: Some(Secret::new("refresh")),
    }
}

const LONG: Duration = Duration::from_secs(3600);

/// Runs one async test body over the memory store and over a fresh Redis.
macro_rules! both_stores {
    ($mem:ident, $red:ident, $body:ident, $idle:expr, $max:expr) => {
        #[tokio::test]
        async fn $mem() {
            let s = Sessions::new(&config(StoreConfig::Memory, $idle, $max))
                .await
                .unwrap();
            $body(s).await;
        }
        #[tokio::test]
        async fn $red() {
            let r = Redis::start();
            let s = Sessions::new(&config(
                redis_store(&r, Duration::from_secs(5)),
                $idle,
                $max,
            ))
            .await
            .unwrap();
            $body(s).await;
        }
    };
}

fn is_store_error<T: std::fmt::Debug>(r: Result<T, SessionError>) -> bool {
    matches!(r, Err(SessionError::Store(_)))
}

fn cluster_store(c: &support::redis_ha::Cluster) -> StoreConfig {
    use portcullis::config::RedisTopology;
    StoreConfig::Redis(RedisConfig {
        url: None,
        topology: RedisTopology::Cluster {
            nodes: c.urls().into_iter().map(Secret::new).collect(),
        },
        ca_file: None,
        cache_ttl: Duration::from_secs(5),
    })
}

/// The store suite again on a three-master Redis Cluster: a session's
/// record, its `sid` and `sub` index entries, claims and locks hash to
/// different slots, and every path must work without `CROSSSLOT`.
macro_rules! on_cluster {
    ($name:ident, $body:ident, $idle:expr, $max:expr) => {
        #[tokio::test]
        async fn $name() {
            let c = support::redis_ha::Cluster::start();
            let s = Sessions::new(&config(cluster_store(&c), $idle, $max))
                .await
                .unwrap();
            $body(s).await;
        }
    };
}

// Declared after the macros above, which are in scope only below their definitions.
mod lifecycle;
mod redis_cache;
mod redis_failures;
mod revocation;
mod rotation;
mod single_use;
mod topologies;
mod writes;
