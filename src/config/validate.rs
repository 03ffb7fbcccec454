//! From the file as written to the [`Settings`] the gateway runs with: defaults applied,
//! references checked, secrets resolved, URLs and addresses parsed. Each error names its key.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::duration::ConfigDuration;
use super::file::{
    AssertionFile, AuthMode, FileConfig, MethodScopesFile, ModeFile, OneOrMany, ProviderFile,
    ProviderKind, RouteFile, ScopeRuleFile,
};
use super::{ConfigError, ConnectionLimits, ProviderSettings, RequestSettings, Settings};
use crate::identity::cache::CacheSettings;
use crate::identity::provider::format::{Charset, TokenFormat};
use crate::identity::provider::guard::Protection;
use crate::policy::net::IpNet;
use crate::policy::{MethodScopes, Mode, RoutePolicy, ScopeRule};
use crate::proxy::assertion::{AssertionSpec, SigningKey};
use crate::proxy::canonical::{canonical_host, normalize_path, HeaderHygiene, OVERRIDE_HEADERS};
use crate::proxy::forwarded::TrustedProxies;
use crate::proxy::headers::{IdentityHeaders, DEFAULT_PREFIX};
use crate::proxy::route::{RouteSpec, UpstreamProtocol, UpstreamSpec, ECHO_UPSTREAM};
use crate::telemetry::logging::LogSettings;

const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

type Result<T> = std::result::Result<T, ConfigError>;

