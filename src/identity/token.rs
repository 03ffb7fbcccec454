//! Reading the bearer token from a request, and the keyed hash that stands for it
//! everywhere after (cache keys, log fields). The raw token is only ever held long enough
//! to hash it and, on a cache miss, to send it to its provider.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::identity::ProviderId;

/// Longest token accepted by default, in bytes (large JWTs stay well under this).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

/// Why no usable token was found. None of these carry the token text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token was sent")]
    Missing,
    #[error("the Authorization scheme is not Bearer")]
    NotBearer,
    #[error("the bearer token is empty")]
    Empty,
    #[error("the bearer token is too long")]
    TooLong,
    #[error("the bearer token contains characters a token cannot contain")]
    BadCharacters,
    /// RFC 6750 §3.1 `invalid_request`: more than one way of sending credentials.
    #[error("more than one Authorization header or token was sent")]
    Ambiguous,
}

impl TokenError {
    /// RFC 6750 error code for the `WWW-Authenticate` header.
    pub(crate) fn rfc6750_code(self) -> &'static str {
        match self {
            TokenError::Ambiguous => "invalid_request",
            _ => "invalid_token",
        }
    }
}

/// Extracts the token from the `Authorization` header values of one request.
///
/// `values` are all `Authorization` headers the client sent; `query` the raw query string
/// (a token sent in both the header and an `access_token` query parameter is ambiguous).
/// The scheme is matched case-insensitively; the token must be 1..=`max_len` visible
/// ASCII characters (RFC 6750 `b64token` and the opaque tokens real providers issue).
pub fn extract_bearer<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    query: Option<&str>,
    max_len: usize,
) -> Result<&'a str, TokenError> {
    let value = values.next().ok_or(TokenError::Missing)?;
    if values.next().is_some() || query.is_some_and(has_access_token_param) {
        return Err(TokenError::Ambiguous);
    }
    let value = trim_ows(value);
    if value.is_empty() {
        return Err(TokenError::Missing);
    }
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &value[value.len()..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(TokenError::NotBearer);
    }
    let token = trim_ows(rest);
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.len() > max_len {
        return Err(TokenError::TooLong);
    }
    if !token.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(TokenError::BadCharacters);
    }
    // All bytes are ASCII, so this cannot fail.
    std::str::from_utf8(token).map_err(|_| TokenError::BadCharacters)
}

/// Where a route reads its token (`token_sources:`), in the configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (and the `access_token` query rule).
    Authorization,
    /// A named cookie (a browser session).
    Cookie(String),
    /// A named request header holding the bare token (e.g. `X-Api-Key`); lower-case.
    Header(String),
    /// The verified client certificate of the TLS connection (its id); never read from
    /// a header. A route that lists it lists nothing else (checked in the config).
    ClientCertificate,
}

impl TokenSource {
    /// For logs and `explain`: `authorization`, `cookie:<name>`, `header:<name>`.
    pub(crate) fn describe(&self) -> String {
        match self {
            TokenSource::Authorization => "authorization".into(),
            TokenSource::Cookie(n) => format!("cookie:{n}"),
            TokenSource::Header(n) => format!("header:{n}"),
            TokenSource::ClientCertificate => "client_certificate".into(),
        }
    }
}

