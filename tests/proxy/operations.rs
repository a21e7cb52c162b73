//! Running the gateway: serving threads, draining on SIGTERM, admin endpoints, the access log.

use std::time::Instant;

use super::*;
use crate::support::Signal;

#[tokio::test]
async fn serving_threads_share_connections_and_drain_together() {
    let app = Upstream::start();
    let mut gw = two_route_gateway(&app, &app, "workers = 4");
    let started = gw
        .wait_for_log("message", "serving threads started", Duration::from_secs(5))
        .expect("startup log line");
    assert_eq!(started["threads"], 4, "{started}");

    // 48 connections at once (one client each, so no connection is shared),
    // each with slow requests in flight on every thread.
    let mut calls = Vec::new();
    for i in 0..48 {
        let url = gw.url(&format!("/slow?ms=300&n={i}"));
        calls.push(tokio::spawn(async move {
            let resp = client().get(url).send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body))
        }));
    }
    // SIGTERM while they are in flight: every one still completes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.request_count() < 48 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.send_signal(Signal::Term);
    for (i, call) in calls.into_iter().enumerate() {
        let (status, body) = call
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(status, 200, "request {i}");
        assert!(
            body["query"] == format!("ms=300&n={i}").as_str(),
            "request {i} got another's answer: {body}"
        );
    }
    let exit = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "exit after draining");
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request() {
    let app = Upstream::start();
    let mut gw = two_route_gateway(&app, &app, "");
    let url = gw.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    // Wait until the request has reached the upstream.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.request_count() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.send_signal(Signal::Term);
    let status = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(status, 200);
    let exit = tokio::task::spawn_blocking(move || {
        let status = gw.wait_exit(Duration::from_secs(10));
        (status, gw)
    })
    .await
    .unwrap();
    assert_eq!(
        exit.0.and_then(|s| s.code()),
        Some(0),
        "gateway did not exit 0 after draining"
    );
    assert!(
        TcpStream::connect(exit.1.addr()).is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn admin_endpoints_and_access_log() {
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let c = client();
    c.get(gw.url("/public/x?token=secret-query"))
        .send()
        .await
        .unwrap();

    let health = c.get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = c.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = c
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"portcullis_requests_total{route="/public",status="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_request_duration_seconds_bucket"),
        "{metrics}"
    );

    let line = gw
        .wait_for_log("path", "/public/x", Duration::from_secs(5))
        .expect("one access log line per request");
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert!(line["request_id"].is_string());
    assert!(
        line["upstream"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert!(
        !gw.logs().iter().any(|l| l.contains("secret-query")),
        "query strings are not logged"
    );
}
