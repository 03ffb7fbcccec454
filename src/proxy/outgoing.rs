//! The request head on its way upstream, as the gateway edits it.
//!
//! Everything the gateway does to a request before it leaves — identity headers, the
//! forwarding headers, the request id, the assertion, credential stripping, the rewritten
//! path — is written once, against [`Outgoing`], and applied to one of two forms:
//!
//! - Pingora's [`RequestHeader`], for the full proxy, HTTP/2 upstreams, `HEAD` requests and
//!   the echo upstream;
//! - [`WireRequest`], for the direct path's HTTP/1.1 requests: the edits are kept beside
//!   the client's parsed head and the request is written to the wire once, in one buffer.
//!   No header map is built for it: a map costs a hash, a parsed name and a case-map entry
//!   per header, and the gateway adds eight to fourteen headers to every request
//!   (BENCHMARKS.md, "Session 12 …: the upstream request on the wire": ≈ 10% less CPU per
//!   request).
//!
//! The two forms answer every edit the same way: `tests::both_forms_answer_every_edit_the_same`
//! runs random edit sequences on random client heads through both and compares every read
//! and the bytes on the wire; `tests::both_forms_send_the_same_request` does the same with
//! the gateway's own edits.

use bytes::BufMut;
use http::header::{HeaderName, HeaderValue, CONNECTION};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use std::cell::OnceCell;

use crate::identity::Identity;
use crate::proxy::headers::IdentityHeaders;

use crate::wire_name::WireName;

impl WireName {
    /// Sets `value` under this name on `req`, replacing any value already there.
    pub(crate) fn insert<'id>(
        &self,
        req: &mut impl Outgoing<'id>,
        value: impl TryInto<HeaderValue>,
    ) -> Result<()> {
        let value = value
            .try_into()
            .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid header value"))?;
        req.insert(self, value)
    }
}

/// A request head the gateway can edit before it goes upstream (see the module docs);
/// `'id`: how long what [`Outgoing::set_identity`] is given lives.
pub trait Outgoing<'id> {
    /// The values under `name`, in order.
    fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a HeaderValue>;

    /// True when there is a value under `name`.
    fn contains(&self, name: &HeaderName) -> bool {
        self.values(name).next().is_some()
    }

    /// The first value under `name`.
    fn first(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.values(name).next()
    }

    /// Removes every value under `name`.
    fn remove(&mut self, name: &HeaderName);

    /// Replaces every value under `name` with `value`.
    fn insert(&mut self, name: &WireName, value: HeaderValue) -> Result<()>;

    /// Adds `value` under `name`, after the values already there.
    fn append(&mut self, name: &WireName, value: HeaderValue) -> Result<()>;

    /// The query of the request target.
    fn query(&self) -> Option<&str>;

    /// Replaces the request target (origin form: path and query).
    fn set_target(&mut self, target: &[u8]) -> Result<()>;

    /// Sets the identity headers (`names`) describing `identity` resolved by `provider`,
    /// replacing any value already under those names.
    fn set_identity(
        &mut self,
        names: &'id IdentityHeaders,
        identity: &'id Identity,
        provider: &'id str,
    ) where
        Self: Sized,
    {
        names.each(identity, provider, |name, value| {
            // Inserting only fails on invalid names/values, which `each` never yields.
            let _ = self.insert(name, value);
        });
    }
}

impl Outgoing<'_> for RequestHeader {
    fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a HeaderValue> {
        self.headers.get_all(name).iter()
    }

    fn remove(&mut self, name: &HeaderName) {
        if self.headers.contains_key(name) {
            self.remove_header(name);
        }
    }

    fn insert(&mut self, name: &WireName, value: HeaderValue) -> Result<()> {
        self.insert_header(name.wire().clone(), value)
    }

    fn append(&mut self, name: &WireName, value: HeaderValue) -> Result<()> {
        self.append_header(name.wire().clone(), value).map(|_| ())
    }

    fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    fn set_target(&mut self, target: &[u8]) -> Result<()> {
        self.set_raw_path(target)
    }
}

/// The headers a request gets or loses on its way upstream (identity, forwarding, request
/// id, assertion, credentials, with room for a few claims): the usual number of edits, so
/// that the lists below are allocated once.
const USUAL_EDITS: usize = 16;

