//! Configuration: the YAML file ([`mod@file`]) is parsed strictly, then [`validate`] turns it
//! into [`Settings`], the checked runtime form the gateway is built from. Every error names
//! the key (`routes[1].upstream`) and, for syntax and unknown keys, the line and column.

pub(crate) mod duration;
pub(crate) mod file;
pub(crate) mod http_provider;
pub(crate) mod jwt_provider;
pub(crate) mod providers;
pub(crate) mod secret;
pub(crate) mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use secret::Secret;

use crate::decision::client::TrustedProxies;
use crate::decision::route::{RouteSpec, UpstreamSpec};
use crate::identity::assertion::SigningKey;
use crate::identity::cache::CacheSettings;
use crate::identity::provider::format::TokenFormat;
use crate::identity::provider::guard::Protection;
use crate::identity::provider::ProviderSpec;
use crate::proxy::headers::IdentityHeaders;
use crate::proxy::shared::ConnectionLimits;
use crate::telemetry::logging::LogSettings;

/// A configuration problem: where it is and what is wrong. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `providers.idp.url`; empty for the whole file.
    pub path: String,
    /// 1-based line and column, when the parser knows them.
    pub(crate) location: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    /// An error at key `path`.
    pub(crate) fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            location: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, col)) = self.location {
            write!(f, "line {line} column {col}: ")?;
        }
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// `requests:` — how the canonical request is read (see [`crate::decision::canonical`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RequestSettings {
    /// Route prefixes match regardless of ASCII case (backends that route that way).
    pub(crate) case_insensitive_paths: bool,
    pub(crate) hygiene: crate::decision::canonical::HeaderHygiene,
}

/// One provider as configured (plain data), with what the gateway wraps around it.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub spec: ProviderSpec,
    /// Concurrency bound and breaker (`None` for `static`, which calls nothing).
    pub(crate) protection: Option<Protection>,
    pub(crate) token_format: TokenFormat,
    /// Hash of the provider's definition as written: cached identities survive a reload
    /// while it is unchanged.
    pub(crate) fingerprint: u64,
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// `tls:`: the TLS listener (certificates, ALPN); `None`: plain HTTP only.
    pub(crate) tls: Option<crate::tls::TlsListener>,
    /// `h2c`: HTTP/2 with prior knowledge on the plain listener.
    pub(crate) h2c: bool,
    pub threads: usize,
    /// One work-stealing runtime for all proxy threads (`true`; the default with
    /// `threads` > 1) or one runtime per thread, each connection staying on the thread
    /// that accepted it (`false`; the default with `threads: 1`, where there is nothing
    /// to steal: less CPU per request, measured in BENCHMARKS.md).
    pub work_stealing: bool,
    /// `direct_path`: bodiless HTTP/1.1 requests take the gateway's direct path (`true`,
    /// the default) or, like every other request, Pingora's full proxy (`false`). The
    /// decision is the same either way; the direct path costs less CPU per request.
    pub(crate) direct_path: bool,
    pub(crate) shutdown_grace_period: Duration,
    pub providers: BTreeMap<String, ProviderSettings>,
    pub(crate) cache: CacheSettings,
    pub(crate) requests: RequestSettings,
    pub(crate) connections: ConnectionLimits,
    /// Upstream servers by name (the built-in `echo` is not listed).
    pub(crate) upstreams: BTreeMap<String, UpstreamSpec>,
    pub routes: Vec<RouteSpec>,
    /// `rate_limits:`: every policy defined (routes carry the ones they use).
    pub(crate) rate_limits: Vec<crate::limits::LimitSpec>,
    pub(crate) trusted_proxies: TrustedProxies,
    /// Every assertion signing key (published on the admin JWKS).
    pub(crate) assertion_keys: Vec<Arc<SigningKey>>,
    pub(crate) identity_headers: IdentityHeaders,
    pub log: LogSettings,
    /// Bearer token for the admin API's mutating endpoints; `None` disables them.
    pub admin_token: Option<Secret>,
    /// `admin.listen`: the admin API's own listener; `None` serves it on `admin_listen`.
    pub(crate) admin_api_listen: Option<SocketAddr>,
    /// `decision:`: where front proxies ask for decisions; `None`: no decision mode.
    pub(crate) decision: Option<DecisionListener>,
    pub(crate) pid_file: String,
    pub(crate) upgrade_sock: String,
    /// `cluster:`: revocations shared with the other replicas through Redis.
    pub(crate) cluster: Option<crate::cluster::ClusterSettings>,
    /// `tracing:`: OpenTelemetry traces; `None`: none.
    pub(crate) tracing: Option<crate::telemetry::trace::TraceSettings>,
}