/// Reads the one credential a request carries from `sources`; returns it and the index
/// of its source.
///
/// - A source is *present* when its header or cookie is there at all (an `Authorization`
///   with another scheme included): exactly one credential is used. Present in several
///   sources with different values (or one source with several values) is
///   [`TokenError::Ambiguous`] (400); the same value in several (a browser app sending
///   its session cookie and the same token as a header) is that one token.
/// - Nothing present is [`TokenError::Missing`]. An `access_token` query parameter
///   beside any credential is ambiguous, as with `Authorization` alone.
/// - A cookie or header token follows the bearer rules: 1..=`max_len` visible ASCII
///   (a cookie value may be in double quotes, RFC 6265).
pub fn extract_token<'a>(
    sources: &[TokenSource],
    headers: &'a http::HeaderMap,
    query: Option<&str>,
    max_len: usize,
) -> Result<(&'a str, usize), TokenError> {
    if let [TokenSource::Authorization] = sources {
        let values = headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes());
        return extract_bearer(values, query, max_len).map(|t| (t, 0));
    }
    let mut found: Option<(Result<&'a str, TokenError>, usize)> = None;
    for (i, source) in sources.iter().enumerate() {
        let candidate = match source {
            TokenSource::Authorization => {
                let mut values = headers
                    .get_all(http::header::AUTHORIZATION)
                    .iter()
                    .peekable();
                if values.peek().is_none() {
                    continue;
                }
                extract_bearer(values.map(|v| v.as_bytes()), None, max_len)
            }
            TokenSource::Cookie(name) => {
                let mut value: Option<&'a [u8]> = None;
                for header in headers.get_all(http::header::COOKIE) {
                    for v in cookie_values(header.as_bytes(), name.as_bytes()) {
                        if value.is_some_and(|seen| seen != v) {
                            return Err(TokenError::Ambiguous);
                        }
                        value = Some(v);
                    }
                }
                let Some(v) = value else { continue };
                bare_token(v, max_len)
            }
            // Not in the headers: the decision reads it from the connection.
            TokenSource::ClientCertificate => continue,
            TokenSource::Header(name) => {
                let mut values = headers.get_all(name.as_str()).iter();
                let Some(v) = values.next() else { continue };
                if values.next().is_some() {
                    return Err(TokenError::Ambiguous);
                }
                bare_token(trim_ows(v.as_bytes()), max_len)
            }
        };
        if candidate == Err(TokenError::Missing) {
            continue; // an empty Authorization header carries nothing
        }
        match &found {
            None => found = Some((candidate, i)),
            // The same token twice is one credential; anything else is two.
            Some((Ok(t), _)) if candidate.as_ref().is_ok_and(|c| c == t) => {}
            Some(_) => return Err(TokenError::Ambiguous),
        }
    }
    let (token, i) = found.ok_or(TokenError::Missing)?;
    if query.is_some_and(has_access_token_param) {
        return Err(TokenError::Ambiguous);
    }
    token.map(|t| (t, i))
}

/// The values of cookie `name` in one `Cookie` header (`a=1; b=2`).
fn cookie_values<'h: 'n, 'n>(
    header: &'h [u8],
    name: &'n [u8],
) -> impl Iterator<Item = &'h [u8]> + 'n {
    header.split(|b| *b == b';').filter_map(move |pair| {
        let pair = trim_ows(pair);
        let eq = pair.iter().position(|b| *b == b'=')?;
        (trim_ows(&pair[..eq]) == name).then(|| {
            let v = trim_ows(&pair[eq + 1..]);
            match v {
                [b'"', inner @ .., b'"'] => inner,
                _ => v,
            }
        })
    })
}

/// A token sent bare (cookie or named header): the bearer rules without the scheme.
fn bare_token(v: &[u8], max_len: usize) -> Result<&str, TokenError> {
    if v.is_empty() {
        return Err(TokenError::Empty);
    }
    if v.len() > max_len {
        return Err(TokenError::TooLong);
    }
    if !v.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(TokenError::BadCharacters);
    }
    std::str::from_utf8(v).map_err(|_| TokenError::BadCharacters)
}

/// `Cookie` header values without cookie `name` (a credential the upstream does not get);
/// `None` for a header that is left empty.
pub fn without_cookie(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len());
    for pair in header.split(|b| *b == b';') {
        let trimmed = trim_ows(pair);
        let is_it = trimmed
            .iter()
            .position(|b| *b == b'=')
            .is_some_and(|eq| trim_ows(&trimmed[..eq]) == name.as_bytes());
        if is_it || trimmed.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(trimmed);
    }
    (!out.is_empty()).then_some(out)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn has_access_token_param(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("access_token"))
}

/// A keyed SHA-256 (HMAC) of (provider name, token), truncated to 128 bits: the only form
/// in which a token is kept. The key is random per process (or, with `cluster:`, derived
/// from the replicas' shared secret), so the digests mean nothing outside the process (or
/// the cluster). 128 bits leave no practical chance of two tokens sharing a key (a collision
/// among a billion cached tokens is about 1 in 10^21) and an attacker cannot search for one
/// without the key; the truncation halves what every cache entry and purge-index slot
/// stores.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 16]);

