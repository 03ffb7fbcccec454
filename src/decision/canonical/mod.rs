//! The canonical request: the one reading of method, host, path and headers that the
//! gateway authorizes *and* forwards, so that the backend runs the request that was
//! checked. What cannot be read one way only is refused with 400 before any route or
//! token is looked at (counted by reason in `sessiongate_requests_refused_total`).
//!
//! | part | canonical form | refused (400, `error`) |
//! |---|---|---|
//! | method | as sent, upper-case | any lower-case letter (`post`, `Get`): `invalid_method` |
//! | host | lower-case, no trailing dot, numeric port ≤ 65535 kept | missing on HTTP/1.1, repeated, empty, bad characters or port: `invalid_host` |
//! | path | see [`normalize_path`] | encoded `/` `\`, double encoding, bad UTF-8, `..;`: `invalid_path` |
//! | path params | `;` kept | a `;param` that would move the route boundary: `invalid_path` |
//! | headers | override headers removed, gateway-owned `_` spellings removed | `_` spellings of framing / hop-by-hop headers, `Content-Length` lists: `invalid_header` |
//!
//! The path forwarded upstream is the normalized path; the `Host` forwarded is the
//! canonical host. See docs/configuration.md, "Canonical requests".

use http::{HeaderMap, HeaderName, Method, Version};

/// Why a request cannot be read one way only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the method must be written in upper case (e.g. POST)")]
    Method,
    #[error("an HTTP/1.1 request needs exactly one Host header")]
    MissingHost,
    #[error("the request has more than one Host header")]
    DuplicateHost,
    #[error("the Host header is not a valid host name, address or port")]
    BadHost,
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("the header {0} is ambiguous: a server may read it as a framing or connection header")]
    UnderscoreHeader(String),
    #[error("Content-Length must be one number")]
    ContentLengthList,
    /// Decision mode: the front proxy's description of the request it asks about is
    /// missing, ambiguous or unreadable.
    #[error("{0}")]
    OriginalRequest(String),
}

impl Rejection {
    /// The `error` code of the 400 response.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Rejection::Method => "invalid_method",
            Rejection::MissingHost | Rejection::DuplicateHost | Rejection::BadHost => {
                "invalid_host"
            }
            Rejection::Path(_) => "invalid_path",
            Rejection::UnderscoreHeader(_) | Rejection::ContentLengthList => "invalid_header",
            Rejection::OriginalRequest(_) => "invalid_original_request",
        }
    }

    /// The metric label: one per kind of ambiguity.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Rejection::Method => "method_case",
            Rejection::MissingHost => "missing_host",
            Rejection::DuplicateHost => "duplicate_host",
            Rejection::BadHost => "bad_host",
            Rejection::Path(p) => p.reason(),
            Rejection::UnderscoreHeader(_) => "underscore_header",
            Rejection::ContentLengthList => "content_length_list",
            Rejection::OriginalRequest(_) => "original_request",
        }
    }

    /// Every metric label, so each series exists from the start.
    pub(crate) const REASONS: &'static [&'static str] = &[
        "method_case",
        "missing_host",
        "duplicate_host",
        "bad_host",
        "not_absolute",
        "bad_escape",
        "encoded_slash",
        "double_encoding",
        "bad_utf8",
        "ambiguous_segment",
        "path_parameter",
        "raw_byte",
        "underscore_header",
        "content_length_list",
        "original_request",
    ];
}

/// Why a request path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request path must start with /")]
    NotAbsolute,
    #[error("the request path has a malformed percent-escape")]
    BadEscape,
    #[error(
        "the request path has an encoded / or \\ (%2F, %5C), which servers read in different ways"
    )]
    EncodedSlash,
    #[error(
        "the request path has a double-encoded character (%25 followed by an escape of . / or \\)"
    )]
    DoubleEncoding,
    #[error("the request path does not decode to UTF-8")]
    BadUtf8,
    #[error("the request path contains a segment servers read in different ways")]
    Ambiguous,
    #[error("a ;parameter in the request path would change which route applies")]
    Parameter,
    #[error(
        "the request path has a raw byte outside visible ASCII, or a raw #: percent-encode it"
    )]
    RawByte,
}

impl PathError {
    /// The metric label.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "not_absolute",
            PathError::BadEscape => "bad_escape",
            PathError::EncodedSlash => "encoded_slash",
            PathError::DoubleEncoding => "double_encoding",
            PathError::BadUtf8 => "bad_utf8",
            PathError::Ambiguous => "ambiguous_segment",
            PathError::Parameter => "path_parameter",
            PathError::RawByte => "raw_byte",
        }
    }
}

// === Method ===

/// A method is canonical when it has no lower-case letter. HTTP methods are case-sensitive
/// (RFC 9110 §9.1), but many frameworks upper-case them before dispatch, so `post` would
/// run a POST handler without `method_scopes` for POST applying.
pub(crate) fn check_method(method: &Method) -> Result<(), Rejection> {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Rejection::Method);
    }
    Ok(())
}

// === Host ===

