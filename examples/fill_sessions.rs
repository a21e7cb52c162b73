//! Memory per session: fills the embedded (memory) store with live sessions
//! through `Sessions::create`, the call a login makes, and reports the
//! process's resident memory per session. Run by `bench/memory.sh`:
//!
//! ```text
//! cargo run --release --features bench-tools --example fill_sessions -- --sessions 1000000
//! ```
//!
//! Each session is a different user with tokens shaped like the test IdP's
//! (`tests/idp`): an RS256 ID token with its claims, opaque access and
//! refresh tokens; their sizes can be changed with `--id-token-bytes`,
//! `--access-token-bytes` and `--refresh-token-bytes`. The store gets a
//! bound large enough for every session, so none is evicted; the output
//! also says how many of them the default bound would hold.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mimalloc::MiMalloc;
use portcullis::config::{SameSite, Secret, SessionConfig, StoreConfig};
use portcullis::oidc::IdentityClaims;
use portcullis::session::store::{self, MemoryStore};
use portcullis::session::{NewSession, Sessions, Store};
use tokio::sync::broadcast;

// The gateway's allocator (src/main.rs), so the figure is the gateway's.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

struct Args {
    sessions: usize,
    id_token_bytes: usize,
    access_token_bytes: usize,
    refresh_token_bytes: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sessions: 1_000_000,
        id_token_bytes: 0,
        access_token_bytes: 43,
        refresh_token_bytes: 43,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--sessions" => a.sessions = n,
            "--id-token-bytes" => a.id_token_bytes = n,
            "--access-token-bytes" => a.access_token_bytes = n,
            "--refresh-token-bytes" => a.refresh_token_bytes = n,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(a)
}

/// Resident memory of this process (kB), from /proc/self/status.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `n` characters of base64url, different for every `seed`.
fn opaque(n: usize, seed: u64) -> String {
    let mut bytes = Vec::with_capacity(n);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while bytes.len() < n {
        // xorshift: cheap, and distinct per seed, which is all this needs.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let mut s = URL_SAFE_NO_PAD.encode(&bytes);
    s.truncate(n);
    s
}

/// An ID token as the test IdP issues it for user `i`: RS256 (a 2048-bit
/// signature), with the claims the gateway asks for. Padded or cut to
/// `size` characters when `size` is not 0.
fn id_token(i: usize, iss: &str, size: usize) -> String {
    let header =
        r#"{"alg":"RS256","typ":"JWT","kid":"r1LkbBo3925Rb2ZFFrKyU3MVex9T2817Kx0vbi6i_Kc"}"#;
    let payload = format!(
        r#"{{"sub":"user{i}","email":"user{i}@example.com","email_verified":true,"groups":["staff"],"name":"User {i}","preferred_username":"user{i}","nonce":"{}","at_hash":"{}","sid":"{}","aud":"bench","exp":1765000000,"iat":1764996400,"auth_time":1764996399,"iss":"{iss}"}}"#,
        opaque(43, i as u64 ^ 1),
        opaque(22, i as u64 ^ 2),
        opaque(21, i as u64 ^ 3),
    );
    let mut t = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        opaque(342, i as u64 ^ 4)
    );
    if size > 0 {
        while t.len() < size {
            t.push('A');
        }
        t.truncate(size);
    }
    t
}

async fn fill(a: &Args) -> Result<(), String> {
    let cfg = SessionConfig {
        secrets: vec![Secret::new(opaque(43, 7))],
        cookie_name: "portcullis".into(),
        cookie_domain: None,
        cookie_samesite: SameSite::Lax,
        persistent: false,
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: Duration::from_secs(12 * 3600),
        store: StoreConfig::Memory,
    };
    let (revoked, _) = broadcast::channel(16);
    let memory = MemoryStore::new(u64::MAX, store::DEFAULT_AUX_CAPACITY_BYTES, revoked.clone());
    let sessions = Sessions::with_store(&cfg, Store::Memory(memory.clone()), revoked)
        .map_err(|e| e.to_string())?;
    let iss = "http://127.0.0.1:41234";
    let before = rss_kb();
    let started = Instant::now();
    let mut blob_bytes = 0usize;
    let mut token_bytes = 0usize;
    for i in 0..a.sessions {
        let new = NewSession {
            claims: IdentityClaims {
                iss: iss.into(),
                sub: format!("user{i}"),
                sid: Some(opaque(21, i as u64 ^ 3)),
                email: Some(format!("user{i}@example.com")),
                email_verified: true,
                preferred_username: Some(format!("user{i}")),
                groups: vec!["staff".into()],
            },
            id_token: Secret::new(id_token(i, iss, a.id_token_bytes)),
            access_token: Secret::new(opaque(a.access_token_bytes, i as u64 ^ 5)),
            access_token_expires_at: None,
            refresh_token: (a.refresh_token_bytes > 0)
                .then(|| Secret::new(opaque(a.refresh_token_bytes, i as u64 ^ 6))),
        };
        token_bytes += new.id_token.expose().len()
            + new.access_token.expose().len()
            + new.refresh_token.as_ref().map_or(0, |t| t.expose().len());
        let (_, session) = sessions.create(new).await.map_err(|e| e.to_string())?;
        // The sealed record as stored: a sample is enough for the average.
        if i % 1000 == 0 {
            let blob = sessions
                .store()
                .get(session.key(), false)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("a session just created is not in the store")?;
            blob_bytes += blob.len();
        }
    }
    memory.run_pending_tasks().await;
    let took = started.elapsed();
    let after = rss_kb();
    let n = a.sessions.max(1);
    let samples = n.div_ceil(1000);
    let blob = blob_bytes / samples;
    let per_session = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    // What the store's bound counts per session: the sealed record plus a
    // fixed overhead.
    let weight = blob as u64 + store::SESSION_ENTRY_OVERHEAD_BYTES;
    println!("sessions\t{}", a.sessions);
    println!("seconds\t{:.1}", took.as_secs_f64());
    println!("tokens_bytes_per_session\t{}", token_bytes / n);
    println!("sealed_record_bytes\t{blob}");
    println!("rss_before_kb\t{before}");
    println!("rss_after_kb\t{after}");
    println!("bytes_per_session\t{per_session:.0}");
    println!(
        "entry_overhead_bytes\t{}",
        store::SESSION_ENTRY_OVERHEAD_BYTES
    );
    println!(
        "default_bound_sessions\t{}",
        store::DEFAULT_SESSION_CAPACITY_BYTES / weight
    );
    Ok(())
}

fn main() -> ExitCode {
    // As the gateway does (src/main.rs): small pages for mimalloc's memory.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fill_sessions: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fill_sessions: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fill(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fill_sessions: {e}");
            ExitCode::FAILURE
        }
    }
}
