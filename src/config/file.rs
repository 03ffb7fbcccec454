//! The configuration file as written: serde structs that mirror the YAML, nothing more.
//!
//! Every struct rejects unknown keys: in an auth policy a misspelt key must not silently
//! open a route. Meaning (references between sections, secrets, URLs) is checked in
//! [`super::validate`], which turns these into the runtime [`super::Settings`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::ConfigDuration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address the proxy listens on, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`.
    pub listen: String,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin_listen: String,
    /// Worker threads of the proxy service (Pingora's `threads`).
    #[serde(default)]
    pub threads: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(default)]
    pub shutdown_grace_period: Option<ConfigDuration>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderFile>,
    #[serde(default)]
    pub cache: CacheFile,
    #[serde(default)]
    pub upstreams: BTreeMap<String, String>,
    pub routes: Vec<RouteFile>,
    #[serde(default)]
    pub identity_headers: IdentityHeadersFile,
    #[serde(default)]
    pub log: LogFile,
}

/// What kind of identity provider a `providers.<name>` entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Tokens and their identities listed in the config.
    Static,
    /// RFC 7662 token introspection.
    Rfc7662,
    /// BitGo `GET /api/v2/user/session`.
    Bitgo,
}

/// One `providers.<name>` entry. Which keys apply depends on `kind`; the validator
/// rejects keys that do not belong to the kind, naming them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    pub kind: ProviderKind,
    /// Session / introspection endpoint (http kinds).
    pub url: Option<String>,
    /// Per-call timeout (http kinds). Default 2s.
    pub timeout: Option<ConfigDuration>,
    /// Largest response body accepted (http kinds). Default 65536 bytes.
    pub max_response_bytes: Option<usize>,
    /// Extra PEM CA bundle trusted for this provider (private CAs), on top of the system store.
    pub ca_file: Option<String>,
    /// rfc7662: client id for HTTP Basic authentication.
    pub client_id: Option<String>,
    /// rfc7662: client secret, as `${ENV_VAR}`.
    pub client_secret: Option<String>,
    /// rfc7662: client secret read from a file.
    pub client_secret_file: Option<String>,
    /// static: the tokens this provider knows.
    pub tokens: Option<Vec<StaticTokenFile>>,
}

/// One token of a `static` provider. Exactly one of `token`, `token_file`, `token_sha256`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTokenFile {
    /// The token, as `${ENV_VAR}`.
    pub token: Option<String>,
    /// A file holding the token.
    pub token_file: Option<String>,
    /// Lower-case hex SHA-256 digest of the token: safe to write in the file.
    pub token_sha256: Option<String>,
    pub identity: StaticIdentityFile,
}

/// The identity a static token resolves to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticIdentityFile {
    pub subject: String,
    pub session_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
    /// RFC 3339 time after which the token is refused.
    pub expires_at: Option<String>,
    /// Client addresses or CIDR blocks allowed to use the token (empty: any).
    #[serde(default)]
    pub ip_restrict: Vec<String>,
}

/// `cache:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    pub ttl: Option<ConfigDuration>,
    pub negative_ttl: Option<ConfigDuration>,
    pub max_entries: Option<u64>,
    pub negative_max_entries: Option<u64>,
}

/// Whether a route requires a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid token is required (the default).
    Required,
    /// No token is read; identity headers are still stripped.
    None,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Label for metrics and logs; defaults to `host` + `path_prefix`.
    pub name: Option<String>,
    pub path_prefix: String,
    /// Match only requests for this host (the `Host` header, port ignored).
    pub host: Option<String>,
    pub auth: Option<AuthMode>,
    pub provider: Option<String>,
    pub upstream: String,
}

/// `identity_headers:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeadersFile {
    pub prefix: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `log:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `sessiongate=debug`; `RUST_LOG` wins when set.
    pub level: Option<String>,
}