/// A host in canonical form: lower-case name (or `[v6]` / v4 literal) without a trailing
/// dot, and the port when one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalHost {
    /// Lower-case, no trailing dot, no port; IPv6 literals keep their brackets.
    pub(crate) name: String,
    pub(crate) port: Option<u16>,
}

impl CanonicalHost {
    /// The `Host` header value: `name` or `name:port`.
    pub fn header_value(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.clone(),
        }
    }

    /// True when `raw` is exactly [`Self::header_value`] (checked without building it:
    /// this runs for every request, and the client's `Host` is nearly always canonical).
    pub(crate) fn is_header_value(&self, raw: &[u8]) -> bool {
        let Some(rest) = raw.strip_prefix(self.name.as_bytes()) else {
            return false;
        };
        match (self.port, rest.split_first()) {
            (None, None) => true,
            (Some(port), Some((b':', digits))) => {
                digits == itoa::Buffer::new().format(port).as_bytes()
            }
            _ => false,
        }
    }
}

/// Parses a `Host` value into its canonical form (see the module docs).
pub fn canonical_host(raw: &[u8]) -> Result<CanonicalHost, Rejection> {
    let text = std::str::from_utf8(raw).map_err(|_| Rejection::BadHost)?;
    let (name, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(Rejection::BadHost)?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| Rejection::BadHost)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(Rejection::BadHost)?),
        };
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match text.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (text, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid = !name.is_empty()
            && name.len() <= 253
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err(Rejection::BadHost);
        }
        (name.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Rejection::BadHost);
            }
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(Rejection::BadHost),
            }
        }
    };
    Ok(CanonicalHost { name, port })
}

/// How many `Host` headers a request may have: exactly one on HTTP/1.1 (RFC 9112 §3.2),
/// at most one before it. (Its value is read by [`canonical_host`], in the decision.)
pub(crate) fn check_host_count(headers: &HeaderMap, version: Version) -> Result<(), Rejection> {
    let mut values = headers.get_all(http::header::HOST).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Rejection::DuplicateHost);
    }
    match first {
        None if version >= Version::HTTP_11 => Err(Rejection::MissingHost),
        _ => Ok(()),
    }
}

// === Path ===

/// The path a request is routed on and the path forwarded upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// What the upstream receives (and what is logged).
    pub forward: String,
    /// What routes are matched against when it differs from `forward` (encoded slashes
    /// decoded); see [`CanonicalPath::routing`].
    decoded_slashes: Option<String>,
    /// The path had `%2F` / `%5C`; only routes with `allow_encoded_slashes` take it.
    pub encoded_slash: bool,
}

impl CanonicalPath {
    /// What routes are matched against: `forward` with encoded slashes decoded (differs
    /// only when the path has them, and only routes that allow them take it).
    pub fn routing(&self) -> &str {
        self.decoded_slashes.as_deref().unwrap_or(&self.forward)
    }
}

/// Normalizes a request path (no query): decodes percent-escaped unreserved characters,
/// upper-cases the other escapes, merges repeated slashes and removes `.` / `..` segments
/// (RFC 3986 §5.2.4, never climbing above the root). Refused: escapes that do not decode,
/// NUL and control characters, backslashes, `%25` followed by an escape of `.`, `/` or `\`
/// (decoded twice by some servers), byte sequences that are not UTF-8 (overlong `%C0%AE`),
/// and `.;x` / `..;x` segments (Tomcat reads `..;` as `..`).
///
/// Encoded slashes (`%2F`, `%5C`) are reported in [`CanonicalPath::encoded_slash`]; the
/// routing form decodes them, and a dot segment they would form is refused.
pub fn normalize_path(raw: &str) -> Result<CanonicalPath, PathError> {
    if is_canonical(raw) {
        // Nearly every request: the path is its own normal form (one allocation, no
        // decoding pass).
        return Ok(CanonicalPath {
            forward: raw.to_owned(),
            decoded_slashes: None,
            encoded_slash: false,
        });
    }
    normalize_path_in_full(raw)
}

/// True when [`normalize_path_in_full`] would give `raw` back unchanged, by a test that
/// allocates nothing: absolute, visible ASCII only (no `%`, `\\` or `#`: nothing to
/// decode or refuse), no empty segment after the first (`//`), and no segment starting
/// with `.` (which covers `.`, `..` and their `;` forms; such paths take the full way).
fn is_canonical(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes
            .iter()
            .all(|b| (0x21..0x7f).contains(b) && !matches!(b, b'%' | b'\\' | b'#'))
        && !bytes
            .windows(2)
            .any(|w| w[0] == b'/' && matches!(w[1], b'/' | b'.'))
}

fn normalize_path_in_full(raw: &str) -> Result<CanonicalPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
    let forward = remove_dot_segments(&decoded)?;
    let encoded_slash = forward.contains("%2F") || forward.contains("%5C");
    let decoded_slashes = if encoded_slash {
        let opened = forward.replace("%2F", "/").replace("%5C", "/");
        // A dot segment made of encoded slashes (`a%2F..%2Fadmin`) survives the first
        // pass: servers that decode slashes would climb with it.
        if opened.split('/').any(|s| s == "." || s == "..") {
            return Err(PathError::Ambiguous);
        }
        Some(remove_dot_segments(&opened)?)
    } else {
        None
    };
    Ok(CanonicalPath {
        forward,
        decoded_slashes,
        encoded_slash,
    })
}

