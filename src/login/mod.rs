//! Logging in: the gateway's login endpoints. [`start`] sends the browser to
//! the IdP (`/.portcullis/login`, and any request on a session route that
//! has no session), [`state_cookie`] carries the login's state until
//! [`callback`] (`/.portcullis/callback`) finishes it and creates the
//! session; [`session_info`] (`/.portcullis/session`) shows that session.
//! The OIDC protocol itself (authorization request, code exchange, ID
//! token checks) is [`crate::oidc`]'s.

pub mod callback;
pub mod session_info;
pub mod start;
pub mod state_cookie;
