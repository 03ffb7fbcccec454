//! What the upstream is told about the client: `X-Forwarded-*`, `X-Real-IP`, `Forwarded`
//! (who the client is was decided by [`crate::decision::client`]).

use std::net::IpAddr;

use http::HeaderValue;
use pingora::prelude::Result;

use crate::decision::client::TrustedProxies;
use crate::proxy::outgoing::Outgoing;
use crate::wire_name::WireName;

const XFF: WireName = WireName::constant("x-forwarded-for", "X-Forwarded-For");
const PROTO: WireName = WireName::constant("x-forwarded-proto", "X-Forwarded-Proto");
const XFH: WireName = WireName::constant("x-forwarded-host", "X-Forwarded-Host");
const REAL_IP: WireName = WireName::constant("x-real-ip", "X-Real-IP");
const FORWARDED: WireName = WireName::constant("forwarded", "Forwarded");

/// The forwarding headers this module writes (for the spelling check in the tests).
#[cfg(test)]
pub(crate) const WIRE_NAMES: [WireName; 5] = [XFF, PROTO, XFH, REAL_IP, FORWARDED];

/// `X-Forwarded-For` gets the peer appended (a chain from an untrusted peer is
/// replaced, not extended); `X-Forwarded-Proto` / `-Host` are kept only from trusted
/// proxies (else `X-Forwarded-Proto` is how the client reached the gateway: `https` on the
/// TLS listener); `X-Real-IP` is the client address the gateway decided on; `Forwarded`
/// from an untrusted peer is dropped.
pub(crate) fn set_forwarded<'id>(
    req: &mut impl Outgoing<'id>,
    peer: Option<IpAddr>,
    client: Option<IpAddr>,
    https: bool,
    trusted_proxies: &TrustedProxies,
) -> Result<()> {
    // Header names are constants (no parsing or copying of names per request); the
    // peer's address is formatted once.
    let trusted = peer.is_some_and(|p| trusted_proxies.contains(p));
    let mut chain = String::new();
    if trusted {
        for v in req.values(XFF.name()).filter_map(|v| v.to_str().ok()) {
            if !chain.is_empty() {
                chain.push_str(", ");
            }
            chain.push_str(v);
        }
    }
    req.remove(XFF.name());
    let mut peer_value = None;
    if let Some(peer) = peer {
        if chain.is_empty() {
            let value = address_value(peer);
            XFF.insert(req, value.clone())?;
            peer_value = Some(value);
        } else {
            chain.push_str(", ");
            push_address(&mut chain, peer);
            XFF.insert(req, chain)?;
        }
    }
    if !trusted || !req.contains(PROTO.name()) {
        let scheme = if https { "https" } else { "http" };
        PROTO.insert(req, HeaderValue::from_static(scheme))?;
    }
    if !trusted || !req.contains(XFH.name()) {
        match req.first(&http::header::HOST).cloned() {
            Some(host) => XFH.insert(req, host)?,
            None => req.remove(XFH.name()),
        }
    }
    if !trusted {
        req.remove(FORWARDED.name());
    }
    match client {
        Some(ip) => {
            let value = match peer_value {
                Some(v) if Some(ip) == peer => v,
                _ => address_value(ip),
            };
            REAL_IP.insert(req, value)?
        }
        None => req.remove(REAL_IP.name()),
    }
    Ok(())
}

/// `ip` as a header value. An IPv4 address (the common case) is written without the
/// formatting machinery; the value is shared, not copied, when used twice.
fn address_value(ip: IpAddr) -> HeaderValue {
    let mut text = String::with_capacity(15);
    push_address(&mut text, ip);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .expect("an IP address is a valid header value")
}

fn push_address(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.255",
            "127.0.0.1",
            "99.100.9.250",
            "::1",
            "2001:db8::5",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(address_value(ip), ip.to_string().as_str(), "{text}");
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 255 - octet, octet / 2, 7]);
            assert_eq!(address_value(ip), ip.to_string().as_str());
        }
    }
}
