//! IP addresses and CIDR blocks, as written in configs and provider answers
//! (`203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`).

use std::net::IpAddr;

/// An address block: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an entry is not an address or CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct IpNetError(String);

impl IpNetError {
    fn garbage(text: &str) -> Self {
        IpNetError(format!(
            "{text:?} is not an IP address or CIDR block (e.g. 203.0.113.7 or 203.0.113.0/24)"
        ))
    }
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`. Host bits beyond the prefix are ignored, as most
    /// tools do (`10.0.0.7/24` is `10.0.0.0/24`). An IPv4-mapped IPv6 block
    /// (`::ffff:10.0.0.0/104`) becomes the IPv4 block it stands for (`10.0.0.0/8`), since
    /// client addresses are compared in IPv4 form; one whose prefix is shorter than 96
    /// also covers non-mapped IPv6 space and is refused as ambiguous.
    pub(crate) fn parse(text: &str) -> Result<Self, IpNetError> {
        let net = Self::parse_as_written(text)?;
        match net.addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if net.prefix >= 96 => Ok(IpNet {
                    addr: IpAddr::V4(v4),
                    prefix: net.prefix - 96,
                }),
                Some(_) => Err(IpNetError(format!(
                    "{text:?} is an IPv4-mapped IPv6 block with a prefix under 96, which also \
                     covers plain IPv6 addresses; write the IPv4 block (e.g. 127.0.0.0/8) and \
                     the IPv6 block separately"
                ))),
                None => Ok(net),
            },
            IpAddr::V4(_) => Ok(net),
        }
    }

    fn parse_as_written(text: &str) -> Result<Self, IpNetError> {
        let err = || IpNetError::garbage(text);
        let t = text.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| err())?;
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                    return Err(err());
                }
                let prefix: u8 = p.parse().map_err(|_| err())?;
                (addr, prefix)
            }
            None => {
                let addr: IpAddr = t.parse().map_err(|_| err())?;
                (addr, max_prefix(addr))
            }
        };
        if prefix > max_prefix(addr) {
            return Err(err());
        }
        Ok(IpNet { addr, prefix })
    }

    /// True when `ip` is inside the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    /// is compared as the IPv4 address it carries.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn containment() {
        let table = [
            ("203.0.113.0/24", "203.0.113.99", true),
            ("203.0.113.0/24", "203.0.114.1", false),
            ("203.0.113.7", "203.0.113.7", true),
            ("203.0.113.7", "203.0.113.8", false),
            ("203.0.113.7/24", "203.0.113.200", true),
            ("0.0.0.0/0", "198.51.100.1", true),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "2001:db9::5", false),
            ("::1", "::1", true),
            ("203.0.113.0/24", "::ffff:203.0.113.5", true),
            ("203.0.113.0/24", "2001:db8::1", false),
            ("2001:db8::/32", "203.0.113.5", false),
            // IPv4-mapped rules match IPv4 clients, in either form.
            ("::ffff:127.0.0.0/104", "127.0.0.1", true),
            ("::ffff:127.0.0.0/104", "::ffff:127.0.0.1", true),
            ("::ffff:127.0.0.0/104", "128.0.0.1", false),
            ("::ffff:203.0.113.7", "203.0.113.7", true),
            ("::ffff:0.0.0.0/96", "198.51.100.1", true),
        ];
        for (net, addr, want) in table {
            assert_eq!(
                IpNet::parse(net).unwrap().contains(ip(addr)),
                want,
                "{net} ∋ {addr}"
            );
        }
    }

    #[test]
    fn mapped_blocks_become_ipv4() {
        assert_eq!(
            IpNet::parse("::ffff:127.0.0.0/104").unwrap().to_string(),
            "127.0.0.0/8"
        );
        assert_eq!(
            IpNet::parse("::FFFF:10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4/33",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/+8",
            "example.com",
            "1.2.3.4/8/8",
            "1.2.3.4/0008",
            // Mapped space with a prefix that also covers plain IPv6 addresses.
            "::ffff:0.0.0.0/95",
            "::ffff:127.0.0.1/64",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad:?}");
        }
    }
}
