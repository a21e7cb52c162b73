//! Loading and validating `gateway.toml`: every problem is reported with
//! `path:line:column`, all at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use portcullis::config::{
    self, AuthMode, ClearSiteData, ConfigError, Diagnostic, LogoutMode, SameSite, Scheme, Severity,
    StoreConfig,
};

const SECRET: &str = "0123456789abcdef0123456789abcdef0123";

fn env(name: &str) -> Option<String> {
    match name {
        "PORTCULLIS_SECRET" => Some(SECRET.into()),
        "PORTCULLIS_CLIENT_SECRET" => Some("client-secret".into()),
        "UPSTREAM_PORT" => Some("3001".into()),
        _ => None,
    }
}

/// A small valid configuration; tests append to or replace parts of it.
const BASE: &str = r#"[server]
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"

[oidc]
issuer = "http://127.0.0.1:9000"
client_id = "portcullis"

[session]
secret = "${PORTCULLIS_SECRET}"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:3000"
"#;

fn load(src: &str) -> Result<config::Loaded, ConfigError> {
    config::load_from_str(Path::new("gw.toml"), src, &env)
}

fn diagnostics(src: &str) -> Vec<Diagnostic> {
    match load(src) {
        Ok(l) => panic!(
            "expected errors, config loaded (warnings: {:?})",
            l.warnings
        ),
        Err(ConfigError::Invalid(d)) => d,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn errors(src: &str) -> Vec<Diagnostic> {
    diagnostics(src)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

/// Asserts exactly one error, at `line:col`, whose message contains `fragment`.
#[track_caller]
fn assert_one_error(src: &str, line: usize, col: usize, fragment: &str) {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:#?}");
    let e = &errs[0];
    assert_eq!(
        (e.line, e.column),
        (line, col),
        "wrong position for {}",
        e.message
    );
    assert!(
        e.message.contains(fragment),
        "`{}` does not contain `{fragment}`",
        e.message
    );
    assert!(
        e.to_string()
            .starts_with(&format!("gw.toml:{line}:{col}: "))
    );
}

/// Replaces the first occurrence of `from` in BASE.
fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from}");
    BASE.replacen(from, to, 1)
}

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
fn prefix_is_normalised_without_trailing_slash() {
    let src = BASE.replace("prefix = \"/\"", "prefix = \"/api/v1/\"");
    assert_eq!(load(&src).unwrap().config.routes[0].prefix, "/api/v1");
    let src = BASE.replace("prefix = \"/\"", "prefix = \"/api\"");
    assert_eq!(load(&src).unwrap().config.routes[0].prefix, "/api");
}

#[test]
fn env_vars_expand_in_any_string() {
    let src = BASE.replace("127.0.0.1:3000", "127.0.0.1:${UPSTREAM_PORT}");
    let c = load(&src).unwrap().config;
    assert_eq!(c.routes[0].upstream.as_str(), "http://127.0.0.1:3001/");
}

#[test]
fn dollar_escape_gives_literal() {
    // `$${` is a literal `${`; any other `$` is kept as is
    let src = base_with(
        "client_id = \"portcullis\"",
        "client_id = \"a$${UPSTREAM_PORT}b$c$\"",
    );
    let c = load(&src).unwrap().config;
    assert_eq!(c.oidc.unwrap().client_id, "a${UPSTREAM_PORT}b$c$");
}

#[test]
fn missing_env_var_is_named_at_its_value() {
    let src = base_with(
        "client_id = \"portcullis\"",
        "client_id = \"${NO_SUCH_VAR}\"",
    );
    assert_one_error(&src, 7, 13, "environment variable `NO_SUCH_VAR` is not set");
}

#[test]
fn toml_syntax_error_is_one_diagnostic() {
    let src = "[server]\nlisten = \"127.0.0.1:8080\nfoo = 1\n";
    let d = diagnostics(src);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].line, 2);
    assert!(
        d[0].message.contains("TOML syntax error"),
        "{}",
        d[0].message
    );
}

