//! Routes: which rule applies to a request. The most specific matching route wins (see
//! [`crate::decision::template`]: a literal segment beats a parameter, a parameter beats a
//! tail; among path prefixes, on segment boundaries, the longest: `/api` matches `/api`
//! and `/api/x`, not `/apix`); a route with a `host` beats one without at the same shape.
//!
//! The route is chosen on the canonical path ([`crate::decision::canonical`]), and that same path is
//! what the upstream receives, so `/public/../admin`, `/public/%2e%2e/admin` or `//admin`
//! cannot reach an upstream path that a different route guards.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::decision::template::{Params, RoutePath};
use crate::identity::provider::{Provider, ProviderId};
use crate::policy::rules::RouteRules;
use crate::policy::RoutePolicy;
use crate::telemetry::metrics::RouteSeries;

/// The name of the built-in echo upstream.
pub const ECHO_UPSTREAM: &str = "echo";

/// A route's `upstream` when the file gives none: judged only for front proxies.
pub const NO_UPSTREAM: &str = "";

/// True when `prefix` matches `path` on a segment boundary (ASCII case ignored when
/// `fold_case`).
pub(crate) fn prefix_matches(prefix: &str, path: &str, fold_case: bool) -> bool {
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
pub(crate) enum RouteAuth {
    /// No token read; identity headers are still stripped.
    None,
    /// A valid token for the first of these providers that accepts its shape.
    Providers(Vec<Arc<ProviderEntry>>),
}

/// A provider as routes use it: wrapped (metrics, protection) and with its token format.
#[derive(Debug)]
pub struct ProviderEntry {
    /// Name and definition fingerprint: what token keys are derived from.
    pub(crate) id: ProviderId,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) format: crate::identity::provider::format::TokenFormat,
}

impl ProviderEntry {
    /// The config name (metric labels, logs).
    pub(crate) fn name(&self) -> &Arc<str> {
        self.id.name()
    }
}

/// Where a route sends allowed requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamTarget {
    /// The built-in echo upstream: answers with what a backend would receive.
    Echo,
    /// A real HTTP(S) server.
    Http(Arc<Upstream>),
    /// None: the route is judged for front proxies only (decision mode); on the proxy
    /// listener it matches nothing.
    FrontProxyOnly,
}

/// An upstream as configured: its host name is not resolved yet, so that `--check` works
/// where the name does not resolve (CI, another cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamSpec {
    pub(crate) name: String,
    /// `host:port` (an IP address, or a name resolved when the gateway starts).
    pub(crate) authority: String,
    pub(crate) tls: bool,
    /// Server name for TLS and the default `Host`.
    pub(crate) host: String,
    pub(crate) protocol: UpstreamProtocol,
    /// `https://` options beyond the defaults (system store, the URL's host), their files
    /// read and parsed when the configuration was checked.
    pub(crate) tls_options: Option<UpstreamTls>,
    /// Requests in flight to it at once.
    pub(crate) max_in_flight: usize,
}

/// Requests in flight to an upstream by default (Envoy's default circuit-breaker
/// threshold for connections and requests per cluster).
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// How long a request waits for a free slot at a full upstream before 503.
pub(crate) const UPSTREAM_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// An upstream's slots for requests in flight (each HTTP/1.1 request holds one upstream
/// connection while it runs). A reload makes new slots: requests still running under the
/// old configuration hold the old ones until they finish.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    pub(crate) max: usize,
    pub(crate) free: Arc<tokio::sync::Semaphore>,
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Slots {
            max,
            free: Arc::new(tokio::sync::Semaphore::new(max)),
        }
    }
}

impl PartialEq for Slots {
    fn eq(&self, other: &Self) -> bool {
        self.max == other.max
    }
}

impl Eq for Slots {}

/// An `https://` upstream's TLS options as configured (files not read yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamTlsFiles {
    /// CAs that verify the upstream instead of the system store.
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// SNI and the name verified; `None`: the URL's host.
    pub(crate) server_name: Option<String>,
    pub(crate) verify_hostname: bool,
    pub(crate) client_certificate: Option<crate::tls::CertificateFiles>,
}

