//! The configuration file as written: serde structs that mirror the YAML, nothing more.
//!
//! Every struct rejects unknown keys: in an auth policy a misspelt key must not silently
//! open a route. Meaning (references between sections, secrets, URLs) is checked in
//! [`super::validate`], which turns these into the runtime [`super::Settings`].

mod provider;
pub(crate) use provider::*;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::duration::ConfigDuration;
use crate::telemetry::logging::LogFormat;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Address the proxy listens on, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`.
    pub(crate) listen: String,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`); default
    /// `127.0.0.1:9090` (loopback: a pod or host exposes it on purpose).
    #[serde(default = "default_admin_listen")]
    pub(crate) admin_listen: String,
    /// A TLS listener for the proxy (HTTPS, and HTTP/2 by ALPN); `listen` stays plain HTTP.
    #[serde(default)]
    pub(crate) tls: Option<TlsFile>,
    /// Also accept HTTP/2 with prior knowledge (h2c) on the plain `listen` (default
    /// false). Never by `Upgrade: h2c`, which is always refused.
    #[serde(default)]
    pub(crate) h2c: Option<bool>,
    /// Worker threads of the proxy service (Pingora's `threads`).
    #[serde(default)]
    pub(crate) threads: Option<usize>,
    /// Whether idle proxy threads take work from busy ones (one shared runtime) or each
    /// connection stays on the thread that accepted it (Pingora's `work_stealing`).
    #[serde(default)]
    pub(crate) work_stealing: Option<bool>,
    /// Serve bodiless HTTP/1.1 requests on the gateway's own direct path (default true);
    /// false sends every request through Pingora's full proxy.
    #[serde(default)]
    pub(crate) direct_path: Option<bool>,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(default)]
    pub(crate) shutdown_grace_period: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) providers: BTreeMap<String, ProviderFile>,
    #[serde(default)]
    pub(crate) cache: CacheFile,
    /// How requests are read into their canonical form.
    #[serde(default)]
    pub(crate) requests: RequestsFile,
    /// Limits on downstream connections.
    #[serde(default)]
    pub(crate) connections: ConnectionsFile,
    /// Upstream servers by name: a URL, or a mapping with `url` and options.
    #[serde(default)]
    pub(crate) upstreams: BTreeMap<String, UpstreamFile>,
    /// Keys that sign identity assertions; all are published on the admin JWKS.
    #[serde(default)]
    pub(crate) assertion_keys: Vec<AssertionKeyFile>,
    /// Peers (addresses / CIDR blocks) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) routes: Vec<RouteFile>,
    /// Named rate-limit policies routes attach by name.
    #[serde(default)]
    pub(crate) rate_limits: BTreeMap<String, RateLimitFile>,
    #[serde(default)]
    pub(crate) identity_headers: IdentityHeadersFile,
    #[serde(default)]
    pub(crate) log: LogFile,
    #[serde(default)]
    pub(crate) admin: AdminFile,
    /// Replicas sharing revocations through Redis; absent: this process alone.
    #[serde(default)]
    pub(crate) cluster: Option<ClusterFile>,
    /// Decision mode: a listener that answers front proxies (forward-auth) instead of
    /// forwarding.
    #[serde(default)]
    pub(crate) decision: Option<DecisionFile>,
    /// OpenTelemetry traces over OTLP/HTTP; absent: no traces (docs/traces.md).
    #[serde(default)]
    pub(crate) tracing: Option<TracingFile>,
    /// Where the process id is written (default `/tmp/sessiongate.pid`).
    pub(crate) pid_file: Option<String>,
    /// The Unix socket listeners are handed over on for a zero-downtime upgrade (default
    /// `/tmp/sessiongate_upgrade.sock`); the old and the new process must agree on it.
    pub(crate) upgrade_sock: Option<String>,
}