#[test]
fn unknown_key_suggests_closest() {
    let src = base_with("listen =", "listn =");
    let errs = errors(&src);
    let e = errs
        .iter()
        .find(|e| e.message.contains("unknown key"))
        .unwrap();
    assert_eq!((e.line, e.column), (2, 1));
    assert!(
        e.message
            .contains("unknown key `listn` in [server]; did you mean `listen`?"),
        "{}",
        e.message
    );
    // and the now-missing listen is reported too
    assert!(
        errs.iter()
            .any(|e| e.message.contains("missing key `listen`"))
    );
}

#[test]
fn unknown_section_suggests_closest() {
    let src = format!("{BASE}\n[logut]\npath = \"/bye\"\n");
    assert_one_error(&src, 16, 2, "did you mean `logout`?");
}

#[test]
fn unknown_key_in_subtable() {
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\nstore = \"redis\"\n\n[session.redis]\nurl = \"redis://127.0.0.1:6379/0\"\ncache_tl = \"5s\"",
    );
    assert_one_error(
        &src,
        15,
        1,
        "unknown key `cache_tl` in [session.redis]; did you mean `cache_ttl`?",
    );
}

#[test]
fn wrong_type_names_key() {
    let src = base_with("listen = \"127.0.0.1:8080\"", "listen = 8080");
    let errs = errors(&src);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (2, 10));
    assert!(
        errs[0].message.contains("`listen` in [server]"),
        "{}",
        errs[0].message
    );
}

#[test]
fn bad_duration_says_what_is_allowed() {
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\nidle_timeout = \"30\"",
    );
    assert_one_error(&src, 11, 16, "\"30s\", \"15m\", \"12h\"");
}

#[test]
fn bad_url() {
    let src = BASE.replace(
        "upstream = \"http://127.0.0.1:3000\"",
        "upstream = \"not a url\"",
    );
    assert_one_error(&src, 14, 12, "invalid upstream URL `not a url`");
}

#[test]
fn upstream_scheme_must_be_http() {
    let src = BASE.replace("http://127.0.0.1:3000", "ftp://127.0.0.1:3000");
    assert_one_error(&src, 14, 12, "must be http or https");
}

#[test]
fn bad_cidr() {
    let src = base_with(
        "public_url = \"http://127.0.0.1:8080\"",
        "public_url = \"http://127.0.0.1:8080\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]",
    );
    assert_one_error(&src, 4, 34, "invalid CIDR `10.0.0.0/99`");
    let ok = src.replace("10.0.0.0/99", "192.0.2.7");
    assert_eq!(load(&ok).unwrap().config.server.trusted_proxies.len(), 2);
}

#[test]
fn bad_socket_address() {
    let src = base_with("listen = \"127.0.0.1:8080\"", "listen = \"localhost\"");
    assert_one_error(&src, 2, 10, "invalid listen address `localhost`");
}

#[test]
fn bad_enum_lists_allowed_values() {
    let src = BASE.replace(
        "upstream = \"http://127.0.0.1:3000\"",
        "upstream = \"http://127.0.0.1:3000\"\nauth = \"maybe\"",
    );
    assert_one_error(&src, 15, 8, "expected one of \"session\", \"none\"");
    let src = format!("{BASE}\n[logout]\nmode = \"boom\"\n");
    assert_one_error(
        &src,
        17,
        8,
        "\"redirect\", \"silent\", \"popup\", \"local\"",
    );
}

#[test]
fn secret_files_are_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("client")).unwrap();
    writeln!(f, "from-file").unwrap();
    std::fs::write(
        dir.path().join("session"),
        format!("{SECRET}\n{SECRET}-old\n"),
    )
    .unwrap();
    let src = base_with(
        "client_id = \"portcullis\"",
        "client_id = \"portcullis\"\nclient_secret_file = \"client\"",
    )
    .replace(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret_file = \"session\"",
    );
    let path = dir.path().join("gw.toml");
    let c = config::load_from_str(&path, &src, &env).unwrap().config;
    assert_eq!(c.oidc.unwrap().client_secret.unwrap().expose(), "from-file");
    let s = c.session.unwrap();
    assert_eq!(s.secrets.len(), 2);
    assert_eq!(s.secrets[0].expose(), SECRET);
}