impl Settings {
    /// Where the admin API (purge, explain, reload) is reachable, when it is enabled.
    pub fn admin_api_address(&self) -> Option<SocketAddr> {
        self.admin_token.as_ref()?;
        Some(self.admin_api_listen.unwrap_or(self.admin_listen))
    }

    /// Things that are valid but probably not what the operator wants (`--check` prints
    /// them; the gateway logs them at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(addr) = self.admin_api_address() {
            if !addr.ip().is_loopback() {
                let key = if self.admin_api_listen.is_some() {
                    "admin.listen"
                } else {
                    "admin_listen"
                };
                out.push(format!(
                    "{key}: the admin API (purge, explain, reload) listens on {addr}, reachable \
                     from the network; set `admin.listen` to a loopback address such as \
                     127.0.0.1:9091 so that only the pod (or host) can use it"
                ));
            }
        }
        out
    }
}

/// Parses YAML text into the file structs, with key paths and positions in errors.
pub(crate) fn parse(text: &str) -> Result<file::FileConfig, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner();
        let mut location = inner.location().map(|l| (l.line(), l.column()));
        // serde_yaml_ng writes "<its path>: <message> at line L column C"; the location is
        // shown once, up front, and the path once, from serde_path_to_error (which also
        // names the unknown key itself).
        let mut message = inner.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        if let Some((head, rest)) = message.split_once(": ") {
            let looks_like_path = !head.is_empty()
                && head
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-[]".contains(&b));
            if looks_like_path {
                message = rest.to_string();
            }
        }
        // An error inside a provider entry carries the key it is about (see `file::NESTED`).
        if let Some((key, rest)) = message
            .split_once(file::NESTED)
            .and_then(|(_, m)| m.split_once(file::NESTED))
        {
            if !key.is_empty() && key != "." {
                path = format!("{path}.{key}");
                // The entry was read as a whole: point at the key's own line.
                location = location.map(|at| key_location(text, at, key).unwrap_or(at));
            } else if key.is_empty() {
                // About the value of the path's last key (a rule's `expr`): the parser
                // placed it at the enclosing mapping; point at the key's own line.
                let last = path.rsplit('.').next().unwrap_or("");
                if !last.is_empty() && last.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    location = location.map(|at| key_location(text, at, last).unwrap_or(at));
                }
            }
            message = rest.to_string();
        }
        ConfigError {
            path,
            location,
            message: in_config_words(&message),
        }
    })
}

