//! Ending sessions: RP-initiated logout (`/logout`), back-channel and
//! front-channel logout receivers, and the event every ending records.

pub mod anon_state;
pub mod backchannel;
pub mod events;
pub mod frontchannel;
pub mod html;
pub mod idp_probe;
pub mod rate_limit;
pub mod rp_initiated;
pub mod state;
pub mod trigger;
