//! The access log: one JSON line per request on stdout.
//!
//! It bypasses the tracing formatter on purpose. Formatting through
//! tracing's JSON layer and handing every line to a writer thread (one
//! wake-up per line) cost a third of the gateway's throughput; here a line
//! is formatted with plain `write!` into a shared buffer that a background
//! thread flushes every few milliseconds, whole lines at a time, through the
//! same stdout lock as the other logs, so lines never interleave.
//!
//! Fields: `timestamp`, `level`, `target` ("portcullis::access"), `message`
//! ("request"), `request_id`, `method`, `path` (never the query: it can hold
//! codes and tokens), `status`, `duration_ms`, `route`, `upstream`, `error`,
//! `peer`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Condvar, Mutex, Once, OnceLock};
use std::time::{Duration, SystemTime};

/// Bytes buffered before a writer is woken early.
const WAKE_AT: usize = 64 * 1024;
/// Longest a line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Past this, requests wait for the writer (lines are never dropped).
const MAX_BUFFER: usize = 8 * 1024 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    drained: Condvar,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static WRITER: Once = Once::new();

fn shared() -> &'static Shared {
    let shared = SHARED.get_or_init(|| Shared {
        buf: Mutex::new(Vec::with_capacity(WAKE_AT * 2)),
        wake: Condvar::new(),
        drained: Condvar::new(),
    });
    WRITER.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("portcullis-access-log".into())
            .spawn(move || writer_loop(shared));
        if let Err(err) = spawned {
            eprintln!("cannot start the access log writer: {err}");
        }
    });
    shared
}

fn writer_loop(shared: &'static Shared) {
    let mut out = Vec::with_capacity(WAKE_AT * 2);
    loop {
        {
            let guard = shared.buf.lock().unwrap_or_else(|p| p.into_inner());
            let (mut guard, _) = shared
                .wake
                .wait_timeout_while(guard, FLUSH_EVERY, |b| b.len() < WAKE_AT)
                .unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut *guard, &mut out);
            shared.drained.notify_all();
        }
        if !out.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&out);
            let _ = stdout.flush();
            out.clear();
        }
    }
}

/// Writes out whatever is buffered (at shutdown).
pub fn flush() {
    let Some(shared) = SHARED.get() else { return };
    let pending = {
        let mut guard = shared.buf.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *guard)
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&pending);
    let _ = stdout.flush();
}

/// One request's access-log entry.
pub struct Entry<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path, without the query.
    pub path: &'a str,
    /// Response status.
    pub status: u16,
    /// Time to the response head.
    pub duration: Duration,
    /// Route label.
    pub route: &'a str,
    /// Upstream origin, or `-`.
    pub upstream: &'a str,
    /// Error kind, or empty.
    pub error: &'a str,
    /// Client address.
    pub peer: std::net::IpAddr,
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Formats and queues one line.
pub fn write(entry: &Entry<'_>) {
    let mut line = String::with_capacity(320);
    line.push_str("{\"timestamp\":\"");
    let _ = write!(
        line,
        "{}",
        humantime::format_rfc3339_micros(SystemTime::now())
    );
    line.push_str("\",\"level\":\"INFO\",\"target\":\"portcullis::access\",\"message\":\"request\",\"request_id\":");
    json_str(&mut line, entry.request_id);
    line.push_str(",\"method\":");
    json_str(&mut line, entry.method);
    line.push_str(",\"path\":");
    json_str(&mut line, entry.path);
    let _ = write!(
        line,
        ",\"status\":{},\"duration_ms\":{:.3},\"route\":",
        entry.status,
        entry.duration.as_secs_f64() * 1000.0
    );
    json_str(&mut line, entry.route);
    line.push_str(",\"upstream\":");
    json_str(&mut line, entry.upstream);
    line.push_str(",\"error\":");
    json_str(&mut line, entry.error);
    let _ = writeln!(line, ",\"peer\":\"{}\"}}", entry.peer);

    let shared = shared();
    let mut guard = shared.buf.lock().unwrap_or_else(|p| p.into_inner());
    while guard.len() > MAX_BUFFER {
        shared.wake.notify_one();
        guard = shared
            .drained
            .wait(guard)
            .unwrap_or_else(|p| p.into_inner());
    }
    guard.extend_from_slice(line.as_bytes());
    if guard.len() >= WAKE_AT {
        shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, r#""a\"b\\c\n\u0001""#.replace("\\n", "\\u000a"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\n\u{1}");
    }
}
