//! The gateway's own paths, spelled in one place. Everything under
//! [`PREFIX`] is answered by the gateway and never reaches an upstream
//! (the configured logout path too, see `gateway.rs` step 4); the
//! configuration check refuses routes and a logout path under it.
//!
//! Register at the IdP, per public origin: [`CALLBACK`] (redirect URI),
//! [`LOGOUT_DONE`] (post-logout redirect URI), [`BACKCHANNEL_LOGOUT`] and
//! [`FRONTCHANNEL_LOGOUT`].

/// The reserved prefix.
pub const PREFIX: &str = "/.portcullis";
/// Starts a login: `?return_to=`.
pub const LOGIN: &str = "/.portcullis/login";
/// The OIDC redirect URI.
pub const CALLBACK: &str = "/.portcullis/callback";
/// The current session as JSON.
pub const SESSION: &str = "/.portcullis/session";
/// A logout CSRF token for the current session (JSON).
pub const LOGOUT_FLOW: &str = "/.portcullis/logout/flow";
/// The silent/popup logout's step to the IdP: `?state=`.
pub const LOGOUT_CONTINUE: &str = "/.portcullis/logout/continue";
/// The post-logout redirect URI: `?state=`.
pub const LOGOUT_DONE: &str = "/.portcullis/logout/done";
/// The OIDC Back-Channel Logout receiver.
pub const BACKCHANNEL_LOGOUT: &str = "/.portcullis/backchannel-logout";
/// The OIDC Front-Channel Logout receiver.
pub const FRONTCHANNEL_LOGOUT: &str = "/.portcullis/frontchannel-logout";
/// The logout script for apps (silent and popup logout).
pub const LOGOUT_JS: &str = "/.portcullis/logout.js";
/// Forward-auth: a front proxy's sub-request (also any path under it,
/// Envoy's `path_prefix` form).
pub const AUTH: &str = "/.portcullis/auth";
/// The public keys of the signed identity assertion.
pub const JWKS: &str = "/.portcullis/jwks.json";

/// Whether `path` is [`PREFIX`] or under it (a path segment boundary:
/// `/.portcullisx` is not).
pub fn is_reserved(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserved_prefix_ends_at_a_segment() {
        for p in [PREFIX, "/.portcullis/", LOGIN, "/.portcullis/x/y"] {
            assert!(is_reserved(p), "{p}");
        }
        for p in [
            "/",
            "/.portcullisx",
            "/.portcullis.js",
            "/app/.portcullis/login",
        ] {
            assert!(!is_reserved(p), "{p}");
        }
    }
}
