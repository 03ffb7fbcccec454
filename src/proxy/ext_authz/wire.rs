//! The few protobuf messages of Envoy's `envoy.service.auth.v3` that decision mode reads
//! and writes, by hand: a reader that walks fields (skipping every field it does not
//! know, as protobuf requires) and a writer for `CheckResponse`. Field numbers are
//! Envoy's (`external_auth.proto`, `attribute_context.proto`, `base.proto`); the tests
//! decode bytes written by Envoy's own generated Python classes.

use std::net::IpAddr;

pub(crate) use crate::telemetry::protobuf::Writer;

/// A malformed message: what was wrong, for the refusal.
pub(crate) type WireError = String;

/// One protobuf field: its number and value.
enum Value<'a> {
    Bytes(&'a [u8]),
    /// Varints and fixed 32- and 64-bit values: nothing read here is one.
    Scalar,
}

/// The fields of one message, in order.
struct Fields<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf
            .split_first()
            .ok_or_else(|| "a truncated varint".to_string())?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than ten bytes".into())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err("a field longer than its message".into());
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let field = (|| {
            let key = varint(&mut self.buf)?;
            let value = match key & 7 {
                0 => varint(&mut self.buf).map(|_| Value::Scalar)?,
                1 => take(&mut self.buf, 8).map(|_| Value::Scalar)?,
                2 => {
                    let n = usize::try_from(varint(&mut self.buf)?)
                        .map_err(|_| "a length beyond memory".to_string())?;
                    Value::Bytes(take(&mut self.buf, n)?)
                }
                5 => take(&mut self.buf, 4).map(|_| Value::Scalar)?,
                other => return Err(format!("wire type {other} (groups are not used by Envoy)")),
            };
            Ok((key >> 3, value))
        })();
        if field.is_err() {
            // One error ends the walk.
            self.buf = &[];
        }
        Some(field)
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

fn text<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}

/// Calls `each` with every length-delimited field numbered `number` (a message, a string)
/// of `msg`; other fields are skipped.
fn each_bytes<'a>(
    msg: &'a [u8],
    number: u64,
    mut each: impl FnMut(&'a [u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    for field in fields(msg) {
        match field? {
            (n, Value::Bytes(b)) if n == number => each(b)?,
            (n, _) if n == number => return Err(format!("field {number} has the wrong type")),
            _ => {}
        }
    }
    Ok(())
}

/// The last length-delimited field `number` of `msg` (protobuf: the last one wins).
fn last_bytes(msg: &[u8], number: u64) -> Result<Option<&[u8]>, WireError> {
    let mut found = None;
    each_bytes(msg, number, |b| {
        found = Some(b);
        Ok(())
    })?;
    Ok(found)
}

/// The HTTP request an Envoy `CheckRequest` describes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Described {
    pub(crate) method: String,
    /// `:path`: path and query (Envoy's `query` field is always empty).
    pub(crate) path: String,
    /// `:authority`.
    pub(crate) host: String,
    pub(crate) scheme: String,
    /// `HTTP/1.1`, `HTTP/2`, …
    pub(crate) protocol: String,
    /// The request's headers, pseudo-headers included, as Envoy listed them.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    /// The downstream client's address (`source.address.socket_address.address`).
    pub(crate) source: Option<IpAddr>,
    /// `source.principal`: the identity of the client's verified certificate (URI SAN,
    /// DNS SAN or subject, Envoy's order), e.g. an Istio workload's SPIFFE id.
    pub(crate) principal: Option<String>,
    /// `source.certificate`: the client's certificate, URL-encoded PEM
    /// (`include_peer_certificate`).
    pub(crate) certificate: Option<String>,
}

