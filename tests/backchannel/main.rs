//! Back-Channel Logout end to end: the real gateway binary, the real
//! oidc-provider 9.13.3 (signing with a fixture key, so tests can also
//! forge tokens), sessions made by logging in through the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed test step should stop the test

#[path = "../support/mod.rs"]
mod support;

mod fleet;
mod rate_limit;
mod sessions;
mod validation;
