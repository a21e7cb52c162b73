//! Which configured public origin a request belongs to, and who the client
//! is. URLs the gateway emits are built from the configured origin chosen
//! here, never from the raw `Host` or `X-Forwarded-Host`.

use std::net::IpAddr;

use http::Request;
use http::header::HOST;
use ipnet::IpNet;

use crate::config::PublicOrigin;

/// The request's authority: `:authority` (HTTP/2) or `Host` (HTTP/1.1),
/// lower-cased.
pub fn request_authority<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(HOST)?.to_str().ok()?,
    };
    Some(raw.to_ascii_lowercase())
}

/// The host part of an authority (`host[:port]`, IPv6 in brackets).
pub fn authority_host(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Chooses the public origin whose authority the request names; requests
/// naming none get the first (default) public origin. Returns the index.
pub fn select_origin(origins: &[PublicOrigin], authority: Option<&str>) -> usize {
    matching_origin(origins, authority).unwrap_or(0)
}

/// The public origin whose authority (else host) `authority` names, if
/// any: where a request that must name one (forward-auth) belongs.
pub fn matching_origin(origins: &[PublicOrigin], authority: Option<&str>) -> Option<usize> {
    let authority = authority?;
    let host = authority_host(authority);
    origins
        .iter()
        .position(|o| o.authority() == authority)
        .or_else(|| origins.iter().position(|o| o.host == host))
}

/// Whether a peer is one of the trusted proxies.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&peer))
}

/// The client's address for per-client limits: the TCP peer, or, when the
/// peer is a trusted proxy, the nearest address in `X-Forwarded-For` that is
/// not a trusted proxy (read from the right, as each proxy appends; what a
/// client wrote further left is never believed). Falls back to the peer.
pub fn client_ip(headers: &http::HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let hops = headers
        .get_all(http::header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip, trusted) => continue,
            Ok(ip) => return ip,
            // A hop we cannot read: stop believing the chain there.
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = |xff: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("x-forwarded-for", xff.parse().unwrap());
            m
        };
        let lb: IpAddr = "10.0.0.5".parse().unwrap();
        let outside: IpAddr = "198.51.100.7".parse().unwrap();
        // Not from a trusted proxy: the peer, whatever the header says.
        assert_eq!(client_ip(&h("203.0.113.9"), outside, &trusted), outside);
        // Through the load balancer: the address it appended.
        assert_eq!(
            client_ip(&h("203.0.113.9"), lb, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // A client-written prefix is not believed past the first untrusted hop.
        assert_eq!(
            client_ip(&h("1.2.3.4, 203.0.113.9, 10.0.0.6"), lb, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&h("garbage, 10.0.0.6"), lb, &trusted), lb);
        assert_eq!(client_ip(&http::HeaderMap::new(), lb, &trusted), lb);
    }
    use crate::config::Scheme;

    fn origin(scheme: Scheme, host: &str, port: u16, origin: &str) -> PublicOrigin {
        PublicOrigin {
            scheme,
            host: host.into(),
            port,
            origin: origin.into(),
        }
    }

    #[test]
    fn selects_by_authority_then_host_else_default() {
        let origins = [
            origin(
                Scheme::Https,
                "app.example.com",
                443,
                "https://app.example.com",
            ),
            origin(
                Scheme::Https,
                "api.example.com",
                443,
                "https://api.example.com",
            ),
        ];
        assert_eq!(select_origin(&origins, Some("api.example.com")), 1);
        assert_eq!(select_origin(&origins, Some("api.example.com:8443")), 1);
        assert_eq!(select_origin(&origins, Some("evil.example")), 0);
        assert_eq!(select_origin(&origins, None), 0);
        assert_eq!(authority_host("[::1]:8080"), "[::1]");
    }

    #[test]
    fn trusted_peers() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &nets));
        assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &nets));
        assert!(!is_trusted("127.0.0.1".parse().unwrap(), &nets));
    }
}