/// Checks a parsed file and builds the runtime settings; the first error (see
/// [`validate_all`] for every one).
pub fn validate(file: FileConfig, base_dir: &Path) -> Result<Settings> {
    validate_all(file, base_dir).map_err(|mut all| all.swap_remove(0))
}

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
pub fn validate_all(
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
    let routes = routes(
        &file,
        &providers,
        &upstreams,
        assertion_keys.as_deref(),
        &broken,
        &mut errs,
    );

    let identity_headers = errs.keep(identity_headers(&file));
    let level = file.log.level.clone().unwrap_or_else(|| "info".into());
    errs.keep(
        tracing_subscriber::EnvFilter::try_new(&level)
            .map_err(|e| ConfigError::at("log.level", format!("not a valid log filter: {e}"))),
    );
    let admin_token = admin_token(&file, base_dir, &mut errs);
    let cluster = match &file.cluster {
        Some(c) => errs.keep(cluster(c, base_dir)).map(Some),
        None => Some(None),
    };
    let cache = errs.keep(cache(&file));
    let requests = errs.keep(requests(&file));
    let connections = errs.keep(connections(&file));
    let trusted_proxies = errs.keep(cidrs("trusted_proxies", &file.trusted_proxies));

    let (
        Some(Listeners {
            listen,
            admin_listen,
            admin_api_listen,
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
        trusted_proxies: TrustedProxies(trusted_proxies),
        assertion_keys,
        identity_headers,
        log: LogSettings {
            format: file.log.format,
            level,
        },
        admin_token,
        admin_api_listen,
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
    Some(Listeners {
        listen,
        admin_listen,
        admin_api_listen,
        tls,
    })
}

/// Names of providers and upstreams whose own definition failed.
#[derive(Default)]
struct Broken {
    providers: HashSet<String>,
    upstreams: HashSet<String>,
}

fn providers(
    file: &FileConfig,
    base_dir: &Path,
    errs: &mut Errors,
    broken: &mut Broken,
) -> BTreeMap<String, ProviderSettings> {
    let mut providers = BTreeMap::new();
    for (name, p) in &file.providers {
        let path = format!("providers.{name}");
        let checked = (|| {
            check_name(&path, name)?;
            Ok(ProviderSettings {
                spec: super::providers::provider(&path, p, base_dir)?,
                protection: protection(&path, p)?,
                token_format: token_format(&path, p)?,
                fingerprint: fingerprint(p),
            })
        })();
        match errs.keep(checked) {
            Some(settings) => {
                providers.insert(name.clone(), settings);
            }
            None => {
                broken.providers.insert(name.clone());
            }
        }
    }
    providers
}

fn upstreams(
    file: &FileConfig,
    base_dir: &Path,
    errs: &mut Errors,
    broken: &mut Broken,
) -> BTreeMap<String, UpstreamSpec> {
    let mut upstreams = BTreeMap::new();
    for (name, up) in &file.upstreams {
        let path = format!("upstreams.{name}");
        let checked = (|| {
            check_name(&path, name)?;
            if name == ECHO_UPSTREAM {
                return Err(ConfigError::at(
                    &path,
                    "`echo` is the built-in echo upstream; choose another name",
                ));
            }
            upstream(&path, name, up, base_dir)
        })();
        match errs.keep(checked) {
            Some(spec) => {
                upstreams.insert(name.clone(), spec);
            }
            None => {
                broken.upstreams.insert(name.clone());
            }
        }
    }
    upstreams
}

/// Every route; one that names a broken definition is not judged.
fn routes(
    file: &FileConfig,
    providers: &BTreeMap<String, ProviderSettings>,
    upstreams: &BTreeMap<String, UpstreamSpec>,
    assertion_keys: Option<&[Arc<SigningKey>]>,
    broken: &Broken,
    errs: &mut Errors,
) -> Vec<RouteSpec> {
    if file.routes.is_empty() {
        errs.add("routes", "at least one route is needed");
    }
    let mut routes = Vec::with_capacity(file.routes.len());
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    for (i, r) in file.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let named_providers = match &r.provider {
            Some(OneOrMany::One(n)) => std::slice::from_ref(n),
            Some(OneOrMany::Many(ns)) => ns.as_slice(),
            None => &[],
        };
        if named_providers.iter().any(|n| broken.providers.contains(n))
            || broken.upstreams.contains(&r.upstream)
        {
            continue;
        }
        let Some(mut route) = errs.keep(route(&path, r, providers, upstreams)) else {
            continue;
        };
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
        if !seen.insert((route.host.clone(), route.path_prefix.clone())) {
            errs.add(
                format!("{path}.path_prefix"),
                "another route already has this path_prefix and host",
            );
        }
        if !names.insert(route.name.clone()) {
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

fn cluster(
    c: &super::file::ClusterFile,
    base_dir: &Path,
) -> Result<crate::cluster::ClusterSettings> {
    let url = url::Url::parse(&c.redis.url).map_err(|e| {
        ConfigError::at(
            "cluster.redis.url",
            format!("not a URL ({e}): expected redis://host:6379/0 or rediss://host:6380/0"),
        )
    })?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(ConfigError::at(
            "cluster.redis.url",
            format!(
                "scheme `{}` is not Redis: expected redis:// or rediss:// (TLS)",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::at("cluster.redis.url", "names no host"));
    }
    if url.password().is_some() {
        return Err(ConfigError::at(
            "cluster.redis.url",
            "holds a password: give it as cluster.redis.password: ${ENV_VAR} or cluster.redis.password_file",
        ));
    }
    let password = super::secret::resolve(
        "cluster.redis.password",
        c.redis.password.as_deref(),
        c.redis.password_file.as_deref(),
        base_dir,
    )?;
    let key_secret = super::secret::resolve(
        "cluster.key_secret",
        c.key_secret.as_deref(),
        c.key_secret_file.as_deref(),
        base_dir,
    )?
    .ok_or_else(|| {
        ConfigError::at(
            "cluster.key_secret_file",
            "is required: a secret shared by every replica (e.g. `head -c 32 /dev/urandom | base64`), which keys the token keys and purge names",
        )
    })?;
    super::secret::require_length(
        "cluster.key_secret",
        c.key_secret.is_some(),
        &key_secret,
        32,
        "the cluster secret",
    )?;
    let positive = nonzero;
    let max_entries = c.revocations.max_entries.unwrap_or(100_000);
    if max_entries < 1_000 {
        return Err(ConfigError::at(
            "cluster.revocations.max_entries",
            "must be at least 1000 (replicas disconnected longer than the stream covers flush their caches)",
        ));
    }
    let stream = c
        .revocations
        .stream
        .clone()
        .unwrap_or_else(|| "sessiongate:revocations".into());
    if stream.is_empty() {
        return Err(ConfigError::at(
            "cluster.revocations.stream",
            "cannot be empty",
        ));
    }
    let shared_cache = match &c.shared_cache {
        Some(super::file::Toggle::Switch(false)) => None,
        Some(super::file::Toggle::Switch(true)) | None => Some(shared_cache(
            &super::file::ClusterSharedCacheFile::default(),
        )?),
        Some(super::file::Toggle::Settings(s)) if s.enabled == Some(false) => None,
        Some(super::file::Toggle::Settings(s)) => Some(shared_cache(s)?),
    };
    Ok(crate::cluster::ClusterSettings {
        url: c.redis.url.clone(),
        password,
        connect_timeout: positive(
            "cluster.redis.connect_timeout",
            c.redis.connect_timeout.as_ref(),
            Duration::from_secs(1),
        )?,
        command_timeout: positive(
            "cluster.redis.command_timeout",
            c.redis.command_timeout.as_ref(),
            Duration::from_millis(200),
        )?,
        key_secret,
        stream,
        max_entries,
        shared_cache,
    })
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

fn shared_cache(
    s: &super::file::ClusterSharedCacheFile,
) -> Result<crate::cluster::SharedCacheSettings> {
    let positive = nonzero;
    let key_prefix = s
        .key_prefix
        .clone()
        .unwrap_or_else(|| "sessiongate:identities".into());
    if key_prefix.is_empty() || key_prefix.contains(char::is_whitespace) {
        return Err(ConfigError::at(
            "cluster.shared_cache.key_prefix",
            "must be a non-empty Redis key prefix without spaces",
        ));
    }
    let timeout = positive(
        "cluster.shared_cache.timeout",
        s.timeout.as_ref(),
        Duration::from_millis(50),
    )?;
    let lock_wait = positive(
        "cluster.shared_cache.lock_wait",
        s.lock_wait.as_ref(),
        Duration::from_secs(1),
    )?;
    if lock_wait > Duration::from_secs(30) {
        return Err(ConfigError::at(
            "cluster.shared_cache.lock_wait",
            "at most 30s: a request waits this long at worst for another replica's provider call",
        ));
    }
    Ok(crate::cluster::SharedCacheSettings {
        key_prefix,
        timeout,
        lock_wait,
    })
}

/// A stable hash of a provider's definition as written (secret *references*, not values).
fn fingerprint(p: &ProviderFile) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{p:?}").as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn protection(path: &str, p: &ProviderFile) -> Result<Option<Protection>> {
    let mut d = Protection::default();
    if p.kind == ProviderKind::Jwt {
        // A JWT provider calls nothing per token; its only failures are JWKS fetches,
        // which have their own rate limit. A breaker would only keep refusing tokens
        // for `open_for` after the JWKS is back.
        d.failures = 0;
    }
    let Some(f) = &p.protection else {
        return Ok((p.kind != ProviderKind::Static).then_some(d));
    };
    if p.kind == ProviderKind::Static {
        return Err(ConfigError::at(
            format!("{path}.protection"),
            "not used by kind `static` (it calls nothing)",
        ));
    }
    let positive = |key: &str, v: Option<ConfigDuration>, default: Duration| match v {
        Some(d) if d.0.is_zero() => Err(ConfigError::at(
            format!("{path}.protection.{key}"),
            "must be longer than zero",
        )),
        Some(d) => Ok(d.0),
        None => Ok(default),
    };
    Ok(Some(Protection {
        max_concurrent: f.max_concurrent.unwrap_or(d.max_concurrent),
        queue_timeout: positive("queue_timeout", f.queue_timeout, d.queue_timeout)?,
        failures: f.failures.unwrap_or(d.failures),
        open_for: positive("open_for", f.open_for, d.open_for)?,
        half_open_probes: match f.half_open_probes {
            Some(0) => {
                return Err(ConfigError::at(
                    format!("{path}.protection.half_open_probes"),
                    "must be at least 1",
                ))
            }
            Some(n) => n,
            None => d.half_open_probes,
        },
    }))
}

fn token_format(path: &str, p: &ProviderFile) -> Result<TokenFormat> {
    let d = if p.kind == ProviderKind::Jwt {
        TokenFormat::jwt()
    } else {
        TokenFormat::opaque()
    };
    let Some(f) = &p.token_format else {
        return Ok(d);
    };
    let key = |k: &str| format!("{path}.token_format.{k}");
    let charset = match &f.charset {
        Some(c) => Charset::parse(c).ok_or_else(|| {
            ConfigError::at(
                key("charset"),
                format!("unknown charset {c:?}: use visible, b64token, base64url, hex, alphanumeric or jwt"),
            )
        })?,
        None => d.charset,
    };
    if p.kind == ProviderKind::Jwt && charset != Charset::Jwt {
        return Err(ConfigError::at(
            key("charset"),
            "a `jwt` provider only takes JWT-shaped tokens: use `jwt` or leave it out",
        ));
    }
    let min_length = f.min_length.unwrap_or(d.min_length).max(1);
    let max_length = f.max_length.unwrap_or(d.max_length);
    if max_length > crate::identity::token::DEFAULT_MAX_TOKEN_BYTES {
        return Err(ConfigError::at(
            key("max_length"),
            format!(
                "at most {} (longer tokens are refused before any provider sees them)",
                crate::identity::token::DEFAULT_MAX_TOKEN_BYTES
            ),
        ));
    }
    if min_length > max_length {
        return Err(ConfigError::at(
            key("min_length"),
            "must not exceed max_length",
        ));
    }
    if let Some(prefix) = &f.prefix {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::at(
                key("prefix"),
                "must be visible ASCII characters",
            ));
        }
    }
    Ok(TokenFormat {
        min_length,
        max_length,
        charset,
        prefix: f.prefix.clone(),
    })
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

fn upstream(
    path: &str,
    name: &str,
    up: &super::file::UpstreamFile,
    base_dir: &Path,
) -> Result<UpstreamSpec> {
    use super::file::UpstreamFile;
    let (text, url_path, protocol) = match up {
        UpstreamFile::Url(u) => (u.as_str(), path.to_string(), None),
        UpstreamFile::Options(o) => (o.url.as_str(), format!("{path}.url"), o.protocol.as_deref()),
    };
    // `h2c://host:port` is `http://host:port` spoken in HTTP/2 with prior knowledge.
    let (text, h2c) = match text.strip_prefix("h2c://") {
        Some(rest) => (format!("http://{rest}"), true),
        None => (text.to_string(), false),
    };
    let url = reqwest::Url::parse(&text)
        .map_err(|e| ConfigError::at(&url_path, format!("not a valid URL: {e}")))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(ConfigError::at(
                &url_path,
                format!("scheme `{other}` is not supported: use http://, https:// or h2c://"),
            ))
        }
    };
    let protocol =
        match (protocol, h2c) {
            (None, false) | (Some("http1"), false) => UpstreamProtocol::Http1,
            (None, true) | (Some("http2"), _) => UpstreamProtocol::Http2,
            (Some("auto"), false) if tls => UpstreamProtocol::Auto,
            (Some("auto"), false) => return Err(ConfigError::at(
                format!("{path}.protocol"),
                "`auto` needs an https:// upstream (ALPN chooses); over http:// say http1 or http2",
            )),
            (Some("http1" | "auto"), true) => {
                return Err(ConfigError::at(
                    format!("{path}.protocol"),
                    "an h2c:// upstream speaks HTTP/2; drop `protocol` or use http://",
                ))
            }
            (Some(other), _) => {
                return Err(ConfigError::at(
                    format!("{path}.protocol"),
                    format!("`{other}` is not a protocol: http1, http2 or auto"),
                ))
            }
        };
    let host = url
        .host_str()
        .ok_or_else(|| ConfigError::at(path, "the URL needs a host"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
        return Err(ConfigError::at(
            path,
            "give only scheme://host:port; request paths are forwarded unchanged",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::at(
            path,
            "credentials in upstream URLs are not supported",
        ));
    }
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    // Host names are resolved when the gateway starts (`Gateway::new`), not here, so
    // `--check` works where the upstreams' names do not resolve (CI, another cluster).
    let authority = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    };
    let tls_options = match up {
        UpstreamFile::Options(o) => upstream_tls(path, o, tls, base_dir)?,
        UpstreamFile::Url(_) => None,
    };
    let max_in_flight = match up {
        UpstreamFile::Options(o) => o.max_in_flight,
        UpstreamFile::Url(_) => None,
    }
    .unwrap_or(crate::proxy::route::DEFAULT_MAX_IN_FLIGHT);
    if !(1..=1_000_000).contains(&max_in_flight) {
        return Err(ConfigError::at(
            format!("{path}.max_in_flight"),
            "must be between 1 and 1000000",
        ));
    }
    Ok(UpstreamSpec {
        name: name.to_string(),
        authority,
        tls,
        host,
        protocol,
        tls_options,
        max_in_flight,
    })
}

/// An `https://` upstream's options; the files are loaded here too, so that a bad one
/// stops `--check` with its key named.
fn upstream_tls(
    path: &str,
    o: &super::file::UpstreamOptionsFile,
    tls: bool,
    base_dir: &Path,
) -> Result<Option<crate::proxy::route::UpstreamTlsFiles>> {
    let given = [
        ("ca_file", o.ca_file.is_some()),
        ("server_name", o.server_name.is_some()),
        ("verify_hostname", o.verify_hostname.is_some()),
        ("client_certificate", o.client_certificate.is_some()),
    ];
    if !tls {
        if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
            return Err(ConfigError::at(
                format!("{path}.{key}"),
                "only for https:// upstreams",
            ));
        }
        return Ok(None);
    }
    if !given.iter().any(|(_, set)| *set) {
        return Ok(None);
    }
    if let Some(name) = &o.server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(ConfigError::at(
                format!("{path}.server_name"),
                "not a DNS name or IP address",
            ));
        }
    }
    let files = crate::proxy::route::UpstreamTlsFiles {
        ca_file: o.ca_file.as_ref().map(|f| base_dir.join(f)),
        server_name: o.server_name.clone(),
        verify_hostname: o.verify_hostname.unwrap_or(true),
        client_certificate: o
            .client_certificate
            .as_ref()
            .map(|c| crate::tls::CertificateFiles {
                chain: base_dir.join(&c.chain),
                key: base_dir.join(&c.key),
            }),
    };
    if !files.verify_hostname && files.ca_file.is_none() {
        return Err(ConfigError::at(
            format!("{path}.verify_hostname"),
            "`false` needs `ca_file`: the name check is skipped only against a private CA you name",
        ));
    }
    if let Some(ca) = &files.ca_file {
        crate::tls::read_ca_file(ca).map_err(|e| ConfigError::at(format!("{path}.ca_file"), e))?;
    }
    if let Some(cert) = &files.client_certificate {
        crate::tls::load_pair(cert)
            .map_err(|e| ConfigError::at(format!("{path}.client_certificate"), e))?;
    }
    Ok(Some(files))
}

fn route(
    path: &str,
    r: &RouteFile,
    providers: &BTreeMap<String, ProviderSettings>,
    upstreams: &BTreeMap<String, UpstreamSpec>,
) -> Result<RouteSpec> {
    let prefix = &r.path_prefix;
    let normalized = normalize_path(prefix)
        .ok()
        .filter(|n| !n.encoded_slash)
        .map(|n| n.forward);
    let is_normal = normalized
        .as_deref()
        .is_some_and(|n| n == prefix || format!("{n}/") == *prefix);
    if !is_normal {
        return Err(ConfigError::at(
            format!("{path}.path_prefix"),
            format!("{prefix:?} must be a normalized absolute path such as /api (no //, . or .. segments)"),
        ));
    }
    let host = match &r.host {
        // Compared with the request's canonical host name: lower-case, no trailing dot.
        Some(h) => match canonical_host(h.as_bytes()) {
            Ok(c) if c.port.is_none() => Some(c.name),
            _ => {
                return Err(ConfigError::at(
                    format!("{path}.host"),
                    "give a host name without scheme or port, such as api.example.com",
                ))
            }
        },
        None => None,
    };
    let all_providers = providers;
    let providers = route_providers(path, r, providers)?;
    if r.upstream != ECHO_UPSTREAM && !upstreams.contains_key(&r.upstream) {
        return Err(ConfigError::at(
            format!("{path}.upstream"),
            format!(
                "no upstream named `{}` (define it under `upstreams`, or use the built-in `echo`)",
                r.upstream
            ),
        ));
    }
    let authenticated = !providers.is_empty();
    let providers_named = providers.clone();
    let policy = route_policy(path, r, authenticated)?;
    let forward_authorization = r.forward_authorization.unwrap_or(true);
    let stale_if_error = r.stale_if_error.map_or(Duration::ZERO, |d| d.0);
    if !authenticated && !stale_if_error.is_zero() {
        return Err(ConfigError::at(
            format!("{path}.stale_if_error"),
            "a route with `auth: none` has no identity to serve stale; remove it",
        ));
    }
    let name = match &r.name {
        Some(n) => {
            check_name(&format!("{path}.name"), n)?;
            n.clone()
        }
        None => format!("{}{}", host.as_deref().unwrap_or(""), prefix),
    };
    Ok(RouteSpec {
        name: name.into(),
        path_prefix: prefix.clone(),
        host,
        providers,
        upstream: r.upstream.clone(),
        policy,
        forward_authorization,
        assertion: None,
        stale_if_error,
        allow_encoded_slashes: r.allow_encoded_slashes.unwrap_or(false),
        require_client_certificate: certificate_ids(path, r)?,
        credentials: {
            let credentials = credentials(path, r, authenticated)?;
            pair_certificates(path, &credentials, &providers_named, all_providers)?;
            credentials
        },
    })
}

/// The providers a route names (none with `auth: none`), each defined under `providers`.
fn route_providers(
    path: &str,
    r: &RouteFile,
    providers: &BTreeMap<String, ProviderSettings>,
) -> Result<Vec<String>> {
    let names: Option<Vec<String>> = r.provider.as_ref().map(|p| match p {
        OneOrMany::One(n) => vec![n.clone()],
        OneOrMany::Many(ns) => ns.clone(),
    });
    Ok(match (r.auth.unwrap_or(AuthMode::Required), &names) {
        (AuthMode::None, Some(_)) => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                "a route with `auth: none` reads no token; remove `provider`",
            ))
        }
        (AuthMode::None, None) => Vec::new(),
        (AuthMode::Required, None) => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                "required (or set `auth: none` for a public route)",
            ))
        }
        (AuthMode::Required, Some(list)) if list.is_empty() => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                "name at least one provider",
            ))
        }
        (AuthMode::Required, Some(list)) => {
            if let Some(name) = list.iter().find(|n| !providers.contains_key(*n)) {
                return Err(ConfigError::at(
                    format!("{path}.provider"),
                    format!("no provider named `{name}` under `providers`"),
                ));
            }
            list.clone()
        }
    })
}

