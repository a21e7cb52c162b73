//! Header hygiene: spoofed and hop-by-hop headers dropped, forwarding headers only via proxies.

use super::*;

#[tokio::test]
async fn spoofed_identity_and_rewrite_headers_never_reach_the_upstream() {
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let (resp, _) = raw_exchange(
        &gw,
        b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-User: mallory\r\nx_forwarded_user: mallory\r\n\
X-FORWARDED-EMAIL: m@evil\r\nX_Forwarded_Groups: admins\r\nx-forwarded-preferred_username: root\r\n\
X-Forwarded-Access-Token: t\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Forwarded-Prefix: /admin\r\n\
X-HTTP-Method-Override: DELETE\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\
Authorization: Bearer client-token\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = app.last_request().unwrap();
    for (name, _) in seen.headers.iter() {
        let n = name.as_str().replace('_', "-");
        assert!(
            !matches!(
                n.as_str(),
                "x-forwarded-user"
                    | "x-forwarded-email"
                    | "x-forwarded-groups"
                    | "x-forwarded-preferred-username"
                    | "x-forwarded-access-token"
                    | "x-original-url"
                    | "x-rewrite-url"
                    | "x-forwarded-prefix"
                    | "x-http-method-override"
                    | "x-real-ip"
                    | "forwarded"
            ),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    // The gateway sets no Authorization here, so the client's passes.
    assert_eq!(seen.header("authorization"), Some("Bearer client-token"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let app = Upstream::start();
    let gw = two_route_gateway(&app, &app, "");
    let r = client()
        .get(gw.url("/x"))
        .header("connection", "keep-alive, X-Hop-Secret")
        .header("x-hop-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic eA==")
        .header("upgrade", "h2c")
        .header("x-end-to-end", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last_request().unwrap();
    for h in [
        "x-hop-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(seen.header(h).is_none(), "{h} reached the upstream");
    }
    assert_eq!(seen.header("x-end-to-end"), Some("1"));

    // The response side: the upstream sends hop-by-hop headers, one of
    // them named in its own `Connection`.
    let hop = ["keep-alive", "x-hop-reply", "proxy-authenticate"];
    let direct = client()
        .get(format!("{}/hop-by-hop", app.url()))
        .send()
        .await
        .unwrap();
    for h in hop {
        assert!(direct.headers().contains_key(h), "the upstream sends {h}");
    }
    let r = client().get(gw.url("/hop-by-hop")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for h in hop {
        assert!(!r.headers().contains_key(h), "{h} reached the client");
    }
    assert_eq!(r.headers()["x-end-to-end-reply"], "1");
}

#[tokio::test]
async fn forwarded_headers_trust_only_trusted_proxies() {
    let app = Upstream::start();
    let c = client();
    let spoof = |rb: reqwest::RequestBuilder| {
        rb.header("x-forwarded-for", "203.0.113.7")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
    };

    let gw = two_route_gateway(&app, &app, "");
    spoof(c.get(gw.url("/x"))).send().await.unwrap();
    let seen = app.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(&*format!("127.0.0.1:{}", gw.port()))
    );
    assert_eq!(
        seen.header("host"),
        Some(&*format!("127.0.0.1:{}", app.port()))
    );
    drop(gw);

    let gw = two_route_gateway(&app, &app, r#"trusted_proxies = ["127.0.0.0/8"]"#);
    spoof(c.get(gw.url("/x"))).send().await.unwrap();
    let seen = app.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("evil.example"));
}
