//! The gateway operated the way `deploy/` runs it: `portcullis check` on the
//! configuration of a running gateway (what `systemctl reload` does first),
//! the systemd unit's own `ExecReload` lines against a running gateway (also
//! under load), and `portcullis probe` (the container `HEALTHCHECK`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Gateway, Upstream};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A config with a public and an admin listener and one open route per
/// `(prefix, upstream)`.
fn config(routes: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "[server]\nlisten = \"{listen}\"\npublic_url = \"{public_url}\"\nadmin_listen = \"{admin_listen}\"\n",
    );
    for (prefix, upstream) in routes {
        out.push_str(&format!(
            "\n[[route]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\nauth = \"none\"\n"
        ));
    }
    out
}

fn check(path: &Path) -> Output {
    Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(path)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_passes_on_the_configuration_of_the_running_gateway() {
    let upstream = Upstream::start();
    let gw = Gateway::builder(&config(&[("/", &upstream.url())])).start();
    let out = check(gw.config_path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The same addresses in another file: that file's gateway is not
    // running, so the addresses are in use by something else.
    let copy = gw.dir().join("copy.toml");
    std::fs::copy(gw.config_path(), &copy).unwrap();
    let out = check(&copy);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&gw.addr().to_string()) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn check_still_reports_a_new_address_taken_by_another_program() {
    let upstream = Upstream::start();
    let gw = Gateway::builder(&config(&[("/", &upstream.url())])).start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = taken.local_addr().unwrap();
    let current = std::fs::read_to_string(gw.config_path()).unwrap();
    let next = current.replace(
        &format!("listen = \"{}\"", gw.addr()),
        &format!("listen = [\"{}\", \"{other}\"]", gw.addr()),
    );
    assert_ne!(current, next);
    gw.rewrite_config(&next);
    let out = check(gw.config_path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{other} is in use")), "{stderr}");
    assert!(
        !stderr.contains(&format!("{} is in use", gw.addr())),
        "{stderr}"
    );
}

/// The unit's `ExecReload=` command lines, in order, for a gateway binary
/// at `bin`, a config at `config` and a main process `pid`.
fn exec_reload_lines(bin: &str, config: &Path, pid: u32) -> Vec<Vec<String>> {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/portcullis.service"),
    )
    .unwrap();
    let lines: Vec<Vec<String>> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ExecReload="))
        .map(|command| {
            // No `-`/`@`/`+` prefixes and no quoting in this unit: a plain
            // whitespace split is systemd's reading of these lines.
            assert!(
                !command.starts_with(['-', '@', '+', '!', ':']) && !command.contains(['"', '\'']),
                "extend the parser for: {command}"
            );
            command
                .split_whitespace()
                .map(|word| {
                    word.replace("/usr/local/bin/portcullis", bin)
                        .replace(
                            "/etc/portcullis/gateway.toml",
                            &config.display().to_string(),
                        )
                        .replace("$MAINPID", &pid.to_string())
                })
                .collect()
        })
        .collect();
    assert!(lines.len() >= 2, "the unit checks, then signals: {lines:?}");
    lines
}

/// Runs the reload lines as systemd does: in order, stopping at the first
/// failure (which fails `systemctl reload`).
fn systemctl_reload(gw: &Gateway) {
    for argv in exec_reload_lines(BIN, gw.config_path(), gw.pid()) {
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{argv:?} failed: {}", text(&out));
    }
}

#[tokio::test]
async fn the_units_exec_reload_serves_the_new_route() {
    let old = Upstream::start();
    let new = Upstream::start();
    let gw = Gateway::builder(&config(&[("/", &old.url())])).start();
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(gw.url("/new/x")).send().await.unwrap().status(),
        200
    );
    assert_eq!((old.request_count(), new.request_count()), (1, 0));

    // Routes match in file order: the new prefix goes before `/`.
    gw.rewrite_config(&config(&[("/new/", &new.url()), ("/", &old.url())]));
    systemctl_reload(&gw);
    assert!(
        gw.wait_for_log("message", "configuration reloaded", Duration::from_secs(5))
            .is_some(),
        "no reload logged"
    );
    assert_eq!(
        client.get(gw.url("/new/x")).send().await.unwrap().status(),
        200
    );
    assert_eq!(new.request_count(), 1, "the new route is served");
    assert_eq!(new.last_request().unwrap().path(), "/new/x");
}

#[tokio::test]
async fn reload_under_load_drops_no_request() {
    let upstream = Upstream::start();
    let latest = Upstream::start();
    let gw = Gateway::builder(&config(&[("/", &upstream.url())])).start();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    // Four clients, each its own connection pool, looping until told to stop.
    for n in 0..4 {
        let (url, stop, ok, failures) = (
            gw.url(&format!("/load/{n}")),
            stop.clone(),
            ok.clone(),
            failures.clone(),
        );
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(format!("{e:?}")),
                }
            }
        }));
    }
    let before_reloads = Instant::now();
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let prefix = format!("/round{round}/");
        gw.rewrite_config(&config(&[(&prefix, &latest.url()), ("/", &upstream.url())]));
        let pid = gw.pid();
        let config = gw.config_path().to_owned();
        tokio::task::spawn_blocking(move || {
            for argv in exec_reload_lines(BIN, &config, pid) {
                let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
                assert!(out.status.success(), "{argv:?} failed: {}", text(&out));
            }
        })
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reloads = gw
            .json_logs()
            .iter()
            .filter(|l| support::log_field(l, "message") == Some("configuration reloaded"))
            .count();
        if reloads == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "{reloads} of 5 reloads applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = ok.load(Ordering::Relaxed);
    eprintln!(
        "{served} requests served through 5 reloads in {:?}",
        before_reloads.elapsed()
    );
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        served + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        served >= 100,
        "the clients kept requests in flight through the reloads ({served} in {:?})",
        before_reloads.elapsed()
    );
    let client = reqwest::Client::new();
    let last = client.get(gw.url("/round4/x")).send().await.unwrap();
    assert_eq!(last.status(), 200);
    assert_eq!(
        latest.last_request().unwrap().path(),
        "/round4/x",
        "the last reload's route is served"
    );
}

fn probe(url: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("probe")
        .arg(url)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn probe_succeeds_on_2xx_and_fails_otherwise() {
    let upstream = Upstream::start();
    let gw = Gateway::builder(&config(&[("/", &upstream.url())])).start();
    let out = probe(&gw.admin_url("/healthz"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("200"),
        "{}",
        text(&out)
    );

    // The image's HEALTHCHECK names no URL: it comes from the environment.
    let out = Command::new(BIN)
        .arg("probe")
        .env("PORTCULLIS_PROBE_URL", gw.admin_url("/readyz"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = probe(&gw.admin_url("/nothing-here"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        text(&out)
    );

    let closed = support::unused_addr();
    let out = probe(&format!("http://{closed}/healthz"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = probe("ftp://127.0.0.1/", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn probe_gives_up_on_a_server_that_never_answers() {
    let silent = support::silent_upstream();
    let started = Instant::now();
    let out = probe(&format!("{}/healthz", silent.url()), &["--timeout", "1s"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out"),
        "{}",
        text(&out)
    );
}
