//! `[session]` and `[oidc]`: cookie names and attributes by scheme, and which needs which.

use super::*;

#[test]
fn https_default_cookie_name_is_host_prefixed() {
    let src = base_with(
        "public_url = \"http://127.0.0.1:8080\"",
        "public_url = \"https://app.example.com\"",
    );
    let c = load(&src).unwrap().config;
    assert_eq!(c.session.unwrap().cookie_name, "__Host-portcullis");
    assert_eq!(c.server.public_urls[0].port, 443);
    assert_eq!(c.server.public_urls[0].authority(), "app.example.com");

    let src = src.replace(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\ncookie_domain = \".Example.com\"",
    );
    let s = load(&src).unwrap().config.session.unwrap();
    assert_eq!(s.cookie_name, "__Secure-portcullis");
    assert_eq!(s.cookie_domain.as_deref(), Some("example.com"));
}

#[test]
fn host_prefixed_cookie_refused_on_http() {
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\ncookie_name = \"__Host-x\"",
    );
    assert_one_error(&src, 11, 15, "the __Host- prefix needs https");
    let src = src.replace("__Host-x", "__Secure-x");
    assert_one_error(&src, 11, 15, "the __Secure- prefix needs https");
}

#[test]
fn samesite_none_refused_on_http() {
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\ncookie_samesite = \"none\"",
    );
    assert_one_error(&src, 11, 19, "needs https");
}

#[test]
fn host_cookie_with_domain_refused() {
    let src = base_with(
        "public_url = \"http://127.0.0.1:8080\"",
        "public_url = \"https://app.example.com\"",
    )
    .replace(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\ncookie_name = \"__Host-x\"\ncookie_domain = \"example.com\"",
    );
    assert_one_error(&src, 11, 15, "__Host- cookie cannot have a Domain");
}

#[test]
fn session_route_without_oidc_refused() {
    let src = "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"http://127.0.0.1:8080\"\n\n[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n";
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.contains("there is no [oidc] section"),
        "{}",
        errs[0].message
    );
    assert_eq!(errs[0].line, 5);
    // all routes auth = "none": no [oidc] needed
    let ok = src.replace("prefix = \"/\"", "prefix = \"/\"\nauth = \"none\"");
    let c = load(&ok).unwrap().config;
    assert!(c.oidc.is_none() && c.session.is_none());
}

#[test]
fn oidc_needs_session() {
    let src = BASE.replace("[session]\nsecret = \"${PORTCULLIS_SECRET}\"\n", "");
    assert_one_error(&src, 5, 2, "[oidc] needs a [session] section");
}

#[test]
fn session_without_oidc_is_a_warning_and_ignored() {
    let src = "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"http://127.0.0.1:8080\"\n\n[session]\nsecret = \"${PORTCULLIS_SECRET}\"\n\n[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"none\"\n";
    let loaded = load(src).unwrap();
    assert!(loaded.config.session.is_none());
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0]
            .to_string()
            .starts_with("gw.toml:5:2: warning: [session] has no effect without [oidc]")
    );
}
