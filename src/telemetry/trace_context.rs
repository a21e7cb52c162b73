//! W3C Trace Context (`traceparent`, `tracestate`) for one request: read
//! from a trusted caller, otherwise a new trace; the gateway's own span id
//! goes to the upstream as the parent of whatever it does next.
//!
//! This is the cheap path used on every request whether or not spans are
//! exported: ids come from a per-thread generator seeded once from the OS,
//! not a system call per request. Trace ids correlate, they do not protect
//! anything, so they need to be unique, not secret.

use std::cell::Cell;

use http::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent`
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A `traceparent` that came from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// The trace the caller is part of.
    pub trace_id: [u8; 16],
    /// The caller's span.
    pub parent_id: [u8; 8],
    /// The caller's trace flags (bit 0: sampled).
    pub flags: u8,
}

/// The trace context of one request as the gateway forwards it.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// The trace id (continued from a trusted caller, or new).
    pub trace_id: [u8; 16],
    /// The gateway's span for this request: the upstream's parent.
    pub span_id: [u8; 8],
    /// Trace flags sent on (bit 0: sampled).
    pub flags: u8,
    /// The caller's `tracestate`, forwarded only when its trace is continued.
    pub tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// The context for a request whose headers are `headers`: the caller's
    /// trace continued when it is `trusted` and sent one valid
    /// `traceparent`, else a new trace (not sampled: the gateway records
    /// nothing unless export is on, and then [`super::otel`] decides).
    pub fn from_request(headers: &HeaderMap, trusted: bool) -> TraceContext {
        match incoming(headers, trusted) {
            Some(inc) => TraceContext {
                trace_id: inc.trace_id,
                span_id: new_span_id(),
                flags: inc.flags & 1,
                tracestate: tracestate(headers),
            },
            None => TraceContext {
                trace_id: new_trace_id(),
                span_id: new_span_id(),
                flags: 0,
                tracestate: None,
            },
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }

    /// `traceparent` naming the gateway's span as the parent.
    pub fn traceparent(&self) -> HeaderValue {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        // Only hex digits and dashes: always a valid header value.
        HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static(""))
    }

    /// Replaces whatever trace headers the client sent with this context's.
    pub fn set_headers(&self, headers: &mut HeaderMap) {
        headers.remove(&TRACESTATE);
        headers.insert(TRACEPARENT, self.traceparent());
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE, state.clone());
        }
    }
}

/// The caller's trace, when it is `trusted` and sent exactly one valid
/// `traceparent`.
pub fn incoming(headers: &HeaderMap, trusted: bool) -> Option<Incoming> {
    if !trusted {
        return None;
    }
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_traceparent(value.as_bytes())
}

/// The caller's `tracestate`: one header line of at most 512 bytes (the
/// spec's limit a vendor must propagate); several lines or a longer one are
/// dropped rather than forwarded half.
pub fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(&TRACESTATE).iter();
    let value = values.next()?;
    (values.next().is_none() && !value.is_empty() && value.len() <= 512).then(|| value.clone())
}

/// Parses `traceparent` (W3C Trace Context §3.2): version `00` is exactly
/// `00-<32 hex>-<16 hex>-<2 hex>`; a later version is read by the same
/// prefix and may carry more after a `-`; version `ff`, upper-case hex,
/// all-zero ids are invalid.
pub fn parse_traceparent(v: &[u8]) -> Option<Incoming> {
    if v.len() < 55 {
        return None;
    }
    let version = hex_byte(&v[0..2])?;
    if version == 0xff || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    if (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
    }
    let mut parent_id = [0u8; 8];
    for (i, b) in parent_id.iter_mut().enumerate() {
        *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&v[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(Incoming {
        trace_id,
        parent_id,
        flags,
    })
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    Some(hex_digit(two[0])? << 4 | hex_digit(two[1])?)
}

/// Appends `bytes` as lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

thread_local! {
    /// splitmix64 state, seeded once per thread from the OS.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // No OS randomness: still unique enough per thread and process.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return u64::from(std::process::id()) << 32 ^ t.as_nanos() as u64;
    }
    u64::from_le_bytes(b)
}

/// splitmix64: fast, and every 64-bit output once per period.
fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A new, non-zero trace id.
pub fn new_trace_id() -> [u8; 16] {
    loop {
        let (a, b) = (next_u64(), next_u64());
        if a | b != 0 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&a.to_be_bytes());
            id[8..].copy_from_slice(&b.to_be_bytes());
            return id;
        }
    }
}

/// A new, non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let a = next_u64();
        if a != 0 {
            return a.to_be_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn parses_the_spec_example() {
        let inc = parse_traceparent(GOOD.as_bytes()).unwrap();
        assert_eq!(inc.trace_id[0], 0x4b);
        assert_eq!(inc.trace_id[15], 0x36);
        assert_eq!(
            inc.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(inc.flags, 1);
        // A later version may append fields after a dash.
        let future = format!("cc{}-what-the-future-holds", &GOOD[2..]);
        assert!(parse_traceparent(future.as_bytes()).is_some());
    }

    #[test]
    fn refuses_malformed_traceparents() {
        for bad in [
            "",
            &GOOD[..54],
            &format!("{GOOD}-"),           // v00 is exact
            &GOOD.replace("4bf9", "4BF9"), // upper case
            &format!("ff{}", &GOOD[2..]),  // version ff
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            &GOOD.replace('-', "_"),
            &GOOD.replace("b7-01", "b7-0g"),
            &format!("cc{}x", &GOOD[2..]), // more, but not after a dash
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_trusted_caller_is_continued_with_a_new_span() {
        let h = headers(&[("traceparent", GOOD), ("tracestate", "vendor=abc")]);
        let ctx = TraceContext::from_request(&h, true);
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(
            ctx.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(ctx.flags, 1);
        let mut out = h.clone();
        ctx.set_headers(&mut out);
        let tp = out.get("traceparent").unwrap().to_str().unwrap().to_owned();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(tp.ends_with("-01") && tp.len() == 55, "{tp}");
        assert_eq!(
            parse_traceparent(tp.as_bytes()).unwrap().parent_id,
            ctx.span_id
        );
        assert_eq!(out.get("tracestate").unwrap(), "vendor=abc");
    }

    #[test]
    fn an_untrusted_or_broken_caller_starts_a_new_trace() {
        let two = headers(&[("traceparent", GOOD), ("traceparent", GOOD)]);
        for (h, trusted) in [
            (
                headers(&[("traceparent", GOOD), ("tracestate", "v=1")]),
                false,
            ),
            (two, true),
            (
                headers(&[("traceparent", "garbage"), ("tracestate", "v=1")]),
                true,
            ),
            (HeaderMap::new(), true),
        ] {
            let ctx = TraceContext::from_request(&h, trusted);
            assert_ne!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(ctx.flags, 0);
            let mut out = h.clone();
            ctx.set_headers(&mut out);
            assert_eq!(out.get_all("traceparent").iter().count(), 1);
            assert!(
                out.get("tracestate").is_none(),
                "the caller's state is dropped"
            );
        }
    }

    #[test]
    fn new_ids_are_distinct_and_non_zero() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_trace_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(!ids.contains(&[0; 16]));
        assert_ne!(new_span_id(), new_span_id());
    }
}
