//! Which upstream a request reaches: whole-segment prefixes, hosts, normalised paths.

use super::*;

#[tokio::test]
async fn prefix_routing_matches_whole_segments_and_hosts() {
    let public = Upstream::start();
    let app = Upstream::start();
    let gw = two_route_gateway(&public, &app, "");
    let c = client();

    let r = c.get(gw.url("/public/page?x=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = public.last_request().expect("public upstream reached");
    assert_eq!(seen.uri.to_string(), "/public/page?x=1");

    // `/publicity` is not under `/public/`.
    c.get(gw.url("/publicity")).send().await.unwrap();
    assert_eq!(app.last_request().unwrap().path(), "/publicity");
    assert_eq!(public.request_count(), 1);

    // `/public` (no slash) is the same segment.
    c.get(gw.url("/public")).send().await.unwrap();
    assert_eq!(public.request_count(), 2);

    // Host matching: the localhost route.
    let r = c
        .get(gw.url("/anything"))
        .header("host", format!("localhost:{}", gw.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.last_request().unwrap().header("x-forwarded-host"),
        Some(&*format!("localhost:{}", gw.port()))
    );
}

#[tokio::test]
async fn path_normalisation_and_bypass_attempts() {
    let public = Upstream::start();
    let app = Upstream::start();
    let gw = two_route_gateway(&public, &app, "");

    for bad in [
        "/public/..%2fadmin",
        "/public/%2e%2e/admin",
        "/public/..;/admin",
        "/public/%2E%2E%2Fadmin",
        "/public/..%5Cadmin",
        "/a%00b",
    ] {
        let (resp, _) = raw_exchange(
            &gw,
            format!("GET {bad} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(resp.starts_with("HTTP/1.1 400"), "{bad}: {resp}");
    }
    assert_eq!(
        public.request_count() + app.request_count(),
        0,
        "no bypass attempt reached an upstream"
    );

    // Dot-segments are resolved before matching and the result goes upstream.
    let (resp, _) = raw_exchange(
        &gw,
        b"GET /public/../admin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(public.request_count(), 0);
    assert_eq!(app.last_request().unwrap().path(), "/admin");

    // Encoded unreserved characters are decoded; merged slashes.
    let (resp, _) = raw_exchange(
        &gw,
        b"GET //%70ublic//x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(public.last_request().unwrap().path(), "/public/x");
}

#[tokio::test]
async fn host_routes_match_only_their_host() {
    let on_host = Upstream::start();
    let other = Upstream::start();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = ["{public_url}", "http://localhost:{port}"]

[[route]]
prefix = "/"
host = "localhost"
upstream = "{on_host}"
auth = "none"

[[route]]
prefix = "/"
upstream = "{other}"
auth = "none"
"#,
    )
    .var("on_host", on_host.url())
    .var("other", other.url())
    .start();
    let c = client();
    for (host, want_on_host) in [
        (format!("localhost:{}", gw.port()), true),
        ("localhost".to_owned(), true),
        (format!("127.0.0.1:{}", gw.port()), false),
        ("evil.example".to_owned(), false),
        (format!("localhost.evil.example:{}", gw.port()), false),
    ] {
        let before = (on_host.request_count(), other.request_count());
        let r = c
            .get(gw.url("/page"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "Host: {host}");
        let after = (on_host.request_count(), other.request_count());
        let expected = if want_on_host {
            (before.0 + 1, before.1)
        } else {
            (before.0, before.1 + 1)
        };
        assert_eq!(after, expected, "Host: {host} went to the wrong upstream");
    }
}
