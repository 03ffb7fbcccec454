//! Routes: which rule applies to a request. Longest matching path prefix wins (on segment
//! boundaries: `/api` matches `/api` and `/api/x`, not `/apix`); a route with a `host`
//! beats one without at the same prefix length.
//!
//! The route is chosen on the canonical path ([`crate::canonical`]), and that same path is
//! what the upstream receives, so `/public/../admin`, `/public/%2e%2e/admin` or `//admin`
//! cannot reach an upstream path that a different route guards.

use std::sync::Arc;

use crate::policy::RoutePolicy;
use crate::provider::Provider;

/// True when `prefix` matches `path` on a segment boundary (ASCII case ignored when
/// `fold_case`).
pub fn prefix_matches(prefix: &str, path: &str, fold_case: bool) -> bool {
    let head = path.as_bytes().get(..prefix.len());
    let starts = match head {
        Some(h) if fold_case => h.eq_ignore_ascii_case(prefix.as_bytes()),
        Some(h) => h == prefix.as_bytes(),
        None => false,
    };
    starts
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
    /// Paths with encoded slashes (`%2F`, `%5C`) are accepted and forwarded as sent; the
    /// route is still chosen on the decoded form.
    pub allow_encoded_slashes: bool,
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
    /// Path prefixes match ignoring ASCII case (for case-insensitive backends).
    fold_case: bool,
}

impl RouteTable {
    /// Orders the routes for matching: longest prefix first, host-specific first on ties.
    pub fn new(mut routes: Vec<Route>, fold_case: bool) -> Self {
        routes.sort_by(|a, b| {
            b.path_prefix
                .len()
                .cmp(&a.path_prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
        });
        RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
            fold_case,
        }
    }

    /// The route for a canonical `path` on a canonical host name (no port: see
    /// [`crate::canonical::canonical_host`]).
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| {
            prefix_matches(&r.path_prefix, path, self.fold_case)
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

#[cfg(test)]
mod tests {
    use super::*;

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
            allow_encoded_slashes: false,
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundaries_and_host() {
        let t = RouteTable::new(
            vec![
                route("/", None),
                route("/healthz", None),
                route("/api", None),
                route("/api", Some("api.example.com")),
                route("/api/v2/", None),
            ],
            false,
        );
        let find = |host: Option<&str>, path: &str| t.find(host, path).map(|r| r.name.to_string());
        assert_eq!(find(None, "/healthz").as_deref(), Some("/healthz"));
        assert_eq!(find(None, "/healthzfoo").as_deref(), Some("/"));
        assert_eq!(find(None, "/healthz/x").as_deref(), Some("/healthz"));
        assert_eq!(find(None, "/api/v2/x").as_deref(), Some("/api/v2/"));
        assert_eq!(find(None, "/api/v2").as_deref(), Some("/api"));
        assert_eq!(
            find(Some("api.example.com"), "/api/x").as_deref(),
            Some("api.example.com/api")
        );
        assert_eq!(find(None, "/API/x").as_deref(), Some("/"));
        assert_eq!(find(Some("other"), "/api/x").as_deref(), Some("/api"));
        assert_eq!(find(None, "/x").as_deref(), Some("/"));
        let no_root = RouteTable::new(vec![route("/api", None)], false);
        assert!(no_root.find(None, "/x").is_none());
    }

    #[test]
    fn case_folding_is_a_table_wide_switch() {
        let t = RouteTable::new(vec![route("/", None), route("/Admin", None)], true);
        let find = |path: &str| t.find(None, path).map(|r| r.name.to_string());
        assert_eq!(find("/ADMIN/x").as_deref(), Some("/Admin"));
        assert_eq!(find("/admin").as_deref(), Some("/Admin"));
        assert_eq!(find("/adminx").as_deref(), Some("/"));
    }
}
