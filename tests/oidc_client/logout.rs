//! Logout at the IdP: the end-session URL, the back-channel token it sends, the auto-submit page.

use portcullis::oidc::{OidcError, RefreshError};

use super::*;

#[tokio::test]
async fn end_session_url_carries_hint_client_state_and_logout_params() {
    // Before discovery (IdP down), the configured override still works.
    let mut cfg = config(&format!("http://127.0.0.1:{}", free_port()));
    cfg.end_session_endpoint =
        Some(Url::parse("https://idp.example.com/logout?tenant=t1").expect("url"));
    cfg.logout_params = vec![("federated".into(), "1".into())];
    let client = OidcClient::with_options(&cfg, fast_options()).expect("client");
    let done = Url::parse("http://127.0.0.1:8080/.portcullis/logout/done").expect("url");
    let url = client
        .end_session_url(Some("hint.jwt.sig"), &done, "st")
        .expect("override");
    assert_eq!(
        url.as_str(),
        "https://idp.example.com/logout?tenant=t1&id_token_hint=hint.jwt.sig&client_id=portcullis\
         &post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2F.portcullis%2Flogout%2Fdone\
         &state=st&federated=1"
    );
    // Without a session there is no hint.
    let url = client.end_session_url(None, &done, "st").expect("override");
    assert!(!url.as_str().contains("id_token_hint"));

    // No override and no metadata: nowhere to send the user.
    let bare = OidcClient::with_options(
        &config(&format!("http://127.0.0.1:{}", free_port())),
        fast_options(),
    )
    .expect("client");
    assert!(bare.end_session_url(None, &done, "st").is_none());

    // logout_params cannot override what the gateway sets.
    cfg.logout_params = vec![("state".into(), "x".into())];
    assert!(matches!(OidcClient::new(&cfg), Err(OidcError::Config(_))));
}

/// A stand-in for the gateway's back-channel receiver: records each POST
/// body and answers 200.
async fn backchannel_receiver(
    listener: tokio::net::TcpListener,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use http_body_util::BodyExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Empty::<
                                bytes::Bytes,
                            >::new(
                            )))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    rx
}

#[tokio::test]
async fn rp_initiated_logout_delivers_a_verifiable_backchannel_token() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let origin = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let mut received = backchannel_receiver(listener).await;
    let options = IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin));
    let s = setup(options, origin.clone()).await;

    let browser = browser();
    let (state, query) = login_with(&s, &browser, "alice").await;
    let login = s
        .client
        .finish_login(&state, &query, &callback_url(&s.origin))
        .await
        .expect("login");
    let sid = login.claims.sid.clone().expect("sid");

    let done = format!("{origin}/.portcullis/logout/done");
    let end_session = s
        .client
        .end_session_url(
            Some(login.id_token.expose()),
            &Url::parse(&done).expect("url"),
            "logout-state-1",
        )
        .expect("end-session URL");
    let params: Vec<(String, String)> = end_session.query_pairs().into_owned().collect();
    assert!(params.contains(&("client_id".into(), CLIENT_ID.into())));
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = s
        .idp
        .logout(&browser, &params)
        .await
        .expect("redirect after logout");
    assert_eq!(back.as_str(), format!("{done}?state=logout-state-1"));

    // The IdP POSTed the logout token before redirecting.
    let body = received.try_recv().unwrap_or_else(|_| {
        panic!(
            "no back-channel logout arrived; IdP log:\n{}",
            s.idp.stderr()
        )
    });
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("logout_token field");

    // Validate it with the provider's key cache, as the receiver will.
    let header = jsonwebtoken::decode_header(&token).expect("JWT header");
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let key = s
        .client
        .provider()
        .decoding_key(header.kid.as_deref(), header.alg)
        .await
        .expect("signing key");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[s.idp.issuer()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation)
        .expect("valid logout token")
        .claims;
    assert_eq!(claims["sid"], sid.as_str());
    assert_eq!(claims["sub"], "alice");
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());

    // The tokens of that IdP session are gone too.
    let refresh = login.refresh_token.expect("refresh token");
    let err = s
        .client
        .refresh(refresh.expose(), &login.claims)
        .await
        .expect_err("refresh after IdP logout");
    assert!(matches!(err, RefreshError::InvalidGrant), "{err:?}");
}

#[tokio::test]
async fn auto_submit_logout_page_submits_itself() {
    let origin = gateway_origin();
    let s = setup(
        IdpOptions {
            auto_submit_logout: true,
            ..IdpOptions::with_client(IdpClient::gateway(CLIENT_ID, CLIENT_SECRET, &origin))
        },
        origin,
    )
    .await;
    let browser = browser();
    let _ = login_with(&s, &browser, "bob").await;
    let page = browser
        .get(format!(
            "{}/session/end?client_id={CLIENT_ID}",
            s.idp.issuer()
        ))
        .send()
        .await
        .expect("GET end_session")
        .text()
        .await
        .expect("body");
    assert!(page.contains("id=\"op.logoutForm\""), "{page}");
    assert!(page.contains("f.submit()"), "{page}");
}
