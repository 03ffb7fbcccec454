//! Header hygiene and identity headers.
//!
//! The upstream trusts identity headers only because the gateway guarantees that every
//! copy it receives was set by the gateway. So, on every route (`auth: none` included):
//! - every client header whose name starts with the identity prefix is removed, compared
//!   case-insensitively and with `_` read as `-` (CGI/WSGI backends merge the two);
//! - `Connection` keeps only `close`, `keep-alive` and (for WebSocket) `upgrade`, so a client
//!   cannot name the gateway's own headers as hop-by-hop and have a later proxy drop them;
//! - `Upgrade` other than `websocket` (e.g. `h2c`, which would let later streams skip auth)
//!   is removed, with `HTTP2-Settings`.
//!
//! On the response, the upstream's hop-by-hop headers are removed
//! ([`strip_response_hop_by_hop`]).
//!
//! Identity values come from the provider and are not trusted to be header-safe: bytes
//! outside printable ASCII, and `%`, are percent-encoded, so CR/LF can never split a header.

use http::header::{HeaderName, HeaderValue, CONNECTION, UPGRADE};
use pingora::http::{RequestHeader, ResponseHeader};

use crate::identity::{Identity, Pieces};
use crate::wire_name::WireName;

/// Default identity header prefix.
pub(crate) const DEFAULT_PREFIX: &str = "X-Auth-";

/// The request id header, kept from the client when well-formed, else generated.
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// Decision mode: the target (path and query) the decision judged, as the proxy would
/// have forwarded it, for a front proxy to forward in place of the client's.
pub(crate) const CANONICAL_URI: &str = "x-sessiongate-canonical-uri";

/// The request id header, kept from the client when well-formed, else generated.
pub(crate) const REQUEST_ID_HEADER: WireName = WireName::constant(REQUEST_ID, "X-Request-Id");

/// The identity header names derived from one prefix.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// The prefix as configured, for claim headers.
    prefix: String,
    /// Lower-case prefix with `_` read as `-`, for stripping.
    prefix_lower: String,
    pub(crate) subject: WireName,
    pub(crate) session_id: WireName,
    pub(crate) scopes: WireName,
    pub(crate) organizations: WireName,
    pub(crate) expires: WireName,
    pub(crate) provider: WireName,
    /// Set only when the identity was served stale (stale-if-error): its age in seconds.
    pub(crate) stale: WireName,
    /// The id of the connection's verified client certificate (mTLS), beside a token's
    /// identity.
    pub(crate) client_certificate: WireName,
}

impl IdentityHeaders {
    /// Header names for `prefix` (e.g. `X-Auth-`). Fails when the prefix makes an invalid
    /// header name.
    pub fn new(prefix: &str) -> Result<Self, String> {
        if prefix.is_empty() {
            return Err("the prefix cannot be empty".into());
        }
        let name = |suffix: &str| {
            WireName::new(format!("{prefix}{suffix}"))
                .ok_or_else(|| format!("{prefix:?} does not make valid header names"))
        };
        Ok(IdentityHeaders {
            prefix: prefix.to_string(),
            prefix_lower: normalize_name(prefix),
            subject: name("Subject")?,
            session_id: name("Session-Id")?,
            scopes: name("Scopes")?,
            organizations: name("Organizations")?,
            expires: name("Expires")?,
            provider: name("Provider")?,
            stale: name("Stale")?,
            client_certificate: name("Client-Certificate")?,
        })
    }

    /// The headers every identity may carry (claims aside), in a fixed order.
    pub(crate) fn fixed(&self) -> [&WireName; 8] {
        [
            &self.subject,
            &self.session_id,
            &self.scopes,
            &self.organizations,
            &self.expires,
            &self.provider,
            &self.stale,
            &self.client_certificate,
        ]
    }

    /// True when a client-sent header `name` must be stripped (no allocation: this runs
    /// for every header of every request).
    pub fn is_reserved(&self, name: &str) -> bool {
        self.has_prefix(name.as_bytes())
    }

    /// True when `name` (as sent: any case, `_` or `-`) starts with the prefix: a quick test
    /// before comparing with the identity header names.
    pub(crate) fn has_prefix(&self, name: &[u8]) -> bool {
        name.len() >= self.prefix_lower.len()
            && name
                .iter()
                .zip(self.prefix_lower.bytes())
                .all(|(have, want)| normalize_byte(*have) == want)
    }