/// `requests:` — the canonical request (docs/configuration.md, "Canonical requests").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestsFile {
    /// Match route prefixes regardless of ASCII case (default false): set it when a
    /// backend routes `/ADMIN` like `/admin` (IIS, some Spring setups).
    pub(crate) case_insensitive_paths: Option<bool>,
    /// Override headers (`X-Original-URL`, `X-HTTP-Method-Override`, …) a backend needs
    /// from clients; every other one is removed.
    #[serde(default)]
    pub(crate) keep_override_headers: Vec<String>,
}

/// `tls:` — the proxy's TLS listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    /// Address of the TLS listener, e.g. `0.0.0.0:8443`.
    pub(crate) listen: String,
    /// Certificate chains and keys (PEM files); chosen by SNI, the first is the default.
    pub(crate) certificates: Vec<CertificateFile>,
    /// Offer HTTP/2 by ALPN (default true).
    pub(crate) http2: Option<bool>,
    /// How often the certificate files are checked for a change (default 10s; `0s`: only
    /// on a config reload).
    pub(crate) watch: Option<ConfigDuration>,
    /// Client certificates (mTLS): verified against `ca_file`.
    pub(crate) client_certificates: Option<ClientCertificatesFile>,
}

/// `tls.client_certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientCertificatesFile {
    /// PEM file of the CAs that issue client certificates.
    pub(crate) ca_file: String,
    /// Refuse handshakes without a client certificate (default true).
    pub(crate) required: Option<bool>,
}

/// One certificate of `tls.certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateFile {
    /// PEM file with the certificate chain, leaf first (Kubernetes `tls.crt`).
    pub(crate) chain: String,
    /// PEM file with its private key (Kubernetes `tls.key`).
    pub(crate) key: String,
}

/// `connections:` — limits on downstream connections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectionsFile {
    /// From a connection's opening to its first complete request head (or HTTP/2 preface
    /// and SETTINGS), and from the first byte of each later request to the end of its
    /// headers (default 10s).
    pub(crate) header_timeout: Option<ConfigDuration>,
    /// Idle keep-alive connections are closed after this (default 60s).
    pub(crate) idle_timeout: Option<ConfigDuration>,
    /// Longest pause while a request body arrives (default 30s).
    pub(crate) body_idle_timeout: Option<ConfigDuration>,
    /// Connections open at once on the proxy listener (default 10000).
    pub(crate) max_connections: Option<usize>,
    /// A WebSocket (or other upgraded) tunnel idle both ways this long is closed
    /// (default 1h).
    pub(crate) tunnel_idle_timeout: Option<ConfigDuration>,
    /// A tunnel is closed this long after the upgrade, busy or not (default: never).
    pub(crate) tunnel_max_duration: Option<ConfigDuration>,
    /// Streams a client may have open at once on one HTTP/2 connection (default 100).
    pub(crate) http2_max_concurrent_streams: Option<u32>,
}

/// `admin:` — the admin API's mutating endpoints (`/admin/purge`, `/admin/explain`,
/// `/admin/reload`) need this bearer token; without one they are disabled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminFile {
    /// Where the admin API listens, apart from the probes and metrics of `admin_listen`
    /// (e.g. `127.0.0.1:9091`, reachable only from inside the pod). Absent: the API is
    /// served on `admin_listen` too.
    pub(crate) listen: Option<String>,
    /// `${ENV_VAR}` holding the admin token.
    pub(crate) token: Option<String>,
    /// A file holding the admin token.
    pub(crate) token_file: Option<String>,
}

/// `decision:` — decisions for front proxies (nginx `auth_request`, Traefik
/// `forwardAuth`, Caddy `forward_auth`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionFile {
    /// The listener front proxies ask, e.g. `127.0.0.1:9000`.
    pub(crate) listen: String,
    /// Envoy ext_authz's HTTP flavour: its `http_service.path_prefix`. Requests on the
    /// listener under it are Envoy's checks (the original request, path prefixed).
    pub(crate) envoy_http_prefix: Option<String>,
}