/// `require_client_certificate`: certificate ids (or `"*"`), never an empty list.
fn certificate_ids(path: &str, r: &RouteFile) -> Result<Vec<String>> {
    let ids = r.require_client_certificate.clone().unwrap_or_default();
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() || !id.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(ConfigError::at(
                format!("{path}.require_client_certificate[{i}]"),
                "a certificate id (URI SAN, DNS SAN or CN, printable ASCII) or \"*\"",
            ));
        }
    }
    if r.require_client_certificate
        .as_ref()
        .is_some_and(|l| l.is_empty())
    {
        return Err(ConfigError::at(
            format!("{path}.require_client_certificate"),
            "list certificate ids, or [\"*\"] for any verified certificate",
        ));
    }
    Ok(ids)
}

/// `token_sources`, `forward_token_cookie`, `csrf_trusted_origins`.
/// A client certificate is a credential of its own: a route reads it alone
/// (`token_sources: [client_certificate]`) with `client_certificate` providers only, and
/// those providers serve no other route — so a header can never stand in for a verified
/// certificate, nor a certificate id for a token.
fn pair_certificates(
    path: &str,
    credentials: &crate::proxy::route::Credentials,
    route_providers: &[String],
    all: &BTreeMap<String, ProviderSettings>,
) -> Result<()> {
    use crate::identity::provider::ProviderSpec;
    use crate::identity::token::TokenSource;
    let from_certificate = credentials
        .sources
        .contains(&TokenSource::ClientCertificate);
    if from_certificate && credentials.sources.len() > 1 {
        return Err(ConfigError::at(
            format!("{path}.token_sources"),
            "`client_certificate` is read alone: list no other source beside it",
        ));
    }
    for name in route_providers {
        let is_certificate = all
            .get(name)
            .is_some_and(|p| matches!(p.spec, ProviderSpec::ClientCertificate { .. }));
        if is_certificate != from_certificate {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                if from_certificate {
                    format!("`{name}` reads tokens; a route with `token_sources: [client_certificate]` needs providers of kind `client_certificate`")
                } else {
                    format!("`{name}` is of kind `client_certificate`: the route needs `token_sources: [client_certificate]`")
                },
            ));
        }
    }
    Ok(())
}