    /// Calls `f` with each header describing `identity` resolved by `provider`, in a fixed
    /// order (claims last): its name and its value before encoding. Both ways of writing the
    /// identity headers — [`IdentityHeaders::each`] and [`IdentityHeaders::write_lines`] —
    /// go through here, so they name and order the same headers.
    pub(crate) fn visit<'s>(
        &'s self,
        identity: &'s Identity,
        provider: &'s str,
        mut f: impl for<'v> FnMut(IdentityName<'s>, IdentityValue<'v>),
    ) {
        use IdentityValue::{List, Number, Text};
        f(IdentityName::Fixed(&self.subject), Text(identity.subject()));
        if let Some(sid) = identity.session_id() {
            f(IdentityName::Fixed(&self.session_id), Text(sid));
        }
        f(
            IdentityName::Fixed(&self.scopes),
            List(identity.scopes(), b' '),
        );
        // None: omitted, like a missing session id or expiry (client copies are stripped,
        // so the upstream never sees a header the identity did not give).
        if identity.organizations().len() > 0 {
            f(
                IdentityName::Fixed(&self.organizations),
                List(identity.organizations(), b','),
            );
        }
        if let Some(exp) = identity.expires_unix() {
            f(IdentityName::Fixed(&self.expires), Number(exp));
        }
        f(IdentityName::Fixed(&self.provider), Text(provider));
        let claims = identity.claims();
        let n = claims.len();
        for (i, claim) in claims.enumerate() {
            // Only claims mapped with `forward` (the default) are sent. Their names are
            // checked at config time to make valid header names, distinct without regard
            // to case; one that is not (an identity built elsewhere) is skipped, and of two
            // that make the same header the last one is sent, as an insert of each would
            // leave it.
            let name = claim.name;
            let valid = claim.forward && !name.is_empty() && name.bytes().all(is_tchar);
            let replaced = n > 1
                && identity
                    .claims()
                    .skip(i + 1)
                    .any(|later| later.forward && later.name.eq_ignore_ascii_case(name));
            if valid && !replaced {
                f(IdentityName::Claim(name), Text(&claim.header_text()));
            }
        }
    }

    /// Calls `f` with each header describing `identity` resolved by `provider`, as a name
    /// and a header value, in [`IdentityHeaders::visit`]'s order.
    pub(crate) fn each(
        &self,
        identity: &Identity,
        provider: &str,
        mut f: impl FnMut(&WireName, HeaderValue),
    ) {
        self.visit(identity, provider, |name, value| match name {
            IdentityName::Fixed(name) => f(name, value.into_header_value()),
            IdentityName::Claim(claim) => {
                if let Some(name) = WireName::new(format!("{}Claim-{claim}", self.prefix)) {
                    f(&name, value.into_header_value());
                }
            }
        });
    }

    /// The identity headers as HTTP/1.1 header lines (`Name: value\r\n`), appended to
    /// `out`: what [`IdentityHeaders::each`] gives, with no header value built for each.
    pub(crate) fn write_lines(&self, identity: &Identity, provider: &str, out: &mut Vec<u8>) {
        self.visit(identity, provider, |name, value| {
            match name {
                IdentityName::Fixed(name) => out.extend_from_slice(name.wire()),
                IdentityName::Claim(claim) => {
                    out.extend_from_slice(self.prefix.as_bytes());
                    out.extend_from_slice(b"Claim-");
                    out.extend_from_slice(claim.as_bytes());
                }
            }
            out.extend_from_slice(b": ");
            value.push_to(out);
            out.extend_from_slice(b"\r\n");
        });
    }

    /// True when `name` (compared without regard to case) is one of the headers
    /// [`IdentityHeaders::visit`] gives for `identity`.
    pub(crate) fn names_header(&self, identity: &Identity, provider: &str, name: &[u8]) -> bool {
        if !self.has_prefix(name) {
            return false;
        }
        let mut found = false;
        self.visit(identity, provider, |n, _| {
            found = found
                || match n {
                    IdentityName::Fixed(w) => w.wire().eq_ignore_ascii_case(name),
                    IdentityName::Claim(claim) => {
                        let (p, c) = (self.prefix.len(), b"Claim-".len());
                        name.len() == p + c + claim.len()
                            && name[..p].eq_ignore_ascii_case(self.prefix.as_bytes())
                            && name[p..p + c].eq_ignore_ascii_case(b"Claim-")
                            && name[p + c..].eq_ignore_ascii_case(claim.as_bytes())
                    }
                };
        });
        found
    }
}

