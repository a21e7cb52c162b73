//! Ending sessions: RP-initiated logout, back-channel and front-channel logout.