/// The same, loaded: what each connection to the upstream is made with.
#[derive(Clone)]
pub(crate) struct UpstreamTls {
    pub(crate) ca: Option<Arc<pingora::protocols::tls::CaType>>,
    pub(crate) server_name: Option<String>,
    pub(crate) verify_hostname: bool,
    pub(crate) client_cert: Option<Arc<pingora::utils::tls::CertKey>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("server_name", &self.server_name)
            .field("verify_hostname", &self.verify_hostname)
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        let same_ca = match (&self.ca, &other.ca) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let same_cert = match (&self.client_cert, &other.client_cert) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_ca
            && same_cert
            && self.server_name == other.server_name
            && self.verify_hostname == other.verify_hostname
    }
}

impl Eq for UpstreamTls {}

/// Which file of an upstream's TLS options failed to load.
#[derive(Debug)]
pub(crate) enum TlsFileError {
    Ca(String),
    ClientCertificate(String),
}

impl UpstreamTlsFiles {
    /// Reads and parses the CA file and the client certificate, each file once; errors
    /// name the file.
    pub(crate) fn load(&self) -> Result<UpstreamTls, TlsFileError> {
        let ca = match &self.ca_file {
            None => None,
            Some(path) => {
                let ders = crate::tls::read_ca_file(path).map_err(TlsFileError::Ca)?;
                let list: Vec<pingora::utils::tls::WrappedX509> = ders
                    .into_iter()
                    .map(|der| {
                        pingora::utils::tls::WrappedX509::new(der, pingora::utils::tls::parse_x509)
                    })
                    .collect();
                Some(Arc::from(list.into_boxed_slice()))
            }
        };
        let client_cert = match &self.client_certificate {
            None => None,
            Some(files) => {
                let (loaded, key) = crate::tls::load_pair_and_key(files)
                    .map_err(TlsFileError::ClientCertificate)?;
                let chain: Vec<Vec<u8>> = loaded
                    .key
                    .cert
                    .iter()
                    .map(|c| c.as_ref().to_vec())
                    .collect();
                Some(Arc::new(pingora::utils::tls::CertKey::new(chain, key)))
            }
        };
        Ok(UpstreamTls {
            ca,
            server_name: self.server_name.clone(),
            verify_hostname: self.verify_hostname,
            client_cert,
        })
    }
}

/// The HTTP version spoken to an upstream (`upstreams.<name>.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2 only: with prior knowledge over cleartext (`h2c://`), ALPN `h2` over TLS.
    /// What gRPC services need.
    Http2,
    /// TLS only: ALPN `h2` if the upstream offers it, else HTTP/1.1.
    Auto,
}

/// An upstream the gateway connects to: its address resolved once, so that requests never
/// wait on DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub(crate) name: String,
    pub(crate) address: SocketAddr,
    pub(crate) tls: bool,
    /// Server name for TLS and the default `Host`.
    pub(crate) host: String,
    pub(crate) protocol: UpstreamProtocol,
    pub(crate) tls_options: Option<UpstreamTls>,
    /// Keeps pooled connections apart: Pingora's pool keys a connection by address, SNI,
    /// client certificate and verification flags, not by the CA that verified it or the
    /// protocol; two upstreams at one address (or one upstream across a reload that
    /// changed its CA) must never share a connection made for the other.
    pub(crate) pool_key: u64,
    /// Requests in flight to it, at most `slots.max`.
    pub(crate) slots: Slots,
}

/// Why an upstream's address could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve `{authority}`: {reason}")]
    Lookup { authority: String, reason: String },
    #[error("`{0}` resolves to no address")]
    NoAddress(String),
    #[error("no provider named `{0}`")]
    UnknownProvider(String),
    #[error("no upstream named `{0}`")]
    UnknownUpstream(String),
}

