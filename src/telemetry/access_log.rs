//! The access log: one line per request on stdout, JSON, or `key=value`
//! text like the other log lines under `--log-format pretty`.
//!
//! It bypasses the tracing formatter on purpose. Formatting through
//! tracing's JSON layer and handing every line to a writer thread (one
//! wake-up per line) cost a third of the gateway's throughput; here a line
//! is formatted with plain `write!` into a shared buffer that a background
//! thread flushes every few milliseconds, whole lines at a time, through the
//! same stdout lock as the other logs, so lines never interleave.
//!
//! Fields: `timestamp`, `level`, `target` ("portcullis::access"), `message`
//! ("request"), `request_id`, `trace_id` (W3C, 32 hex digits), `method`,
//! `path` (never the query: it can hold codes and tokens), `status`,
//! `duration_ms`, `route`, `upstream`, `error`, `peer`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// Whether lines are written as human-readable text rather than JSON.
static PRETTY: AtomicBool = AtomicBool::new(false);

/// Chooses the line format: human-readable text (`--log-format pretty`)
/// or JSON (the default).
pub fn set_pretty(pretty: bool) {
    PRETTY.store(pretty, Ordering::Relaxed);
}
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
    /// W3C trace id (the one sent upstream in `traceparent`).
    pub trace_id: &'a [u8; 16],
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
    /// Client address, as text.
    pub peer: &'a str,
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    // Nearly every value needs no escape: check with a branch-free pass the
    // compiler vectorises, then copy it whole.
    let plain = !s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\') | (b == 0x7f)
    });
    if plain {
        out.push_str(s);
        out.push('"');
        return;
    }
    // Copy runs of plain bytes whole; only quotes, backslashes and control
    // characters (all ASCII) need escaping, so byte indexes stay on char
    // boundaries.
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The RFC 3339 timestamp with microseconds, as `humantime` writes it. The
/// part up to the second is formatted once per second per thread.
fn push_timestamp(out: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            // "YYYY-MM-DDTHH:MM:SSZ" without the final "Z".
            let mut text = humantime::format_rfc3339_seconds(whole).to_string();
            text.pop();
            *cached = (secs, text);
        }
        out.push_str(&cached.1);
    });
    let micros = since.subsec_micros();
    out.push('.');
    push_padded(out, micros, 6);
    out.push('Z');
}

