//! Rate limiting: floods get 429, per client address, the forwarded one behind a trusted proxy.

use std::time::Duration;

use super::*;
use crate::support::setup::*;
use crate::support::signing::*;

/// A flood is cut off with 429 (before any key lookup or store write), and
/// the endpoint serves again once the bucket refills.
#[tokio::test(flavor = "multi_thread")]
async fn floods_are_rate_limited() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let http = reqwest::Client::new();
    let url = gw.url("/.portcullis/backchannel-logout");
    let mut tasks = Vec::new();
    for _ in 0..600 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("logout_token=garbage")
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("task") {
            429 => limited += 1,
            400 => {}
            other => panic!("flood answered {other}"),
        }
    }
    assert!(limited > 0, "no request was rate limited");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let claims = logout_claims(idp.issuer(), Some("after-the-flood"), None);
    let resp = post_token(gw, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
    assert_eq!(resp.status(), 200, "served again after the refill");
}

/// Sixteen tasks posting garbage tokens to `url` with `http` (and
/// `X-Forwarded-For: xff` when given) as fast as they can, far above the
/// limit, until [`Flood::stop`]; counts 429s and answers other than 400/429.
struct Flood {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limited: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    odd: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    fn start(http: &reqwest::Client, url: &str, xff: Option<&'static str>) -> Flood {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let limited = Arc::new(AtomicUsize::new(0));
        let odd = Arc::new(AtomicUsize::new(0));
        let workers = (0..16)
            .map(|_| {
                let (http, url) = (http.clone(), url.to_owned());
                let (stop, limited, odd) = (stop.clone(), limited.clone(), odd.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let mut req = http
                            .post(&url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body("logout_token=garbage");
                        if let Some(xff) = xff {
                            req = req.header("x-forwarded-for", xff);
                        }
                        match req.send().await.map(|r| r.status().as_u16()) {
                            Ok(429) => drop(limited.fetch_add(1, Ordering::Relaxed)),
                            Ok(400) => {}
                            _ => drop(odd.fetch_add(1, Ordering::Relaxed)),
                        }
                    }
                })
            })
            .collect();
        Flood {
            stop,
            limited,
            odd,
            workers,
        }
    }

    /// How many requests got 429 so far.
    fn limited(&self) -> usize {
        self.limited.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (up to 10 s) until the flood is being limited.
    async fn wait_limited(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.limited() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the flood was never limited"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the tasks; the count of answers other than 400/429.
    async fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in self.workers {
            w.await.expect("flood worker");
        }
        self.odd.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The rate limit is per client address: while a flood from one address is
/// being cut off with 429, the IdP's logout tokens from another address
/// are all served.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_from_one_address_does_not_block_another() {
    let setup = start_gateway(true, "");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let flooder = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client on 127.0.0.2");
    let flood = Flood::start(&flooder, &gw.url("/.portcullis/backchannel-logout"), None);
    flood.wait_limited().await;

    // The IdP posts from 127.0.0.1 meanwhile.
    let limited_before = flood.limited();
    for i in 0..10 {
        let claims = logout_claims(idp.issuer(), Some(&format!("during-the-flood-{i}")), None);
        let resp = post_token(gw, &sign_rs256(&logout_header(), &claims, &idp_key_pem())).await;
        assert_eq!(
            resp.status(),
            200,
            "logout token {i} from the IdP refused during another address's flood"
        );
    }
    let limited_during = flood.limited() - limited_before;
    let odd = flood.stop().await;
    assert!(
        limited_during > 0,
        "the flood was not being limited while the IdP was served"
    );
    assert_eq!(odd, 0, "flood answered other than 400/429");
}

/// Behind a load balancer in `trusted_proxies`, every request comes from
/// its address; the limit then counts the client address it forwarded, so
/// a flood through the balancer does not cut off the IdP behind it either.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_the_limit_counts_the_forwarded_client() {
    let setup = support::setup::start_gateway_with_server("trusted_proxies = [\"127.0.0.0/8\"]");
    let idp = start_idp(&setup, vec![]).await;
    let gw = &setup.gw;
    let url = gw.url("/.portcullis/backchannel-logout");
    let http = reqwest::Client::new();
    let flood = Flood::start(&http, &url, Some("198.51.100.1"));
    flood.wait_limited().await;
    // The IdP, forwarded by the same balancer, from its own address.
    for i in 0..10 {
        let claims = logout_claims(idp.issuer(), Some(&format!("behind-the-lb-{i}")), None);
        let token = sign_rs256(&logout_header(), &claims, &idp_key_pem());
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", &token)
            .finish();
        let resp = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", "203.0.113.50")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "logout token {i} behind the balancer");
    }
    // The flooding client itself stays limited.
    let resp = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", "198.51.100.1")
        .body("logout_token=garbage")
        .send()
        .await
        .unwrap();
    let odd = flood.stop().await;
    assert_eq!(resp.status(), 429, "the flooding client is still limited");
    assert_eq!(odd, 0, "flood answered other than 400/429");
}