#[test]
fn unreadable_secret_file_names_key_and_path() {
    let src = base_with(
        "client_id = \"portcullis\"",
        "client_id = \"portcullis\"\nclient_secret_file = \"/nonexistent/portcullis-secret\"",
    );
    assert_one_error(
        &src,
        8,
        22,
        "cannot read client_secret_file `/nonexistent/portcullis-secret`",
    );
}

#[test]
fn secret_and_secret_file_together_is_an_error() {
    let src = base_with(
        "client_id = \"portcullis\"",
        "client_id = \"portcullis\"\nclient_secret = \"x\"\nclient_secret_file = \"/dev/null\"",
    );
    assert_one_error(&src, 9, 1, "either `client_secret` or `client_secret_file`");
}

#[test]
fn redis_url_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("redis"), "redis://:pw@127.0.0.1:6379/0\n").unwrap();
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\nstore = \"redis\"\n[session.redis]\nurl_file = \"redis\"",
    );
    let c = config::load_from_str(&dir.path().join("gw.toml"), &src, &env)
        .unwrap()
        .config;
    match c.session.unwrap().store {
        StoreConfig::Redis(r) => {
            assert_eq!(
                r.url.as_ref().unwrap().expose(),
                "redis://:pw@127.0.0.1:6379/0"
            );
            assert_eq!(r.cache_ttl, Duration::from_secs(5));
        }
        StoreConfig::Memory => panic!("expected redis"),
    }
}

/// A configuration whose `[session.redis]` section is `redis` (its first line is
/// line 13).
fn with_redis(redis: &str) -> String {
    base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        &format!(
            "secret = \"${{PORTCULLIS_SECRET}}\"\nstore = \"redis\"\n[session.redis]\n{redis}"
        ),
    )
}

fn redis_config(redis: &str) -> portcullis::config::RedisConfig {
    let c = load(&with_redis(redis)).unwrap().config;
    match c.session.unwrap().store {
        StoreConfig::Redis(r) => r,
        StoreConfig::Memory => panic!("expected redis"),
    }
}

#[test]
fn redis_sentinel_and_cluster_load() {
    use portcullis::config::RedisTopology;
    let r = redis_config(
        "sentinels = [\"redis://:spw@127.0.0.1:26379\", \"redis://:spw@127.0.0.1:26380\"]\nsentinel_master = \"mymaster\"\nurl = \"rediss://:pw@ignored:1/2\"",
    );
    match r.topology {
        RedisTopology::Sentinel { sentinels, master } => {
            assert_eq!(sentinels.len(), 2);
            assert_eq!(master, "mymaster");
        }
        t => panic!("expected sentinel, got {t:?}"),
    }
    let r = redis_config("cluster = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001/0\"]");
    assert!(matches!(r.topology, RedisTopology::Cluster { nodes } if nodes.len() == 2));
    assert!(r.url.is_none(), "url is optional with cluster");
}

#[test]
fn redis_sentinel_and_cluster_together_is_an_error() {
    assert_one_error(
        &with_redis(
            "sentinels = [\"redis://127.0.0.1:26379\"]\nsentinel_master = \"m\"\ncluster = [\"redis://127.0.0.1:7000\"]",
        ),
        15,
        1,
        "either `sentinels` (Redis Sentinel) or `cluster`",
    );
}

#[test]
fn redis_sentinels_need_a_master_name_and_back() {
    assert_one_error(
        &with_redis("sentinels = [\"redis://127.0.0.1:26379\"]"),
        13,
        1,
        "`sentinels` needs `sentinel_master`",
    );
    assert_one_error(
        &with_redis("url = \"redis://127.0.0.1:6379\"\nsentinel_master = \"m\""),
        14,
        19,
        "`sentinel_master` needs `sentinels`",
    );
}

#[test]
fn redis_cluster_has_only_db_0() {
    assert_one_error(
        &with_redis("cluster = [\"redis://127.0.0.1:7000\"]\nurl = \"redis://127.0.0.1/3\""),
        14,
        7,
        "a Redis Cluster has only database 0",
    );
    assert_one_error(
        &with_redis("cluster = [\"redis://127.0.0.1:7000/1\"]"),
        13,
        12,
        "only database 0",
    );
}

