//! Configurations that load: the example `gateway.toml`, defaults, value forms, reading files.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis::config::{AuthMode, ClearSiteData, LogoutMode, SameSite, Scheme, StoreConfig};

use super::*;

#[test]
fn example_gateway_toml_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let src = std::fs::read_to_string(&path).unwrap();
    let loaded = config::load_from_str(&path, &src, &env).unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.server.listen,
        vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.server.public_urls[0].origin, "http://127.0.0.1:8080");
    let oidc = c.oidc.as_ref().unwrap();
    assert_eq!(oidc.client_id, "portcullis");
    assert_eq!(
        oidc.client_secret.as_ref().unwrap().expose(),
        "client-secret"
    );
    let session = c.session.as_ref().unwrap();
    assert_eq!(session.secrets[0].expose(), SECRET);
    assert!(matches!(session.store, StoreConfig::Memory));
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].prefix, "/public");
    assert_eq!(c.routes[0].auth, AuthMode::None);
    assert_eq!(c.routes[1].prefix, "/");
    assert_eq!(c.routes[1].auth, AuthMode::Session);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn example_gateway_toml_names_missing_env_vars() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let src = std::fs::read_to_string(&path).unwrap();
    let err = config::load_from_str(&path, &src, &|_| None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`PORTCULLIS_CLIENT_SECRET` is not set"),
        "{text}"
    );
    assert!(text.contains("`PORTCULLIS_SECRET` is not set"), "{text}");
}

#[test]
fn defaults() {
    let c = load(BASE).unwrap().config;
    let s = &c.server;
    assert_eq!(s.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.max_header_bytes, 65536);
    assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(s.workers, 0, "one serving thread per core");
    assert!(s.admin_listen.is_none() && s.admin_token.is_none() && s.tls.is_none());
    assert!(!s.allow_insecure_http);
    assert_eq!(s.public_urls[0].scheme, Scheme::Http);
    assert_eq!(s.public_urls[0].port, 8080);
    let o = c.oidc.as_ref().unwrap();
    assert_eq!(o.scopes, ["openid", "email", "profile"]);
    assert!(o.client_secret.is_none());
    assert!(o.end_session_endpoint.is_none());
    assert!(o.backchannel_require_exp);
    let ss = c.session.as_ref().unwrap();
    assert_eq!(ss.cookie_name, "portcullis");
    assert_eq!(ss.cookie_samesite, SameSite::Lax);
    assert!(!ss.persistent);
    assert_eq!(ss.idle_timeout, Duration::from_secs(30 * 60));
    assert_eq!(ss.max_lifetime, Duration::from_secs(12 * 3600));
    assert!(matches!(ss.store, StoreConfig::Memory));
    let r = &c.routes[0];
    assert_eq!(r.auth, AuthMode::Session);
    assert_eq!(r.connect_timeout, Duration::from_secs(5));
    assert_eq!(r.timeout, Duration::from_secs(60));
    let h = &c.headers;
    assert_eq!(h.user.as_ref().unwrap().as_str(), "x-forwarded-user");
    assert_eq!(h.email.as_ref().unwrap().as_str(), "x-forwarded-email");
    assert_eq!(
        h.preferred_username.as_ref().unwrap().as_str(),
        "x-forwarded-preferred-username"
    );
    assert_eq!(h.groups.as_ref().unwrap().as_str(), "x-forwarded-groups");
    assert!(h.require_verified_email && !h.access_token && !h.authorization);
    let l = &c.logout;
    assert_eq!(l.path, "/logout");
    assert_eq!(l.mode, LogoutMode::Redirect);
    assert_eq!(l.allowed_modes.len(), 4);
    assert_eq!(l.default_return_to, "/");
    assert!(l.allowed_return_to.is_empty());
    assert!(l.revoke_tokens);
    assert_eq!(l.clear_site_data, [ClearSiteData::Storage]);
    assert_eq!(l.silent_timeout, Duration::from_secs(5));
}

#[test]
fn lists_and_strings_both_accepted() {
    let src = base_with(
        "listen = \"127.0.0.1:8080\"\npublic_url = \"http://127.0.0.1:8080\"",
        "listen = [\"127.0.0.1:8080\", \"[::1]:8080\"]\npublic_url = [\"http://127.0.0.1:8080\", \"http://localhost:8080\"]",
    )
    .replace(
        "secret = \"${PORTCULLIS_SECRET}\"",
        &format!("secret = [\"${{PORTCULLIS_SECRET}}\", \"{SECRET}-old\"]"),
    );
    let c = load(&src).unwrap().config;
    assert_eq!(c.server.listen.len(), 2);
    assert_eq!(c.server.public_urls[1].host, "localhost");
    assert_eq!(c.session.unwrap().secrets.len(), 2);
}

#[test]
fn empty_header_disables_it() {
    let src = format!("{BASE}\n[headers]\nemail = \"\"\ngroups = \"X-Team\"\n");
    let h = load(&src).unwrap().config.headers;
    assert!(h.email.is_none());
    assert_eq!(h.groups.unwrap().as_str(), "x-team");
}

#[test]
fn load_reads_file_and_reports_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, BASE.replace("${PORTCULLIS_SECRET}", SECRET)).unwrap();
    assert!(config::load(&path).is_ok());
    let err = config::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("missing.toml"));
}