/// `tracing:` — OpenTelemetry traces exported over OTLP/HTTP (docs/traces.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TracingFile {
    /// The collector: `http://otel-collector:4318` (`/v1/traces` is added) or the whole
    /// traces URL. Absent: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub(crate) endpoint: Option<String>,
    /// Headers each export carries (a SaaS collector's key): a value `${ENV_VAR}` is read
    /// from the environment.
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    /// One export's deadline (default 10s).
    pub(crate) timeout: Option<ConfigDuration>,
    /// PEM bundle of the CAs that sign an `https` collector's certificate (added to the
    /// system's).
    pub(crate) ca_file: Option<String>,
    /// Share of requests that start a trace here, 0 to 1 (default 1).
    pub(crate) sample_ratio: Option<f64>,
    /// Whose `sampled` flag in `traceparent` is followed: `trusted_proxies` (default),
    /// `everyone` or `nobody`.
    pub(crate) parent_sampling: Option<ParentSamplingFile>,
    /// Put the identity's subject on spans (`enduser.id`; personal data). Default false.
    pub(crate) include_subject: Option<bool>,
    /// `service.name` (default `OTEL_SERVICE_NAME`, else `sessiongate`).
    pub(crate) service_name: Option<String>,
    /// More resource attributes (added to `OTEL_RESOURCE_ATTRIBUTES`', which
    /// deploy/ fills with the pod's name and namespace).
    #[serde(default)]
    pub(crate) resource: BTreeMap<String, String>,
    /// Spans waiting for export at most (default 2048); more are dropped and counted.
    pub(crate) queue_size: Option<usize>,
    /// Spans per export at most (default 512).
    pub(crate) batch_size: Option<usize>,
    /// Longest a span waits for its batch to fill (default 5s).
    pub(crate) export_interval: Option<ConfigDuration>,
}

/// `tracing.parent_sampling`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ParentSamplingFile {
    TrustedProxies,
    Everyone,
    Nobody,
}

/// `cluster:` — replicas sharing revocations through a Redis Stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterFile {
    pub(crate) redis: ClusterRedisFile,
    /// `${ENV_VAR}` holding the secret all replicas share (at least 32 characters).
    pub(crate) key_secret: Option<String>,
    /// A file holding that secret.
    pub(crate) key_secret_file: Option<String>,
    #[serde(default)]
    pub(crate) revocations: ClusterRevocationsFile,
    /// The shared identity cache: on unless `false`.
    pub(crate) shared_cache: Option<Toggle<ClusterSharedCacheFile>>,
    /// Rate limits counted across replicas: on unless `false`.
    pub(crate) rate_limits: Option<Toggle<ClusterRateLimitsFile>>,
}

/// One of `upstreams`: `"http://host:port"` (also `https://`, and `h2c://` for cleartext
/// HTTP/2), or a mapping. (Not `#[serde(untagged)]`: a wrong key is reported by name.)
#[derive(Debug)]
pub(crate) enum UpstreamFile {
    Url(String),
    Options(UpstreamOptionsFile),
}

/// An upstream with options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamOptionsFile {
    pub(crate) url: String,
    /// `http1` (default), `http2` (gRPC: prior knowledge on `http://`, ALPN `h2` on
    /// `https://`), or `auto` (`https://` only: ALPN `h2`, else HTTP/1.1).
    pub(crate) protocol: Option<String>,
    /// `https://` only: PEM file of the CAs that verify this upstream, instead of the
    /// system store (a private CA).
    pub(crate) ca_file: Option<String>,
    /// `https://` only: the name sent as SNI and verified in the certificate (default:
    /// the URL's host).
    pub(crate) server_name: Option<String>,
    /// `https://` only: check that the certificate names `server_name` (default true; the
    /// chain is always verified).
    pub(crate) verify_hostname: Option<bool>,
    /// `https://` only: a client certificate for upstreams that require one (mTLS).
    pub(crate) client_certificate: Option<CertificateFile>,
    /// Requests in flight to this upstream at once (default 1024); beyond it a request
    /// waits up to 1 s for a slot, then gets 503 `upstream_busy`.
    pub(crate) max_in_flight: Option<usize>,
}

