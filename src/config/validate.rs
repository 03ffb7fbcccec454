//! From the file as written to the [`Settings`] the gateway runs with: defaults applied,
//! references checked, secrets resolved, URLs and addresses parsed. Each error names its key.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::file::{AuthMode, FileConfig, ProviderFile, ProviderKind, RouteFile, StaticTokenFile};
use super::{secret, ConfigError, LogSettings, RouteSettings, Settings};
use crate::cache::CacheSettings;
use crate::headers::{IdentityHeaders, DEFAULT_PREFIX};
use crate::identity::Identity;
use crate::net::IpNet;
use crate::provider::http::{Credential, HttpProvider, HttpProviderSpec};
use crate::provider::presets::{self, Preset};
use crate::provider::static_tokens::{token_digest, StaticProvider};
use crate::provider::Provider;
use crate::route::{normalize_path, Upstream, UpstreamTarget};

const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The name of the built-in echo upstream.
pub const ECHO_UPSTREAM: &str = "echo";

type Result<T> = std::result::Result<T, ConfigError>;

/// Checks a parsed file and builds the runtime settings.
pub fn validate(file: FileConfig, base_dir: &Path) -> Result<Settings> {
    let listen = socket_addr("listen", &file.listen)?;
    let admin_listen = socket_addr("admin_listen", &file.admin_listen)?;
    if listen == admin_listen {
        return Err(ConfigError::at("admin_listen", "must differ from `listen`"));
    }
    let threads = match file.threads {
        Some(0) => return Err(ConfigError::at("threads", "must be at least 1")),
        Some(n) => n,
        None => 1,
    };

    let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    for (name, p) in &file.providers {
        let path = format!("providers.{name}");
        check_name(&path, name)?;
        providers.insert(name.clone(), provider(&path, p, base_dir)?);
    }

    let mut upstreams: BTreeMap<String, UpstreamTarget> = BTreeMap::new();
    upstreams.insert(ECHO_UPSTREAM.into(), UpstreamTarget::Echo);
    for (name, url) in &file.upstreams {
        let path = format!("upstreams.{name}");
        check_name(&path, name)?;
        if name == ECHO_UPSTREAM {
            return Err(ConfigError::at(
                path,
                "`echo` is the built-in echo upstream; choose another name",
            ));
        }
        upstreams.insert(
            name.clone(),
            UpstreamTarget::Http(Arc::new(upstream(&path, name, url)?)),
        );
    }

    if file.routes.is_empty() {
        return Err(ConfigError::at("routes", "at least one route is needed"));
    }
    let mut routes = Vec::with_capacity(file.routes.len());
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    for (i, r) in file.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let route = route(&path, r, &providers, &upstreams)?;
        if !seen.insert((route.host.clone(), route.path_prefix.clone())) {
            return Err(ConfigError::at(
                format!("{path}.path_prefix"),
                "another route already has this path_prefix and host",
            ));
        }
        if !names.insert(route.name.clone()) {
            return Err(ConfigError::at(
                format!("{path}.name"),
                format!("route name `{}` is used twice", route.name),
            ));
        }
        routes.push(route);
    }

    let prefix = file
        .identity_headers
        .prefix
        .as_deref()
        .unwrap_or(DEFAULT_PREFIX);
    let identity_headers =
        IdentityHeaders::new(prefix).map_err(|e| ConfigError::at("identity_headers.prefix", e))?;

    let level = file.log.level.clone().unwrap_or_else(|| "info".into());
    tracing_subscriber::EnvFilter::try_new(&level)
        .map_err(|e| ConfigError::at("log.level", format!("not a valid log filter: {e}")))?;

    Ok(Settings {
        listen: listen.to_string(),
        admin_listen: admin_listen.to_string(),
        threads,
        shutdown_grace_period: file
            .shutdown_grace_period
            .map_or(DEFAULT_GRACE_PERIOD, |d| d.0),
        providers,
        cache: cache(&file)?,
        routes,
        identity_headers,
        log: LogSettings {
            format: file.log.format,
            level,
        },
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
fn check_name(path: &str, name: &str) -> Result<()> {
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
    Ok(CacheSettings {
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

/// Keys that only some kinds accept; a key given to another kind is an error.
fn reject_keys(path: &str, kind: &str, keys: &[(&str, bool)]) -> Result<()> {
    match keys.iter().find(|(_, given)| *given) {
        Some((key, _)) => Err(ConfigError::at(
            format!("{path}.{key}"),
            format!("not used by kind `{kind}`"),
        )),
        None => Ok(()),
    }
}

fn provider(path: &str, p: &ProviderFile, base_dir: &Path) -> Result<Arc<dyn Provider>> {
    match p.kind {
        ProviderKind::Static => {
            reject_keys(
                path,
                "static",
                &[
                    ("url", p.url.is_some()),
                    ("timeout", p.timeout.is_some()),
                    ("max_response_bytes", p.max_response_bytes.is_some()),
                    ("ca_file", p.ca_file.is_some()),
                    ("client_id", p.client_id.is_some()),
                    ("client_secret", p.client_secret.is_some()),
                    ("client_secret_file", p.client_secret_file.is_some()),
                ],
            )?;
            static_provider(path, p, base_dir)
        }
        ProviderKind::Bitgo => {
            reject_keys(
                path,
                "bitgo",
                &[
                    ("tokens", p.tokens.is_some()),
                    ("client_id", p.client_id.is_some()),
                    ("client_secret", p.client_secret.is_some()),
                    ("client_secret_file", p.client_secret_file.is_some()),
                ],
            )?;
            http_provider(
                path,
                "bitgo",
                presets::bitgo(),
                Credential::None,
                p,
                base_dir,
            )
        }
        ProviderKind::Rfc7662 => {
            reject_keys(path, "rfc7662", &[("tokens", p.tokens.is_some())])?;
            let user = p.client_id.clone().ok_or_else(|| {
                ConfigError::at(
                    format!("{path}.client_id"),
                    "required: introspection endpoints authenticate the gateway (HTTP Basic)",
                )
            })?;
            let password = secret::resolve(
                &format!("{path}.client_secret"),
                p.client_secret.as_deref(),
                p.client_secret_file.as_deref(),
                base_dir,
            )?
            .ok_or_else(|| {
                ConfigError::at(
                    format!("{path}.client_secret"),
                    "required: give `client_secret: ${ENV_VAR}` or `client_secret_file`",
                )
            })?;
            let credential = Credential::Basic { user, password };
            http_provider(path, "rfc7662", presets::rfc7662(), credential, p, base_dir)
        }
    }
}

fn http_provider(
    path: &str,
    kind: &'static str,
    preset: Preset,
    credential: Credential,
    p: &ProviderFile,
    base_dir: &Path,
) -> Result<Arc<dyn Provider>> {
    let url_text = p
        .url
        .as_deref()
        .ok_or_else(|| ConfigError::at(format!("{path}.url"), "required for this kind"))?;
    let url = reqwest::Url::parse(url_text)
        .map_err(|e| ConfigError::at(format!("{path}.url"), format!("not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::at(
            format!("{path}.url"),
            "must be an http:// or https:// URL with a host",
        ));
    }
    let timeout = p.timeout.map_or(DEFAULT_PROVIDER_TIMEOUT, |d| d.0);
    if timeout.is_zero() {
        return Err(ConfigError::at(
            format!("{path}.timeout"),
            "must be more than 0",
        ));
    }
    let max_response_bytes = p.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
    if max_response_bytes == 0 {
        return Err(ConfigError::at(
            format!("{path}.max_response_bytes"),
            "must be at least 1",
        ));
    }
    let extra_roots = match &p.ca_file {
        None => Vec::new(),
        Some(file) => {
            let key = format!("{path}.ca_file");
            let full = base_dir.join(file);
            let pem = std::fs::read(&full).map_err(|e| {
                ConfigError::at(&key, format!("cannot read {}: {e}", full.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ConfigError::at(&key, format!("{} is not a PEM bundle: {e}", full.display()))
            })?;
            if certs.is_empty() {
                return Err(ConfigError::at(
                    &key,
                    format!("{} holds no certificate", full.display()),
                ));
            }
            certs
        }
    };
    let spec = HttpProviderSpec {
        kind,
        method: preset.method,
        url,
        token: preset.token,
        credential,
        statuses: preset.statuses,
        mapping: preset.mapping,
        timeout,
        max_response_bytes,
        extra_roots,
    };
    let provider = HttpProvider::new(spec)
        .map_err(|e| ConfigError::at(path, format!("cannot build the HTTP client: {e}")))?;
    Ok(Arc::new(provider))
}

fn static_provider(path: &str, p: &ProviderFile, base_dir: &Path) -> Result<Arc<dyn Provider>> {
    let tokens = p
        .tokens
        .as_ref()
        .ok_or_else(|| ConfigError::at(format!("{path}.tokens"), "required for kind `static`"))?;
    if tokens.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.tokens"),
            "list at least one token",
        ));
    }
    let mut entries = Vec::with_capacity(tokens.len());
    let mut seen = HashSet::new();
    for (i, t) in tokens.iter().enumerate() {
        let tpath = format!("{path}.tokens[{i}]");
        let digest = static_digest(&tpath, t, base_dir)?;
        if !seen.insert(digest) {
            return Err(ConfigError::at(tpath, "the same token is listed twice"));
        }
        entries.push((digest, static_identity(&format!("{tpath}.identity"), t)?));
    }
    Ok(Arc::new(StaticProvider::new(entries)))
}

fn static_digest(path: &str, t: &StaticTokenFile, base_dir: &Path) -> Result<[u8; 32]> {
    let given = [
        t.token.is_some(),
        t.token_file.is_some(),
        t.token_sha256.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ConfigError::at(
            path,
            "give exactly one of `token: ${ENV_VAR}`, `token_file` or `token_sha256`",
        ));
    }
    if let Some(hex_digest) = &t.token_sha256 {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digest.trim(), &mut out).map_err(|_| {
            ConfigError::at(
                format!("{path}.token_sha256"),
                "must be 64 hex characters (e.g. `printf %s \"$TOKEN\" | sha256sum`)",
            )
        })?;
        return Ok(out);
    }
    let token = secret::resolve(
        &format!("{path}.token"),
        t.token.as_deref(),
        t.token_file.as_deref(),
        base_dir,
    )?
    .expect("one of token / token_file was given");
    Ok(token_digest(token.expose()))
}

fn static_identity(path: &str, t: &StaticTokenFile) -> Result<Identity> {
    let id = &t.identity;
    if id.subject.is_empty() {
        return Err(ConfigError::at(
            format!("{path}.subject"),
            "cannot be empty",
        ));
    }
    let expires_at = match &id.expires_at {
        None => None,
        Some(text) => {
            let t =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                    ConfigError::at(
                        format!("{path}.expires_at"),
                        format!("{text:?} is not an RFC 3339 time such as 2030-01-01T00:00:00Z"),
                    )
                })?;
            let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
            Some(UNIX_EPOCH + Duration::from_secs(secs))
        }
    };
    for (i, entry) in id.ip_restrict.iter().enumerate() {
        IpNet::parse(entry)
            .map_err(|e| ConfigError::at(format!("{path}.ip_restrict[{i}]"), e.to_string()))?;
    }
    let identity = Identity {
        subject: id.subject.clone(),
        session_id: id.session_id.clone(),
        scopes: id.scopes.clone(),
        expires_at,
        ip_restrict: id.ip_restrict.clone(),
        organizations: id.organizations.clone(),
    };
    if identity.is_expired_at(SystemTime::now()) {
        tracing::warn!(
            key = path,
            "static identity has already expired; its token is refused"
        );
    }
    Ok(identity)
}

