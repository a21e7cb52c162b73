//! Whether the IdP accepts TCP connections, asked at most once per
//! [`FRESH`] whatever the number of logouts: one probe connection per
//! logout let a flood of anonymous logouts fill the ephemeral ports toward
//! the IdP and break token exchange for everyone (SPEC, "Limits").

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use url::Url;

/// How long the IdP may take to accept a TCP connection before the logout
/// goes on without it.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long an answer is reused.
pub const FRESH: Duration = Duration::from_secs(5);

/// The last answer: for which host and port, when, and what.
struct Answer {
    target: (String, u16),
    at: Instant,
    reachable: bool,
}

/// The process's last answer. Behind an async lock held across the probe,
/// so concurrent logouts wait for the one probe in flight instead of each
/// starting their own.
fn last() -> &'static Mutex<Option<Answer>> {
    static LAST: OnceLock<Mutex<Option<Answer>>> = OnceLock::new();
    LAST.get_or_init(|| Mutex::new(None))
}

/// Whether the IdP accepts TCP connections at `url`'s host and port; the
/// answer is at most [`FRESH`] old.
pub async fn reachable(url: &Url) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let target = (
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    );
    let mut last = last().lock().await;
    if let Some(answer) = last.as_ref()
        && answer.target == target
        && answer.at.elapsed() < FRESH
    {
        return answer.reachable;
    }
    let reachable = matches!(
        tokio::time::timeout(
            TIMEOUT,
            tokio::net::TcpStream::connect((target.0.as_str(), target.1))
        )
        .await,
        Ok(Ok(_))
    );
    *last = Some(Answer {
        target,
        at: Instant::now(),
        reachable,
    });
    reachable
}
