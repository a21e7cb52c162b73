//! The session cookie: flags, size and renewal, `__Host-` over https, upstreams cannot set it.

use super::*;
use crate::support::idp::IdpOptions;
use crate::support::stack::{StackOptions, new_browser};
use crate::support::{Gateway, TEST_CLIENT_SECRET};

#[tokio::test]
async fn session_cookie_flags_size_and_freshness() {
    let stack = Stack::start(StackOptions::default());
    let browser = new_browser();
    let to_idp = navigate(&browser, &stack.gateway.url("/")).await;
    let login_cookies = set_cookies(&to_idp);
    assert!(
        login_cookies
            .iter()
            .any(|c| c.starts_with("portcullis-login-")
                && c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Max-Age=600")),
        "{login_cookies:?}"
    );
    let callback = stack.idp.login(&browser, &location(&to_idp), "alice").await;
    let landed = navigate(&browser, callback.as_str()).await;
    let cookies = set_cookies(&landed);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("portcullis="))
        .expect("session cookie");
    for attr in ["HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(session.contains(attr), "{attr} missing: {session}");
    }
    assert!(!session.contains("Secure"), "http public URL: no Secure");
    assert!(
        !session.contains("Max-Age") && !session.contains("Expires"),
        "not persistent: {session}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("portcullis-login-") && c.contains("Max-Age=0")),
        "the used login cookie is removed: {cookies:?}"
    );
    let first = session_cookie_value(&cookies).unwrap();
    // 256 bits base64url-encoded without padding is 43 characters.
    assert!(first.len() >= 43, "cookie value too short: {first}");
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    // A second login (same browser) gets a different cookie and ends the first session.
    let second = login_cookie(&stack, &browser, "alice").await;
    assert_ne!(first, second);
    let replay = reqwest::Client::new()
        .get(stack.gateway.url("/x"))
        .header("cookie", format!("portcullis={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.status(),
        401,
        "the previous session was ended by the new login"
    );
}

#[tokio::test]
async fn an_upstream_cannot_set_the_gateway_cookie() {
    let stack = Stack::start(StackOptions::default());
    let browser = new_browser();
    stack.login(&browser, "alice", "/").await;
    let r = browser
        .get(
            stack
                .gateway
                .url("/set-cookie?name=portcullis&name=portcullis-login-x&name=app_pref"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies = set_cookies(&r);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(cookies[0].starts_with("app_pref="));

    // A line with a non-ASCII byte anywhere (here in a trailing attribute)
    // is not text to a `to_str()` reader; the name must still be seen.
    let r = browser
        .get(
            stack
                .gateway
                .url("/set-cookie?name=portcullis&name=portcullis-login-x&name=app_pref&obs=1"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    assert_eq!(
        cookies,
        ["app_pref=upstream; Path=/; a=\u{fffd}"],
        "only the app's own cookie is left"
    );
    // The session survived: the upstream did not replace the cookie.
    let r = browser
        .get(stack.gateway.url("/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn https_cookies_are_secure_and_host_prefixed() {
    let port = support::free_port();
    let origin = format!("https://localhost:{port}");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let idp = support::idp::Idp::start(IdpOptions::with_client(support::idp::IdpClient::gateway(
        "portcullis",
        TEST_CLIENT_SECRET,
        &origin,
    )));
    let app = support::Upstream::start();
    let gw = Gateway::builder(
        r#"
[server]
listen = "{listen}"
public_url = "https://localhost:{port}"
admin_listen = "{admin_listen}"
[server.tls]
cert = "{dir}/cert.pem"
key = "{dir}/key.pem"

[oidc]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "${PORTCULLIS_CLIENT_SECRET}"

[session]
secret = "${PORTCULLIS_SECRET}"

[[route]]
prefix = "/"
upstream = "{app}"
"#,
    )
    .port(port)
    .var("issuer", idp.issuer())
    .var("app", app.url())
    .file("cert.pem", cert.cert.pem())
    .file("key.pem", cert.signing_key.serialize_pem())
    .start();
    assert!(support::stack::wait_ready(&gw));
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", gw.addr())
        .build()
        .unwrap();
    let to_idp = navigate(&browser, &format!("{origin}/secure")).await;
    assert_eq!(to_idp.status(), 302);
    let login = set_cookies(&to_idp);
    assert!(
        login
            .iter()
            .any(|c| c.starts_with("__Host-portcullis-login-")
                && c.contains("Secure")
                && c.contains("Path=/")),
        "{login:?}"
    );
    let callback = idp.login(&browser, &location(&to_idp), "alice").await;
    assert!(callback.as_str().starts_with(&origin));
    let landed = navigate(&browser, callback.as_str()).await;
    assert_eq!(landed.status(), 303);
    let cookies = set_cookies(&landed);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-portcullis="))
        .expect("__Host- session cookie");
    for attr in ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"] {
        assert!(session.contains(attr), "{attr} missing: {session}");
    }
    assert!(
        !session.contains("Domain"),
        "__Host- cookies carry no Domain"
    );
    let page = navigate(&browser, &format!("{origin}/secure")).await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        app.last_request().unwrap().header("x-forwarded-proto"),
        Some("https")
    );
}