/// Where `key` (a path within a mapping, `token.in`) is written, for a mapping the
/// parser placed at `entry` (line, column; 1-based) — at its name (`idp:`), its `{`, or
/// its first key: the line of the key's first segment among the mapping's own keys,
/// block style (`key:` at the mapping's indentation, before the mapping ends) or flow
/// style (`{ …, key: … }` on one line). `None` when not found (the entry's position
/// stands).
fn key_location(text: &str, entry: (usize, usize), key: &str) -> Option<(usize, usize)> {
    let first = key.split(['.', '[']).next().filter(|k| !k.is_empty())?;
    let lines: Vec<&str> = text.lines().collect();
    let (mut line, mut column) = (entry.0.checked_sub(1)?, entry.1.checked_sub(1)?);
    let here = lines.get(line)?.get(column..)?;
    let value = here.split_once(':').map(|(_, v)| v.trim_start());
    if let Some(v) = value.filter(|v| v.starts_with('{')) {
        column += here.len() - v.len(); // `idp: { … }`
    } else if value.is_some_and(|v| v.is_empty() || v.starts_with('#')) && !here.starts_with('{') {
        // `idp:` then the mapping on the lines below.
        let (next, l) = lines
            .iter()
            .enumerate()
            .skip(line + 1)
            .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
        line = next;
        column = l.len() - l.trim_start().len();
    }
    let is_key = |s: &str| {
        let name = s.trim_start_matches(['"', '\'']);
        name.starts_with(first)
            && name[first.len()..]
                .trim_start_matches(['"', '\''])
                .trim_start()
                .starts_with(':')
    };
    let opening = lines[line];
    if opening.get(column..)?.starts_with('{') {
        let rest = &opening[column..];
        return rest.match_indices(first).find_map(|(at, _)| {
            let before = rest[..at].trim_end().chars().last();
            (matches!(before, Some('{' | ',')) && is_key(&rest[at..]))
                .then_some((line + 1, column + at + 1))
        });
    }
    for (i, l) in lines.iter().enumerate().skip(line) {
        let content = l.trim_start();
        let indent = l.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if i > line && indent < column {
            return None; // the mapping ended
        }
        if indent == column && is_key(content) {
            return Some((i + 1, indent + 1));
        }
    }
    None
}

/// A parser message in the config's own words: the names of the structs and enums the
/// file is read into are not the user's business (`expected struct ScopeRuleFile` →
/// `expected a mapping`), nor is YAML's tag syntax for enums.
fn in_config_words(message: &str) -> String {
    let mut out = message.replace(
        "expected a YAML tag starting with '!'",
        "expected a single value (not a list or a mapping)",
    );
    for (kind, words) in [
        ("struct ", "a mapping"),
        ("enum ", "one of the documented values"),
    ] {
        while let Some(at) = out.find(&format!("expected {kind}")) {
            let name_start = at + "expected ".len() + kind.len();
            let name_end = out[name_start..]
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .map_or(out.len(), |n| name_start + n);
            out.replace_range(at..name_end, &format!("expected {words}"));
        }
    }
    out
}

/// Parses and validates YAML text; relative `*_file` paths are resolved from `base_dir`.
/// The first error; [`from_str_all`] reports every one.
pub fn from_str(text: &str, base_dir: &Path) -> Result<Settings, ConfigError> {
    from_str_all(text, base_dir).map_err(|mut all| all.swap_remove(0))
}

/// [`from_str`] with every independent error (never empty on `Err`). A file that does not
/// parse — YAML syntax, an unknown key, a value of the wrong type — stops at that error:
/// its shape is needed before anything in it can be judged.
pub fn from_str_all(text: &str, base_dir: &Path) -> Result<Settings, Vec<ConfigError>> {
    validate::validate_all(parse(text).map_err(|e| vec![e])?, base_dir)
}

/// [`load_all`] for a CI check without the deployment's secrets (`--check --no-secrets`):
/// every secret that is not there — an unset `${VAR}`, a missing `*_file` — is accepted
/// as a placeholder, so the structure, names, references and every other value are
/// checked. Files that must parse (TLS certificates and keys, CA bundles, signing keys)
/// are still read. Returns the settings and how many placeholders stood in.
pub fn load_without_secrets(path: &Path) -> Result<(Settings, usize), Vec<ConfigError>> {
    let (settings, used) = secret::with_placeholders(|| load_all(path));
    settings.map(|s| (s, used))
}

/// Reads, parses and validates the config file at `path`: the first error.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    load_all(path).map_err(|mut all| all.swap_remove(0))
}

/// [`load`] with every independent error (see [`from_str_all`]).
pub fn load_all(path: &Path) -> Result<Settings, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError::at(
            "",
            format!("cannot read {}: {e}", path.display()),
        )]
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_str_all(&text, base)
}

/// `decision:` — the listener front proxies ask (decision mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecisionListener {
    pub(crate) listen: SocketAddr,
    /// `envoy_http_prefix`: requests under it are Envoy ext_authz HTTP checks.
    pub(crate) envoy_http_prefix: Option<Arc<str>>,
}