impl UpstreamSpec {
    /// Resolves the host name to one address (the first the resolver gives).
    pub fn resolve(&self) -> Result<Upstream, ResolveError> {
        use std::net::ToSocketAddrs;
        let address = self
            .authority
            .to_socket_addrs()
            .map_err(|e| ResolveError::Lookup {
                authority: self.authority.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| ResolveError::NoAddress(self.authority.clone()))?;
        let tls_options = self.tls_options.clone();
        let pool_key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&self.name, &self.authority, self.tls, &self.host).hash(&mut h);
            (self.protocol as u8).hash(&mut h);
            if let Some(t) = &tls_options {
                (&t.server_name, t.verify_hostname).hash(&mut h);
                for ca in t.ca.iter().flat_map(|c| c.iter()) {
                    ca.borrow_raw_cert().hash(&mut h);
                }
                for cert in t.client_cert.iter() {
                    cert.leaf().borrow_raw_cert().hash(&mut h);
                }
            }
            h.finish()
        };
        Ok(Upstream {
            name: self.name.clone(),
            address,
            tls: self.tls,
            host: self.host.clone(),
            protocol: self.protocol,
            tls_options,
            pool_key,
            slots: Slots::new(self.max_in_flight),
        })
    }
}

/// A route as the config file defines it: plain data, providers and upstream by name.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Label used in metrics and logs (the config `name`, or host + path).
    pub name: Arc<str>,
    /// What the route matches: `path_prefix` or a `path` template.
    pub path: RoutePath,
    /// Lower-case host without port.
    pub host: Option<String>,
    /// Provider names, tried in order by token shape; empty for `auth: none`.
    pub providers: Vec<String>,
    /// The upstream's name (`echo` for the built-in one).
    pub upstream: String,
    pub policy: RoutePolicy,
    /// Whether the client's `Authorization` header reaches the upstream.
    pub forward_authorization: bool,
    /// A signed identity assertion to set on the upstream request.
    pub assertion: Option<Arc<crate::identity::assertion::AssertionSpec>>,
    /// Outage budget past freshness while the provider fails (zero: off).
    pub stale_if_error: std::time::Duration,
    /// Paths with encoded slashes (`%2F`, `%5C`) are accepted and forwarded as sent; the
    /// route is still chosen on the decoded form.
    pub allow_encoded_slashes: bool,
    /// Where the token is read, and the cookie rules (`token_sources:`).
    pub credentials: Credentials,
    /// Client certificate ids the connection must also present (`"*"`: any verified);
    /// empty: none required.
    pub require_client_certificate: Vec<String>,
    /// `rules:` — CEL conditions over the identity and the request, all of which must hold.
    pub rules: RouteRules,
    /// `rate_limits:` — the policies that count this route's requests, in order.
    pub rate_limits: Vec<crate::limits::LimitSpec>,
}

/// Where a route reads its token, and what a cookie credential obliges.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// In order; default `[authorization]`.
    pub(crate) sources: Vec<crate::identity::token::TokenSource>,
    /// Whether a credential cookie stays in the `Cookie` header the upstream gets
    /// (default false: removed).
    pub(crate) forward_cookie: bool,
    /// Origins (`https://app.example.com`) besides the request's own from which a
    /// cookie-authenticated unsafe request is accepted.
    pub(crate) trusted_origins: Vec<String>,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            sources: vec![crate::identity::token::TokenSource::Authorization],
            forward_cookie: false,
            trusted_origins: Vec::new(),
        }
    }
}

/// The one route type the request path uses: its spec, with the names in it resolved to
/// live providers and a resolved upstream.
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) spec: RouteSpec,
    pub(crate) auth: RouteAuth,
    pub(crate) upstream: UpstreamTarget,
    /// The route's metric series, resolved once.
    pub(crate) series: RouteSeries,
    /// The live counters of `spec.rate_limits`, in the same order (set when the snapshot
    /// is built: they outlive a reload that leaves a policy unchanged).
    pub(crate) limits: Vec<Arc<crate::limits::LivePolicy>>,
}

