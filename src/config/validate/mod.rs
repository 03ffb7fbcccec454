//! From the file as written to the [`Settings`] the gateway runs with: defaults applied,
//! references checked, secrets resolved, URLs and addresses parsed. Each error names its key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::duration::ConfigDuration;
use super::file::{
    AssertionFile, AuthMode, FileConfig, MethodScopesFile, ModeFile, OneOrMany, ProviderFile,
    ProviderKind, RouteFile, ScopeRuleFile,
};
use super::{
    ConfigError, ConnectionLimits, DecisionListener, ProviderSettings, RequestSettings, Settings,
};
use crate::decision::canonical::{canonical_host, normalize_path, HeaderHygiene, OVERRIDE_HEADERS};
use crate::decision::client::TrustedProxies;
use crate::decision::route::{
    RouteSpec, UpstreamProtocol, UpstreamSpec, ECHO_UPSTREAM, NO_UPSTREAM,
};
use crate::decision::template::{PathTemplate, RoutePath};
use crate::identity::assertion::{AssertionSpec, SigningKey};
use crate::identity::cache::CacheSettings;
use crate::identity::provider::format::{Charset, TokenFormat};
use crate::identity::provider::guard::Protection;
use crate::policy::net::IpNet;
use crate::policy::rules::{RouteRule, RouteRules};
use crate::policy::{pieces, MethodScopes, Mode, Piece, RoutePolicy, ScopeRule};
use crate::proxy::headers::{IdentityHeaders, DEFAULT_PREFIX};
use crate::telemetry::logging::LogSettings;

mod cluster;
mod decision;
mod limits;
mod provider;
mod route;
mod traces;
mod upstream;

use cluster::cluster;
use provider::{fingerprint, protection, token_format};
use route::{assertion, assertion_keys, route};
use upstream::upstream;

const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

type Result<T> = std::result::Result<T, ConfigError>;

/// Keeps the value of a check, or records its error and goes on: every independent error
/// of a file is reported in one run.
struct Errors(Vec<ConfigError>);

impl Errors {
    fn keep<T>(&mut self, r: Result<T>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::at(path, message));
    }
}

/// [`validate`], reporting every independent error (never empty on `Err`), in the order of
/// the file's sections. An error that only follows from another one is left out: a route
/// that names a provider, upstream or assertion key whose own definition is wrong is not
/// judged until that definition is right.
pub(crate) fn validate_all(
    file: FileConfig,
    base_dir: &Path,
) -> std::result::Result<Settings, Vec<ConfigError>> {
    let mut errs = Errors(Vec::new());
    let listeners = listeners(&file, base_dir, &mut errs);
    let threads = match file.threads {
        Some(0) => {
            errs.add("threads", "must be at least 1");
            1
        }
        Some(n) => n,
        None => 1,
    };
    // Definitions that failed: what names them is not judged (its error would only repeat).
    let mut broken = Broken::default();
    let providers = providers(&file, base_dir, &mut errs, &mut broken);
    let upstreams = upstreams(&file, base_dir, &mut errs, &mut broken);
    let assertion_keys = errs.keep(assertion_keys(&file, base_dir));
    let rate_limits = limits::rate_limits(&file, &mut errs);
    let routes = routes(
        &file,
        &providers,
        &upstreams,
        assertion_keys.as_deref(),
        &broken,
        &rate_limits,
        &mut errs,
    );

    let identity_headers = errs.keep(identity_headers(&file));
    let level = log_level(&file, &mut errs);
    let admin_token = admin_token(&file, base_dir, &mut errs);
    let cluster =
        (file.cluster.as_ref()).map_or(Some(None), |c| errs.keep(cluster(c, base_dir)).map(Some));
    let cache = errs.keep(cache(&file));
    let requests = errs.keep(requests(&file));
    let connections = errs.keep(connections(&file));
    let trusted_proxies = errs.keep(cidrs("trusted_proxies", &file.trusted_proxies));
    limits::fit_cluster(&cluster, &rate_limits, &mut errs);
    decision::needs_front_proxies(&file, trusted_proxies.as_deref(), &mut errs);
    let tracing = traces::settings(&file, base_dir, &mut errs);

    let (
        Some(Listeners {
            listen,
            admin_listen,
            admin_api_listen,
            decision,
            tls,
        }),
        Some(assertion_keys),
        Some(identity_headers),
        Some(admin_token),
        Some(cluster),
        Some(cache),
        Some(requests),
        Some(connections),
        Some(trusted_proxies),
    ) = (
        listeners,
        assertion_keys,
        identity_headers,
        admin_token,
        cluster,
        cache,
        requests,
        connections,
        trusted_proxies,
    )
    else {
        return Err(errs.0);
    };
    if !errs.0.is_empty() {
        return Err(errs.0);
    }

    Ok(Settings {
        cluster,
        listen,
        admin_listen,
        tls,
        h2c: file.h2c.unwrap_or(false),
        threads,
        // One thread has nothing to steal from: its own runtime costs less per request.
        work_stealing: file.work_stealing.unwrap_or(threads > 1),
        direct_path: file.direct_path.unwrap_or(true),
        shutdown_grace_period: file
            .shutdown_grace_period
            .map_or(DEFAULT_GRACE_PERIOD, |d| d.0),
        providers,
        upstreams,
        cache,
        requests,
        connections,
        routes,
        rate_limits: rate_limits.into_values().collect(),
        trusted_proxies: TrustedProxies(trusted_proxies),
        assertion_keys,
        identity_headers,
        log: LogSettings {
            format: file.log.format,
            level,
        },
        admin_token,
        admin_api_listen,
        decision,
        tracing,
        pid_file: file
            .pid_file
            .clone()
            .unwrap_or_else(|| "/tmp/sessiongate.pid".into()),
        upgrade_sock: file
            .upgrade_sock
            .clone()
            .unwrap_or_else(|| "/tmp/sessiongate_upgrade.sock".into()),
    })
}

