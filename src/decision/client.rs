//! Who the client is.
//!
//! The client address is the TCP peer, unless the peer is a configured trusted proxy:
//! then `X-Forwarded-For` is read right to left, skipping trusted hops, and the first
//! untrusted address is the client. A peer outside `trusted_proxies` can never choose its
//! address by sending `X-Forwarded-For` (or `X-Real-IP`, or `Forwarded`, which are never
//! read). An unreadable entry in a trusted chain leaves the client unknown, and any IP rule
//! then denies.

use std::net::IpAddr;

use crate::policy::net::IpNet;

/// The `trusted_proxies` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    /// True when `ip` is a trusted proxy.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client address for a connection from `peer` carrying these `X-Forwarded-For`
    /// header values (in order). `None` when it cannot be known.
    pub(crate) fn client_address<'a>(
        &self,
        peer: Option<IpAddr>,
        xff: impl Iterator<Item = &'a [u8]>,
    ) -> Option<IpAddr> {
        let peer = peer?;
        if !self.contains(peer) {
            return Some(peer);
        }
        let mut entries = Vec::new();
        for value in xff {
            let text = std::str::from_utf8(value).ok()?;
            entries.extend(text.split(',').map(str::trim));
        }
        let mut leftmost = peer;
        for entry in entries.iter().rev() {
            let ip = parse_entry(entry)?;
            if !self.contains(ip) {
                return Some(ip);
            }
            leftmost = ip;
        }
        Some(leftmost)
    }
}

/// An `X-Forwarded-For` entry: `a.b.c.d`, `a.b.c.d:port`, `v6`, `[v6]` or `[v6]:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    match entry.rsplit_once(':') {
        Some((v4, port)) if port.bytes().all(|b| b.is_ascii_digit()) => v4.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|s| IpNet::parse(s).unwrap()).collect())
    }

    fn client(t: &TrustedProxies, peer: &str, xff: &[&str]) -> Option<String> {
        t.client_address(
            Some(peer.parse().unwrap()),
            xff.iter().map(|v| v.as_bytes()),
        )
        .map(|ip| ip.to_string())
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            client(&t, "203.0.113.9", &["1.2.3.4"]).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            client(&TrustedProxies::default(), "203.0.113.9", &["1.2.3.4"]).as_deref(),
            Some("203.0.113.9")
        );
    }

    #[test]
    fn trusted_chains_are_read_right_to_left() {
        let t = trusted(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let table: [(&str, &[&str], Option<&str>); 9] = [
            ("10.0.0.1", &[], Some("10.0.0.1")),
            ("10.0.0.1", &["198.51.100.7"], Some("198.51.100.7")),
            // The client prepended a fake entry: the rightmost untrusted one wins.
            ("10.0.0.1", &["6.6.6.6, 198.51.100.7"], Some("198.51.100.7")),
            (
                "10.0.0.1",
                &["6.6.6.6, 198.51.100.7, 10.0.0.2"],
                Some("198.51.100.7"),
            ),
            (
                "10.0.0.1",
                &["6.6.6.6", "198.51.100.7, 10.0.0.2"],
                Some("198.51.100.7"),
            ),
            ("10.0.0.1", &["10.0.0.3, 10.0.0.2"], Some("10.0.0.3")),
            (
                "10.0.0.1",
                &["[2001:db8::5]:443, 198.51.100.7:5555"],
                Some("198.51.100.7"),
            ),
            ("2001:db8:ffff::1", &["2001:db8::5"], Some("2001:db8::5")),
            ("10.0.0.1", &["6.6.6.6, unknown"], None),
        ];
        for (peer, xff, want) in table {
            assert_eq!(client(&t, peer, xff).as_deref(), want, "{peer} {xff:?}");
        }
        assert_eq!(t.client_address(None, std::iter::empty()), None);
    }
}
