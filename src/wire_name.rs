//! Header names the gateway writes, with their spelling on the wire.

use bytes::Bytes;
use http::header::HeaderName;

/// A header the gateway writes: its name (for lookups) and its spelling on the wire.
///
/// Pingora keeps every header's spelling in a case map, and given a bare `HeaderName` it
/// copies the name into a new buffer on every insert. A `WireName` is built once (at
/// start or from the configuration) and its spelling is shared by reference count, so an
/// insert costs no copy of the name; the upstream also sees the usual spelling
/// (`X-Forwarded-For`, the configured `X-Auth-` prefix) rather than lower case.
#[derive(Debug, Clone)]
pub struct WireName {
    name: HeaderName,
    wire: Bytes,
}

impl WireName {
    /// A name known at compile time: `name` in lower case, `wire` the same name spelled
    /// for the wire (the two must agree; the test `constant_wire_names_agree` checks ours).
    pub(crate) const fn constant(name: &'static str, wire: &'static str) -> Self {
        WireName {
            name: HeaderName::from_static(name),
            wire: Bytes::from_static(wire.as_bytes()),
        }
    }

    /// A name spelled `spelling`; `None` when it is not a valid header name.
    pub fn new(spelling: String) -> Option<Self> {
        let name = HeaderName::from_bytes(spelling.as_bytes()).ok()?;
        Some(WireName {
            name,
            wire: Bytes::from(spelling),
        })
    }

    /// The name, for lookups and removal.
    pub(crate) fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The name as written on the wire.
    pub(crate) fn wire(&self) -> &Bytes {
        &self.wire
    }
}
