//! Inspecting an incoming request before anything acts on it: framing and
//! header hygiene, the canonical path, the client kind, the public origin.

pub mod body;
pub mod framing;
pub mod hygiene;
pub mod kind;
pub mod origin;
pub mod path;

pub use kind::ClientKind;
