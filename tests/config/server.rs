//! `[server]` and `[telemetry]`: insecure public URLs, the admin listener, workers, listeners.

use super::*;

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
