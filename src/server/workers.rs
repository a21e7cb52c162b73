//! Serving threads: one single-threaded tokio runtime per thread, each
//! accepting on its own handle to every public listener.
//!
//! A connection lives its whole life on the thread that accepted it, and a
//! request is proxied with that thread's own upstream pool (see
//! [`crate::threads::index`]), so no request hands work to another thread: nginx's worker
//! model. With tokio's work-stealing runtime, the wake-ups between the
//! server connection, the pooled upstream connection and the worker that
//! stole either cost a measurable share of every request (`bench/run.sh`
//! records CPU time per request). The control plane (signals, admin
//! listener, IdP discovery, Redis subscriptions) stays on the main runtime.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::connection::accept_loop;
use super::conns::Slots;
use crate::gateway::App;
use crate::threads;

/// A serving thread could not be started.
#[derive(Debug, thiserror::Error)]
#[error("serving threads: {0}")]
pub struct WorkerError(pub(super) String);

/// The running serving threads.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Each thread sends once when its accept loops have ended.
    stopped_accepting: mpsc::Receiver<()>,
    /// Set when draining is over: the threads then drop their runtimes,
    /// closing whatever connections remain.
    release: watch::Sender<bool>,
}

impl Workers {
    /// Starts `n` serving threads over `listeners` (each thread gets its own
    /// handle to every listener; the kernel hands each new connection to
    /// one of them). Accept loops stop when `stop` turns true.
    pub fn start(
        n: usize,
        listeners: Vec<std::net::TcpListener>,
        tls: Option<Arc<rustls::ServerConfig>>,
        app: &Arc<App>,
        slots: &Arc<Slots>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Workers, WorkerError> {
        let (stopped_tx, stopped_accepting) = mpsc::channel(n.max(1));
        let (release, release_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(n);
        for index in 0..n {
            let mine = listeners
                .iter()
                .map(std::net::TcpListener::try_clone)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| WorkerError(format!("cannot share a listener: {e}")))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| WorkerError(format!("cannot start a runtime: {e}")))?;
            let (tls, app, slots, stop) = (tls.clone(), app.clone(), slots.clone(), stop.clone());
            let (stopped_tx, mut release_rx) = (stopped_tx.clone(), release_rx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("portcullis-w{index}"))
                .spawn(move || {
                    threads::set_index(index);
                    runtime.block_on(async move {
                        let mut loops = Vec::with_capacity(mine.len());
                        for listener in mine {
                            match TcpListener::from_std(listener) {
                                Ok(l) => loops.push(tokio::spawn(accept_loop(
                                    l,
                                    tls.clone(),
                                    app.clone(),
                                    slots.clone(),
                                    stop.clone(),
                                ))),
                                Err(err) => {
                                    tracing::error!(worker = index, error = %err, "cannot accept on a listener")
                                }
                            }
                        }
                        for l in loops {
                            let _ = l.await;
                        }
                        drop(slots);
                        let _ = stopped_tx.send(()).await;
                        let _ = release_rx.wait_for(|r| *r).await;
                    });
                })
                .map_err(|e| WorkerError(format!("cannot start a thread: {e}")))?;
            threads.push(thread);
        }
        Ok(Workers {
            threads,
            stopped_accepting,
            release,
        })
    }

    /// Waits until every thread has stopped accepting.
    pub async fn stopped_accepting(&mut self) {
        for _ in 0..self.threads.len() {
            if self.stopped_accepting.recv().await.is_none() {
                break;
            }
        }
    }

    /// Ends the threads (after draining) and waits for them.
    pub async fn finish(self) {
        let _ = self.release.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}