impl<'de> Deserialize<'de> for UpstreamFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UpstreamFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a URL (http://host:port) or a mapping with `url` and options")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(UpstreamFile::Url(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                UpstreamOptionsFile::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(UpstreamFile::Options)
            }
        }
        d.deserialize_any(V)
    }
}

/// A section that is on with its defaults unless given as `false`, or given with settings.
/// (Not `#[serde(untagged)]`: a wrong key inside the settings is reported by name.)
#[derive(Debug)]
pub(crate) enum Toggle<T> {
    Switch(bool),
    Settings(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, or a mapping of settings")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Toggle::Switch(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Toggle::Settings)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `cluster.shared_cache`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterSharedCacheFile {
    /// `false` turns it off (same as `shared_cache: false`).
    pub(crate) enabled: Option<bool>,
    /// Prefix of its Redis keys (default `sessiongate:identities`).
    pub(crate) key_prefix: Option<String>,
    /// Longest wait for one Redis command on the request path (default 50ms).
    pub(crate) timeout: Option<ConfigDuration>,
    /// Longest wait for another replica's provider call for the same token (default 1s).
    pub(crate) lock_wait: Option<ConfigDuration>,
}

/// `cluster.rate_limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterRateLimitsFile {
    /// `false`: each replica counts alone (same as `rate_limits: false`).
    pub(crate) enabled: Option<bool>,
    /// Prefix of its Redis keys (default `sessiongate:ratelimit`).
    pub(crate) key_prefix: Option<String>,
    /// Longest wait for Redis per request before counting locally (default 50ms).
    pub(crate) timeout: Option<ConfigDuration>,
    /// The local fallback divides every rate by at least this many replicas (default:
    /// by the replicas seen in Redis lately).
    pub(crate) replicas: Option<u32>,
}

/// `cluster.redis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterRedisFile {
    /// `redis://host:port/db` or `rediss://…` (TLS); no password in it.
    pub(crate) url: String,
    /// `${ENV_VAR}` holding the Redis password (AUTH).
    pub(crate) password: Option<String>,
    /// A file holding the Redis password.
    pub(crate) password_file: Option<String>,
    /// Longest wait for a connection (default 1s).
    pub(crate) connect_timeout: Option<ConfigDuration>,
    /// Longest wait for one command (default 200ms).
    pub(crate) command_timeout: Option<ConfigDuration>,
}

/// `cluster.revocations`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterRevocationsFile {
    /// The stream's key (default `sessiongate:revocations`).
    pub(crate) stream: Option<String>,
    /// Entries kept in the stream (approximately; default 100000).
    pub(crate) max_entries: Option<u64>,
}

pub use crate::identity::provider::ProviderKind;

/// One value or a list (JSON pointers tried in order, provider names tried in order).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `cache:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheFile {
    pub(crate) ttl: Option<ConfigDuration>,
    pub(crate) negative_ttl: Option<ConfigDuration>,
    pub(crate) max_entries: Option<u64>,
    pub(crate) negative_max_entries: Option<u64>,
    /// Fraction (0–1) of the freshness window at its end in which a use refreshes.
    pub(crate) refresh_ahead: Option<f64>,
    /// Cache misses per second one client address may cause (0: unlimited).
    pub(crate) client_miss_rate: Option<u32>,
    pub(crate) client_miss_burst: Option<u32>,
}