/// Reads an `envoy.service.auth.v3.CheckRequest`.
pub(crate) fn check_request(msg: &[u8]) -> Result<Described, WireError> {
    let mut d = Described::default();
    let attributes = last_bytes(msg, 1)?.ok_or("the CheckRequest has no attributes")?;
    // AttributeContext.source (1) → Peer.address (1) → Address.socket_address (1) →
    // SocketAddress.address (2).
    if let Some(peer) = last_bytes(attributes, 1)? {
        let nonempty = |b: Option<&[u8]>, what| -> Result<Option<String>, WireError> {
            match b {
                Some(b) if !b.is_empty() => Ok(Some(text(what, b)?.to_string())),
                _ => Ok(None),
            }
        };
        d.principal = nonempty(last_bytes(peer, 4)?, "the source principal")?;
        d.certificate = nonempty(last_bytes(peer, 5)?, "the source certificate")?;
        let address = last_bytes(peer, 1)?.unwrap_or_default();
        let socket = last_bytes(address, 1)?.unwrap_or_default();
        if let Some(ip) = last_bytes(socket, 2)? {
            let ip = text("the source address", ip)?;
            d.source = Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| format!("the source address `{ip}` is not an IP address"))?
                    .to_canonical(),
            );
        }
    }
    // AttributeContext.request (4) → Request.http (2) → HttpRequest.
    let http = last_bytes(attributes, 4)?
        .and_then(|request| last_bytes(request, 2).transpose())
        .transpose()?
        .ok_or("the CheckRequest describes no HTTP request")?;
    let mut header_map = None;
    for field in fields(http) {
        let (n, value) = field?;
        let Value::Bytes(b) = value else { continue };
        match n {
            2 => d.method = text("the method", b)?.to_string(),
            // map<string, string> headers: entries of key (1) and value (2).
            3 => {
                let key = last_bytes(b, 1)?.unwrap_or_default();
                let value = last_bytes(b, 2)?.unwrap_or_default();
                d.headers
                    .push((text("a header name", key)?.to_string(), value.to_vec()));
            }
            4 => d.path = text("the path", b)?.to_string(),
            5 => d.host = text("the host", b)?.to_string(),
            6 => d.scheme = text("the scheme", b)?.to_string(),
            10 => d.protocol = text("the protocol", b)?.to_string(),
            13 => header_map = Some(b),
            _ => {}
        }
    }
    // With `encode_raw_headers`, the headers come as a HeaderMap (1: HeaderValue of key
    // 1, value 2, raw_value 3) and the map is empty.
    if let Some(map) = header_map {
        each_bytes(map, 1, |header| {
            let key = last_bytes(header, 1)?.unwrap_or_default();
            let value = match last_bytes(header, 3)? {
                Some(raw) => raw,
                None => last_bytes(header, 2)?.unwrap_or_default(),
            };
            d.headers
                .push((text("a header name", key)?.to_string(), value.to_vec()));
            Ok(())
        })?;
    }
    Ok(d)
}

/// An `envoy.config.core.v3.HeaderValueOption` replacing the header (`append: false`,
/// which every Envoy version reads as "overwrite if exists, or add").
pub(crate) fn header_option(w: &mut Writer, number: u64, name: &[u8], value: &[u8]) {
    w.message(number, |o| {
        o.message(1, |h| {
            h.bytes(1, name);
            h.bytes(2, value);
        });
        // google.protobuf.BoolValue{value: false}: present, empty.
        o.message(2, |_| {});
    });
}

/// `google.rpc.Status` in a CheckResponse (field 1).
pub(crate) fn rpc_status(w: &mut Writer, code: u8, message: &str) {
    w.message(1, |s| {
        if code != 0 {
            s.uint(1, u64::from(code));
        }
        if !message.is_empty() {
            s.bytes(2, message.as_bytes());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Written by Envoy's generated classes (xds-protos 1.68.1):
    /// ```python
    /// r = CheckRequest()
    /// a = r.attributes
    /// a.source.address.socket_address.address = "203.0.113.7"
    /// a.source.address.socket_address.port_value = 51234
    /// h = a.request.http
    /// h.method = "POST"; h.path = "/api/items?x=1"; h.host = "api.example.com"
    /// h.scheme = "https"; h.protocol = "HTTP/2"
    /// h.headers[":path"] = "/api/items?x=1"; h.headers["authorization"] = "Bearer t"
    /// a.context_extensions["k"] = "v"
    /// print(r.SerializeToString().hex())
    /// ```
    const ENVOY_CHECK: &str =
        "0a8d010a150a130a11120b3230332e302e3131332e3718a29003226c126a1204504f53541a170a05\
3a70617468120e2f6170692f6974656d733f783d311a190a0d617574686f72697a6174696f6e1208\
4265617265722074220e2f6170692f6974656d733f783d312a0f6170692e6578616d706c652e636f\
6d320568747470735206485454502f3252060a016b120176";

    #[test]
    fn reads_the_request_envoy_describes() {
        let d = check_request(&hex(ENVOY_CHECK)).unwrap();
        assert_eq!(d.method, "POST");
        assert_eq!(d.path, "/api/items?x=1");
        assert_eq!(d.host, "api.example.com");
        assert_eq!(d.scheme, "https");
        assert_eq!(d.protocol, "HTTP/2");
        assert_eq!(d.source, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(
            d.headers,
            vec![
                (":path".to_string(), b"/api/items?x=1".to_vec()),
                ("authorization".to_string(), b"Bearer t".to_vec()),
            ]
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let good = hex(ENVOY_CHECK);
        // Every truncation either fails or reads less; none panics.
        for n in 0..good.len() {
            let _ = check_request(&good[..n]);
        }
        assert!(check_request(&[]).is_err());
        assert!(check_request(&[0x0b]).is_err(), "a group");
        assert!(check_request(&[0x0a, 0x05, 0x00]).is_err(), "too short");
        assert!(check_request(&[0x08, 0xff]).is_err(), "truncated varint");
    }

    #[test]
    fn writes_what_protobuf_reads() {
        let mut w = Writer::default();
        rpc_status(&mut w, 7, "no");
        header_option(&mut w, 2, b"x-a", b"1");
        w.uint(3, 300);
        // status{code 7, message "no"}, HeaderValueOption{header{x-a: 1}, append{}}, 300.
        assert_eq!(
            w.buf,
            hex("0a06080712026e6f120c0a080a03782d61120131120018ac02")
        );
    }
}