/// `log.level` (default `info`), checked as the filter it becomes.
fn log_level(file: &FileConfig, errs: &mut Errors) -> String {
    let level = file.log.level.clone().unwrap_or_else(|| "info".into());
    errs.keep(
        tracing_subscriber::EnvFilter::try_new(&level)
            .map_err(|e| ConfigError::at("log.level", format!("not a valid log filter: {e}"))),
    );
    level
}

/// `identity_headers.prefix`: the names of the headers the upstream trusts.
fn identity_headers(file: &FileConfig) -> Result<IdentityHeaders> {
    let prefix = file
        .identity_headers
        .prefix
        .as_deref()
        .unwrap_or(DEFAULT_PREFIX);
    IdentityHeaders::new(prefix).map_err(|e| ConfigError::at("identity_headers.prefix", e))
}

/// The listeners: `listen`, `admin_listen`, `admin.listen`, `tls`.
struct Listeners {
    listen: SocketAddr,
    admin_listen: SocketAddr,
    admin_api_listen: Option<SocketAddr>,
    decision: Option<DecisionListener>,
    tls: Option<crate::tls::TlsListener>,
}

fn listeners(file: &FileConfig, base_dir: &Path, errs: &mut Errors) -> Option<Listeners> {
    let listen = errs.keep(socket_addr("listen", &file.listen));
    let admin_listen = errs.keep(socket_addr("admin_listen", &file.admin_listen));
    if listen.is_some() && listen == admin_listen {
        errs.add("admin_listen", "must differ from `listen`");
    }
    let admin_api_listen = match &file.admin.listen {
        Some(a) => match errs.keep(socket_addr("admin.listen", a)) {
            Some(addr) if Some(addr) == listen || Some(addr) == admin_listen => {
                errs.add(
                    "admin.listen",
                    "must differ from `listen` and `admin_listen`",
                );
                None
            }
            addr => addr,
        },
        None => None,
    };
    let (listen, admin_listen) = (listen?, admin_listen?);
    let tls = match &file.tls {
        Some(t) => Some(errs.keep(tls(t, base_dir, &[listen, admin_listen], admin_api_listen))?),
        None => None,
    };
    let taken = [
        Some(listen),
        Some(admin_listen),
        admin_api_listen,
        tls.as_ref().map(|t| t.listen),
    ];
    let decision = decision::listener(file, &taken, errs)?;
    Some(Listeners {
        listen,
        admin_listen,
        admin_api_listen,
        decision,
        tls,
    })
}

/// Names of providers and upstreams whose own definition failed.
#[derive(Default)]
struct Broken {
    providers: HashSet<String>,
    upstreams: HashSet<String>,
}

