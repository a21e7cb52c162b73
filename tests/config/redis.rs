//! `[session.redis]`: URL files, Sentinel and Cluster topologies and node lists, `ca_file`.

use std::time::Duration;

use portcullis::config::StoreConfig;

use super::*;

#[test]
fn redis_url_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("redis"), "redis://:pw@127.0.0.1:6379/0\n").unwrap();
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\nstore = \"redis\"\n[session.redis]\nurl_file = \"redis\"",
    );
    let c = config::load_from_str(&dir.path().join("gw.toml"), &src, &env)
        .unwrap()
        .config;
    match c.session.unwrap().store {
        StoreConfig::Redis(r) => {
            assert_eq!(
                r.url.as_ref().unwrap().expose(),
                "redis://:pw@127.0.0.1:6379/0"
            );
            assert_eq!(r.cache_ttl, Duration::from_secs(5));
        }
        StoreConfig::Memory => panic!("expected redis"),
    }
}

/// A configuration whose `[session.redis]` section is `redis` (its first line is
/// line 13).
fn with_redis(redis: &str) -> String {
    base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        &format!(
            "secret = \"${{PORTCULLIS_SECRET}}\"\nstore = \"redis\"\n[session.redis]\n{redis}"
        ),
    )
}

fn redis_config(redis: &str) -> portcullis::config::RedisConfig {
    let c = load(&with_redis(redis)).unwrap().config;
    match c.session.unwrap().store {
        StoreConfig::Redis(r) => r,
        StoreConfig::Memory => panic!("expected redis"),
    }
}

#[test]
fn redis_sentinel_and_cluster_load() {
    use portcullis::config::RedisTopology;
    let r = redis_config(
        "sentinels = [\"redis://:spw@127.0.0.1:26379\", \"redis://:spw@127.0.0.1:26380\"]\nsentinel_master = \"mymaster\"\nurl = \"rediss://:pw@ignored:1/2\"",
    );
    match r.topology {
        RedisTopology::Sentinel { sentinels, master } => {
            assert_eq!(sentinels.len(), 2);
            assert_eq!(master, "mymaster");
        }
        t => panic!("expected sentinel, got {t:?}"),
    }
    let r = redis_config("cluster = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001/0\"]");
    assert!(matches!(r.topology, RedisTopology::Cluster { nodes } if nodes.len() == 2));
    assert!(r.url.is_none(), "url is optional with cluster");
}

#[test]
fn redis_sentinel_and_cluster_together_is_an_error() {
    assert_one_error(
        &with_redis(
            "sentinels = [\"redis://127.0.0.1:26379\"]\nsentinel_master = \"m\"\ncluster = [\"redis://127.0.0.1:7000\"]",
        ),
        15,
        1,
        "either `sentinels` (Redis Sentinel) or `cluster`",
    );
}

#[test]
fn redis_sentinels_need_a_master_name_and_back() {
    assert_one_error(
        &with_redis("sentinels = [\"redis://127.0.0.1:26379\"]"),
        13,
        1,
        "`sentinels` needs `sentinel_master`",
    );
    assert_one_error(
        &with_redis("url = \"redis://127.0.0.1:6379\"\nsentinel_master = \"m\""),
        14,
        19,
        "`sentinel_master` needs `sentinels`",
    );
}

#[test]
fn redis_cluster_has_only_db_0() {
    assert_one_error(
        &with_redis("cluster = [\"redis://127.0.0.1:7000\"]\nurl = \"redis://127.0.0.1/3\""),
        14,
        7,
        "a Redis Cluster has only database 0",
    );
    assert_one_error(
        &with_redis("cluster = [\"redis://127.0.0.1:7000/1\"]"),
        13,
        12,
        "only database 0",
    );
}

#[test]
fn redis_node_lists_are_checked_entry_by_entry() {
    assert_one_error(
        &with_redis("cluster = []"),
        13,
        11,
        "`cluster` must list at least one URL",
    );
    assert_one_error(
        &with_redis(
            "sentinels = [\"redis://127.0.0.1:26379\", \"http://127.0.0.1:26380\"]\nsentinel_master = \"m\"",
        ),
        13,
        41,
        "must be a redis:// or rediss:// URL",
    );
    assert_one_error(
        &with_redis(
            "sentinels = [\"redis://:a@127.0.0.1:26379\", \"redis://:b@127.0.0.1:26380\"]\nsentinel_master = \"m\"",
        ),
        13,
        44,
        "same credentials",
    );
    assert_one_error(
        &with_redis("sentinels = [\"redis://127.0.0.1:26379/1\"]\nsentinel_master = \"m\""),
        13,
        14,
        "selects no database",
    );
    // A unix socket makes no sense beside sentinels.
    assert_one_error(
        &with_redis(
            "sentinels = [\"redis://127.0.0.1:26379\"]\nsentinel_master = \"m\"\nurl = \"unix:///run/redis.sock\"",
        ),
        15,
        7,
        "must be redis or rediss",
    );
}

#[test]
fn redis_url_or_a_topology_is_required() {
    assert_one_error(
        &with_redis("cache_ttl = \"1s\""),
        12,
        10,
        "missing key `url`",
    );
}

#[test]
fn redis_old_style_sentinel_urls_point_to_the_keys() {
    assert_one_error(
        &with_redis("url = \"redis+sentinel://127.0.0.1:26379/mymaster\""),
        13,
        7,
        "use `sentinels` or `cluster`",
    );
}

#[test]
fn redis_ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let src = with_redis("url = \"rediss://127.0.0.1:6379\"\nca_file = \"empty.pem\"");
    let err = config::load_from_str(&dir.path().join("gw.toml"), &src, &env).unwrap_err();
    let ConfigError::Invalid(d) = err else {
        panic!("expected diagnostics")
    };
    assert!(
        d.iter()
            .any(|d| d.line == 14 && d.message.contains("holds no PEM certificate")),
        "{d:#?}"
    );
    assert_one_error(
        &with_redis("url = \"rediss://127.0.0.1:6379\"\nca_file = \"/nonexistent/ca.pem\""),
        14,
        11,
        "cannot read ca_file `/nonexistent/ca.pem`",
    );
    // Without rediss:// anywhere the file would be ignored: say so.
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    let src = with_redis("url = \"redis://127.0.0.1:6379\"\nca_file = \"ca.pem\"");
    let l = config::load_from_str(&dir.path().join("gw.toml"), &src, &env).unwrap();
    assert!(
        l.warnings
            .iter()
            .any(|w| w.message.contains("ca_file has no effect")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn redis_store_needs_redis_section() {
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\nstore = \"redis\"",
    );
    assert_one_error(&src, 11, 9, "needs a [session.redis] section");
}
