//! Revocation propagation across a fleet on Redis (run by
//! `bench/propagation.sh`): three session services (three instances, each
//! with its own Redis connections, subscription and local cache) on one
//! Redis deployment. For each of N logouts: a session is created on A and
//! read on B and C (so both hold it in their local cache, `cache_ttl` 60 s),
//! deleted on A, and each instance is polled until it refuses the session.
//! Prints one Markdown table row: the logout's own latency (which includes
//! `WAIT` when the master has a replica) and the time from the logout's
//! start until each instance refuses, p50/p99/max.
//!
//! usage: propagation <mode label> <n> (server <url> | sentinel <master> <sentinel url>... | cluster <node url>...)

use std::time::{Duration, Instant, SystemTime};

use portcullis::config::{
    RedisConfig, RedisTopology, SameSite, Secret, SessionConfig, StoreConfig,
};
use portcullis::oidc::IdentityClaims;
use portcullis::session::{NewSession, Sessions};

fn usage() -> ! {
    eprintln!(
        "usage: propagation <label> <n> (server <url> | sentinel <master> <sentinel url>... | cluster <node url>...)"
    );
    std::process::exit(2)
}

fn redis_config(args: &[String]) -> RedisConfig {
    let cache_ttl = Duration::from_secs(60);
    match args.first().map(String::as_str) {
        Some("server") if args.len() == 2 => RedisConfig::server(args[1].clone(), cache_ttl),
        Some("sentinel") if args.len() >= 3 => RedisConfig {
            url: None,
            topology: RedisTopology::Sentinel {
                sentinels: args[2..].iter().cloned().map(Secret::new).collect(),
                master: args[1].clone(),
            },
            ca_file: None,
            cache_ttl,
        },
        Some("cluster") if args.len() >= 2 => RedisConfig {
            url: None,
            topology: RedisTopology::Cluster {
                nodes: args[1..].iter().cloned().map(Secret::new).collect(),
            },
            ca_file: None,
            cache_ttl,
        },
        _ => usage(),
    }
}

fn login(i: usize) -> NewSession {
    NewSession {
        claims: IdentityClaims {
            iss: "https://idp.example".into(),
            sub: format!("user-{i}"),
            sid: Some(format!("sid-{i}")),
            email: None,
            email_verified: false,
            preferred_username: None,
            groups: Vec::new(),
        },
        id_token: Secret::new("id"),
        access_token: Secret::new("at"),
        access_token_expires_at: Some(SystemTime::now() + Duration::from_secs(300)),
        refresh_token: None,
    }
}

/// The q-quantile (0..=1) of sorted values, in ms.
fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "{:.2} / {:.2} / {:.2}",
        quantile(&v, 0.5),
        quantile(&v, 0.99),
        quantile(&v, 1.0)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        usage();
    }
    let label = &args[0];
    let n: usize = args[1].parse().unwrap_or_else(|_| usage());
    let cfg = SessionConfig {
        secrets: vec![Secret::new("propagation-bench-secret-0123456789abcdef")],
        cookie_name: "portcullis".into(),
        cookie_domain: None,
        cookie_samesite: SameSite::Lax,
        persistent: false,
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: Duration::from_secs(3600),
        store: StoreConfig::Redis(redis_config(&args[2..])),
    };
    let instances = [
        Sessions::new(&cfg).await?,
        Sessions::new(&cfg).await?,
        Sessions::new(&cfg).await?,
    ];
    for s in &instances {
        s.ready().await?;
    }
    let mut logout = Vec::with_capacity(n);
    let mut refused: [Vec<Duration>; 3] = Default::default();
    for i in 0..n {
        let (id, session) = instances[0].create(login(i)).await?;
        let cookie = id.to_cookie_value();
        for s in &instances {
            assert!(s.load_without_slide(&cookie).await?.is_some(), "cached");
        }
        let started = Instant::now();
        instances[0].delete(&session).await?;
        logout.push(started.elapsed());
        let mut pending = [true; 3];
        let limit = started + Duration::from_secs(5);
        while pending.iter().any(|p| *p) {
            for (k, s) in instances.iter().enumerate() {
                if pending[k] && s.load_without_slide(&cookie).await?.is_none() {
                    pending[k] = false;
                    refused[k].push(started.elapsed());
                }
            }
            if Instant::now() > limit {
                return Err(format!("logout {i}: still served 5 s later").into());
            }
            tokio::task::yield_now().await;
        }
    }
    let [a, b, c] = refused;
    println!(
        "| {label} | {n} | {} | {} | {} | {} |",
        stats(logout),
        stats(a),
        stats(b),
        stats(c)
    );
    Ok(())
}