impl Route {
    /// Resolves `spec`'s provider and upstream names (`echo` is the built-in upstream).
    pub fn resolve(
        spec: RouteSpec,
        providers: &HashMap<&str, Arc<ProviderEntry>>,
        upstreams: &HashMap<&str, Arc<Upstream>>,
        series: RouteSeries,
    ) -> Result<Route, ResolveError> {
        let auth = if spec.providers.is_empty() {
            RouteAuth::None
        } else {
            RouteAuth::Providers(
                spec.providers
                    .iter()
                    .map(|n| {
                        providers
                            .get(n.as_str())
                            .cloned()
                            .ok_or_else(|| ResolveError::UnknownProvider(n.clone()))
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
        let upstream = if spec.upstream == ECHO_UPSTREAM {
            UpstreamTarget::Echo
        } else if spec.upstream == NO_UPSTREAM {
            UpstreamTarget::FrontProxyOnly
        } else {
            UpstreamTarget::Http(
                upstreams
                    .get(spec.upstream.as_str())
                    .cloned()
                    .ok_or_else(|| ResolveError::UnknownUpstream(spec.upstream.clone()))?,
            )
        };
        Ok(Route {
            spec,
            auth,
            upstream,
            series,
            limits: Vec::new(),
        })
    }

    /// The route's label in metrics and logs.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.spec.name
    }

    /// True when requests on this route resolve a token (and so have an auth phase).
    pub(crate) fn auth_duration_applies(&self) -> bool {
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
    /// Orders the routes for matching: most specific first, host-specific first on ties.
    pub fn new(mut routes: Vec<Route>, fold_case: bool) -> Self {
        routes.sort_by_cached_key(|r| (r.spec.path.key(fold_case), r.spec.host.is_none()));
        RouteTable {
            routes: routes.into_iter().map(Arc::new).collect(),
            fold_case,
        }
    }

    /// The route for a canonical path on a canonical host name (no port: see
    /// [`crate::decision::canonical::canonical_host`]), with the parameters its template
    /// took. Prefixes match `routing` (encoded slashes decoded), templates `forward` (the
    /// path as forwarded, so that an encoded slash is never a segment boundary).
    pub fn find(
        &self,
        host: Option<&str>,
        routing: &str,
        forward: &str,
    ) -> Option<(&Arc<Route>, Params)> {
        self.routes.iter().find_map(|r| {
            let host_matches = match (&r.spec.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            if !host_matches {
                return None;
            }
            match &r.spec.path {
                RoutePath::Prefix(prefix) => {
                    prefix_matches(prefix, routing, self.fold_case).then(|| (r, Params::new()))
                }
                RoutePath::Template(t) => t.matches(forward, self.fold_case).map(|p| (r, p)),
            }
        })
    }

    /// Routes in matching order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;

    fn route(prefix: &str, host: Option<&str>) -> Route {
        let spec = RouteSpec {
            name: format!("{}{prefix}", host.unwrap_or("")).into(),
            path: RoutePath::Prefix(prefix.into()),
            host: host.map(str::to_string),
            providers: Vec::new(),
            upstream: ECHO_UPSTREAM.into(),
            policy: RoutePolicy::default(),
            forward_authorization: true,
            assertion: None,
            stale_if_error: std::time::Duration::ZERO,
            allow_encoded_slashes: false,
            credentials: Credentials::default(),
            require_client_certificate: Vec::new(),
            rules: RouteRules::default(),
            rate_limits: Vec::new(),
        };
        let series = RouteSeries::new(&Metrics::new(), &spec.name, 0);
        Route::resolve(spec, &HashMap::new(), &HashMap::new(), series).unwrap()
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
        let find = |host: Option<&str>, path: &str| {
            t.find(host, path, path).map(|(r, _)| r.name().to_string())
        };
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
        assert!(no_root.find(None, "/x", "/x").is_none());
    }

    #[test]
    fn resolving_an_unknown_name_is_an_error_not_a_panic() {
        let mut spec = route("/", None).spec;
        spec.providers = vec!["gone".into()];
        let series = route("/", None).series;
        let e = Route::resolve(
            spec.clone(),
            &HashMap::new(),
            &HashMap::new(),
            series.clone(),
        )
        .unwrap_err();
        assert_eq!(e, ResolveError::UnknownProvider("gone".into()));
        spec.providers.clear();
        spec.upstream = "api".into();
        let e = Route::resolve(spec, &HashMap::new(), &HashMap::new(), series).unwrap_err();
        assert_eq!(e.to_string(), "no upstream named `api`");
    }

    #[test]
    fn case_folding_is_a_table_wide_switch() {
        let t = RouteTable::new(vec![route("/", None), route("/Admin", None)], true);
        let find = |path: &str| t.find(None, path, path).map(|(r, _)| r.name().to_string());
        assert_eq!(find("/ADMIN/x").as_deref(), Some("/Admin"));
        assert_eq!(find("/admin").as_deref(), Some("/Admin"));
        assert_eq!(find("/adminx").as_deref(), Some("/"));
    }
}
