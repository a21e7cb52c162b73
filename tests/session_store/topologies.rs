//! The store suite over TLS (system roots and `ca_file`), on Sentinel and on Cluster.

use std::process::Command;

use portcullis::session::store::Store;

use super::lifecycle::create_load_delete;
use super::revocation::{indexes_follow_sessions, revoke_once_claims_and_deletes_together};
use super::single_use::single_use_values;
use super::*;

/// `rediss://`: the gateway talks TLS to Redis and verifies the server
/// against the system roots. The trusted run happens in a child process of
/// this test binary with `SSL_CERT_FILE` naming the test CA, so no test
/// mutates its own environment.
#[tokio::test]
async fn redis_over_tls_verifies_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = dir.path().join("redis.crt");
    let key = dir.path().join("redis.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let server = Redis::start_tls(&cert, &key);
    let port = server.port();
    let url = format!("rediss://127.0.0.1:{port}/0");

    // Untrusted server certificate: an error, never a session.
    let cfg = config(
        StoreConfig::Redis(RedisConfig::server(url.clone(), Duration::from_secs(5))),
        LONG,
        LONG,
    );
    let s = Sessions::new(&cfg).await.unwrap();
    assert!(is_store_error(s.create(login("pat", None)).await));
    assert!(is_store_error(s.ready().await));

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            // `--exact` compares the full name, module path included.
            "topologies::redis_over_tls_child",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", &cert)
        .env("PORTCULLIS_TEST_REDISS_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "trusted TLS run failed:\n{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[tokio::test]
#[ignore = "run by redis_over_tls_verifies_the_server in a child process"]
async fn redis_over_tls_child() {
    let url = std::env::var("PORTCULLIS_TEST_REDISS_URL").unwrap();
    let cfg = config(
        StoreConfig::Redis(RedisConfig::server(url, Duration::from_secs(5))),
        LONG,
        LONG,
    );
    let s = Sessions::new(&cfg).await.unwrap();
    let Store::Redis(r) = s.store() else {
        panic!("redis store expected")
    };
    assert!(r.is_subscribed(), "subscription over TLS");
    create_load_delete(s).await;
}

/// The suite's basic paths over rediss:// with `ca_file` naming a test CA
/// (no system roots involved).
#[tokio::test]
async fn tls_ca_file_create_load_delete() {
    let dir = tempfile::tempdir().unwrap();
    let ca = support::redis_ha::TestCa::new(dir.path(), "suite");
    let r = Redis::start_tls(&ca.cert, &ca.key);
    let mut rc = RedisConfig::server(
        format!("rediss://127.0.0.1:{}/0", r.port()),
        Duration::from_secs(5),
    );
    rc.ca_file = Some(ca.ca.clone());
    let s = Sessions::new(&config(StoreConfig::Redis(rc), LONG, LONG))
        .await
        .unwrap();
    let Store::Redis(store) = s.store() else {
        panic!("redis store expected")
    };
    assert!(store.is_subscribed(), "subscription over TLS");
    create_load_delete(s.clone()).await;
    revoke_once_claims_and_deletes_together(s.clone()).await;
    single_use_values(s).await;
}

/// Sentinel with separate credentials: the sentinels require one password
/// (in their URLs), master and replica another (in `url`, whose host is
/// ignored). A wrong master password is an error, never a session.
#[tokio::test]
async fn sentinel_authenticates_to_sentinels_and_master_separately() {
    use portcullis::config::RedisTopology;
    use support::redis_ha::{MASTER_NAME, SentinelOptions, SentinelSet};
    let set = SentinelSet::start_with(
        Duration::from_secs(5),
        &SentinelOptions {
            master_password: Some("master-pw"),
            sentinel_password: Some("sentinel-pw"),
            tls: None,
        },
    );
    let store = |data_pw: &str| {
        StoreConfig::Redis(RedisConfig {
            url: Some(Secret::new(format!("redis://:{data_pw}@ignored.invalid/0"))),
            topology: RedisTopology::Sentinel {
                sentinels: set
                    .urls_with(":sentinel-pw@")
                    .into_iter()
                    .map(Secret::new)
                    .collect(),
                master: MASTER_NAME.into(),
            },
            ca_file: None,
            cache_ttl: Duration::from_secs(5),
        })
    };
    let s = Sessions::new(&config(store("master-pw"), LONG, LONG))
        .await
        .unwrap();
    let Store::Redis(r) = s.store() else {
        panic!("redis store expected")
    };
    assert!(r.is_subscribed(), "subscribed on the master");
    create_load_delete(s).await;

    let wrong = Sessions::new(&config(store("not-the-password"), LONG, LONG))
        .await
        .unwrap();
    assert!(is_store_error(wrong.create(login("pat", None)).await));
}

/// Sentinel over TLS end to end (sentinels, master, replication), verified
/// against `ca_file`.
#[tokio::test]
async fn sentinel_over_tls_with_ca_file() {
    use portcullis::config::RedisTopology;
    use support::redis_ha::{MASTER_NAME, SentinelOptions, SentinelSet, TestCa};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "sentinel");
    let set = SentinelSet::start_with(
        Duration::from_secs(5),
        &SentinelOptions {
            tls: Some(&ca),
            ..Default::default()
        },
    );
    let cfg = StoreConfig::Redis(RedisConfig {
        url: Some(Secret::new("rediss://ignored.invalid/0")),
        topology: RedisTopology::Sentinel {
            sentinels: set.urls().into_iter().map(Secret::new).collect(),
            master: MASTER_NAME.into(),
        },
        ca_file: Some(ca.ca.clone()),
        cache_ttl: Duration::from_secs(5),
    });
    let s = Sessions::new(&config(cfg, LONG, LONG)).await.unwrap();
    create_load_delete(s.clone()).await;
    revoke_once_claims_and_deletes_together(s).await;
}

/// A cluster over TLS (clients and bus), verified against `ca_file`.
#[tokio::test]
async fn cluster_over_tls_with_ca_file() {
    use portcullis::config::RedisTopology;
    use support::redis_ha::{Cluster, TestCa};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster");
    let c = Cluster::start_with(Some(&ca));
    let cfg = StoreConfig::Redis(RedisConfig {
        url: None,
        topology: RedisTopology::Cluster {
            nodes: c.urls().into_iter().map(Secret::new).collect(),
        },
        ca_file: Some(ca.ca.clone()),
        cache_ttl: Duration::from_secs(5),
    });
    let s = Sessions::new(&config(cfg, LONG, LONG)).await.unwrap();
    create_load_delete(s.clone()).await;
    indexes_follow_sessions(s).await;
}
