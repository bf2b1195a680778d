//! CIDR blocks for IPv4 and IPv6 allowlists; IPv4-mapped IPv6 addresses match IPv4 blocks.

use std::fmt;
use std::net::IpAddr;

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The address with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) turned into IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let all = if width == 32 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        all & !((1u128 << (width - prefix)) - 1) & all
    }
}

impl Cidr {
    /// Parses `addr/prefix`, or a bare address as a single-host block.
    pub fn parse(text: &str) -> Result<Self, CidrError> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| {
            CidrError(format!(
                "{text:?} is not an IPv4 or IPv6 address or CIDR block"
            ))
        })?;
        let ip = canonical(ip);
        let (value, width) = bits(ip);
        let prefix = match prefix {
            None => width,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= width => n,
                _ => {
                    return Err(CidrError(format!(
                        "{text:?}: the prefix length must be 0..={width}"
                    )))
                }
            },
        };
        if value & !mask(prefix, width) != 0 {
            return Err(CidrError(format!(
                "{text:?} has host bits set; did you mean {}?",
                Cidr {
                    network: from_bits(value & mask(prefix, width), width),
                    prefix
                }
            )));
        }
        Ok(Cidr {
            network: ip,
            prefix,
        })
    }

    /// Whether `ip` is inside this block (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let (a, wa) = bits(self.network);
        let (b, wb) = bits(ip);
        if wa != wb {
            return false;
        }
        let m = mask(self.prefix, wa);
        a & m == b & m
    }
}

fn from_bits(v: u128, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::V4((v as u32).into())
    } else {
        IpAddr::V6(v.into())
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Whether `ip` is in any of `blocks`.
pub fn any_contains(blocks: &[Cidr], ip: IpAddr) -> bool {
    blocks.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.255.255")));
        assert!(c.contains(ip("10.0.0.0")));
        assert!(!c.contains(ip("11.0.0.0")));
        assert!(!c.contains(ip("9.255.255.255")));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn ipv6_blocks_at_their_edges() {
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(ip("2001:db8::1")));
        assert!(c.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!c.contains(ip("2001:db9::")));
        assert!(!c.contains(ip("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")));
        let c = Cidr::parse("2001:db8::/127").unwrap();
        assert!(c.contains(ip("2001:db8::1")) && !c.contains(ip("2001:db8::2")));
        let host = Cidr::parse("::1").unwrap();
        assert!(host.contains(ip("::1")) && !host.contains(ip("::2")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("fe80::1")));
    }

    #[test]
    fn families_never_cross_except_mapped_ipv4() {
        let v4 = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(!v4.contains(ip("::a00:1")));
        assert!(v4.contains(ip("::ffff:10.1.2.3")));
        assert!(!Cidr::parse("::/0").unwrap().contains(ip("10.0.0.1")));
    }

    #[test]
    fn bad_blocks_are_refused_with_help() {
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("2001:db8::/129").is_err());
        assert!(Cidr::parse("nonsense").is_err());
        let e = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert!(e.0.contains("10.0.0.0/8"), "{}", e.0);
    }
}