fn upstream(path: &str, name: &str, text: &str) -> Result<Upstream> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| ConfigError::at(path, format!("not a valid URL: {e}")))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(ConfigError::at(
                path,
                format!("scheme `{other}` is not supported: use http:// or https://"),
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
    // Resolved once at start: the proxy must never block on DNS per request.
    let address = (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError::at(path, format!("cannot resolve host `{host}`")))?;
    Ok(Upstream {
        name: name.to_string(),
        address: address.to_string(),
        tls,
        host,
    })
}

fn route(
    path: &str,
    r: &RouteFile,
    providers: &BTreeMap<String, Arc<dyn Provider>>,
    upstreams: &BTreeMap<String, UpstreamTarget>,
) -> Result<RouteSettings> {
    let prefix = &r.path_prefix;
    let normalized = normalize_path(prefix).ok();
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
        Some(h) if h.is_empty() || h.contains(['/', ':', ' ']) => {
            return Err(ConfigError::at(
                format!("{path}.host"),
                "give a host name without scheme or port, such as api.example.com",
            ))
        }
        Some(h) => Some(h.to_ascii_lowercase()),
        None => None,
    };
    let provider = match (r.auth.unwrap_or(AuthMode::Required), &r.provider) {
        (AuthMode::None, Some(_)) => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                "a route with `auth: none` reads no token; remove `provider`",
            ))
        }
        (AuthMode::None, None) => None,
        (AuthMode::Required, None) => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                "required (or set `auth: none` for a public route)",
            ))
        }
        (AuthMode::Required, Some(name)) if !providers.contains_key(name) => {
            return Err(ConfigError::at(
                format!("{path}.provider"),
                format!("no provider named `{name}` under `providers`"),
            ))
        }
        (AuthMode::Required, Some(name)) => Some(name.clone()),
    };
    let upstream = upstreams.get(&r.upstream).cloned().ok_or_else(|| {
        ConfigError::at(
            format!("{path}.upstream"),
            format!(
                "no upstream named `{}` (define it under `upstreams`, or use the built-in `echo`)",
                r.upstream
            ),
        )
    })?;
    let name = match &r.name {
        Some(n) => {
            check_name(&format!("{path}.name"), n)?;
            n.clone()
        }
        None => format!("{}{}", host.as_deref().unwrap_or(""), prefix),
    };
    Ok(RouteSettings {
        name,
        path_prefix: prefix.clone(),
        host,
        provider,
        upstream,
    })
}