#[test]
fn redis_node_lists_are_checked_entry_by_entry() {
    assert_one_error(
        &with_redis("cluster = []"),
        13,
        11,
        "`cluster` must list at least one URL",
    );
    assert_one_error(
        &with_redis(
            "sentinels = [\"redis://127.0.0.1:26379\", \"http://127.0.0.1:26380\"]\nsentinel_master = \"m\"",
        ),
        13,
        41,
        "must be a redis:// or rediss:// URL",
    );
    assert_one_error(
        &with_redis(
            "sentinels = [\"redis://:a@127.0.0.1:26379\", \"redis://:b@127.0.0.1:26380\"]\nsentinel_master = \"m\"",
        ),
        13,
        44,
        "same credentials",
    );
    assert_one_error(
        &with_redis("sentinels = [\"redis://127.0.0.1:26379/1\"]\nsentinel_master = \"m\""),
        13,
        14,
        "selects no database",
    );
    // A unix socket makes no sense beside sentinels.
    assert_one_error(
        &with_redis(
            "sentinels = [\"redis://127.0.0.1:26379\"]\nsentinel_master = \"m\"\nurl = \"unix:///run/redis.sock\"",
        ),
        15,
        7,
        "must be redis or rediss",
    );
}

#[test]
fn redis_url_or_a_topology_is_required() {
    assert_one_error(
        &with_redis("cache_ttl = \"1s\""),
        12,
        10,
        "missing key `url`",
    );
}

#[test]
fn redis_old_style_sentinel_urls_point_to_the_keys() {
    assert_one_error(
        &with_redis("url = \"redis+sentinel://127.0.0.1:26379/mymaster\""),
        13,
        7,
        "use `sentinels` or `cluster`",
    );
}

#[test]
fn redis_ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let src = with_redis("url = \"rediss://127.0.0.1:6379\"\nca_file = \"empty.pem\"");
    let err = config::load_from_str(&dir.path().join("gw.toml"), &src, &env).unwrap_err();
    let ConfigError::Invalid(d) = err else {
        panic!("expected diagnostics")
    };
    assert!(
        d.iter()
            .any(|d| d.line == 14 && d.message.contains("holds no PEM certificate")),
        "{d:#?}"
    );
    assert_one_error(
        &with_redis("url = \"rediss://127.0.0.1:6379\"\nca_file = \"/nonexistent/ca.pem\""),
        14,
        11,
        "cannot read ca_file `/nonexistent/ca.pem`",
    );
    // Without rediss:// anywhere the file would be ignored: say so.
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    let src = with_redis("url = \"redis://127.0.0.1:6379\"\nca_file = \"ca.pem\"");
    let l = config::load_from_str(&dir.path().join("gw.toml"), &src, &env).unwrap();
    assert!(
        l.warnings
            .iter()
            .any(|w| w.message.contains("ca_file has no effect")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn redis_store_needs_redis_section() {
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"${PORTCULLIS_SECRET}\"\nstore = \"redis\"",
    );
    assert_one_error(&src, 11, 9, "needs a [session.redis] section");
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
fn non_loopback_http_public_url_needs_allow_insecure_http() {
    let src = base_with(
        "public_url = \"http://127.0.0.1:8080\"",
        "public_url = \"http://app.example.com\"",
    );
    assert_one_error(&src, 3, 14, "allow_insecure_http");
    let src = src.replace(
        "public_url = \"http://app.example.com\"",
        "public_url = \"http://app.example.com\"\nallow_insecure_http = true",
    );
    let loaded = load(&src).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0]
            .to_string()
            .starts_with("gw.toml:4:1: warning: allow_insecure_http")
    );
}

#[test]
fn route_host_must_be_a_public_host() {
    let src = BASE.replace(
        "prefix = \"/\"",
        "prefix = \"/\"\nhost = \"other.example.com\"",
    );
    assert_one_error(
        &src,
        14,
        8,
        "route host `other.example.com` is not the host of any public_url",
    );
    let src = BASE.replace("prefix = \"/\"", "prefix = \"/\"\nhost = \"127.0.0.1\"");
    assert_eq!(
        load(&src).unwrap().config.routes[0].host.as_deref(),
        Some("127.0.0.1")
    );
}

