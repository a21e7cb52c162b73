//! How problems are reported: `path:line:column`, suggestions, all at once, never a panic.

use super::*;

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
