//! Portcullis: a reverse-proxy session gateway.
//!
//! The crate map, in the order a request meets the modules:
//!
//! - [`server`]: the listeners, the serving threads ([`threads`] counts
//!   and numbers them), signals, reload and drain.
//! - [`request`]: looking at a request before anything acts on it:
//!   framing and header hygiene, the canonical path, the public origin,
//!   the client kind, and the body reader of the gateway's own endpoints.
//! - [`gateway`]: the request path, steps 1–7, top to bottom; it holds
//!   what is built from one configuration and swaps it on reload.
//! - [`paths`]: the gateway's own `/.portcullis/…` paths; [`context`] is
//!   what their handlers get.
//! - [`login`]: the login endpoints (start, callback, login-state cookie,
//!   `/.portcullis/session`).
//! - [`logout`]: every way a session ends: `/logout`, back-channel and
//!   front-channel logout, and their pages.
//! - [`auth`]: who gets through a session route: admission, token
//!   refresh, identity headers.
//! - [`session`]: session ids, sealed records, and the memory and Redis
//!   stores.
//! - [`oidc`]: the OpenID Connect client (protocol only: discovery, the
//!   grants, ID-token validation, revocation, end-session URL).
//! - [`forward_auth`]: `/.portcullis/auth`, the same admission for a front
//!   proxy's sub-request (nginx `auth_request`, Caddy `forward_auth`, …).
//! - [`proxy`]: forwarding to the upstream, headers both ways, WebSocket;
//!   [`assertion`]: the signed identity JWT it may add, and the JWKS.
//! - [`pages`]: the responses the gateway makes itself (HTML pages, JSON,
//!   errors, `logout.js`); [`destination`]: where a user may be sent.
//! - [`admin`]: health, readiness, metrics and the admin API on their own
//!   listener.
//! - [`config`]: loading and checking `gateway.toml`; [`telemetry`]: logs
//!   and metrics; [`clock`]: Unix time.
//! - [`instance`]: a running gateway tells `portcullis check` which
//!   addresses it holds; [`probe`]: `portcullis probe`, the health check
//!   for container images.

pub mod admin;
pub mod assertion;
pub mod auth;
pub mod clock;
pub mod config;
pub mod context;
pub mod destination;
pub mod forward_auth;
pub mod gateway;
pub mod instance;
pub mod login;
pub mod logout;
pub mod oidc;
pub mod pages;
pub mod paths;
pub mod probe;
pub mod proxy;
pub mod request;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod threads;