/// `n` in decimal, left-padded with zeros to `width` digits.
fn push_padded(out: &mut String, n: u32, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// One entry as a JSON line, newline included.
fn format_line(entry: &Entry<'_>) -> String {
    let mut line = String::with_capacity(320);
    let mut num = itoa::Buffer::new();
    line.push_str("{\"timestamp\":\"");
    push_timestamp(&mut line, SystemTime::now());
    line.push_str("\",\"level\":\"INFO\",\"target\":\"portcullis::access\",\"message\":\"request\",\"request_id\":");
    json_str(&mut line, entry.request_id);
    line.push_str(",\"trace_id\":\"");
    super::trace_context::push_hex(&mut line, entry.trace_id);
    line.push_str("\",\"method\":");
    json_str(&mut line, entry.method);
    line.push_str(",\"path\":");
    json_str(&mut line, entry.path);
    line.push_str(",\"status\":");
    line.push_str(num.format(entry.status));
    // Milliseconds with three decimals, from whole microseconds.
    let micros = entry.duration.as_micros();
    line.push_str(",\"duration_ms\":");
    line.push_str(num.format(micros / 1000));
    line.push('.');
    push_padded(&mut line, (micros % 1000) as u32, 3);
    line.push_str(",\"route\":");
    json_str(&mut line, entry.route);
    line.push_str(",\"upstream\":");
    json_str(&mut line, entry.upstream);
    line.push_str(",\"error\":");
    json_str(&mut line, entry.error);
    line.push_str(",\"peer\":\"");
    line.push_str(entry.peer);
    line.push_str("\"}\n");
    line
}

/// A value for a `key=value` line: as is when it is plain printable ASCII
/// without spaces or quotes, else quoted with Rust's escapes (so a crafted
/// path cannot forge a field or a line).
fn text_value(out: &mut String, s: &str) {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
    if plain {
        out.push_str(s);
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// One entry as a human-readable line in the shape of the other
/// `--log-format pretty` lines: time, level, target, message, then fields.
fn format_pretty(entry: &Entry<'_>) -> String {
    let mut line = String::with_capacity(256);
    let mut num = itoa::Buffer::new();
    push_timestamp(&mut line, SystemTime::now());
    line.push_str("  INFO portcullis::access: request request_id=");
    text_value(&mut line, entry.request_id);
    line.push_str(" trace_id=");
    super::trace_context::push_hex(&mut line, entry.trace_id);
    line.push_str(" method=");
    text_value(&mut line, entry.method);
    line.push_str(" path=");
    text_value(&mut line, entry.path);
    line.push_str(" status=");
    line.push_str(num.format(entry.status));
    let micros = entry.duration.as_micros();
    line.push_str(" duration_ms=");
    line.push_str(num.format(micros / 1000));
    line.push('.');
    push_padded(&mut line, (micros % 1000) as u32, 3);
    line.push_str(" route=");
    text_value(&mut line, entry.route);
    line.push_str(" upstream=");
    text_value(&mut line, entry.upstream);
    line.push_str(" error=");
    text_value(&mut line, entry.error);
    line.push_str(" peer=");
    text_value(&mut line, entry.peer);
    line.push('\n');
    line
}

/// Formats and queues one line.
pub fn write(entry: &Entry<'_>) {
    let line = if PRETTY.load(Ordering::Relaxed) {
        format_pretty(entry)
    } else {
        format_line(entry)
    };
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
    fn timestamp_is_rfc3339_with_micros() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_012_345);
        let mut s = String::new();
        push_timestamp(&mut s, t);
        assert_eq!(s, humantime::format_rfc3339_micros(t).to_string());
        // Same second, another microsecond: the cached part is reused.
        let mut s = String::new();
        push_timestamp(&mut s, t + Duration::from_micros(7));
        assert_eq!(s, "2023-11-14T22:13:20.012352Z");
    }

    #[test]
    fn line_is_one_json_object() {
        // The line goes to the shared buffer; format it the same way here.
        let entry = Entry {
            request_id: "abc",
            trace_id: &[0xab; 16],
            method: "GET",
            path: "/a\"b",
            status: 200,
            duration: Duration::from_micros(1_234_567),
            route: "/",
            upstream: "http://127.0.0.1:1",
            error: "",
            peer: "10.1.2.3",
        };
        let line = format_line(&entry);
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"].as_f64(), Some(1234.567));
        assert_eq!(v["peer"], "10.1.2.3");
        assert_eq!(v["trace_id"], "ab".repeat(16));
        let small = format_line(&Entry {
            duration: Duration::from_micros(5),
            ..entry
        });
        assert!(small.contains("\"duration_ms\":0.005,"), "{small}");
    }

    #[test]
    fn pretty_line_is_key_value_text() {
        let line = format_pretty(&Entry {
            request_id: "abc",
            trace_id: &[0xab; 16],
            method: "GET",
            path: "/a b\"c\nx",
            status: 502,
            duration: Duration::from_micros(1_234_567),
            route: "/",
            upstream: "http://127.0.0.1:1",
            error: "",
            peer: "10.1.2.3",
        });
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line}"
        );
        assert!(
            line.contains(&format!(
                "  INFO portcullis::access: request request_id=abc trace_id={} method=GET ",
                "ab".repeat(16)
            )),
            "{line}"
        );
        // A path with a space, a quote and a newline is quoted and escaped.
        assert!(
            line.contains(r#" path="/a b\"c\nx" status=502 duration_ms=1234.567 route=/ "#),
            "{line}"
        );
        assert!(
            line.contains(r#" upstream=http://127.0.0.1:1 error="" peer=10.1.2.3"#),
            "{line}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_err());
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, r#""a\"b\\c\n\u0001""#.replace("\\n", "\\u000a"));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\n\u{1}");
    }
}