fn remove_dot_segments(decoded: &str) -> Result<String, PathError> {
    let mut out: Vec<&str> = Vec::new();
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/') {
        let base = segment.split(';').next().unwrap_or(segment);
        if (base == "." || base == "..") && segment != base {
            return Err(PathError::Ambiguous); // `..;/` (Tomcat reads it as `..`)
        }
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || (trailing_slash && !out.is_empty()) {
        path.push('/');
    }
    Ok(path)
}

/// The byte a `%XX` escape's two hex digits stand for.
pub(crate) fn hex_value(pair: &[u8]) -> Option<u8> {
    let hex = std::str::from_utf8(pair).ok()?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // Every byte the path stands for, to check that it is UTF-8.
    let mut plain: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let v = bytes
                    .get(i + 1..i + 3)
                    .and_then(hex_value)
                    .ok_or(PathError::BadEscape)?;
                match v {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        out.push(v as char)
                    }
                    // Encoded NUL and control characters: no good reading.
                    0..=0x1f | 0x7f => return Err(PathError::Ambiguous),
                    b'%' => out.push_str("%25"),
                    b'/' => out.push_str("%2F"),
                    b'\\' => out.push_str("%5C"),
                    _ => {
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(v >> 4)]));
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(v & 0xf)]));
                    }
                }
                plain.push(v);
                i += 3;
            }
            b'\\' => return Err(PathError::Ambiguous),
            // Raw bytes outside visible ASCII (RFC 3986 allows none: servers decode them as
            // Latin-1, UTF-8 or not at all) and a raw `#` (a fragment never reaches a server).
            b if !(0x21..0x7f).contains(&b) || b == b'#' => return Err(PathError::RawByte),
            b => {
                out.push(b as char);
                plain.push(b);
                i += 1;
            }
        }
    }
    if std::str::from_utf8(&plain).is_err() {
        return Err(PathError::BadUtf8);
    }
    // `%252F` is `%2F` to a server that decodes twice. Checked on the decoded form, so
    // that `%25%32F` (whose `%32` decodes to `2`) is caught as well.
    let doubled = out.match_indices("%25").any(|(at, _)| {
        matches!(
            out.as_bytes().get(at + 3..at + 5).and_then(hex_value),
            Some(b'.' | b'/' | b'\\' | b'%')
        )
    });
    if doubled {
        return Err(PathError::DoubleEncoding);
    }
    Ok(out)
}

/// `path` with every `;parameter` removed from its segments (what Tomcat and Spring route
/// on), or `None` when it has none.
pub(crate) fn without_parameters(path: &str) -> Option<String> {
    if !path.contains(';') {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(segment));
    }
    Some(out)
}

// === Headers ===

/// Headers that ask a backend (or a framework middleware) to route or dispatch the request
/// differently from its request line. Removed unless listed in
/// `request_hygiene.keep_override_headers`.
pub(crate) const OVERRIDE_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-original-uri",
    "x-original-method",
];

/// Headers whose `_` spelling a CGI/WSGI-style backend would read as framing or connection
/// control: such a request is refused.
const FRAMING_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// Headers the gateway itself sets or reads: an `_` spelling is removed so that a backend
/// that merges `_` and `-` never sees a client's copy.
const GATEWAY_HEADERS: &[&str] = &[
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-request-id",
    "cookie",
];

/// What [`unwanted_headers`] keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderHygiene {
    /// Override headers the operator's backends need (lower-case names).
    pub(crate) keep_override: Vec<HeaderName>,
}

/// Checks request headers: refuses `Content-Length` lists and `_` spellings of framing
/// headers; returns the headers to remove: override headers (unless kept) and `_`
/// spellings of headers the gateway owns.
pub(crate) fn unwanted_headers(
    headers: &HeaderMap,
    hygiene: &HeaderHygiene,
) -> Result<Vec<HeaderName>, Rejection> {
    let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        let single = lengths.next().is_none()
            && !first.as_bytes().is_empty()
            && first.as_bytes().iter().all(u8::is_ascii_digit);
        if !single {
            return Err(Rejection::ContentLengthList);
        }
    }
    let mut remove: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let n = name.as_str();
        if n.contains('_') {
            let dashed = n.replace('_', "-");
            if FRAMING_HEADERS.contains(&dashed.as_str()) {
                return Err(Rejection::UnderscoreHeader(n.to_string()));
            }
            if GATEWAY_HEADERS.contains(&dashed.as_str())
                || OVERRIDE_HEADERS.contains(&dashed.as_str())
            {
                remove.push(name.clone());
            }
        } else if OVERRIDE_HEADERS.contains(&n) && !hygiene.keep_override.contains(name) {
            remove.push(name.clone());
        }
    }
    Ok(remove)
}

#[cfg(test)]
mod tests;