/// An identity header's name, as [`IdentityHeaders::visit`] gives it.
pub(crate) enum IdentityName<'a> {
    Fixed(&'a WireName),
    /// A configured claim: the header is the prefix, `Claim-`, then this name.
    Claim(&'a str),
}

/// An identity header's value before encoding.
pub(crate) enum IdentityValue<'a> {
    Text(&'a str),
    /// Items joined by the separator (each item encoded so that it cannot hold one).
    List(Pieces<'a>, u8),
    Number(u64),
}

impl IdentityValue<'_> {
    /// Appends the value, encoded, to `out`.
    fn push_to(self, out: &mut Vec<u8>) {
        match self {
            IdentityValue::Text(text) => push_encoded(out, text, b""),
            IdentityValue::List(items, separator) => push_list(out, items, separator),
            IdentityValue::Number(n) => {
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes())
            }
        }
    }

    fn into_header_value(self) -> HeaderValue {
        match self {
            IdentityValue::Number(n) => HeaderValue::from(n),
            IdentityValue::Text(text) => encode(text, b""),
            IdentityValue::List(items, separator) => encode_list(items, separator),
        }
    }
}

/// RFC 9110 `tchar`: what a header name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn normalize_byte(b: u8) -> u8 {
    match b {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

fn normalize_name(name: &str) -> String {
    name.bytes().map(|b| normalize_byte(b) as char).collect()
}

/// True when `b` can appear in a header value as is.
fn plain(b: u8, also: &[u8]) -> bool {
    (0x20..0x7f).contains(&b) && b != b'%' && !also.contains(&b)
}

/// Percent-encodes bytes outside printable ASCII, `%`, and any byte in `also`.
pub(crate) fn encode(value: &str, also: &[u8]) -> HeaderValue {
    let mut out = Vec::with_capacity(value.len());
    push_encoded(&mut out, value, also);
    HeaderValue::try_from(out).expect("only printable ASCII remains after encoding")
}

/// Appends `value` to `out`, percent-encoding what [`encode`] encodes. Runs of plain
/// bytes (every byte, for the hex ids and scope names providers send) are copied whole.
fn push_encoded(out: &mut Vec<u8>, value: &str, also: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = value.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !plain(b, also) {
            out.extend_from_slice(&bytes[run..i]);
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            run = i + 1;
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

fn encode_list<'a>(items: impl Iterator<Item = &'a str> + Clone, separator: u8) -> HeaderValue {
    let mut joined = Vec::with_capacity(items.clone().map(|i| i.len() + 1).sum());
    push_list(&mut joined, items, separator);
    HeaderValue::try_from(joined).expect("only printable ASCII remains after encoding")
}

/// Appends `items` joined by `separator` to `out`, each item encoded so that it holds no
/// separator (nor a space or a comma).
fn push_list<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a str>, separator: u8) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(separator);
        }
        push_encoded(out, item, &[separator, b' ', b',']);
    }
}

/// Cleans a client request in place before anything is forwarded (see the module docs).
pub fn sanitize_request(req: &mut RequestHeader, identity: &IdentityHeaders) {
    let reserved: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|name| identity.is_reserved(name.as_str()))
        .cloned()
        .collect();
    for name in reserved {
        req.remove_header(&name);
    }

    let websocket = req
        .headers
        .get_all(UPGRADE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !websocket && req.headers.contains_key(UPGRADE) {
        req.remove_header(&UPGRADE);
        req.remove_header("http2-settings");
    }

    if req.headers.contains_key(CONNECTION) {
        let mut kept: Vec<&'static str> = Vec::new();
        for token in req
            .headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let token = token.trim();
            let known = ["close", "keep-alive", "upgrade"]
                .into_iter()
                .find(|k| token.eq_ignore_ascii_case(k));
            if let Some(k) = known.filter(|k| websocket || *k != "upgrade") {
                kept.push(k);
            }
        }
        req.remove_header(&CONNECTION);
        if !kept.is_empty() {
            let value = match kept.join(", ").try_into() {
                Ok(v) => v,
                Err(_) => HeaderValue::from_static("close"),
            };
            let _ = req.insert_header(CONNECTION, value);
        }
    }
}

