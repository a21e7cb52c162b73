//! A TCP relay in front of a server (redis-server) that a test can cut, to
//! stage a network outage at an exact point of a conversation: just before
//! a given request reaches the server, or after the server ran it but
//! before its reply gets back. The server itself keeps running with its
//! data, as in a real partition or a failover that kept the data.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::free_port;

/// Where the outage starts, relative to the request that carries the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The request never reaches the server.
    BeforeRequest,
    /// The server runs the request; its reply is lost.
    BeforeReply,
}

struct Shared {
    target: SocketAddr,
    /// `true` while the link is down: every relayed connection ends and new
    /// ones are closed at once.
    down: watch::Sender<bool>,
    /// The armed trigger: a byte string to look for in client requests.
    trigger: Mutex<Option<(Vec<u8>, Cut)>>,
}

impl Shared {
    /// Disarms and returns the trigger if `window` contains its marker.
    fn take_trigger(&self, window: &[u8]) -> Option<(Vec<u8>, Cut)> {
        let mut armed = self.trigger.lock().unwrap_or_else(|p| p.into_inner());
        let hit = armed
            .as_ref()
            .is_some_and(|(marker, _)| contains(window, marker));
        if hit { armed.take() } else { None }
    }

    fn rearm(&self, marker: Vec<u8>, cut: Cut) {
        *self.trigger.lock().unwrap_or_else(|p| p.into_inner()) = Some((marker, cut));
    }
}

/// The relay; stops when dropped.
pub struct Partition {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    /// Relays a free port of 127.0.0.1 to `target`. Needs a tokio runtime.
    pub async fn start(target: SocketAddr) -> Partition {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind relay port");
        let (down, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            target,
            down,
            trigger: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Partition { port, shared, task }
    }

    /// `redis://127.0.0.1:<relay port>/0`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Cuts the link at the next client request that contains `marker`
    /// (the server's `-NOSCRIPT` answer does not count as a reply: the
    /// trigger waits for the client's retry).
    pub fn cut_at(&self, marker: &[u8], cut: Cut) {
        self.shared.rearm(marker.to_vec(), cut);
    }

    /// Whether the link is down.
    pub fn is_down(&self) -> bool {
        *self.shared.down.borrow()
    }

    /// Restores the link (clients reconnect by themselves).
    pub fn heal(&self) {
        self.shared.down.send_replace(false);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.shared.down.send_replace(true);
        self.task.abort();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if *shared.down.borrow() {
            drop(client);
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(shared.target).await {
                relay(client, server, &shared).await;
            }
        });
    }
}

/// Resolves once the link is down (`wait_for` holds a guard that is not
/// `Send`).
async fn went_down(rx: &mut watch::Receiver<bool>) {
    loop {
        let down = *rx.borrow_and_update();
        if down || rx.changed().await.is_err() {
            return;
        }
    }
}

/// Copies both ways until either side closes or the link goes down.
async fn relay(client: TcpStream, server: TcpStream, shared: &Shared) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut down = shared.down.subscribe();
    let (mut cbuf, mut sbuf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    // The end of the previous request chunk, so a marker split across two
    // reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    let mut awaiting_reply: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            _ = went_down(&mut down) => return,
            n = cr.read(&mut cbuf) => {
                let Ok(n @ 1..) = n else { return };
                let chunk = &cbuf[..n];
                let mut window = std::mem::take(&mut tail);
                window.extend_from_slice(chunk);
                match shared.take_trigger(&window) {
                    Some((_, Cut::BeforeRequest)) => {
                        shared.down.send_replace(true);
                        return;
                    }
                    Some((marker, Cut::BeforeReply)) => awaiting_reply = Some(marker),
                    None => {}
                }
                if sw.write_all(chunk).await.is_err() {
                    return;
                }
                let keep = window.len().min(256);
                tail = window[window.len() - keep..].to_vec();
            }
            n = sr.read(&mut sbuf) => {
                let Ok(n @ 1..) = n else { return };
                let reply = &sbuf[..n];
                if let Some(marker) = awaiting_reply.take() {
                    if reply.starts_with(b"-NOSCRIPT") {
                        // Not run: the client loads the script and sends
                        // the request again.
                        shared.rearm(marker, Cut::BeforeReply);
                    } else {
                        shared.down.send_replace(true);
                        return;
                    }
                }
                if cw.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    }
}