/// An HTTP/1.1 request for the upstream: the client's parsed head, less the headers the
/// gateway removed or replaced, plus the ones it added (see the module docs).
pub struct WireRequest<'a> {
    client: &'a RequestHeader,
    /// The target, when the route rewrote the path.
    target: Option<Vec<u8>>,
    /// Names the client sent whose values are not forwarded (removed or replaced), besides
    /// `Connection`, which never is. Empty for the usual request: no allocation.
    dropped: Vec<HeaderName>,
    /// Headers the gateway set, in the order set; written after the client's.
    added: Vec<(WireName, HeaderValue)>,
    /// The identity headers, written straight to the wire at their place among `added`:
    /// no header value is built for each. Any later edit of one of their names turns them
    /// into entries of `added` first ([`WireRequest::spell_out_identity`]).
    identity: Option<IdentityLines<'a>>,
    /// The identity headers as header values, built only when read (never on the way of a
    /// request: the gateway writes them and reads them back only in tests).
    identity_values: OnceCell<Vec<(WireName, HeaderValue)>>,
}

/// What [`Outgoing::set_identity`] was given, and where among `added` it goes.
struct IdentityLines<'a> {
    names: &'a IdentityHeaders,
    identity: &'a Identity,
    provider: &'a str,
    at: usize,
}

impl IdentityLines<'_> {
    fn names_header(&self, name: &[u8]) -> bool {
        self.names.names_header(self.identity, self.provider, name)
    }

    fn values(&self) -> Vec<(WireName, HeaderValue)> {
        let mut out = Vec::new();
        self.names
            .each(self.identity, self.provider, |name, value| {
                out.push((name.clone(), value))
            });
        out
    }
}

impl<'a> WireRequest<'a> {
    /// The client's request as it would go upstream with no edit: the same method, target
    /// and headers (spelling and order kept), less `Connection` (the direct path's requests
    /// name nothing else hop-by-hop; see `direct::eligible`).
    pub fn new(client: &'a RequestHeader) -> Self {
        WireRequest {
            client,
            target: None,
            dropped: Vec::new(),
            added: Vec::with_capacity(USUAL_EDITS),
            identity: None,
            identity_values: OnceCell::new(),
        }
    }

    fn forwards_client(&self, name: &HeaderName) -> bool {
        *name != CONNECTION
            && !self.dropped.contains(name)
            && !self
                .identity
                .as_ref()
                .is_some_and(|lines| lines.names_header(name.as_str().as_bytes()))
    }

    /// Before an edit of `name`: when it is one of the identity headers still to be written
    /// as lines, they become ordinary entries of `added` (at their place) and the client's
    /// values under their names are dropped, so that the edit applies to them as to any
    /// other header.
    fn spell_out_identity(&mut self, name: &HeaderName) {
        if self
            .identity
            .as_ref()
            .is_some_and(|lines| lines.names_header(name.as_str().as_bytes()))
        {
            self.spell_out_all_identity();
        }
    }

    fn spell_out_all_identity(&mut self) {
        let Some(lines) = self.identity.take() else {
            return;
        };
        let values = lines.values();
        let at = lines.at;
        self.identity_values = OnceCell::new();
        for (name, _) in &values {
            if !self.dropped.contains(name.name()) {
                self.dropped.push(name.name().clone());
            }
        }
        self.added.splice(at..at, values);
    }

    /// The request as HTTP/1.1 bytes: request line, headers, the empty line. Fails only for
    /// a target holding a byte no request line may carry (NUL, CR, LF, space).
    pub fn to_wire(&self) -> Result<Vec<u8>> {
        let target = self
            .target
            .as_deref()
            .unwrap_or_else(|| self.client.raw_path());
        if target.iter().any(|b| matches!(b, 0 | b'\r' | b'\n' | b' ')) {
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                "the upstream request target holds a byte a request line cannot carry",
            );
        }
        let mut out = Vec::with_capacity(512);
        out.put_slice(self.client.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(target);
        out.put_slice(b" HTTP/1.1\r\n");
        let line = |out: &mut Vec<u8>, name: &[u8], value: &HeaderValue| {
            out.put_slice(name);
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        };
        if self.client.has_case() {
            for (name, value) in self.client.case_header_iter() {
                let name = name.as_slice();
                let dropped = name.eq_ignore_ascii_case(b"connection")
                    || self
                        .dropped
                        .iter()
                        .any(|d| d.as_str().as_bytes().eq_ignore_ascii_case(name))
                    || self
                        .identity
                        .as_ref()
                        .is_some_and(|lines| lines.names_header(name));
                if !dropped {
                    line(&mut out, name, value);
                }
            }
        } else {
            // A head without spellings (not one the direct path serves: HTTP/1 heads keep
            // theirs): the names in lower case.
            for (name, value) in self.client.headers.iter() {
                if self.forwards_client(name) {
                    line(&mut out, name.as_str().as_bytes(), value);
                }
            }
        }
        let identity_at = self.identity.as_ref().map(|lines| lines.at);
        for (i, (name, value)) in self.added.iter().enumerate() {
            if identity_at == Some(i) {
                self.write_identity(&mut out);
            }
            line(&mut out, name.wire(), value);
        }
        if identity_at.is_some_and(|at| at >= self.added.len()) {
            self.write_identity(&mut out);
        }
        out.put_slice(b"\r\n");
        Ok(out)
    }