/// Removes an upstream response's hop-by-hop headers before it reaches the client
/// (RFC 9110 §7.6.1): the ones its `Connection` names, and `Keep-Alive` and
/// `Proxy-Connection`. Pingora writes the client's own `Connection`. Framing headers
/// (`Content-Length`, `Transfer-Encoding`) and the request id are never removed this way:
/// the body was read by them. A 101 (a WebSocket handshake) is left as it is.
pub(crate) fn strip_response_hop_by_hop(resp: &mut ResponseHeader) {
    if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    // The names `Connection` lists. `keep-alive` (nearly every upstream's) is removed
    // below anyway and `close` is an option, not a name to parse: neither is collected,
    // so the usual response allocates nothing here.
    let mut close_named = false;
    let named: Vec<HeaderName> = resp
        .headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            if t.eq_ignore_ascii_case("close") {
                close_named = true;
                return false;
            }
            !t.eq_ignore_ascii_case("keep-alive")
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|n| {
            !matches!(
                n.as_str(),
                "content-length" | "transfer-encoding" | "connection" | REQUEST_ID
            )
        })
        .collect();
    for name in named {
        resp.remove_header(&name);
    }
    if close_named && resp.headers.contains_key("close") {
        resp.remove_header("close");
    }
    if resp.headers.contains_key("keep-alive") {
        resp.remove_header("keep-alive");
    }
    if resp.headers.contains_key("proxy-connection") {
        resp.remove_header("proxy-connection");
    }
}

/// The request's id: the client's `X-Request-Id` when well formed, else a new one.
pub(crate) fn request_id(req: &pingora::http::RequestHeader) -> String {
    match req.headers.get(REQUEST_ID) {
        Some(v) if well_formed_request_id(v.as_bytes()) => {
            // Well-formed ids are ASCII.
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        }
        _ => new_request_id(),
    }
}