#[test]
fn short_admin_token_refused() {
    let src = base_with(
        "public_url = \"http://127.0.0.1:8080\"",
        "public_url = \"http://127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:9090\"\nadmin_token = \"short\"",
    );
    assert_one_error(
        &src,
        5,
        15,
        "admin_token must be at least 32 bytes (it has 5)",
    );
}

#[test]
fn short_session_secret_refused_without_echoing_it() {
    let src = base_with(
        "secret = \"${PORTCULLIS_SECRET}\"",
        "secret = \"tooshort-secret-value\"",
    );
    assert_one_error(&src, 10, 10, "session secret must be at least 32 bytes");
    assert!(!errors(&src)[0].message.contains("tooshort-secret-value"));
}

#[test]
fn no_routes_refused() {
    let src = BASE.replace(
        "[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:3000\"\n",
        "",
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("at least one route"));
}

#[test]
fn prefix_must_start_with_slash() {
    let src = BASE.replace("prefix = \"/\"", "prefix = \"api\"");
    assert_one_error(&src, 13, 10, "must start with `/`");
}

#[test]
fn logout_mode_must_be_allowed() {
    let src =
        format!("{BASE}\n[logout]\nmode = \"silent\"\nallowed_modes = [\"redirect\", \"local\"]\n");
    assert_one_error(
        &src,
        17,
        8,
        "logout mode `silent` is not listed in allowed_modes",
    );
}

#[test]
fn default_return_to_must_be_path_or_allowed() {
    let src = format!("{BASE}\n[logout]\ndefault_return_to = \"//evil.example\"\n");
    assert_one_error(&src, 17, 21, "default_return_to `//evil.example`");
    let src = format!(
        "{BASE}\n[logout]\ndefault_return_to = \"https://www.example.com/bye\"\nallowed_return_to = [\"https://www.example.com/bye\"]\n"
    );
    assert_eq!(
        load(&src).unwrap().config.logout.default_return_to,
        "https://www.example.com/bye"
    );
}

#[test]
fn allowed_return_to_must_be_absolute() {
    let src = format!("{BASE}\n[logout]\nallowed_return_to = [\"/relative\"]\n");
    assert_one_error(&src, 17, 22, "must be an absolute http or https URL");
}

#[test]
fn logout_path_rules() {
    let src = format!("{BASE}\n[logout]\npath = \"logout\"\n");
    assert_one_error(
        &src,
        17,
        8,
        "must be a plain path starting with a single `/`",
    );
    let src = format!("{BASE}\n[logout]\npath = \"/.portcullis/logout\"\n");
    assert_one_error(&src, 17, 8, "must not be under /.portcullis/");
}

/// A non-loopback admin listener serves probes and metrics; the admin API
/// there needs `[server.admin_tls]`, and `check` warns when a token is set
/// without it.
#[test]
fn non_loopback_admin_listen_needs_admin_tls_for_the_api() {
    let with = |extra: &str| {
        base_with(
            "public_url = \"http://127.0.0.1:8080\"",
            &format!(
                "public_url = \"http://127.0.0.1:8080\"\nadmin_listen = \"0.0.0.0:9090\"\n{extra}"
            ),
        )
    };
    let probes_only = load(&with("")).unwrap();
    assert!(
        probes_only.warnings.is_empty(),
        "{:?}",
        probes_only.warnings
    );
    assert_eq!(
        probes_only.config.server.admin_listen,
        Some("0.0.0.0:9090".parse().unwrap())
    );

    let token = "admin_token = \"${PORTCULLIS_SECRET}\"\n";
    let plain = load(&with(token)).unwrap();
    let w: Vec<String> = plain.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("gw.toml:5:15: ")
            && w[0].contains(
                "admin API disabled on a non-loopback listener without [server.admin_tls]"
            ),
        "{w:?}"
    );
    assert!(plain.config.server.admin_tls.is_none());

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("a.crt"), dir.path().join("a.key"));
    std::fs::write(&cert, "cert").unwrap();
    std::fs::write(&key, "key").unwrap();
    let tls = format!(
        "{token}\n[server.admin_tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let with_tls = load(&with(&tls)).unwrap();
    assert!(with_tls.warnings.is_empty(), "{:?}", with_tls.warnings);
    let admin_tls = with_tls.config.server.admin_tls.expect("admin_tls");
    assert_eq!((admin_tls.cert, admin_tls.key), (cert.clone(), key));

    let no_key = format!(
        "{token}\n[server.admin_tls]\ncert = \"{}\"\n",
        cert.display()
    );
    let errs = errors(&with(&no_key));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0]
            .message
            .contains("missing key `key` in [server.admin_tls]"),
        "{}",
        errs[0].message
    );
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
fn empty_header_disables_it() {
    let src = format!("{BASE}\n[headers]\nemail = \"\"\ngroups = \"X-Team\"\n");
    let h = load(&src).unwrap().config.headers;
    assert!(h.email.is_none());
    assert_eq!(h.groups.unwrap().as_str(), "x-team");
}