/// Whether a route requires a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthMode {
    /// A valid token is required (the default).
    Required,
    /// No token is read; identity headers are still stripped.
    None,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteFile {
    /// Label for metrics and logs; defaults to `host` + the path.
    pub(crate) name: Option<String>,
    /// The path and everything below it (`/api` matches `/api`, `/api/x`, not `/apix`).
    pub(crate) path_prefix: Option<String>,
    /// A path template instead: `/orgs/{org}/wallets/{walletId}`, `/files/{rest*}`.
    pub(crate) path: Option<String>,
    /// Match only requests for this host (the `Host` header, port ignored).
    pub(crate) host: Option<String>,
    pub(crate) auth: Option<AuthMode>,
    /// A provider name, or a list tried in order by token shape (`[jwt, introspection]`).
    pub(crate) provider: Option<OneOrMany>,
    /// Where allowed requests go: an `upstreams` name or the built-in `echo`. Absent: the
    /// route is judged only for front proxies (decision mode).
    pub(crate) upstream: Option<String>,
    /// The methods the route takes (others: 405 with `Allow`); `GET` brings `HEAD`.
    /// Absent: any method.
    pub(crate) methods: Option<Vec<String>>,
    /// Scopes every request on the route needs.
    pub(crate) require_scopes: Option<ScopeRuleFile>,
    /// Extra scopes for some methods, on top of `require_scopes`.
    pub(crate) method_scopes: Option<Vec<MethodScopesFile>>,
    /// Client addresses allowed on the route (empty: any).
    pub(crate) allow_cidrs: Option<Vec<String>>,
    /// Client addresses refused on the route.
    pub(crate) deny_cidrs: Option<Vec<String>>,
    /// `enforce` (default) or `report`.
    pub(crate) mode: Option<ModeFile>,
    /// Whether the client's `Authorization` header reaches the upstream (default true).
    pub(crate) forward_authorization: Option<bool>,
    /// A signed identity assertion for the upstream.
    pub(crate) assertion: Option<AssertionFile>,
    /// How long past freshness a cached identity may serve while the provider fails.
    pub(crate) stale_if_error: Option<ConfigDuration>,
    /// Accept paths with encoded slashes (`%2F`, `%5C`, e.g. object keys) and forward them
    /// as sent; the route is still chosen on the decoded path (default false: 400).
    pub(crate) allow_encoded_slashes: Option<bool>,
    /// Where the token is read, in order (default `[authorization]`).
    pub(crate) token_sources: Option<Vec<TokenSourceFile>>,
    /// Whether a credential cookie reaches the upstream (default false).
    pub(crate) forward_token_cookie: Option<bool>,
    /// Origins besides the request's own allowed to make cookie-authenticated unsafe
    /// requests.
    pub(crate) csrf_trusted_origins: Option<Vec<String>>,
    /// Besides the token, the TLS connection must have presented one of these verified
    /// client certificates (ids: URI SAN, DNS SAN or CN; `"*"`: any verified one).
    pub(crate) require_client_certificate: Option<Vec<String>>,
    /// The identity's organizations must contain this: `"{org}"` (a `path` parameter),
    /// or a fixed organization.
    pub(crate) require_organization: Option<String>,
    /// CEL conditions over `identity`, `request` and `now`, all of which must hold.
    pub(crate) rules: Option<Vec<RouteRuleFile>>,
    /// `rate_limits:` policies (by name) that count this route's requests.
    pub(crate) rate_limits: Option<Vec<String>>,
}

/// A `rate_limits:` policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitFile {
    /// What requests are counted by (default `subject`).
    pub(crate) key: Option<String>,
    /// `100/min`, `10/s`, …
    pub(crate) rate: String,
    /// Requests admitted at once (default: the rate's count).
    pub(crate) burst: Option<u32>,
    /// Other rates for identities with a scope or a claim; the first that matches applies.
    #[serde(default)]
    pub(crate) tiers: Vec<RateLimitTierFile>,
    /// `report`: over-limit requests are counted and let through.
    pub(crate) mode: Option<ModeFile>,
    /// `always`: the RateLimit fields on every response, not only on 429s.
    pub(crate) headers: Option<RateLimitHeadersFile>,
    /// Keys tracked at most (those closest to a full burst dropped first).
    pub(crate) max_keys: Option<u64>,
}

/// One tier of a rate-limit policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitTierFile {
    pub(crate) name: Option<String>,
    /// Identities with this scope.
    pub(crate) scope: Option<String>,
    /// Identities whose claim has this value: `{ plan: premium }`.
    pub(crate) claim: Option<BTreeMap<String, String>>,
    pub(crate) rate: String,
    pub(crate) burst: Option<u32>,
}