/// Each named definition of a section (`providers`, `upstreams`): its name checked, then
/// the definition itself; one that fails is left out and its name kept in `broken`.
fn named<V, T>(
    section: &str,
    items: &BTreeMap<String, V>,
    errs: &mut Errors,
    broken: &mut HashSet<String>,
    check: impl Fn(&str, &str, &V) -> Result<T>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    for (name, item) in items {
        let path = format!("{section}.{name}");
        let checked = check_name(&path, name).and_then(|()| check(&path, name, item));
        match errs.keep(checked) {
            Some(value) => {
                out.insert(name.clone(), value);
            }
            None => {
                broken.insert(name.clone());
            }
        }
    }
    out
}

fn providers(
    file: &FileConfig,
    base_dir: &Path,
    errs: &mut Errors,
    broken: &mut Broken,
) -> BTreeMap<String, ProviderSettings> {
    let mut read = crate::policy::rules::ClaimsRead::None;
    for r in &file.routes {
        for rule in r.rules.iter().flatten() {
            read.add(rule.expr.0.claims_read());
        }
    }
    // A rate limit keyed by a claim, or with a tier chosen by one, reads it too.
    read.add(crate::policy::rules::ClaimsRead::Names(
        limits::claims_read(file),
    ));
    named(
        "providers",
        &file.providers,
        errs,
        &mut broken.providers,
        |path, _, p| {
            let mut spec = super::providers::provider(path, p, base_dir)?;
            // Claims are kept when forwarded or read by some route's rule or rate limit; what is kept is
            // part of the fingerprint, so a rule that starts reading a claim after a
            // reload never meets cached identities made without it.
            let kept = spec.keep_claims(|c| c.forward || read.reads(&c.name));
            Ok(ProviderSettings {
                spec,
                protection: protection(path, p)?,
                token_format: token_format(path, p)?,
                fingerprint: fingerprint(p, &kept),
            })
        },
    )
}

fn upstreams(
    file: &FileConfig,
    base_dir: &Path,
    errs: &mut Errors,
    broken: &mut Broken,
) -> BTreeMap<String, UpstreamSpec> {
    named(
        "upstreams",
        &file.upstreams,
        errs,
        &mut broken.upstreams,
        |path, name, up| {
            if name == ECHO_UPSTREAM {
                return Err(ConfigError::at(
                    path,
                    "`echo` is the built-in echo upstream; choose another name",
                ));
            }
            upstream(path, name, up, base_dir)
        },
    )
}

/// Every route; one that names a broken definition is not judged.
fn routes(
    file: &FileConfig,
    providers: &BTreeMap<String, ProviderSettings>,
    upstreams: &BTreeMap<String, UpstreamSpec>,
    assertion_keys: Option<&[Arc<SigningKey>]>,
    broken: &Broken,
    rate_limits: &BTreeMap<String, crate::limits::LimitSpec>,
    errs: &mut Errors,
) -> Vec<RouteSpec> {
    if file.routes.is_empty() {
        errs.add("routes", "at least one route is needed");
    }
    let mut routes = Vec::with_capacity(file.routes.len());
    let mut seen = HashMap::new();
    let mut names = HashSet::new();
    let fold_case = file.requests.case_insensitive_paths.unwrap_or(false);
    for (i, r) in file.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let named_providers = match &r.provider {
            Some(OneOrMany::One(n)) => std::slice::from_ref(n),
            Some(OneOrMany::Many(ns)) => ns.as_slice(),
            None => &[],
        };
        if named_providers.iter().any(|n| broken.providers.contains(n))
            || r.upstream
                .as_ref()
                .is_some_and(|u| broken.upstreams.contains(u))
        {
            continue;
        }
        let deciding = file.decision.is_some();
        let Some(mut route) = errs.keep(route(&path, r, providers, upstreams, deciding)) else {
            continue;
        };
        if let Some(limits) = errs.keep(limits::route_limits(&path, r, &route, rate_limits, file)) {
            route.rate_limits = limits;
        }
        if let (Some(a), Some(keys)) = (&r.assertion, assertion_keys) {
            let authenticated = !route.providers.is_empty();
            route.assertion = errs.keep(assertion(
                &path,
                a,
                keys,
                &identity_prefix(file),
                authenticated,
            ));
        }
        // Routes with the same shape on the same host match the same requests: the
        // second could never be chosen (see `decision::template` for the order).
        let shape = (route.host.clone(), route.path.key(fold_case));
        let same_match = match seen.get(&shape) {
            Some(first) => {
                errs.add(
                    format!("{path}.{}", route.path.key_name()),
                    format!(
                        "{first} already matches the same requests as `{}`: this route could never be chosen; remove one or make it more specific",
                        route.path.as_str()
                    ),
                );
                true
            }
            None => {
                let first = if *route.name == *route.path.as_str() {
                    format!("routes[{i}] (`{}`)", route.name)
                } else {
                    format!("routes[{i}] (`{}`: `{}`)", route.name, route.path.as_str())
                };
                seen.insert(shape, first);
                false
            }
        };
        // A default name (host + path_prefix) repeats exactly when the match does: said once.
        let said_already = same_match && r.name.is_none();
        let name_taken = !names.insert(route.name.clone());
        if name_taken && !said_already {
            errs.add(
                format!("{path}.name"),
                format!("route name `{}` is used twice", route.name),
            );
        }
        routes.push(route);
    }
    routes
}

