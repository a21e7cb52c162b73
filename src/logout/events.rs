//! The one `logout` event and metric every ending of a session produces,
//! whoever asked for it. Never a token, a cookie or a user identifier in a
//! label; the log line may name the session's store key hash (not usable as
//! a cookie) for correlation.

use std::time::Duration;

/// Who ended the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The user, at `/logout`.
    RpInitiated,
    /// The IdP, by back-channel logout token.
    Backchannel,
    /// The IdP, by front-channel request.
    Frontchannel,
    /// An operator, through the admin API.
    Admin,
    /// A failed refresh (`invalid_grant`) or expiry noticed by the gateway.
    Gateway,
}

impl Kind {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RpInitiated => "rp_initiated",
            Kind::Backchannel => "backchannel",
            Kind::Frontchannel => "frontchannel",
            Kind::Admin => "admin",
            Kind::Gateway => "gateway",
        }
    }
}

/// Records one logout: a structured `logout` log event and
/// `portcullis_logouts_total{kind,mode,outcome}`. `mode` is the logout mode
/// for RP-initiated logouts and `"-"` otherwise; `outcome` is a short fixed
/// word (`ok`, `no_session`, `idp_unavailable`, `store_error`, …).
pub fn record(
    kind: Kind,
    mode: &'static str,
    outcome: &'static str,
    sessions: usize,
    session_age: Option<Duration>,
) {
    metrics::counter!(
        "portcullis_logouts_total",
        "kind" => kind.as_str(),
        "mode" => mode,
        "outcome" => outcome
    )
    .increment(1);
    tracing::info!(
        event = "logout",
        kind = kind.as_str(),
        mode,
        outcome,
        sessions,
        session_age_s = session_age.map(|d| d.as_secs()),
        "logout"
    );
}
