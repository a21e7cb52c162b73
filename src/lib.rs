//! Portcullis: a reverse-proxy session gateway.
//!
//! The request path reads top to bottom: [`server`] accepts connections and
//! hands each request to [`gateway`], which checks request hygiene, serves the
//! gateway's own paths ([`oidc`] login, [`logout`], [`pages`]), matches a
//! [`config::Route`], checks the [`session`], and hands the request to
//! [`proxy`]. [`admin`] serves health, readiness and metrics on its own
//! listener.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod context;
pub mod destination;
pub mod gateway;
pub mod login;
pub mod logout;
pub mod oidc;
pub mod pages;
pub mod paths;
pub mod proxy;
pub mod request;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod threads;
