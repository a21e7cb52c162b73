//! A running gateway announces which addresses it holds, keyed by its
//! configuration file, so that `portcullis check` on the same file can tell
//! "in use by this configuration's own gateway" (expected: `systemctl reload`
//! runs `check` while the gateway runs) from "in use by something else".
//!
//! The announcement is a Linux abstract Unix socket named after a hash of
//! the configuration file's canonical path. Abstract sockets need no
//! writable directory (read-only root filesystems, `DynamicUser=`), vanish
//! with the process (no stale pid file after a crash), and live in the
//! network namespace, which `systemctl reload`, `podman exec` and
//! `kubectl exec` share with the gateway. A client that connects reads one
//! line per held address. Elsewhere than Linux nothing is announced and
//! `check` reports every address in use, as before.

use std::net::SocketAddr;
use std::path::Path;

/// First line of an announcement; a later format changes the number.
const HEADER: &str = "portcullis-instance 1";

/// Why the announcement could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The configuration path could not be resolved to a canonical one.
    #[error("cannot resolve {path}: {source}")]
    Path {
        /// The path as given.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The socket could not be bound, connected or read.
    #[error("instance socket: {0}")]
    Io(#[from] std::io::Error),
    /// Something answered on the socket, but not an announcement.
    #[error("instance socket: unexpected answer")]
    Malformed,
    /// Abstract sockets exist only on Linux.
    #[error("instance announcement is not supported on this platform")]
    Unsupported,
}

/// The abstract socket name for a configuration file: a hash of its
/// canonical path, so `./gateway.toml` and `/etc/portcullis/gateway.toml`
/// name the same gateway when they are the same file.
pub fn socket_name(config_path: &Path) -> Result<String, InstanceError> {
    use sha2::Digest as _;
    let canonical = std::fs::canonicalize(config_path).map_err(|source| InstanceError::Path {
        path: config_path.display().to_string(),
        source,
    })?;
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let mut name = String::from("portcullis/");
    for byte in &digest[..16] {
        name.push_str(&format!("{byte:02x}"));
    }
    Ok(name)
}

/// The text a gateway sends: the header, then one address per line.
fn announcement(addrs: &[SocketAddr]) -> String {
    let mut out = format!("{HEADER}\n");
    for addr in addrs {
        out.push_str(&format!("{addr}\n"));
    }
    out
}

/// Parses what [`announcement`] wrote.
fn parse(text: &str) -> Result<Vec<SocketAddr>, InstanceError> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(InstanceError::Malformed);
    }
    lines
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().map_err(|_| InstanceError::Malformed))
        .collect()
}

/// Held by the running gateway; dropping it withdraws the announcement.
#[derive(Debug)]
pub struct Announcement {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Announcement {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Announces that the gateway started from `config_path` holds `addrs`.
/// Must run inside a Tokio runtime.
#[cfg(target_os = "linux")]
pub fn announce(config_path: &Path, addrs: &[SocketAddr]) -> Result<Announcement, InstanceError> {
    use std::os::linux::net::SocketAddrExt as _;
    use tokio::io::AsyncWriteExt as _;

    let name = socket_name(config_path)?;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let text = announcement(addrs);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                // EMFILE and the like: try again shortly rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let text = text.clone();
            tokio::spawn(async move {
                let write = stream.write_all(text.as_bytes());
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), write).await;
            });
        }
    });
    Ok(Announcement { task })
}

/// Announces nothing: abstract sockets exist only on Linux.
#[cfg(not(target_os = "linux"))]
pub fn announce(_config_path: &Path, _addrs: &[SocketAddr]) -> Result<Announcement, InstanceError> {
    Err(InstanceError::Unsupported)
}

/// The addresses held by a running gateway started from `config_path`;
/// empty when none runs.
#[cfg(target_os = "linux")]
pub fn held_addresses(config_path: &Path) -> Result<Vec<SocketAddr>, InstanceError> {
    use std::io::Read as _;
    use std::os::linux::net::SocketAddrExt as _;

    let name = socket_name(config_path)?;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let stream = match std::os::unix::net::UnixStream::connect_addr(&addr) {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
    let mut text = String::new();
    // An announcement is a few lines; more is not one.
    stream.take(64 * 1024).read_to_string(&mut text)?;
    parse(&text)
}

/// Nothing is announced elsewhere than Linux.
#[cfg(not(target_os = "linux"))]
pub fn held_addresses(_config_path: &Path) -> Result<Vec<SocketAddr>, InstanceError> {
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_round_trips() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:8080".parse().unwrap(),
            "[::1]:9090".parse().unwrap(),
        ];
        assert_eq!(parse(&announcement(&addrs)).unwrap(), addrs);
        assert!(matches!(
            parse("HTTP/1.1 200 OK\n"),
            Err(InstanceError::Malformed)
        ));
    }

    #[test]
    fn the_same_file_by_two_paths_has_one_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, "").unwrap();
        let other = dir.path().join(".").join("gateway.toml");
        assert_eq!(socket_name(&file).unwrap(), socket_name(&other).unwrap());
        let second = dir.path().join("other.toml");
        std::fs::write(&second, "").unwrap();
        assert_ne!(socket_name(&file).unwrap(), socket_name(&second).unwrap());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_running_announcement_is_read_back_and_withdrawn_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, "").unwrap();
        let addrs: Vec<SocketAddr> = vec!["127.0.0.1:8080".parse().unwrap()];
        let held = announce(&file, &addrs).unwrap();
        let path = file.clone();
        let read = tokio::task::spawn_blocking(move || held_addresses(&path))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, addrs);
        drop(held);
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let read = tokio::task::spawn_blocking(move || held_addresses(&file))
            .await
            .unwrap()
            .unwrap();
        assert!(read.is_empty());
    }
}