#[test]
fn warnings_for_risky_settings() {
    let src = format!(
        "{}\n[logout]\nclear_site_data = [\"storage\", \"cookies\"]\n",
        base_with(
            "client_id = \"portcullis\"",
            "client_id = \"portcullis\"\nbackchannel_require_exp = false"
        )
    );
    let loaded = load(&src).unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("gw.toml:8:1: warning: backchannel_require_exp = false"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("gw.toml:18:31: warning: clear_site_data \"cookies\""),
        "{w:?}"
    );
    assert!(w[1].contains("registrable domain"));
}

#[test]
fn five_problems_five_diagnostics() {
    let src = r#"[server]
listen = "127.0.0.1:80800"
public_url = "http://127.0.0.1:8080"

[oidc]
issuer = "http://127.0.0.1:9000"
client_id = "portcullis"
scops = ["openid"]

[session]
secret = "short"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:3000"
timeout = "forever"

[logout]
mode = "boom"
"#;
    let errs = errors(src);
    let got: Vec<String> = errs
        .iter()
        .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
        .collect();
    assert_eq!(errs.len(), 5, "{got:#?}");
    let positions: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
    for p in [(2, 10), (8, 1), (11, 10), (16, 11), (19, 8)] {
        assert!(positions.contains(&p), "missing {p:?} in {got:#?}");
    }
    let text = ConfigError::Invalid(errs).to_string();
    assert_eq!(text.lines().count(), 5);
}

#[test]
fn type_error_in_one_route_does_not_hide_others() {
    let src = format!(
        "{BASE}\n[[route]]\nprefix = 5\nupstream = \"http://127.0.0.1:3000\"\n\n[[route]]\nprefix = \"nope\"\nupstream = \"http://127.0.0.1:3000\"\n"
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].column), (17, 10));
    assert_eq!((errs[1].line, errs[1].column), (21, 10));
}

#[test]
fn listen_location_and_check_listeners() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let src = base_with(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = [\"127.0.0.1:0\", \"{addr}\"]"),
    );
    let loaded = load(&src).unwrap();
    let loc = loaded.listen_location(addr).unwrap();
    assert_eq!((loc.line, loc.column), (2, 26));
    let problems = config::check_listeners(&loaded, &[]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        format!("gw.toml:2:26: listen address {addr} is in use")
    );
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

#[test]
fn secrets_do_not_reach_debug_output() {
    let loaded = load(BASE).unwrap();
    assert!(!format!("{:?}", loaded.config).contains(SECRET));
}

