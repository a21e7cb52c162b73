//! The request path: hygiene, the gateway's own paths, routing, session, proxy.