/// When a policy's RateLimit fields are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RateLimitHeadersFile {
    OnLimit,
    Always,
}

/// A rule's `expr`, compiled and checked as the file is read, so that its errors carry
/// the line of the `expr` key (see `config::parse`).
#[derive(Debug)]
pub(crate) struct RuleExpr(pub(crate) crate::policy::rules::Expr);

impl<'de> Deserialize<'de> for RuleExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::policy::rules::Expr::parse(&text)
            .map(RuleExpr)
            .map_err(|e| serde::de::Error::custom(format!("{NESTED}{NESTED}{e}")))
    }
}

/// One `rules:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteRuleFile {
    /// Names the rule in the 403 body, logs, metrics and `explain`.
    pub(crate) name: String,
    /// A CEL expression that is true when the request may pass; compiled and checked as
    /// the file is read (errors carry the line).
    pub(crate) expr: RuleExpr,
    /// What the client is told when it denies (default: "denied by rule `<name>`").
    pub(crate) error: Option<String>,
    /// 403 (default) or 404.
    pub(crate) status: Option<u16>,
}

/// One `token_sources` entry: `authorization`, `cookie: <name>` or `header: <name>`.
#[derive(Debug)]
pub(crate) enum TokenSourceFile {
    Authorization,
    ClientCertificate,
    Cookie(String),
    Header(String),
}

impl<'de> Deserialize<'de> for TokenSourceFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str =
            "`authorization`, `client_certificate`, `cookie: <name>` or `header: <name>`";
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TokenSourceFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "authorization" => Ok(TokenSourceFile::Authorization),
                    "client_certificate" => Ok(TokenSourceFile::ClientCertificate),
                    other => Err(E::custom(format!(
                        "unknown token source `{other}`: expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let Some((kind, name)) = map.next_entry::<String, String>()? else {
                    return Err(A::Error::custom(format!("empty: expected {EXPECTED}")));
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom(format!(
                        "one source per entry: expected {EXPECTED}"
                    )));
                }
                match kind.as_str() {
                    "cookie" => Ok(TokenSourceFile::Cookie(name)),
                    "header" => Ok(TokenSourceFile::Header(name)),
                    other => Err(A::Error::custom(format!(
                        "unknown token source `{other}`: expected {EXPECTED}"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One `assertion_keys` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssertionKeyFile {
    pub(crate) kid: String,
    /// ES256, EdDSA, RS256 or PS256.
    pub(crate) algorithm: String,
    /// PEM private key.
    pub(crate) key_file: String,
}

/// A route's `assertion:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssertionFile {
    /// Upstream header (default `<prefix>Assertion`).
    pub(crate) header: Option<String>,
    /// `kid` of the signing key (default: the first of `assertion_keys`).
    pub(crate) key: Option<String>,
    /// Lifetime (default 60s), never past the identity's own expiry.
    pub(crate) ttl: Option<ConfigDuration>,
    /// `aud`: who the assertion is for (usually the upstream's name).
    pub(crate) audience: String,
    /// `iss` (default `sessiongate`).
    pub(crate) issuer: Option<String>,
}

/// `require_scopes: { all_of, any_of }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScopeRuleFile {
    #[serde(default)]
    pub(crate) all_of: Vec<String>,
    #[serde(default)]
    pub(crate) any_of: Vec<String>,
}

/// One `method_scopes` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MethodScopesFile {
    pub(crate) methods: Vec<String>,
    #[serde(default)]
    pub(crate) all_of: Vec<String>,
    #[serde(default)]
    pub(crate) any_of: Vec<String>,
}

/// Route policy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ModeFile {
    Enforce,
    Report,
}

/// `identity_headers:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityHeadersFile {
    pub(crate) prefix: Option<String>,
}

/// `log:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogFile {
    #[serde(default)]
    pub(crate) format: LogFormat,
    /// A `tracing` filter such as `info` or `sessiongate=debug`; `RUST_LOG` wins when set.
    pub(crate) level: Option<String>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
