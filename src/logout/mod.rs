//! Ending sessions: RP-initiated logout (`/logout`), back-channel and
//! front-channel logout receivers.

pub mod trigger;
