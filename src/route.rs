//! Routes: which rule applies to a request. Longest matching path prefix wins (on segment
//! boundaries: `/api` matches `/api` and `/api/x`, not `/apix`); a route with a `host`
//! beats one without at the same prefix length.
//!
//! The route is chosen on a normalized path, and that same path is what the upstream
//! receives, so `/public/../admin`, `/public/%2e%2e/admin` or `//admin` cannot reach an
//! upstream path that a different route guards. Paths that upstream servers are known to
//! read differently from us (`..;`, backslashes, encoded NULs) are refused outright.

use std::sync::Arc;

use crate::policy::RoutePolicy;
use crate::provider::Provider;

/// Why a request path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request path must start with /")]
    NotAbsolute,
    #[error("the request path has a malformed percent-escape")]
    BadEscape,
    #[error("the request path contains a segment servers read in different ways")]
    Ambiguous,
}

/// Normalizes a request path (no query): decodes percent-escaped unreserved characters,
/// upper-cases the other escapes, merges repeated slashes and removes `.` / `..` segments
/// (RFC 3986 §5.2.4, never climbing above the root).
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(raw)?;
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

fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
                let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadEscape)?;
                let v = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?;
                match v {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        out.push(v as char)
                    }
                    // Encoded NUL, control characters and backslashes: no good reading.
                    0..=0x1f | 0x7f | b'\\' => return Err(PathError::Ambiguous),
                    _ => {
                        out.push('%');
                        out.push_str(&hex.to_ascii_uppercase());
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Ambiguous),
            b => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// True when `prefix` matches `path` on a segment boundary.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len()
            || prefix.ends_with('/')
            || path.as_bytes()[prefix.len()] == b'/')
}

/// What a route requires of a request.
#[derive(Debug, Clone)]
pub enum RouteAuth {
    /// No token read; identity headers are still stripped.
    None,
    /// A valid token for the first of these providers that accepts its shape.
    Providers(Vec<Arc<ProviderEntry>>),
}

/// A provider as routes use it: wrapped (metrics, protection) and with its token format.
#[derive(Debug)]
pub struct ProviderEntry {
    /// The config name (metric labels, logs).
    pub name: Arc<str>,
    /// `name#fingerprint`: what token keys are derived from, so cached identities survive
    /// a reload exactly while the provider's definition is unchanged.
    pub key_id: Arc<str>,
    pub provider: Arc<dyn Provider>,
    pub format: crate::provider::format::TokenFormat,
}

/// Where a route sends allowed requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// The built-in echo upstream: answers with what a backend would receive.
    Echo,
    /// A real HTTP(S) server.
    Http(Arc<Upstream>),
}

/// A configured upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// `ip:port` to connect to once the gateway has started (`host:port` before the host
    /// name is resolved).
    pub address: String,
    pub tls: bool,
    /// Server name for TLS and the default `Host`.
    pub host: String,
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Label used in metrics and logs (the config `name`, or the prefix).
    pub name: Arc<str>,
    pub path_prefix: String,
    /// Lower-case host without port.
    pub host: Option<String>,
    pub auth: RouteAuth,
    pub upstream: UpstreamTarget,
    pub policy: RoutePolicy,
    /// Whether the client's `Authorization` header reaches the upstream.
    pub forward_authorization: bool,
    /// A signed identity assertion to set on the upstream request.
    pub assertion: Option<Arc<crate::assertion::AssertionSpec>>,
    /// Outage budget past freshness while the provider fails (zero: off).
    pub stale_if_error: std::time::Duration,
}

impl Upstream {
    /// This upstream with its host name resolved to one address, once, so that requests
    /// never wait on DNS.
    pub fn resolved(&self) -> Result<Upstream, String> {
        use std::net::ToSocketAddrs;
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{}`: {e}", self.address))?
            .next()
            .ok_or_else(|| format!("`{}` resolves to no address", self.address))?;
        Ok(Upstream {
            address: addr.to_string(),
            ..self.clone()
        })
    }
}

impl Route {
    /// True when requests on this route resolve a token (and so have an auth phase).
    pub fn auth_duration_applies(&self) -> bool {
        matches!(self.auth, RouteAuth::Providers(_))
    }
}

/// All routes, in matching order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Orders the routes for matching: longest prefix first, host-specific first on ties.
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| {
            b.path_prefix
                .len()
                .cmp(&a.path_prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
        });
        RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// The route for a normalized `path` on `host` (any case, port allowed).
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        let host = host.map(strip_port);
        self.routes.iter().find(|r| {
            prefix_matches(&r.path_prefix, path)
                && match (&r.host, host) {
                    (None, _) => true,
                    (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                    (Some(_), None) => false,
                }
        })
    }

    /// Routes in matching order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let table = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2e/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/a/./b/.", "/a/b/"),
            ("/../../etc", "/etc"),
            ("/..", "/"),
            ("/%61dmin", "/admin"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%20b", "/a%20b"),
            ("/a;v=1/b", "/a;v=1/b"),
        ];
        for (raw, want) in table {
            assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn refused_paths() {
        let table = [
            ("admin", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/public/..;/admin", PathError::Ambiguous),
            ("/public/.;x/admin", PathError::Ambiguous),
            ("/public\\..\\admin", PathError::Ambiguous),
            ("/a%5cb", PathError::Ambiguous),
            ("/a%00b", PathError::Ambiguous),
        ];
        for (raw, want) in table {
            assert_eq!(normalize_path(raw), Err(want), "{raw}");
        }
    }

    fn route(prefix: &str, host: Option<&str>) -> Route {
        Route {
            name: format!("{}{prefix}", host.unwrap_or("")).into(),
            path_prefix: prefix.into(),
            host: host.map(str::to_string),
            auth: RouteAuth::None,
            upstream: UpstreamTarget::Echo,
            policy: RoutePolicy::default(),
            forward_authorization: true,
            assertion: None,
            stale_if_error: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundaries_and_host() {
        let t = RouteTable::new(vec![
            route("/", None),
            route("/healthz", None),
            route("/api", None),
            route("/api", Some("api.example.com")),
            route("/api/v2/", None),
        ]);
        let find = |host: Option<&str>, path: &str| t.find(host, path).map(|r| r.name.to_string());
        assert_eq!(find(None, "/healthz").as_deref(), Some("/healthz"));
        assert_eq!(find(None, "/healthzfoo").as_deref(), Some("/"));
        assert_eq!(find(None, "/healthz/x").as_deref(), Some("/healthz"));
        assert_eq!(find(None, "/api/v2/x").as_deref(), Some("/api/v2/"));
        assert_eq!(find(None, "/api/v2").as_deref(), Some("/api"));
        assert_eq!(
            find(Some("API.example.com:8080"), "/api/x").as_deref(),
            Some("api.example.com/api")
        );
        assert_eq!(find(Some("other"), "/api/x").as_deref(), Some("/api"));
        assert_eq!(find(None, "/x").as_deref(), Some("/"));
        let no_root = RouteTable::new(vec![route("/api", None)]);
        assert!(no_root.find(None, "/x").is_none());
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("a.example:80"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