    fn write_identity(&self, out: &mut Vec<u8>) {
        if let Some(lines) = &self.identity {
            lines.names.write_lines(lines.identity, lines.provider, out);
        }
    }
}

impl<'id> Outgoing<'id> for WireRequest<'id> {
    fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a HeaderValue> {
        let client = self
            .forwards_client(name)
            .then(|| self.client.headers.get_all(name).iter())
            .into_iter()
            .flatten();
        // The identity headers come before any entry of `added` under one of their names:
        // an edit of one of those names spells them out into `added` first.
        let identity = match &self.identity {
            Some(lines) if lines.names_header(name.as_str().as_bytes()) => self
                .identity_values
                .get_or_init(|| lines.values())
                .as_slice(),
            _ => &[],
        };
        let name = name.clone();
        client.chain(
            identity
                .iter()
                .chain(self.added.iter())
                .filter(move |(n, _)| *n.name() == name)
                .map(|(_, v)| v),
        )
    }

    fn remove(&mut self, name: &HeaderName) {
        self.spell_out_identity(name);
        // Only a name the client sent needs remembering (most removals are of headers the
        // gateway is about to set, which the client did not send).
        if self.client.headers.contains_key(name) && self.forwards_client(name) {
            self.dropped.push(name.clone());
        }
        if let Some(lines) = &mut self.identity {
            // The identity lines keep their place among what stays.
            let before = self.added[..lines.at]
                .iter()
                .filter(|(n, _)| n.name() == name)
                .count();
            lines.at -= before;
        }
        self.added.retain(|(n, _)| n.name() != name);
    }

    fn insert(&mut self, name: &WireName, value: HeaderValue) -> Result<()> {
        self.remove(name.name());
        self.added.push((name.clone(), value));
        Ok(())
    }

    fn append(&mut self, name: &WireName, value: HeaderValue) -> Result<()> {
        self.spell_out_identity(name.name());
        self.added.push((name.clone(), value));
        Ok(())
    }

    fn query(&self) -> Option<&str> {
        match &self.target {
            Some(target) => target
                .iter()
                .position(|b| *b == b'?')
                .and_then(|at| std::str::from_utf8(&target[at + 1..]).ok()),
            None => self.client.uri.query(),
        }
    }

    /// As [`RequestHeader::set_raw_path`] takes an origin-form target: a fragment is cut
    /// off, an empty target is `/`, and what a URI cannot hold is refused.
    fn set_target(&mut self, target: &[u8]) -> Result<()> {
        let target = match target.iter().position(|b| *b == b'#') {
            Some(fragment) => &target[..fragment],
            None => target,
        };
        let target = if target.is_empty() { b"/" } else { target };
        if !matches!(target.first(), Some(b'/' | b'?')) {
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                "a rewritten target that is not in origin form",
            );
        }
        http::uri::PathAndQuery::try_from(target)
            .explain_err(ErrorType::InvalidHTTPHeader, |_| "invalid rewritten target")?;
        self.target = Some(target.to_vec());
        Ok(())
    }

    fn set_identity(
        &mut self,
        names: &'id IdentityHeaders,
        identity: &'id Identity,
        provider: &'id str,
    ) {
        // As an insert of each: earlier values under those names go. The names are
        // compared only with what was added (the usual request: nothing yet) and, at
        // `to_wire`, with the client's headers that carry the prefix.
        self.spell_out_all_identity();
        if !self.added.is_empty() {
            self.added
                .retain(|(n, _)| !names.names_header(identity, provider, n.wire()));
        }
        // Client values of the same names were forwarded unless dropped; now they are not
        // (`forwards_client` and `to_wire` ask the lines).
        self.identity = Some(IdentityLines {
            names,
            identity,
            provider,
            at: self.added.len(),
        });
        self.identity_values = OnceCell::new();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::decision::client::TrustedProxies;
    use crate::identity::{Claim, Identity, IdentityParts};
    use crate::policy::net::IpNet;
    use crate::proxy::direct::upstream_request;
    use crate::proxy::forwarded::set_forwarded;
    use crate::proxy::headers::{IdentityHeaders, REQUEST_ID_HEADER};

    /// Request line and headers of an HTTP/1.1 head; headers grouped by name (lower case),
    /// each group the spellings and values in the order sent. The order between different
    /// names carries no meaning (RFC 9110 §5.3) and is not compared.
    fn parsed(wire: &[u8]) -> (String, BTreeMap<String, Vec<(String, String)>>) {
        let text = std::str::from_utf8(wire).unwrap();
        let head = text
            .strip_suffix("\r\n\r\n")
            .expect("a head ends with an empty line");
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap().to_string();
        let mut headers: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for line in lines {
            let (name, value) = line.split_once(": ").expect("name: value");
            headers
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push((name.to_string(), value.to_string()));
        }
        (request_line, headers)
    }

    fn pingora_wire(req: &RequestHeader) -> Vec<u8> {
        pingora::protocols::http::v1::client::http_req_header_to_wire(req)
            .unwrap()
            .to_vec()
    }

    fn client(method: &str, target: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, target, None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    const NAMES: [(&str, &str); 12] = [
        ("x-forwarded-for", "X-Forwarded-For"),
        ("cookie", "Cookie"),
        ("authorization", "Authorization"),
        ("x-auth-subject", "X-Auth-Subject"),
        ("x-auth-scopes", "X-Auth-Scopes"),
        ("x-auth-session-id", "X-Auth-Session-Id"),
        ("x-auth-claim-team", "X-Auth-Claim-Team"),
        ("x-request-id", "X-Request-Id"),
        ("connection", "Connection"),
        ("accept", "Accept"),
        ("host", "Host"),
        ("x-custom", "x-CUSTOM"),
    ];

    fn spelled(rng: &mut StdRng, lower: &str) -> String {
        lower
            .chars()
            .map(|c| {
                if rng.random_bool(0.5) {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    /// The class check: any sequence of edits, on any client head, reads and writes the
    /// same through both forms.
    #[test]
    fn both_forms_answer_every_edit_the_same() {
        let mut rng = StdRng::seed_from_u64(15);
        let names = IdentityHeaders::new("X-Auth-").unwrap();
        // Identity headers set on top of any other edit (and edited after): with and
        // without a session id, with a claim whose header the edits also touch.
        let identities: Vec<Identity> = (0..3)
            .map(|i| {
                IdentityParts {
                    subject: format!("user-{i}"),
                    session_id: (i != 1).then(|| format!("sess {i}")),
                    scopes: vec!["read".into(), format!("s{i}")],
                    organizations: vec!["acme".into()],
                    // Two claims that make one header: the last one is sent.
                    claims: if i == 2 {
                        vec![Claim::text("Team", "red"), Claim::text("team", "blue")]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                }
                .into()
            })
            .collect();
        for round in 0..2_000 {
            let mut sent = Vec::new();
            for _ in 0..rng.random_range(0..8) {
                let (lower, _) = NAMES[rng.random_range(0..NAMES.len())];
                let value = format!("v{}", rng.random_range(0..1000));
                sent.push((spelled(&mut rng, lower), value));
            }
            let target = if rng.random_bool(0.5) {
                "/a/b?x=1"
            } else {
                "/a%2Fb"
            };
            // HTTP/1 heads keep their spelling (the direct path serves nothing else).
            let mut client = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
            for (name, value) in &sent {
                client.append_header(name.clone(), value.as_str()).unwrap();
            }
            let mut map = upstream_request(&client).unwrap();
            let mut wire = WireRequest::new(&client);
            for step in 0..rng.random_range(0..12) {
                let (lower, spelling) = NAMES[rng.random_range(0..NAMES.len())];
                let name = WireName::new(spelling.to_string()).unwrap();
                assert_eq!(name.name().as_str(), lower);
                let value = HeaderValue::from(rng.random_range(0..1000u32));
                match rng.random_range(0..5) {
                    4 => {
                        let identity = &identities[rng.random_range(0..identities.len())];
                        map.set_identity(&names, identity, "idp");
                        wire.set_identity(&names, identity, "idp");
                    }
                    0 => {
                        map.insert(&name, value.clone()).unwrap();
                        wire.insert(&name, value).unwrap();
                    }
                    1 => {
                        Outgoing::remove(&mut map, name.name());
                        wire.remove(name.name());
                    }
                    2 => {
                        map.append(&name, value.clone()).unwrap();
                        wire.append(&name, value).unwrap();
                    }
                    _ => {
                        let target = format!("/r{step}?q={round}");
                        map.set_target(target.as_bytes()).unwrap();
                        wire.set_target(target.as_bytes()).unwrap();
                    }
                }
                for (lower, _) in NAMES {
                    let name = HeaderName::from_static(lower);
                    let a: Vec<_> = map.values(&name).collect();
                    let b: Vec<_> = wire.values(&name).collect();
                    assert_eq!(a, b, "round {round} step {step}: values of {lower}");
                    assert_eq!(map.contains(&name), wire.contains(&name));
                }
                assert_eq!(Outgoing::query(&map), wire.query(), "round {round}");
            }
            assert_eq!(
                parsed(&pingora_wire(&map)),
                parsed(&wire.to_wire().unwrap()),
                "round {round}: client headers {sent:?}"
            );
        }
    }

    /// The gateway's own edits, through both forms: identity headers (replacing a forged
    /// copy), a trusted proxy's forwarding chain, a stripped credential cookie and header,
    /// the request id, a rewritten path.
    #[test]
    fn both_forms_send_the_same_request() {
        let client = client(
            "GET",
            b"/api/v1/items?page=2",
            &[
                ("Host", "api.example"),
                ("authorization", "Bearer secret"),
                ("X-Forwarded-For", "203.0.113.7, 10.0.0.9"),
                ("Cookie", "a=1; session=secret; b=2"),
                ("x-auth-subject", "forged"),
                ("Connection", "keep-alive"),
                ("X-Forwarded-Proto", "https"),
                ("Forwarded", "for=1.2.3.4"),
            ],
        );
        let names = IdentityHeaders::new("X-Auth-").unwrap();
        let identity: Identity = IdentityParts {
            subject: "user-1".into(),
            session_id: Some("sess\r\n-1".into()),
            scopes: vec!["read".into(), "write all".into()],
            organizations: vec!["acme".into()],
            ..Default::default()
        }
        .into();
        fn edits<'id>(
            req: &mut impl Outgoing<'id>,
            names: &'id IdentityHeaders,
            identity: &'id Identity,
            trusted: &TrustedProxies,
        ) {
            req.set_target(b"/items?page=2").unwrap();
            req.remove(&http::header::AUTHORIZATION);
            req.set_identity(names, identity, "idp");
            let peer = "10.1.2.3".parse().ok();
            let client = "203.0.113.7".parse().ok();
            set_forwarded(req, peer, client, false, trusted).unwrap();
            REQUEST_ID_HEADER.insert(req, "req-1").unwrap();
        }
        let proxies = TrustedProxies(vec![IpNet::parse("10.0.0.0/8").unwrap()]);
        for trusted in [TrustedProxies::default(), proxies] {
            let mut map = upstream_request(&client).unwrap();
            let mut wire = WireRequest::new(&client);
            edits(&mut map, &names, &identity, &trusted);
            edits(&mut wire, &names, &identity, &trusted);
            let (line, headers) = parsed(&wire.to_wire().unwrap());
            assert_eq!((line.clone(), headers.clone()), parsed(&pingora_wire(&map)));
            assert_eq!(line, "GET /items?page=2 HTTP/1.1");
            assert!(!headers.contains_key("authorization") && !headers.contains_key("connection"));
            assert_eq!(
                headers["x-auth-subject"],
                [("X-Auth-Subject".to_string(), "user-1".to_string())]
            );
            assert_eq!(headers["x-auth-session-id"][0].1, "sess%0D%0A-1");
        }
    }

    #[test]
    fn a_target_no_request_line_can_carry_is_refused() {
        let client = client("GET", b"/a", &[("Host", "h")]);
        let mut wire = WireRequest::new(&client);
        assert!(wire.set_target(b"/a b").is_err());
        assert!(wire.set_target(b"http://other/").is_err());
        wire.set_target(b"/x#fragment").unwrap();
        assert!(wire.to_wire().unwrap().starts_with(b"GET /x HTTP/1.1\r\n"));
        wire.set_target(b"").unwrap();
        assert!(wire.to_wire().unwrap().starts_with(b"GET / HTTP/1.1\r\n"));
    }
}