/// `admin.token` / `admin.token_file`: `Some(None)` when the admin API is off.
fn admin_token(
    file: &FileConfig,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<Option<super::Secret>> {
    let token = errs.keep(super::secret::resolve(
        "admin.token",
        file.admin.token.as_deref(),
        file.admin.token_file.as_deref(),
        base_dir,
    ))?;
    if let Some(t) = &token {
        errs.keep(super::secret::require_length(
            "admin.token",
            file.admin.token.is_some(),
            t,
            16,
            "the admin token",
        ))?;
    }
    Some(token)
}

/// A duration that must be greater than zero.
fn nonzero(key: &str, d: Option<&ConfigDuration>, default: Duration) -> Result<Duration> {
    let d = d.map_or(default, |d| d.0);
    if d.is_zero() {
        Err(ConfigError::at(key, "must be greater than zero"))
    } else {
        Ok(d)
    }
}

fn socket_addr(path: &str, value: &str) -> Result<SocketAddr> {
    value.parse().map_err(|_| {
        ConfigError::at(
            path,
            format!("{value:?} is not an address:port such as 127.0.0.1:8080 or [::]:8080"),
        )
    })
}

/// Names end up in metric labels and headers: keep them plain.
pub(super) fn check_name(path: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::at(
            path,
            "names may use only letters, digits, `_` and `-` (at most 64)",
        ))
    }
}

fn cache(file: &FileConfig) -> Result<CacheSettings> {
    let d = CacheSettings::default();
    let c = &file.cache;
    let positive = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(ConfigError::at(
            format!("cache.{key}"),
            "must be at least 1",
        )),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let refresh_ahead = match c.refresh_ahead {
        Some(f) if !(0.0..1.0).contains(&f) => {
            return Err(ConfigError::at(
                "cache.refresh_ahead",
                "a fraction of the ttl from 0 (off) up to, not including, 1 (e.g. 0.2)",
            ))
        }
        Some(f) => f,
        None => d.refresh_ahead,
    };
    let client_miss_rate = c.client_miss_rate.unwrap_or(d.client_miss_rate);
    let client_miss_burst = c.client_miss_burst.unwrap_or(client_miss_rate);
    if c.client_miss_burst.is_some() && client_miss_rate == 0 {
        return Err(ConfigError::at(
            "cache.client_miss_burst",
            "set `client_miss_rate` too (the burst of an unlimited rate means nothing)",
        ));
    }
    if client_miss_rate > 0 && client_miss_burst < client_miss_rate {
        return Err(ConfigError::at(
            "cache.client_miss_burst",
            "must be at least client_miss_rate",
        ));
    }
    Ok(CacheSettings {
        refresh_ahead,
        client_miss_rate,
        client_miss_burst,
        ttl: c.ttl.map_or(d.ttl, |v| v.0),
        negative_ttl: c.negative_ttl.map_or(d.negative_ttl, |v| v.0),
        max_entries: positive("max_entries", c.max_entries, d.max_entries)?,
        negative_max_entries: positive(
            "negative_max_entries",
            c.negative_max_entries,
            d.negative_max_entries,
        )?,
    })
}

fn requests(file: &FileConfig) -> Result<RequestSettings> {
    let r = &file.requests;
    let mut keep_override = Vec::new();
    for (i, name) in r.keep_override_headers.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if !OVERRIDE_HEADERS.contains(&lower.as_str()) {
            return Err(ConfigError::at(
                format!("requests.keep_override_headers[{i}]"),
                format!(
                    "{name:?} is not an override header; choose from {}",
                    OVERRIDE_HEADERS.join(", ")
                ),
            ));
        }
        keep_override.push(http::HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
            ConfigError::at(
                format!("requests.keep_override_headers[{i}]"),
                "not a header name",
            )
        })?);
    }
    Ok(RequestSettings {
        case_insensitive_paths: r.case_insensitive_paths.unwrap_or(false),
        hygiene: HeaderHygiene { keep_override },
    })
}