/// A client's `X-Request-Id` is kept when it is 1..=128 characters of `[A-Za-z0-9._:-]`.
pub(crate) fn well_formed_request_id(value: &[u8]) -> bool {
    (1..=128).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new random request id (32 hex characters).
pub(crate) fn new_request_id() -> String {
    // Into a buffer rather than `hex::encode`, whose per-character iterator showed in the
    // hit path's profile.
    let mut id = [0u8; 32];
    hex::encode_to_slice(rand::random::<[u8; 16]>(), &mut id).expect("32 bytes for 16");
    String::from_utf8(id.to_vec()).expect("hex is ASCII")
}

/// HTTP/2 clients may split cookies over several `cookie` fields (RFC 9113 §8.2.3, what
/// browsers do for compression); an HTTP/1.1 upstream expects one `Cookie` header, so
/// they are joined with `; ` — before the token is read, so every reading of the
/// request sees the same cookies.
pub(crate) fn join_cookie_fields(req: &mut pingora::http::RequestHeader) -> pingora::Result<()> {
    use pingora::prelude::{ErrorType, OrErr};
    let mut fields = req.headers.get_all(http::header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return Ok(());
    }
    let mut joined = Vec::new();
    for v in req.headers.get_all(http::header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    let value = HeaderValue::try_from(joined)
        .explain_err(ErrorType::InvalidHTTPHeader, |_| "invalid cookie value")?;
    req.insert_header(http::header::COOKIE, value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Claim, IdentityParts};
    use crate::proxy::outgoing::{Outgoing, WireRequest};

    fn names() -> IdentityHeaders {
        IdentityHeaders::new("X-Auth-").unwrap()
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn strips_every_spelling_of_identity_headers() {
        let mut req = request(&[
            ("X-Auth-Subject", "evil"),
            ("x-auth-subject", "evil2"),
            ("X-AUTH-SCOPES", "admin"),
            ("X_Auth_Subject", "evil3"),
            ("x-auth-anything-new", "y"),
            ("X-Authz", "kept"),
            ("Authorization", "Bearer t"),
        ]);
        sanitize_request(&mut req, &names());
        let mut left: Vec<&str> = req.headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "x-authz"]);
    }

    #[test]
    fn connection_and_upgrade_hygiene() {
        let mut req = request(&[
            ("Connection", "close, X-Auth-Subject"),
            ("Connection", "x-request-id"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
        ]);
        sanitize_request(&mut req, &names());
        assert_eq!(req.headers.get("connection").unwrap(), "close");
        assert!(req.headers.get("upgrade").is_none());
        assert!(req.headers.get("http2-settings").is_none());

        let mut ws = request(&[
            ("Connection", "Upgrade, X-Auth-Subject"),
            ("Upgrade", "websocket"),
        ]);
        sanitize_request(&mut ws, &names());
        assert_eq!(ws.headers.get("connection").unwrap(), "upgrade");
        assert_eq!(ws.headers.get("upgrade").unwrap(), "websocket");

        let mut only_evil = request(&[("Connection", "X-Auth-Subject")]);
        sanitize_request(&mut only_evil, &names());
        assert!(only_evil.headers.get("connection").is_none());
    }

    #[test]
    fn identity_values_cannot_inject_headers() {
        let id: Identity = IdentityParts {
            subject: "alice\r\nX-Auth-Scopes: admin".into(),
            session_id: Some("s%1".into()),
            scopes: vec!["read".into(), "wallet_spend:abc".into(), "odd scope".into()],
            organizations: vec!["o1".into(), "o,2".into(), "ö".into()],
            expires_at: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(42)),
            claims: vec![
                Claim::text("email", "a@b.c\r\nX: y"),
                Claim {
                    forward: false,
                    ..Claim::text("internal", "never sent")
                },
            ],
            ..Default::default()
        }
        .into();
        // Through the header map (the full proxy's form) …
        let names = names();
        let mut req = request(&[]);
        req.set_identity(&names, &id, "idp");
        let got: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let want = [
            ("x-auth-subject", "alice%0D%0AX-Auth-Scopes: admin"),
            ("x-auth-session-id", "s%251"),
            ("x-auth-scopes", "read wallet_spend:abc odd%20scope"),
            ("x-auth-organizations", "o1,o%2C2,%C3%B6"),
            ("x-auth-expires", "42"),
            ("x-auth-provider", "idp"),
            ("x-auth-claim-email", "a@b.c%0D%0AX: y"),
        ];
        let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(got, want);

        // … and as the lines the direct path writes: the same headers, one line each.
        let client = request(&[("Host", "h")]);
        let mut wire = WireRequest::new(&client);
        wire.set_identity(&names, &id, "idp");
        let bytes = wire.to_wire().unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let lines: Vec<&str> = text.trim_end().split("\r\n").skip(1).collect();
        let mut expected = vec!["host: h".to_string()];
        expected.extend(want.iter().map(|(name, value)| format!("{name}: {value}")));
        let lower: Vec<String> = lines
            .iter()
            .map(|l| {
                let (name, value) = l.split_once(": ").unwrap();
                format!("{}: {value}", name.to_ascii_lowercase())
            })
            .collect();
        assert_eq!(lower, expected);
    }

    #[test]
    fn request_ids() {
        assert!(well_formed_request_id(b"abc-123_x.y:z"));
        assert!(!well_formed_request_id(b""));
        assert!(!well_formed_request_id(b"a b"));
        assert!(!well_formed_request_id(b"a\r\nb"));
        assert!(!well_formed_request_id("x".repeat(129).as_bytes()));
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(well_formed_request_id(id.as_bytes()));
    }

    #[test]
    fn constant_wire_names_agree() {
        use crate::proxy::forwarded::WIRE_NAMES;
        for wire in WIRE_NAMES.iter().chain([&REQUEST_ID_HEADER]) {
            let spelled = std::str::from_utf8(wire.wire()).unwrap();
            assert_eq!(wire.name().as_str(), spelled.to_ascii_lowercase());
        }
        let names = names();
        assert_eq!(&names.subject.wire()[..], b"X-Auth-Subject");
        assert_eq!(names.subject.name().as_str(), "x-auth-subject");
    }

    #[test]
    fn bad_prefixes_are_refused() {
        assert!(IdentityHeaders::new("").is_err());
        assert!(IdentityHeaders::new("X Auth").is_err());
        assert!(IdentityHeaders::new("X-User-").is_ok());
    }

    /// The header names a response with `headers` keeps through
    /// [`strip_response_hop_by_hop`], sorted.
    fn kept_by_strip(headers: &[(&str, &str)]) -> Vec<String> {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            resp.append_header(k.to_string(), *v).unwrap();
        }
        strip_response_hop_by_hop(&mut resp);
        let mut left: Vec<String> = resp.headers.keys().map(|k| k.to_string()).collect();
        left.sort();
        left
    }

    #[test]
    fn response_hop_by_hop_headers_stop_at_the_gateway() {
        let left = kept_by_strip(&[
            ("connection", "X-Internal, close, content-length"),
            ("x-internal", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("content-length", "2"),
            ("x-app", "kept"),
        ]);
        assert_eq!(left, ["connection", "content-length", "x-app"]);

        // The usual upstream: `Connection` naming only `keep-alive` / `close`.
        let left = kept_by_strip(&[
            ("Connection", "Keep-Alive , close"),
            ("Keep-Alive", "timeout=5"),
            ("close", "odd but named"),
            ("content-length", "2"),
        ]);
        assert_eq!(left, ["connection", "content-length"]);

        let mut upgrade = ResponseHeader::build(101, None).unwrap();
        upgrade.append_header("connection", "upgrade").unwrap();
        upgrade.append_header("upgrade", "websocket").unwrap();
        strip_response_hop_by_hop(&mut upgrade);
        assert_eq!(upgrade.headers.len(), 2);
    }
}
