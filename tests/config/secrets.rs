//! `${VAR}` expansion and escapes, secret files, secret lengths, never echoing a secret.

use std::io::Write as _;

use super::*;

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
fn secrets_do_not_reach_debug_output() {
    let loaded = load(BASE).unwrap();
    assert!(!format!("{:?}", loaded.config).contains(SECRET));
}

#[test]
fn unexpanded_value_is_not_also_reported_missing_or_short() {
    let src = base_with("secret = \"${PORTCULLIS_SECRET}\"", "secret = \"${NOPE}\"");
    assert_one_error(&src, 10, 10, "`NOPE` is not set");
}

/// A value given with the wrong type is not echoed: after `${VAR}`
/// expansion it may be a secret (a Redis URL with its password where a
/// list was expected, a numeric token left unquoted), and `check`'s output
/// and the reload log go where secrets must not.
#[test]
fn a_value_of_the_wrong_type_is_not_echoed() {
    let redis = |line: &str| {
        base_with(
            "secret = \"${PORTCULLIS_SECRET}\"",
            &format!(
                "secret = \"${{PORTCULLIS_SECRET}}\"\nstore = \"redis\"\n[session.redis]\n{line}\nsentinel_master = \"m\""
            ),
        )
    };
    for src in [
        redis("sentinels = \"redis://:Hunter2-pw@10.0.0.1:26379\""),
        redis("cluster = \"redis://:Hunter2-pw@10.0.0.1:7000\""),
        base_with(
            "public_url = \"http://127.0.0.1:8080\"",
            "public_url = \"http://127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:9090\"\nadmin_token = 12345678901234567890123456789012345",
        ),
        BASE.replace(
            "http://127.0.0.1:3000",
            "http://user:Hunter2-pw@127.0.0.1:3000/?q",
        ),
        BASE.replace(
            "http://127.0.0.1:3000",
            "ftp://user:Hunter2-pw@127.0.0.1:3000",
        ),
        BASE.replace("http://127.0.0.1:3000", "http://user:Hunter2-pw@[::1"),
    ] {
        let errs = errors(&src);
        assert!(!errs.is_empty(), "{src}");
        for e in &errs {
            assert!(
                !e.message.contains("Hunter2") && !e.message.contains("1234567890"),
                "echoed: {}",
                e.message
            );
        }
    }
    // The kind found is still said, once: no error follows from the
    // missing list (such as "`sentinel_master` needs `sentinels`").
    let errs = errors(&redis("sentinels = \"redis://:Hunter2-pw@h:26379\""));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.contains("invalid type: string, expected"),
        "{errs:#?}"
    );
}
