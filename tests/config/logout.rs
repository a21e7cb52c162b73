//! `[logout]`: modes, return destinations and path, and the warnings for risky settings.

use super::*;

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
