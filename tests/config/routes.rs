//! `[[route]]`: prefixes, hosts and upstream URLs.

use super::*;

#[test]
fn prefix_is_normalised_without_trailing_slash() {
    let src = BASE.replace("prefix = \"/\"", "prefix = \"/api/v1/\"");
    assert_eq!(load(&src).unwrap().config.routes[0].prefix, "/api/v1");
    let src = BASE.replace("prefix = \"/\"", "prefix = \"/api\"");
    assert_eq!(load(&src).unwrap().config.routes[0].prefix, "/api");
}

#[test]
fn upstream_scheme_must_be_http() {
    let src = BASE.replace("http://127.0.0.1:3000", "ftp://127.0.0.1:3000");
    assert_one_error(&src, 14, 12, "must be http or https");
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
