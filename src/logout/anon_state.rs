//! The `state` of a logout that ended no gateway session: what
//! `/logout/continue` and `/logout/done` need (destination, mode, deadline),
//! sealed into the `state` value itself, so an anonymous request makes the
//! gateway keep nothing (SPEC, "Limits").
//!
//! It needs no single-use record: it ends no session, so replaying it can
//! only send its holder to a destination the rule already accepted. It is
//! time-limited like a stored state, and carries no ID token (there is no
//! session to take one from), so `/logout/continue` rebuilds the IdP URL
//! from the configuration.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::state::TTL;
use crate::config::LogoutMode;
use crate::destination::MAX_RETURN_TO;
use crate::session::crypto::{KeyRing, PURPOSE_LOGOUT_STATE};

/// Binds the sealed value to this use (the stored states' records are bound
/// to their store key instead).
const AAD: &[u8] = b"anonymous-logout-state";
/// Longest `state` value opened: a destination of at most
/// [`MAX_RETURN_TO`] bytes, sealed and base64url-encoded, fits well within.
const MAX_LEN: usize = 4 * MAX_RETURN_TO;

/// What an anonymous logout's `state` carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnonState {
    /// Where the user lands in the end (already validated).
    #[serde(rename = "d")]
    pub destination: String,
    /// `redirect`, `silent` or `popup`.
    #[serde(rename = "m")]
    pub mode: String,
    /// When it stops being accepted (Unix seconds).
    #[serde(rename = "e")]
    pub expires_at: u64,
}

impl AnonState {
    /// A state for a logout starting at `now` (Unix seconds).
    pub fn new(destination: &str, mode: LogoutMode, now: u64) -> Self {
        AnonState {
            destination: destination.to_owned(),
            mode: mode.as_str().to_owned(),
            expires_at: now.saturating_add(TTL.as_secs()),
        }
    }

    /// The logout mode.
    pub fn mode(&self) -> LogoutMode {
        LogoutMode::parse(&self.mode).unwrap_or(LogoutMode::Redirect)
    }

    /// The sealed `state` value; `None` if sealing failed.
    pub fn seal(&self, keys: &KeyRing) -> Option<String> {
        let json = serde_json::to_vec(self).ok()?;
        let sealed = keys.sealer(PURPOSE_LOGOUT_STATE).seal(AAD, &json).ok()?;
        Some(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a `state` value sealed by [`AnonState::seal`] that has not
    /// expired by `now`; `None` for anything else (a stored state's random
    /// value included).
    pub fn open(keys: &KeyRing, state: &str, now: u64) -> Option<AnonState> {
        if state.len() > MAX_LEN {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(state).ok()?;
        let json = keys.sealer(PURPOSE_LOGOUT_STATE).open(AAD, &sealed).ok()?;
        serde_json::from_slice::<AnonState>(&json)
            .ok()
            .filter(|s| s.expires_at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn keys() -> KeyRing {
        KeyRing::new(&[Secret::new("0123456789abcdef0123456789abcdef")]).unwrap()
    }

    #[test]
    fn a_sealed_state_opens_until_its_deadline() {
        let keys = keys();
        let s = AnonState::new("/after?x=1", LogoutMode::Popup, 1000);
        let v = s.seal(&keys).unwrap();
        assert_eq!(AnonState::open(&keys, &v, 1000), Some(s.clone()));
        assert_eq!(AnonState::open(&keys, &v, 1000 + TTL.as_secs()), None);
        let mut bytes = v.into_bytes();
        bytes[10] ^= 1;
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(AnonState::open(&keys, &tampered, 1000), None);
    }

    #[test]
    fn the_largest_destination_fits() {
        let keys = keys();
        let s = AnonState::new(
            &format!("/{}", "a".repeat(MAX_RETURN_TO - 1)),
            LogoutMode::Silent,
            5,
        );
        let v = s.seal(&keys).unwrap();
        assert!(v.len() <= MAX_LEN);
        assert_eq!(AnonState::open(&keys, &v, 5), Some(s));
    }
}
