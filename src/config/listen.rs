//! `portcullis check`'s listener test: can every configured address be
//! bound right now (or is it held by this configuration's own gateway)?

use std::net::{SocketAddr, TcpListener};

use super::Loaded;
use super::diag::Diagnostic;

/// Tries to bind every `listen` and `admin_listen` address (and releases
/// it at once); returns one error per address that cannot be bound, at the
/// place the address was written. An address in `held` (announced by the
/// gateway running from this same file, see `crate::instance`) is expected
/// to be in use and is not an error.
pub fn check_listeners(loaded: &Loaded, held: &[SocketAddr]) -> Vec<Diagnostic> {
    let server = &loaded.config.server;
    let addrs: Vec<(SocketAddr, &str)> = server
        .listen
        .iter()
        .map(|a| (*a, "listen"))
        .chain(server.admin_listen.map(|a| (a, "admin_listen")))
        .collect();
    let mut out = Vec::new();
    for (addr, key) in addrs {
        if held.contains(&addr) {
            continue;
        }
        if let Err(e) = TcpListener::bind(addr) {
            let message = match e.kind() {
                std::io::ErrorKind::AddrInUse => format!("{key} address {addr} is in use"),
                _ => format!("cannot bind {key} address {addr}: {e}"),
            };
            out.push(loaded.listen_diagnostic(addr, message));
        }
    }
    out
}