/// Default of `tls.watch`: Kubernetes updates a mounted secret within about a minute; a
/// check costs two small file reads per certificate.
const DEFAULT_TLS_WATCH: Duration = Duration::from_secs(10);

fn tls(
    t: &super::file::TlsFile,
    base_dir: &Path,
    taken: &[SocketAddr],
    admin_api: Option<SocketAddr>,
) -> Result<crate::tls::TlsListener> {
    let listen = socket_addr("tls.listen", &t.listen)?;
    if taken.contains(&listen) || admin_api == Some(listen) {
        return Err(ConfigError::at(
            "tls.listen",
            "must differ from `listen`, `admin_listen` and `admin.listen`",
        ));
    }
    if t.certificates.is_empty() {
        return Err(ConfigError::at(
            "tls.certificates",
            "at least one certificate is needed (chain: …, key: …)",
        ));
    }
    let files = t
        .certificates
        .iter()
        .map(|c| crate::tls::CertificateFiles {
            chain: base_dir.join(&c.chain),
            key: base_dir.join(&c.key),
        })
        .collect();
    // Loaded now, once, so that a bad pair stops the start (or the reload) with its key
    // named; the gateway serves what was read here.
    let certificates = crate::tls::CertStore::load(files)
        .map_err(|(i, e)| ConfigError::at(format!("tls.certificates[{i}]"), e))?;
    let watch = t.watch.map_or(DEFAULT_TLS_WATCH, |d| d.0);
    if !watch.is_zero() && watch < Duration::from_secs(1) {
        return Err(ConfigError::at(
            "tls.watch",
            "must be at least 1s (or 0s: check only on a config reload)",
        ));
    }
    let client_certificates = match &t.client_certificates {
        None => None,
        Some(c) => {
            let ca_file = base_dir.join(&c.ca_file);
            let roots = crate::tls::read_ca_file(&ca_file)
                .map_err(|e| ConfigError::at("tls.client_certificates.ca_file", e))?;
            Some(crate::tls::ClientCertificates {
                ca_file,
                roots,
                required: c.required.unwrap_or(true),
            })
        }
    };
    Ok(crate::tls::TlsListener {
        listen,
        certificates: Arc::new(certificates),
        http2: t.http2.unwrap_or(true),
        watch: (!watch.is_zero()).then_some(watch),
        client_certificates,
    })
}

fn connections(file: &FileConfig) -> Result<ConnectionLimits> {
    let c = &file.connections;
    let d = ConnectionLimits::default();
    let limits = ConnectionLimits {
        header_timeout: c.header_timeout.map_or(d.header_timeout, |x| x.0),
        idle_timeout: c.idle_timeout.map_or(d.idle_timeout, |x| x.0),
        body_idle_timeout: c.body_idle_timeout.map_or(d.body_idle_timeout, |x| x.0),
        max_connections: c.max_connections.unwrap_or(d.max_connections),
        tunnel_idle_timeout: c.tunnel_idle_timeout.map_or(d.tunnel_idle_timeout, |x| x.0),
        tunnel_max_duration: c
            .tunnel_max_duration
            .map(|x| x.0)
            .filter(|d| !d.is_zero())
            .or(d.tunnel_max_duration),
        http2_max_concurrent_streams: c
            .http2_max_concurrent_streams
            .unwrap_or(d.http2_max_concurrent_streams),
    };
    if !(1..=1000).contains(&limits.http2_max_concurrent_streams) {
        return Err(ConfigError::at(
            "connections.http2_max_concurrent_streams",
            "must be between 1 and 1000",
        ));
    }
    if let Some(max) = limits.tunnel_max_duration {
        if max < Duration::from_secs(1) {
            return Err(ConfigError::at(
                "connections.tunnel_max_duration",
                "must be at least 1s (or 0: no limit)",
            ));
        }
    }
    for (key, v) in [
        ("tunnel_idle_timeout", limits.tunnel_idle_timeout),
        ("header_timeout", limits.header_timeout),
        ("idle_timeout", limits.idle_timeout),
        ("body_idle_timeout", limits.body_idle_timeout),
    ] {
        if v < Duration::from_millis(100) {
            return Err(ConfigError::at(
                format!("connections.{key}"),
                "must be at least 100ms",
            ));
        }
    }
    if limits.max_connections == 0 {
        return Err(ConfigError::at(
            "connections.max_connections",
            "must be at least 1",
        ));
    }
    Ok(limits)
}