fn credentials(
    path: &str,
    r: &super::file::RouteFile,
    authenticated: bool,
) -> Result<crate::proxy::route::Credentials> {
    use super::file::TokenSourceFile;
    use crate::identity::token::TokenSource;
    let mut out = crate::proxy::route::Credentials::default();
    let given = r.token_sources.is_some()
        || r.forward_token_cookie.is_some()
        || r.csrf_trusted_origins.is_some();
    if given && !authenticated {
        return Err(ConfigError::at(
            format!("{path}.token_sources"),
            "a route with `auth: none` reads no token; remove token_sources, forward_token_cookie and csrf_trusted_origins",
        ));
    }
    if let Some(list) = &r.token_sources {
        if list.is_empty() {
            return Err(ConfigError::at(
                format!("{path}.token_sources"),
                "name at least one source (authorization, cookie: <name>, header: <name>)",
            ));
        }
        out.sources.clear();
        for (i, source) in list.iter().enumerate() {
            let key = format!("{path}.token_sources[{i}]");
            let source = match source {
                TokenSourceFile::Authorization => TokenSource::Authorization,
                TokenSourceFile::ClientCertificate => TokenSource::ClientCertificate,
                TokenSourceFile::Cookie(name) => {
                    // RFC 6265 cookie-name: a token (visible ASCII without separators).
                    let ok = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
                    if !ok {
                        return Err(ConfigError::at(
                            key,
                            format!("{name:?} is not a cookie name"),
                        ));
                    }
                    TokenSource::Cookie(name.clone())
                }
                TokenSourceFile::Header(name) => {
                    let lower = name.to_ascii_lowercase();
                    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                        return Err(ConfigError::at(
                            key,
                            format!("{name:?} is not a header name"),
                        ));
                    }
                    if matches!(
                        lower.as_str(),
                        "authorization"
                            | "cookie"
                            | "host"
                            | "connection"
                            | "content-length"
                            | "transfer-encoding"
                            | "upgrade"
                            | "te"
                            | "trailer"
                            | "x-forwarded-for"
                            | "forwarded"
                    ) {
                        return Err(ConfigError::at(
                            key,
                            format!("{name:?} cannot carry a token (use `authorization` or `cookie: <name>` for those)"),
                        ));
                    }
                    TokenSource::Header(lower)
                }
            };
            if out.sources.contains(&source) {
                return Err(ConfigError::at(
                    key,
                    format!("{} is listed twice", source.describe()),
                ));
            }
            out.sources.push(source);
        }
    }
    out.forward_cookie = r.forward_token_cookie.unwrap_or(false);
    for (i, origin) in r.csrf_trusted_origins.iter().flatten().enumerate() {
        let key = format!("{path}.csrf_trusted_origins[{i}]");
        let parsed = url::Url::parse(origin).map_err(|e| {
            ConfigError::at(
                &key,
                format!("not an origin ({e}): expected https://host[:port]"),
            )
        })?;
        let canonical = parsed.origin().ascii_serialization();
        if canonical == "null" || parsed.path() != "/" || origin.trim_end_matches('/') != canonical
        {
            return Err(ConfigError::at(
                key,
                format!("{origin:?} is not an origin: expected scheme://host[:port] with nothing after it (e.g. {canonical})"),
            ));
        }
        out.trusted_origins.push(canonical);
    }
    Ok(out)
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
    let mut certificates = Vec::with_capacity(t.certificates.len());
    for (i, c) in t.certificates.iter().enumerate() {
        let files = crate::tls::CertificateFiles {
            chain: base_dir.join(&c.chain),
            key: base_dir.join(&c.key),
        };
        // Loaded now so that a bad pair stops the start (or the reload) with its key named.
        crate::tls::load_pair(&files)
            .map_err(|e| ConfigError::at(format!("tls.certificates[{i}]"), e))?;
        certificates.push(files);
    }
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
            crate::tls::read_ca_file(&ca_file)
                .map_err(|e| ConfigError::at("tls.client_certificates.ca_file", e))?;
            Some(crate::tls::ClientCertificates {
                ca_file,
                required: c.required.unwrap_or(true),
            })
        }
    };
    Ok(crate::tls::TlsListener {
        listen,
        certificates,
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

fn assertion_keys(file: &FileConfig, base_dir: &Path) -> Result<Vec<Arc<SigningKey>>> {
    let mut keys: Vec<Arc<SigningKey>> = Vec::new();
    for (i, k) in file.assertion_keys.iter().enumerate() {
        let path = format!("assertion_keys[{i}]");
        if k.kid.is_empty() || keys.iter().any(|o| o.kid == k.kid) {
            return Err(ConfigError::at(
                format!("{path}.kid"),
                "kids must be non-empty and unique",
            ));
        }
        let algorithm: jsonwebtoken::Algorithm = k.algorithm.parse().map_err(|_| {
            ConfigError::at(
                format!("{path}.algorithm"),
                format!("{:?}: use ES256, EdDSA, RS256 or PS256", k.algorithm),
            )
        })?;
        let full = base_dir.join(&k.key_file);
        let pem = std::fs::read_to_string(&full).map_err(|e| {
            ConfigError::at(
                format!("{path}.key_file"),
                format!("cannot read {}: {e}", full.display()),
            )
        })?;
        let key = SigningKey::from_pem(&k.kid, algorithm, &pem)
            .map_err(|e| ConfigError::at(format!("{path}.key_file"), e))?;
        keys.push(Arc::new(key));
    }
    Ok(keys)
}

fn assertion(
    path: &str,
    a: &AssertionFile,
    keys: &[Arc<SigningKey>],
    prefix: &str,
    authenticated: bool,
) -> Result<Arc<AssertionSpec>> {
    let path = format!("{path}.assertion");
    if !authenticated {
        return Err(ConfigError::at(
            path,
            "a route with `auth: none` has no identity to assert",
        ));
    }
    let key = match &a.key {
        Some(kid) => keys
            .iter()
            .find(|k| &k.kid == kid)
            .cloned()
            .ok_or_else(|| {
                ConfigError::at(
                    format!("{path}.key"),
                    format!("no `assertion_keys` entry with kid `{kid}`"),
                )
            })?,
        None => keys.first().cloned().ok_or_else(|| {
            ConfigError::at(
                path.clone(),
                "needs a signing key: add one under `assertion_keys`",
            )
        })?,
    };
    let header = a
        .header
        .clone()
        .unwrap_or_else(|| format!("{prefix}Assertion"));
    let normalized = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    if !normalized(&header).starts_with(&normalized(prefix)) {
        return Err(ConfigError::at(
            format!("{path}.header"),
            format!("must start with the identity header prefix `{prefix}`, so client-sent copies are always stripped"),
        ));
    }
    let header = crate::proxy::wire_name::WireName::new(header)
        .ok_or_else(|| ConfigError::at(format!("{path}.header"), "not a valid header name"))?;
    let ttl = a.ttl.map_or(Duration::from_secs(60), |d| d.0);
    if ttl < Duration::from_secs(1) {
        return Err(ConfigError::at(
            format!("{path}.ttl"),
            "must be at least 1s",
        ));
    }
    if a.audience.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.audience"),
            "cannot be empty",
        ));
    }
    Ok(Arc::new(AssertionSpec {
        header,
        key,
        ttl,
        audience: a.audience.clone(),
        issuer: a.issuer.clone().unwrap_or_else(|| "sessiongate".into()),
    }))
}

