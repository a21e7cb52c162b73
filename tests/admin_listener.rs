//! The admin listener on a non-loopback address (0.0.0.0), as kubelet and Prometheus
//! reach a pod by its IP: probes and metrics answer there; the admin API
//! does not without `[server.admin_tls]`, and does over TLS with it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::idp::{Idp, IdpOptions, browser};
use support::setup::{CLIENT_ID, gateway_client, login, session};
use support::signing::idp_jwks;
use support::{Gateway, TEST_ADMIN_TOKEN, Upstream, free_port, run_check};

/// The admin listener binds the unspecified address, as in a pod
/// (`admin_listen = "0.0.0.0:9090"` in deploy/kubernetes/): that is a
/// non-loopback listener, which is what decides whether the admin API is
/// served. The test reaches it through 127.0.0.1, so no traffic leaves
/// loopback (this machine's other addresses are not ours to send to).
fn pod_style_admin() -> (SocketAddr, SocketAddr) {
    let port = free_port();
    (
        SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port),
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port),
    )
}

/// A gateway whose admin listener is on `admin` (not the harness's
/// loopback one), with an admin token, `server_extra` keys/tables after
/// `[server]`, and the IdP it expects on `idp_port`.
fn gateway(admin: SocketAddr, idp_port: u16, server_extra: &str, upstream: &Upstream) -> Gateway {
    let config = format!(
        r#"
[server]
listen = "{{listen}}"
public_url = "{{public_url}}"
admin_listen = "{admin}"
admin_token = "${{PORTCULLIS_ADMIN_TOKEN}}"
{server_extra}

[oidc]
issuer = "http://127.0.0.1:{idp_port}"
client_id = "{CLIENT_ID}"
client_secret = "${{PORTCULLIS_CLIENT_SECRET}}"

[session]
secret = "${{PORTCULLIS_SECRET}}"

[[route]]
prefix = "/"
upstream = "{{upstream}}"
"#
    );
    Gateway::builder(&config)
        .var("upstream", upstream.url())
        .start()
}

fn start_idp(gw: &Gateway, port: u16) -> Idp {
    Idp::start(IdpOptions {
        port: Some(port),
        clients: vec![gateway_client(gw)],
        signing_jwks: Some(idp_jwks()),
        ..Default::default()
    })
}

/// Waits until `url` (a `/readyz`) answers 200.
async fn wait_ready(http: &reqwest::Client, url: &str, gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready within 30 s:\n{}",
            gw.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_metrics_answer_on_a_pod_ip_but_the_admin_api_needs_tls() {
    let (admin, reach) = pod_style_admin();
    let upstream = Upstream::start();
    let idp_port = free_port();

    // `check` accepts it and says the admin API is off there.
    let config = format!(
        "[server]\nlisten = \"{{listen}}\"\npublic_url = \"{{public_url}}\"\n\
         admin_listen = \"{admin}\"\nadmin_token = \"${{PORTCULLIS_ADMIN_TOKEN}}\"\n\n\
         [[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
    );
    let check = run_check(&config);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert!(
        check
            .stderr
            .contains("admin API disabled on a non-loopback listener without [server.admin_tls]"),
        "{}",
        check.stderr
    );

    let gw = gateway(admin, idp_port, "", &upstream);
    let _idp = start_idp(&gw, idp_port);
    let http = reqwest::Client::new();
    let base = format!("http://{reach}");
    wait_ready(&http, &format!("{base}/readyz"), &gw).await;

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // Something to count, then the scrape.
    http.get(gw.url("/.portcullis/session"))
        .send()
        .await
        .unwrap();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("portcullis_requests_total"), "{metrics}");

    // The admin API is not there, whatever the token.
    for req in [
        http.post(format!("{base}/admin/sessions/revoke"))
            .bearer_auth(TEST_ADMIN_TOKEN)
            .json(&json!({"sub": "alice"})),
        http.get(format!("{base}/admin/sessions?sub=alice"))
            .bearer_auth(TEST_ADMIN_TOKEN),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "admin_api_disabled", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_admin_tls_the_admin_api_is_served_over_tls_on_a_pod_ip() {
    let (admin, reach) = pod_style_admin();
    let upstream = Upstream::start();
    let idp_port = free_port();
    let ck = rcgen::generate_simple_self_signed(vec![reach.ip().to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("admin.crt"), dir.path().join("admin.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "\n[server.admin_tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );

    let gw = gateway(admin, idp_port, &tls, &upstream);
    let idp = start_idp(&gw, idp_port);
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://{reach}");
    wait_ready(&https, &format!("{base}/readyz"), &gw).await;
    assert!(
        !gw.logs().iter().any(|l| l.contains("admin API disabled")),
        "no warning with admin_tls"
    );

    // Plain HTTP gets no answer from a TLS listener.
    let plain = reqwest::Client::new()
        .get(format!("http://{reach}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map_or(true, |r| r.status() != 200),
        "plain HTTP answered on the TLS admin listener"
    );

    let b = browser();
    login(&gw, &idp, &b, "alice").await;
    assert!(session(&gw, &b).await.is_some());

    let unauthorized = https
        .post(format!("{base}/admin/sessions/revoke"))
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401, "the token is still required");
    let listed: Value = https
        .get(format!("{base}/admin/sessions?sub=alice"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let revoked = https
        .post(format!("{base}/admin/sessions/revoke"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .json(&json!({"sub": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap()["revoked"], 1);
    assert_eq!(session(&gw, &b).await, None, "the session is over");
}