fn identity_prefix(file: &FileConfig) -> String {
    file.identity_headers
        .prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_PREFIX.to_string())
}

fn cidrs(path: &str, list: &[String]) -> Result<Vec<IpNet>> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            IpNet::parse(s).map_err(|e| ConfigError::at(format!("{path}[{i}]"), e.to_string()))
        })
        .collect()
}

/// The paths of the errors `body` (a config without its listeners) gets, in order; empty
/// when it is valid. For the sections' unit tests.
#[cfg(test)]
pub(crate) fn error_paths(body: &str) -> Vec<String> {
    let text = format!("listen: 127.0.0.1:18080\nadmin_listen: 127.0.0.1:19090\n{body}");
    match crate::config::from_str_all(&text, Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| e.path).collect(),
    }
}

/// Asserts that `body` gets one error per `want` entry, in order, each at a path that
/// starts with it (`routes[0].provider` for `routes[0]`). For the sections' unit tests.
#[cfg(test)]
pub(crate) fn assert_error_paths(body: &str, want: &[&str]) {
    let got = error_paths(body);
    assert_eq!(got.len(), want.len(), "{body}: {got:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.starts_with(w), "{body}: {got:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::error_paths;

    const ROUTE: &str = "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\n";

    #[test]
    fn listeners_threads_and_the_rest_are_judged_apart() {
        let table: &[(&str, &[&str])] = &[
            (ROUTE, &[]),
            ("routes: []\n", &["routes"]),
            (&format!("{ROUTE}threads: 0\n"), &["threads"]),
            (
                &format!("{ROUTE}admin: {{ listen: 127.0.0.1:18080 }}\n"),
                &["admin.listen"],
            ),
            (
                &format!("{ROUTE}admin: {{ token: short-but-literal }}\n"),
                &["admin.token"],
            ),
            (
                &format!("{ROUTE}trusted_proxies: [nonsense]\nlog: {{ level: \"a,[\" }}\n"),
                &["log.level", "trusted_proxies[0]"],
            ),
            (
                &format!("{ROUTE}identity_headers: {{ prefix: \"bad prefix\" }}\n"),
                &["identity_headers.prefix"],
            ),
        ];
        for (body, want) in table {
            assert_eq!(error_paths(body), *want, "{body}");
        }
    }

    #[test]
    fn claims_no_rule_reads_and_no_header_carries_are_not_kept() {
        let settings = |rule: &str| {
            let text = format!(
                "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nproviders:\n  bitgo:\n    kind: bitgo\n    url: http://127.0.0.1:1/s\n    response: {{ claims: {{ Label: /session/label, hidden: {{ pointer: /session/origin, forward: false }} }} }}\nroutes:\n  - {{ path_prefix: /, provider: bitgo, upstream: echo, rules: [{{ name: r, expr: \"{rule}\" }}] }}\n"
            );
            crate::config::from_str(&text, std::path::Path::new(".")).unwrap()
        };
        let kept = |s: &crate::config::Settings| -> Vec<String> {
            match &s.providers["bitgo"].spec {
                crate::identity::provider::ProviderSpec::Http(h) => {
                    h.mapping.claims.iter().map(|c| c.name.clone()).collect()
                }
                other => panic!("{other:?}"),
            }
        };
        // The preset's `enterprise`, `unlock`, and the unread `hidden` go; a forwarded
        // claim and the one the rule reads stay.
        let reads_one = settings("identity.claims.unlocked_until > now");
        assert_eq!(kept(&reads_one), ["unlocked_until", "Label"]);
        let reads_none = settings("identity.subject != ''");
        assert_eq!(kept(&reads_none), ["Label"]);
        // Read whole (iterated): every claim is kept.
        let reads_all = settings("identity.claims.all(k, k != '')");
        assert_eq!(
            kept(&reads_all),
            ["enterprise", "unlocked_until", "unlock", "Label", "hidden"]
        );
        // What is kept is part of the fingerprint: cached identities made without a claim
        // are never read by a rule that needs it.
        let fp = |s: &crate::config::Settings| s.providers["bitgo"].fingerprint;
        assert_ne!(fp(&reads_one), fp(&reads_none));
        assert_eq!(fp(&reads_none), fp(&settings("identity.subject == 'x'")));
    }
}