fn cidrs(path: &str, list: &[String]) -> Result<Vec<IpNet>> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            IpNet::parse(s).map_err(|e| ConfigError::at(format!("{path}[{i}]"), e.to_string()))
        })
        .collect()
}

fn scope_rule(path: &str, all_of: &[String], any_of: &[String]) -> Result<ScopeRule> {
    for (key, list) in [("all_of", all_of), ("any_of", any_of)] {
        for (i, scope) in list.iter().enumerate() {
            let bad = scope.is_empty()
                || scope
                    .bytes()
                    .any(|b| b <= b' ' || b == b'"' || b == b'\\' || b >= 0x7f)
                || scope.strip_suffix('*').unwrap_or(scope).contains('*');
            if bad {
                return Err(ConfigError::at(
                    format!("{path}.{key}[{i}]"),
                    format!("{scope:?} is not a scope (no spaces, quotes or backslashes; `*` only at the end)"),
                ));
            }
        }
    }
    Ok(ScopeRule {
        all_of: all_of.to_vec(),
        any_of: any_of.to_vec(),
    })
}

/// HTTP methods as a rule lists them (upper-cased); `GET` brings `HEAD` (RFC 9110 §9.3.2:
/// HEAD is GET without the body — same existence, same headers), so a rule on GET is
/// never bypassed by HEAD.
fn method_list(path: &str, names: &[String]) -> Result<Vec<http::Method>> {
    let mut methods: Vec<http::Method> = Vec::new();
    for name in names {
        let method = http::Method::from_bytes(name.to_ascii_uppercase().as_bytes())
            .map_err(|_| ConfigError::at(path, format!("{name:?} is not an HTTP method")))?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    if methods.contains(&http::Method::GET) && !methods.contains(&http::Method::HEAD) {
        methods.push(http::Method::HEAD);
    }
    Ok(methods)
}

fn route_policy(path: &str, r: &RouteFile, authenticated: bool) -> Result<RoutePolicy> {
    if !authenticated {
        for (key, given) in [
            ("require_scopes", r.require_scopes.is_some()),
            ("method_scopes", r.method_scopes.is_some()),
        ] {
            if given {
                return Err(ConfigError::at(
                    format!("{path}.{key}"),
                    "a route with `auth: none` has no identity to check scopes on",
                ));
            }
        }
    }
    let scopes = match &r.require_scopes {
        Some(ScopeRuleFile { all_of, any_of }) => {
            if all_of.is_empty() && any_of.is_empty() {
                return Err(ConfigError::at(
                    format!("{path}.require_scopes"),
                    "give `all_of` and/or `any_of`",
                ));
            }
            scope_rule(&format!("{path}.require_scopes"), all_of, any_of)?
        }
        None => ScopeRule::default(),
    };
    let mut method_scopes = Vec::new();
    for (i, m) in r.method_scopes.iter().flatten().enumerate() {
        let mpath = format!("{path}.method_scopes[{i}]");
        let MethodScopesFile {
            methods,
            all_of,
            any_of,
        } = m;
        if methods.is_empty() {
            return Err(ConfigError::at(
                format!("{mpath}.methods"),
                "list at least one method",
            ));
        }
        if all_of.is_empty() && any_of.is_empty() {
            return Err(ConfigError::at(mpath, "give `all_of` and/or `any_of`"));
        }
        let methods = method_list(&format!("{mpath}.methods"), methods)?;
        method_scopes.push(MethodScopes {
            methods,
            rule: scope_rule(&mpath, all_of, any_of)?,
        });
    }
    let methods = match &r.methods {
        None => Vec::new(),
        Some(list) if list.is_empty() => {
            return Err(ConfigError::at(
                format!("{path}.methods"),
                "list the methods the route takes (or leave `methods` out: any method)",
            ))
        }
        Some(list) => method_list(&format!("{path}.methods"), list)?,
    };
    if !method_scopes.is_empty() && r.require_scopes.is_none() && methods.is_empty() {
        // The trap: "GET needs X, POST needs Y" written with `method_scopes` alone lets
        // every other method through with any valid token.
        let mut covered: Vec<&str> = Vec::new();
        for m in method_scopes.iter().flat_map(|m| m.methods.iter()) {
            if !covered.contains(&m.as_str()) {
                covered.push(m.as_str());
            }
        }
        return Err(ConfigError::at(
            format!("{path}.method_scopes"),
            format!(
                "only {} have scope rules here: any other method (PUT, DELETE, PATCH, OPTIONS, …) \
                 would pass with any valid token. Add `methods: [{}]` to refuse the others \
                 (405), or `require_scopes` for every method, or list the other methods the \
                 route takes in `methods` too",
                covered.join(", "),
                covered.join(", ")
            ),
        ));
    }
    Ok(RoutePolicy {
        methods,
        scopes,
        method_scopes,
        allow_cidrs: cidrs(
            &format!("{path}.allow_cidrs"),
            r.allow_cidrs.as_deref().unwrap_or(&[]),
        )?,
        deny_cidrs: cidrs(
            &format!("{path}.deny_cidrs"),
            r.deny_cidrs.as_deref().unwrap_or(&[]),
        )?,
        mode: match r.mode {
            Some(ModeFile::Report) => Mode::Report,
            Some(ModeFile::Enforce) | None => Mode::Enforce,
        },
    })
}
