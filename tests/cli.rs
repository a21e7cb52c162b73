//! The command line as an operator uses it: `--version`, `check` with every
//! problem at `path:line:column`, a listen address in use, SIGHUP reload,
//! `$PORTCULLIS_CONFIG` and `--log-format pretty`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Gateway, Signal, Upstream, run_check};

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("portcullis {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_a_valid_file_and_prints_warnings() {
    let out = run_check(
        r#"[server]
listen = "{listen}"
public_url = "{public_url}"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:9"
auth = "none"

[logout]
clear_site_data = ["storage", "cookies"]
"#,
    );
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let path = out.config_path.display().to_string();
    assert!(
        out.stderr.contains(&format!("{path}:11:")) && out.stderr.contains("warning:"),
        "the cookies warning names its line: {}",
        out.stderr
    );
}

#[test]
fn check_reports_every_problem_with_its_position() {
    let out = run_check(
        r#"[server]
listn = "127.0.0.1:1"
listen = "{listen}"
public_url = "http://gateway.example.com"

[[route]]
prefix = "/"
upstream = "ftp://127.0.0.1:9"
auth = "sometimes"
timeout = "soon"
"#,
    );
    assert_eq!(out.code, Some(1));
    let path = out.config_path.display().to_string();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with(&path))
        .collect();
    let expect = [
        ("2:1", "listen"),             // unknown key, with the suggestion
        ("4:", "allow_insecure_http"), // non-loopback http public URL
        ("8:", "upstream"),            // bad scheme
        ("9:", "sometimes"),           // bad enum value
        ("10:", "duration"),           // bad duration
    ];
    for (pos, fragment) in expect {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{path}:{pos}")) && l.contains(fragment)),
            "no diagnostic at {pos} mentioning {fragment:?} in:\n{}",
            out.stderr
        );
    }
    assert!(lines.len() >= 5, "{}", out.stderr);
}

#[test]
fn a_listen_address_in_use_is_reported_at_its_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = format!(
        "[server]\nlisten = \"{addr}\"\npublic_url = \"http://{addr}\"\n\n[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
    );
    let out = run_check(&config);
    assert_eq!(out.code, Some(1));
    let path = out.config_path.display().to_string();
    assert!(out.stderr.contains(&format!("{path}:2:")), "{}", out.stderr);

    let err = match Gateway::builder(&config)
        .startup_timeout(Duration::from_secs(5))
        .try_start()
    {
        Ok(_) => panic!("started on an address in use"),
        Err(err) => err,
    };
    assert!(
        err.logs
            .iter()
            .any(|l| l.contains(":2:") && l.contains(&addr.to_string())),
        "{err}"
    );
}

#[tokio::test]
async fn sighup_reloads_and_a_bad_reload_keeps_the_running_config() {
    let first = Upstream::start();
    let second = Upstream::start();
    let config = |upstream: &str| {
        format!(
            "[server]\nlisten = \"{{listen}}\"\npublic_url = \"{{public_url}}\"\n\n[[route]]\nprefix = \"/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n"
        )
    };
    let gw = Gateway::builder(&config(&first.url())).start();
    let client = reqwest::Client::new();
    assert_eq!(client.get(gw.url("/a")).send().await.unwrap().status(), 200);
    assert_eq!(first.request_count(), 1);

    let next = std::fs::read_to_string(gw.config_path())
        .unwrap()
        .replace(&first.url(), &second.url());
    std::fs::write(gw.config_path(), next).unwrap();
    gw.send_signal(Signal::Hup);
    assert!(
        gw.wait_for_log("message", "configuration reloaded", Duration::from_secs(5))
            .is_some()
    );
    client.get(gw.url("/b")).send().await.unwrap();
    assert_eq!(
        second.request_count(),
        1,
        "requests go to the new upstream after reload"
    );

    std::fs::write(gw.config_path(), "[server]\nlisten = 1\n").unwrap();
    gw.send_signal(Signal::Hup);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gw.logs().iter().any(|l| l.contains("reload rejected")) {
        assert!(std::time::Instant::now() < deadline, "no rejection logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.get(gw.url("/c")).send().await.unwrap().status(), 200);
    assert_eq!(
        second.request_count(),
        2,
        "the running config stays after a bad reload"
    );
}

/// A config that serves one `auth = "none"` route on `port`.
fn minimal_config(port: u16) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\n\
         [[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
    )
}

#[test]
fn portcullis_config_names_the_file_when_config_is_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, minimal_config(support::free_port())).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlistn = 1\n").unwrap();
    // Run from an empty directory, so ./gateway.toml cannot be what is read.
    let cwd = tempfile::tempdir().unwrap();
    let check = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("check")
            .env("PORTCULLIS_CONFIG", path)
            .current_dir(cwd.path())
            .output()
            .unwrap()
    };
    let out = check(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:1", bad.display())),
        "the problem is reported in the file PORTCULLIS_CONFIG names: {stderr}"
    );
}

#[test]
fn log_format_pretty_writes_human_lines() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, minimal_config(port)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "pretty"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.contains("serving threads started") => break line,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("no start-up line: {e}");
            }
        }
    };
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err() && line.contains("INFO"),
        "a pretty line, not JSON: {line}"
    );

    // The access log follows the same format (the route's upstream is
    // closed: a 502).
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /pretty/x?token=secret HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let access = loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.contains("portcullis::access") => break line,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("no access log line: {e}");
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        serde_json::from_str::<serde_json::Value>(&access).is_err(),
        "the access line is text, not JSON: {access}"
    );
    for field in [
        " INFO ",
        "method=GET",
        "path=/pretty/x ",
        "status=502",
        "route=/ ",
    ] {
        assert!(access.contains(field), "{field} in {access}");
    }
    assert!(!access.contains("secret"), "no query: {access}");
}
