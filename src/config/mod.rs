//! Configuration: `gateway.toml` parsed into raw serde types ([`raw`]), then
//! checked and turned into the runtime [`Config`] ([`model`]). Every problem is
//! reported as `path:line:column: message`.

pub mod model;

pub use model::*;
