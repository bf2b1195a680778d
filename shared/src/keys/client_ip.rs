//! Which address is the client: the peer, or X-Forwarded-For only through trusted hops.

use super::cidr::{any_contains, canonical};
use super::Cidr;
use std::net::IpAddr;

/// Parses `1.2.3.4`, `1.2.3.4:5678`, `[::1]:5678` or `::1` (what hosts report as the peer).
pub fn parse_peer(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = t.strip_prefix('[') {
        let end = rest.find(']')?;
        return rest[..end].parse::<IpAddr>().ok().map(canonical);
    }
    let (host, _port) = t.rsplit_once(':')?;
    host.parse::<IpAddr>().ok().map(canonical)
}

/// The client address: walk X-Forwarded-For from the right while the hop we got it from is
/// trusted; the first untrusted hop is the client. With no trusted proxies, XFF is ignored,
/// so a client cannot pick its own address by sending the header.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let mut current = canonical(peer);
    if trusted.is_empty() {
        return current;
    }
    let Some(xff) = forwarded_for else {
        return current;
    };
    for hop in xff.rsplit(',') {
        if !any_contains(trusted, current) {
            return current;
        }
        match parse_peer(hop) {
            Some(ip) => current = ip,
            // A garbled entry: stop at the last hop we could trust.
            None => return current,
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_without_trusted_proxies() {
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("10.0.0.1"), &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn walks_back_through_trusted_hops_only() {
        let trusted = [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("fd00::/8").unwrap(),
        ];
        // client 198.51.100.7 -> proxy 10.0.0.2 -> proxy 10.0.0.3 (peer)
        assert_eq!(
            client_ip(ip("10.0.0.3"), Some("198.51.100.7, 10.0.0.2"), &trusted),
            ip("198.51.100.7")
        );
        // A spoofed left-most entry does not help: the first untrusted hop from the right wins.
        assert_eq!(
            client_ip(ip("10.0.0.3"), Some("1.1.1.1, 198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        // An untrusted peer's header is not believed at all.
        assert_eq!(
            client_ip(ip("203.0.113.5"), Some("10.9.9.9"), &trusted),
            ip("203.0.113.5")
        );
        // IPv6 hops, with ports and brackets.
        assert_eq!(
            client_ip(ip("fd00::1"), Some("[2001:db8::7]:443"), &trusted),
            ip("2001:db8::7")
        );
        // Every hop trusted: the left-most is the best we know.
        assert_eq!(
            client_ip(ip("10.0.0.3"), Some("10.0.0.9"), &trusted),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn peers_in_host_formats() {
        assert_eq!(parse_peer("127.0.0.1:5000"), Some(ip("127.0.0.1")));
        assert_eq!(parse_peer("[::1]:5000"), Some(ip("::1")));
        assert_eq!(parse_peer("::1"), Some(ip("::1")));
        assert_eq!(parse_peer("::ffff:10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(parse_peer("garbage"), None);
    }
}