#[test]
fn type_error_does_not_hide_other_problems_in_the_same_table() {
    let src = base_with(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:80800\"\ntrusted_proxies = \"10.0.0.0/8\"\nmax_header_bytes = 10",
    );
    let errs = errors(&src);
    let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{got:#?}");
    assert!(got[0].starts_with("gw.toml:2:10: invalid listen address `127.0.0.1:80800`"));
    assert!(got[1].starts_with("gw.toml:3:19: `trusted_proxies` in [server]: invalid type"));
    assert!(got[2].starts_with("gw.toml:4:20: max_header_bytes must be between"));
}

#[test]
fn workers_is_a_thread_count() {
    let src = base_with(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nworkers = 3",
    );
    assert_eq!(load(&src).unwrap().config.server.workers, 3);
    let src = base_with(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nworkers = -1",
    );
    assert_one_error(
        &src,
        3,
        11,
        "workers must be between 0 (one per CPU core) and 1024",
    );
}

#[test]
fn unexpanded_value_is_not_also_reported_missing_or_short() {
    let src = base_with("secret = \"${PORTCULLIS_SECRET}\"", "secret = \"${NOPE}\"");
    assert_one_error(&src, 10, 10, "`NOPE` is not set");
}

#[test]
fn transposed_key_gets_a_suggestion() {
    let src = base_with(
        "public_url = \"http://127.0.0.1:8080\"",
        "public_url = \"http://127.0.0.1:8080\"\n[server.tls]\ncert = \"/dev/null\"\nkye = \"/dev/null\"",
    );
    let errs = errors(&src);
    let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        got.contains(
            &"gw.toml:6:1: unknown key `kye` in [server.tls]; did you mean `key`?".to_string()
        ),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|e| e.starts_with("gw.toml:4:9: missing key `key` in [server.tls]")),
        "{got:#?}"
    );
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

#[test]
fn no_panic_on_any_truncation_or_mangling() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let full = std::fs::read_to_string(&path).unwrap();
    for (i, _) in full.char_indices() {
        let _ = load(&full[..i]);
        let mangled = format!("{}\"{}", &full[..i], &full[i..]);
        let _ = load(&mangled);
        let mangled = format!("{}${{{}", &full[..i], &full[i..]);
        let _ = load(&mangled);
    }
}

/// `[telemetry]`: off unless `otlp_endpoint` is set; the endpoint must be
/// an http(s) URL, the ratio within 0–1, the service name not empty.
#[test]
fn telemetry_section_is_validated() {
    assert!(
        load(BASE).unwrap().config.telemetry.is_none(),
        "off by default"
    );
    let with = |t: &str| format!("{BASE}\n[telemetry]\n{t}\n");
    assert!(
        load(&with("otlp_endpoint = \"\""))
            .unwrap()
            .config
            .telemetry
            .is_none(),
        "an empty endpoint is off"
    );
    let on = load(&with("otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\""))
        .unwrap()
        .config
        .telemetry
        .expect("on");
    assert_eq!(on.otlp_endpoint.as_str(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(
        (on.service_name.as_str(), on.sample_ratio),
        ("portcullis", 1.0)
    );
    let custom = load(&with(
        "otlp_endpoint = \"https://otel.example/v1/traces\"\nservice_name = \"edge\"\nsample_ratio = 0.25",
    ))
    .unwrap()
    .config
    .telemetry
    .expect("on");
    assert_eq!(
        (custom.service_name.as_str(), custom.sample_ratio),
        ("edge", 0.25)
    );

    // The [telemetry] header is on line 16 of this file; keys follow it.
    assert_one_error(
        &with("otlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nsample_ratio = 1.5"),
        18,
        16,
        "sample_ratio must be between 0.0",
    );
    assert_one_error(
        &with("otlp_endpoint = \"grpc://collector:4317\""),
        17,
        17,
        "must be an http or https URL",
    );
    assert_one_error(
        &with("otlp_endpoint = \"http://c/v1/traces?x=1\""),
        17,
        17,
        "must not have a query",
    );
    assert_one_error(
        &with("otlp_endpoint = \"http://c/v1/traces\"\nservice_name = \" \""),
        18,
        16,
        "service_name must not be empty",
    );
    assert_one_error(
        &with("otlp_endpoit = \"x\""),
        17,
        1,
        "did you mean `otlp_endpoint`",
    );
    let no_path = load(&with("otlp_endpoint = \"http://collector:4318\"")).unwrap();
    let w: Vec<String> = no_path.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.len() == 1 && w[0].contains("/v1/traces"),
        "a warning about the missing path: {w:?}"
    );
}
