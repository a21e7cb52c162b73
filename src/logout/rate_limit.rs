//! Per-client token buckets for the back-channel logout endpoint. One
//! bucket for the whole process let anyone posting garbage just above the
//! sustained rate turn the IdP's real logout tokens into 429s; with a
//! bucket per client address, a flood uses up only its own.
//!
//! The buckets live in a bounded map with LRU eviction, so a flood of
//! source addresses evicts the least recently seen buckets instead of
//! growing memory. An evicted or expired bucket starts full again: a
//! bucket idle for `burst / rate` has refilled anyway, so expiring it then
//! loses nothing, and an evicted one can only err toward serving a request.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by client address (see [`client_key`]).
pub struct PeerLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Cache<IpAddr, Bucket>,
}

impl PeerLimiter {
    /// Buckets of `burst` requests refilled at `per_sec` requests per
    /// second, for at most `capacity` client addresses at a time.
    pub fn new(burst: u32, per_sec: u32, capacity: u64) -> Self {
        let burst = f64::from(burst.max(1));
        let per_sec = f64::from(per_sec.max(1));
        let refill = Duration::from_secs_f64(burst / per_sec);
        PeerLimiter {
            burst,
            per_sec,
            buckets: Cache::builder()
                .max_capacity(capacity)
                // moka's default admission may refuse a new key when full,
                // which would leave that address unlimited; LRU admits it.
                .eviction_policy(EvictionPolicy::lru())
                .time_to_idle(refill)
                .build(),
        }
    }

    /// Takes one request from `peer`'s bucket at `now`; `false` when the
    /// bucket is empty.
    pub fn allow(&self, peer: IpAddr, now: Instant) -> bool {
        let mut allowed = false;
        // Computed under the entry's lock: concurrent requests from one
        // address cannot both take the last token.
        self.buckets
            .entry(client_key(peer))
            .and_compute_with(|cur| {
                let mut b = cur.map(|e| e.into_value()).unwrap_or(Bucket {
                    tokens: self.burst,
                    last: now,
                });
                let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
                b.last = b.last.max(now);
                allowed = b.tokens >= 1.0;
                if allowed {
                    b.tokens -= 1.0;
                }
                Op::Put(b)
            });
        allowed
    }

    /// How many addresses have a bucket, after pending evictions ran.
    pub fn tracked(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
    }
}

/// The address a bucket belongs to: IPv4 as is (also when mapped into
/// IPv6); IPv6 by its /64, since a single host commonly holds a whole /64
/// and could otherwise take a fresh bucket per request.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_exhausting_its_bucket_does_not_limit_another() {
        let l = PeerLimiter::new(10, 5, 100);
        let t = Instant::now();
        for _ in 0..10 {
            assert!(l.allow(ip("192.0.2.1"), t));
        }
        assert!(!l.allow(ip("192.0.2.1"), t), "burst used up");
        for _ in 0..10 {
            assert!(l.allow(ip("192.0.2.2"), t), "another address is served");
        }
        // 5 per second: after 400 ms two requests more.
        let later = t + Duration::from_millis(400);
        assert!(l.allow(ip("192.0.2.1"), later));
        assert!(l.allow(ip("192.0.2.1"), later));
        assert!(!l.allow(ip("192.0.2.1"), later));
        // Never more than the burst, however long the wait.
        let much_later = t + Duration::from_secs(3600);
        let served = (0..20)
            .filter(|_| l.allow(ip("192.0.2.1"), much_later))
            .count();
        assert_eq!(served, 10);
    }

    #[test]
    fn ipv6_hosts_share_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(client_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let l = PeerLimiter::new(2, 1, 100);
        let t = Instant::now();
        assert!(l.allow(ip("2001:db8::1"), t));
        assert!(l.allow(ip("2001:db8::2"), t));
        assert!(!l.allow(ip("2001:db8::3"), t), "same /64, same bucket");
    }

    #[test]
    fn a_flood_of_addresses_stays_within_the_capacity() {
        let l = PeerLimiter::new(10, 5, 500);
        let t = Instant::now();
        for i in 0..20_000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | i));
            assert!(l.allow(addr, t), "a new address starts with a full bucket");
        }
        let n = l.tracked();
        assert!(n <= 500, "{n} buckets kept");
    }
}
