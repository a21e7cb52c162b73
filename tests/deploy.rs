//! The artefacts in `deploy/` checked with the tools operators' CI uses: the
//! Kubernetes manifests against the API schemas (`kubernetes-validate
//! --strict`) and a YAML linter (`yamllint`), the ConfigMap's gateway.toml
//! with `portcullis check`, and the systemd unit with `systemd-analyze
//! verify`. scripts/test-deps.sh installs the tools (the Python ones into a
//! venv, see [`tool`]).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory scripts/test-deps.sh installs the PyPI tools into.
fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_TEST_TOOLS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    cache.join("portcullis-test-tools")
}

/// A PyPI tool's executable in the venv; a missing one fails the test
/// (a manifest that is not validated must not pass CI).
fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join("venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test-deps.sh",
        path.display()
    );
    path
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn manifests() -> Vec<PathBuf> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `kubernetes-validate --strict` (unknown fields are errors) against the
/// oldest and newest Kubernetes versions it bundles that we support.
fn validate(files: &[PathBuf], version: &str) -> Output {
    Command::new(tool("kubernetes-validate"))
        .args(["--strict", "--no-warn", "-k", version])
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    let files = manifests();
    for version in ["1.29.0", "1.34.0"] {
        let out = validate(&files, version);
        assert!(out.status.success(), "Kubernetes {version}: {}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).to_lowercase()
            + &String::from_utf8_lossy(&out.stderr).to_lowercase();
        for resource in [
            "deployment/portcullis",
            "service/portcullis",
            "configmap/portcullis",
            "secret/portcullis",
            "poddisruptionbudget/portcullis",
            "deployment/portcullis-redis",
            "service/portcullis-redis",
        ] {
            assert!(
                stdout.contains(&format!("passed for resource {resource} ")),
                "{resource} was not validated: {stdout}"
            );
        }
    }
}

#[test]
fn the_validator_refuses_a_broken_manifest() {
    // The check above can fail: a misspelt field is an error in strict mode.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("deployment.yaml");
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/deployment.yaml")).unwrap();
    std::fs::write(&broken, text.replace("readinessProbe:", "readynessProbe:")).unwrap();
    let out = validate(&[broken], "1.34.0");
    assert!(!out.status.success(), "{}", show(&out));
}

#[test]
fn kubernetes_manifests_pass_yamllint() {
    let dir = repo().join("deploy/kubernetes");
    let out = Command::new(tool("yamllint"))
        .arg("--strict")
        .arg("-c")
        .arg(dir.join(".yamllint"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

/// The YAML documents of a manifest as JSON (PyYAML from the same venv).
fn documents(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(tool("python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_deployment_is_a_hardened_redis_fleet_probed_on_the_admin_listener() {
    let dir = repo().join("deploy/kubernetes");
    let deployment = &documents(&dir.join("deployment.yaml"))[0];
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());
    let admin_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("an admin port")["containerPort"]
        .as_u64()
        .unwrap();
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");

    let config = documents(&dir.join("configmap.yaml"))[0]["data"]["gateway.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(config.contains("store = \"redis\""), "{config}");
    assert!(
        config.contains(&format!("admin_listen = \"0.0.0.0:{admin_port}\"")),
        "the probes' port is the admin listener, on the pod IP: {config}"
    );
    let secret = &documents(&dir.join("secret.yaml"))[0]["stringData"];
    for key in ["client-secret", "session-secret", "admin-token"] {
        assert!(secret[key].is_string(), "Secret has {key}");
    }
    for key in ["client-secret", "session-secret"] {
        assert!(
            config.contains(&format!("_file = \"/run/secrets/portcullis/{key}\"")),
            "the config reads {key} from the mounted Secret"
        );
    }
}

#[test]
fn the_configmaps_gateway_toml_passes_check() {
    let dir = repo().join("deploy/kubernetes");
    let config = documents(&dir.join("configmap.yaml"))[0]["data"]["gateway.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    // Here, on loopback ports that are free, with the Secret's files in a
    // temp dir (the addresses are checked by binding them).
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for key in ["client-secret", "session-secret", "admin-token"] {
        std::fs::write(
            secrets.join(key),
            "k8s-test-secret-of-at-least-32-bytes-long",
        )
        .unwrap();
    }
    let local = config
        .replace("/run/secrets/portcullis", &secrets.display().to_string())
        .replace(
            "0.0.0.0:8080",
            &format!("127.0.0.1:{}", support::free_port()),
        )
        .replace(
            "0.0.0.0:9090",
            &format!("127.0.0.1:{}", support::free_port()),
        );
    let path = tmp.path().join("gateway.toml");
    std::fs::write(&path, local).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // verify resolves every ExecStart=/ExecReload= binary and the targets
    // the unit names; a root with the host's systemd units, the gateway
    // at /usr/local/bin and kill at /bin checks the unit file as shipped.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for dir in [
        "usr/local/bin",
        "bin",
        "etc/systemd/system",
        "usr/lib/systemd",
    ] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    std::fs::copy(
        env!("CARGO_BIN_EXE_portcullis"),
        r.join("usr/local/bin/portcullis"),
    )
    .unwrap();
    std::fs::copy("/bin/kill", r.join("bin/kill")).unwrap();
    let status = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(r.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::copy(
        repo().join("deploy/portcullis.service"),
        r.join("etc/systemd/system/portcullis.service"),
    )
    .unwrap();
    let verify = || {
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", r.display()))
            .arg("portcullis.service")
            .output()
            .expect("systemd-analyze (Debian package systemd): run scripts/test-deps.sh")
    };
    let out = verify();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        out.stderr.is_empty() && out.stdout.is_empty(),
        "verify printed warnings: {}",
        show(&out)
    );

    // And verify does notice a broken unit.
    let unit = std::fs::read_to_string(repo().join("deploy/portcullis.service")).unwrap();
    std::fs::write(
        r.join("etc/systemd/system/portcullis.service"),
        unit.replace("ProtectSystem=strict", "ProtectSystem=strictly"),
    )
    .unwrap();
    let out = verify();
    assert!(!out.stderr.is_empty(), "{}", show(&out));
}