impl TokenKey {
    /// The first 12 hex characters: enough to tell tokens apart in logs, useless to an attacker.
    pub(crate) fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }

    /// [`Self::short`] written into `out` (no allocation).
    pub(crate) fn short_into<'a>(&self, out: &'a mut [u8; 12]) -> &'a str {
        hex::encode_to_slice(&self.0[..6], out).expect("12 hex characters for 6 bytes");
        std::str::from_utf8(out).expect("hex is ASCII")
    }

    /// All 32 hex characters: what stands in for a token an identity value repeats, and
    /// what a purge by token carries between replicas.
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key written as [`TokenKey::hex`] writes it.
    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        let mut key = [0u8; 16];
        hex::decode_to_slice(text, &mut key).ok()?;
        Some(TokenKey(key))
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({})", self.short())
    }
}

/// Derives [`TokenKey`]s with one process-wide secret.
#[derive(Clone)]
pub struct TokenHasher {
    mac: Hmac<Sha256>,
}

impl TokenHasher {
    /// A hasher with a fresh random key.
    pub(crate) fn random() -> Self {
        let key: [u8; 32] = rand::random();
        Self::with_key(&key)
    }

    /// A hasher with a given key (benchmarks and tests).
    pub fn with_key(key: &[u8; 32]) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
        TokenHasher { mac }
    }

    /// The key for `token` as resolved by `provider` (name and definition fingerprint).
    pub fn key(&self, provider: &ProviderId, token: &str) -> TokenKey {
        let mut mac = self.mac.clone();
        let name = provider.name();
        mac.update(&(name.len() as u64).to_be_bytes());
        mac.update(name.as_bytes());
        mac.update(&provider.fingerprint().to_be_bytes());
        mac.update(token.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        TokenKey(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(values: &[&str], query: Option<&str>) -> Result<String, TokenError> {
        extract_bearer(values.iter().map(|v| v.as_bytes()), query, 64).map(str::to_string)
    }

    #[test]
    fn accepts_bearer_forms() {
        let ok = [
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER abc", "abc"),
            ("Bearer  abc ", "abc"),
            ("Bearer eyJ.a-b_c~d+e/f==", "eyJ.a-b_c~d+e/f=="),
            ("Bearer v2x:wallet", "v2x:wallet"),
        ];
        for (header, token) in ok {
            assert_eq!(extract(&[header], None).as_deref(), Ok(token), "{header}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        let long = format!("Bearer {}", "a".repeat(65));
        let table: [(&[&str], Option<&str>, TokenError); 10] = [
            (&[], None, TokenError::Missing),
            (&[""], None, TokenError::Missing),
            (&["Basic dXNlcjpwYXNz"], None, TokenError::NotBearer),
            (&["Bearer"], None, TokenError::Empty),
            (&["Bearer   "], None, TokenError::Empty),
            (&["Bearertoken"], None, TokenError::NotBearer),
            (&[long.as_str()], None, TokenError::TooLong),
            (&["Bearer a b"], None, TokenError::BadCharacters),
            (&["Bearer a", "Bearer b"], None, TokenError::Ambiguous),
            (
                &["Bearer a"],
                Some("x=1&access_token=b"),
                TokenError::Ambiguous,
            ),
        ];
        for (values, query, want) in table {
            assert_eq!(extract(values, query), Err(want), "{values:?} {query:?}");
        }
        let nonascii = extract_bearer([b"Bearer t\xc3\xa9".as_slice()].into_iter(), None, 64);
        assert_eq!(nonascii, Err(TokenError::BadCharacters));
        let ctl = extract_bearer([b"Bearer t\x01x".as_slice()].into_iter(), None, 64);
        assert_eq!(ctl, Err(TokenError::BadCharacters));
    }

    #[test]
    fn keys_depend_on_provider_token_and_process_key() {
        let h = TokenHasher::with_key(&[7; 32]);
        let id = |name: &str| ProviderId::new(name, 1);
        assert_eq!(h.key(&id("a"), "t"), h.key(&id("a"), "t"));
        assert_ne!(h.key(&id("a"), "t"), h.key(&id("b"), "t"));
        assert_ne!(h.key(&id("a"), "t"), h.key(&id("a"), "u"));
        // A changed definition (another fingerprint) starts from an empty cache.
        assert_ne!(h.key(&id("a"), "t"), h.key(&ProviderId::new("a", 2), "t"));
        // Length prefix: ("ab", "c") and ("a", "bc") must differ.
        assert_ne!(h.key(&id("ab"), "c"), h.key(&id("a"), "bc"));
        assert_ne!(
            h.key(&id("a"), "t"),
            TokenHasher::with_key(&[8; 32]).key(&id("a"), "t")
        );
        let k = h.key(&id("a"), "secret-token");
        assert_eq!(k.short().len(), 12);
        assert!(!format!("{k:?}").contains("secret"));
    }

    fn sources() -> Vec<TokenSource> {
        vec![
            TokenSource::Authorization,
            TokenSource::Cookie("sid".into()),
            TokenSource::Header("x-api-key".into()),
        ]
    }

    fn from(headers: &[(&str, &str)], query: Option<&str>) -> Result<(String, usize), TokenError> {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        extract_token(&sources(), &map, query, 64).map(|(t, i)| (t.to_string(), i))
    }

    #[test]
    fn one_credential_from_any_configured_source() {
        let ok = |t: &str, i| Ok((t.to_string(), i));
        assert_eq!(from(&[("authorization", "Bearer a1")], None), ok("a1", 0));
        assert_eq!(
            from(&[("cookie", "theme=dark; sid=c1; x=y")], None),
            ok("c1", 1)
        );
        assert_eq!(from(&[("cookie", "sid=\"c1\"")], None), ok("c1", 1));
        assert_eq!(
            from(&[("cookie", "a=b"), ("cookie", "sid=c1")], None),
            ok("c1", 1)
        );
        assert_eq!(from(&[("x-api-key", " k1 ")], None), ok("k1", 2));
        // The same token twice is one credential.
        assert_eq!(
            from(&[("cookie", "sid=t"), ("x-api-key", "t")], None),
            ok("t", 1)
        );
        // Not the configured cookie, a cookie whose name only ends with it, an empty
        // Authorization: nothing.
        for h in [
            ("cookie", "other=c1"),
            ("cookie", "xsid=c1"),
            ("authorization", ""),
        ] {
            assert_eq!(from(&[h], None), Err(TokenError::Missing), "{h:?}");
        }
    }

    #[test]
    fn two_credentials_or_bad_ones_are_refused() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, TokenError);
        let table: [Case; 8] = [
            (
                &[("authorization", "Bearer a"), ("cookie", "sid=b")],
                None,
                TokenError::Ambiguous,
            ),
            (&[("cookie", "sid=a; sid=b")], None, TokenError::Ambiguous),
            (
                &[("x-api-key", "a"), ("x-api-key", "b")],
                None,
                TokenError::Ambiguous,
            ),
            (
                &[("authorization", "Basic x"), ("x-api-key", "b")],
                None,
                TokenError::Ambiguous,
            ),
            (
                &[("cookie", "sid=a")],
                Some("access_token=b"),
                TokenError::Ambiguous,
            ),
            (&[("cookie", "sid=")], None, TokenError::Empty),
            (&[("x-api-key", "a b")], None, TokenError::BadCharacters),
            (&[("authorization", "Basic x")], None, TokenError::NotBearer),
        ];
        for (headers, query, want) in table {
            assert_eq!(from(headers, query), Err(want), "{headers:?} {query:?}");
        }
        let long = "k".repeat(65);
        assert_eq!(
            from(&[("x-api-key", &long)], None),
            Err(TokenError::TooLong)
        );
    }

    #[test]
    fn the_credential_cookie_is_removed_and_the_rest_kept() {
        assert_eq!(
            without_cookie(b"a=1; sid=secret;b=2", "sid").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(without_cookie(b"sid=secret", "sid"), None);
        assert_eq!(
            without_cookie(b"xsid=1; sid=2", "sid").as_deref(),
            Some(&b"xsid=1"[..])
        );
    }
}
