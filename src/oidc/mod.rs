//! The OpenID Connect client: discovery, login, callback, refresh, revocation.
