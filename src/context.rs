//! What a handler of the gateway's own paths gets: the configuration, the
//! long-lived services (sessions, OIDC client) and the facts the request
//! path has already settled (route origin, client kind, request id).

use std::net::IpAddr;

use crate::config::{Config, PublicOrigin, SessionConfig};
use crate::oidc::OidcClient;
use crate::request::ClientKind;
use crate::session::Sessions;

/// Per-request context for the gateway's own endpoints.
pub struct Ctx<'a> {
    /// The running configuration.
    pub config: &'a Config,
    /// `[session]`, the session settings (always present when login is
    /// configured).
    pub session_config: &'a SessionConfig,
    /// The session service.
    pub sessions: &'a Sessions,
    /// The OIDC client.
    pub oidc: &'a OidcClient,
    /// The route origin (the configured public origin the request matched).
    pub origin: &'a PublicOrigin,
    /// How to answer: redirect, HTML or JSON.
    pub kind: ClientKind,
    /// The request id, for log lines.
    pub request_id: &'a str,
    /// The client's address: the TCP peer, or behind `trusted_proxies` the
    /// address they forwarded (see [`crate::request::origin::client_ip`]).
    /// Never what a client wrote itself: it keys the back-channel rate
    /// limit.
    pub peer: IpAddr,
}

impl Ctx<'_> {
    /// `<origin><path>` as a URL string.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin.origin)
    }

    /// Whether cookies for this origin get `Secure`.
    pub fn secure(&self) -> bool {
        self.origin.scheme == crate::config::Scheme::Https
    }
}
