//! A provider entry as written (`providers.<name>`): the keys every kind shares, each
//! kind's keys (`kind_keys`), the request template and the response mapping.

use super::*;

/// `providers.<name>.protection`: concurrency bound and circuit breaker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionFile {
    pub max_concurrent: Option<usize>,
    pub queue_timeout: Option<ConfigDuration>,
    pub failures: Option<u32>,
    pub open_for: Option<ConfigDuration>,
    pub half_open_probes: Option<u32>,
}

/// `providers.<name>.token_format`: the syntactic check a token passes before any call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFormatFile {
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// `visible` (default), `b64token`, `base64url`, `hex`, `alphanumeric`, or `jwt`.
    pub charset: Option<String>,
    /// A prefix every token starts with (`v2x` for BitGo access tokens, say).
    pub prefix: Option<String>,
}

/// Keys of every kind that calls out over HTTP (session endpoints and JWKS).
pub(super) const CLIENT_KEYS: &[&str] = &[
    "timeout",
    "max_response_bytes",
    "ca_file",
    "response",
    "protection",
];

/// Keys of the HTTP session-endpoint kinds, on top of [`CLIENT_KEYS`].
pub(super) const ENDPOINT_KEYS: &[&str] =
    &["url", "method", "token", "headers", "body", "credential"];

/// Keys of the `jwt` kind, on top of [`CLIENT_KEYS`].
pub(super) const JWT_KEYS: &[&str] = &[
    "issuer",
    "audiences",
    "algorithms",
    "jwks_url",
    "jwks_file",
    "jwks_refresh",
    "jwks_min_refresh_interval",
    "leeway",
];

/// The optional keys a provider of this kind takes, in groups; any other key given is
/// refused with its name (the one table: see `config::providers::check_keys`). Every kind
/// takes `token_format`.
pub fn kind_keys(kind: ProviderKind) -> &'static [&'static [&'static str]] {
    match kind {
        ProviderKind::Static => &[&["tokens", "token_format"]],
        ProviderKind::ClientCertificate => &[&["clients", "allow_unlisted"]],
        ProviderKind::Jwt => &[CLIENT_KEYS, JWT_KEYS, &["token_format"]],
        ProviderKind::Rfc7662 => &[
            CLIENT_KEYS,
            ENDPOINT_KEYS,
            &[
                "client_id",
                "client_secret",
                "client_secret_file",
                "token_format",
            ],
        ],
        ProviderKind::Http
        | ProviderKind::Bitgo
        | ProviderKind::Krystal
        | ProviderKind::Prefactor
        | ProviderKind::Enos
        | ProviderKind::Userinfo => &[CLIENT_KEYS, ENDPOINT_KEYS, &["token_format"]],
    }
}

/// One `providers.<name>` entry. Which keys apply depends on `kind`; the validator
/// rejects keys that do not belong to the kind, naming them. For the HTTP kinds every
/// request/response key overrides the preset's value for that key only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    pub kind: ProviderKind,
    /// Session / introspection endpoint (http kinds); may contain `{token}` in the path.
    pub url: Option<String>,
    /// Per-call timeout (http kinds). Default 2s.
    pub timeout: Option<ConfigDuration>,
    /// Largest response body accepted (http kinds). Default 65536 bytes.
    pub max_response_bytes: Option<usize>,
    /// Extra PEM CA bundle trusted for this provider (private CAs), on top of the system store.
    pub ca_file: Option<String>,
    /// `GET` or `POST`.
    pub method: Option<String>,
    /// Where the user's token goes.
    pub token: Option<TokenFile>,
    /// Static request headers (not secrets: use `credential`).
    pub headers: Option<BTreeMap<String, String>>,
    /// Static fields added to a form or JSON body.
    pub body: Option<BTreeMap<String, serde_json::Value>>,
    /// The gateway's own credential for the provider.
    pub credential: Option<CredentialFile>,
    /// How answers are judged and mapped to an identity.
    pub response: Option<ResponseFile>,
    /// rfc7662: client id for HTTP Basic authentication.
    pub client_id: Option<String>,
    /// rfc7662: client secret, as `${ENV_VAR}`.
    pub client_secret: Option<String>,
    /// rfc7662: client secret read from a file.
    pub client_secret_file: Option<String>,
    /// static: the tokens this provider knows.
    pub tokens: Option<Vec<StaticTokenFile>>,
    /// client_certificate: the certificate ids this provider knows, with their scopes.
    pub clients: Option<Vec<ClientFile>>,
    /// client_certificate: a verified certificate not in `clients` gets an identity (its
    /// id as subject, no scopes) instead of a refusal (default false).
    pub allow_unlisted: Option<bool>,
    /// jwt: the required `iss`.
    pub issuer: Option<String>,
    /// jwt: accepted `aud` values (a token must carry one).
    pub audiences: Option<Vec<String>>,
    /// jwt: allowed algorithms (asymmetric only).
    pub algorithms: Option<Vec<String>>,
    /// jwt: where the verification keys are published.
    pub jwks_url: Option<String>,
    /// jwt: a JWKS file instead of a URL.
    pub jwks_file: Option<String>,
    /// jwt: how often the JWKS is fetched again (default 10m).
    pub jwks_refresh: Option<ConfigDuration>,
    /// jwt: least time between fetches caused by unknown `kid`s (default 30s).
    pub jwks_min_refresh_interval: Option<ConfigDuration>,
    /// jwt: clock skew allowed on `nbf` / `iat` (default 30s).
    pub leeway: Option<ConfigDuration>,
    /// Concurrency bound and circuit breaker for calls to this provider (http, jwt kinds).
    pub protection: Option<ProtectionFile>,
    /// Syntactic token check before any call.
    pub token_format: Option<TokenFormatFile>,
}

/// Where the user's token goes in the provider request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenIn {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: <token>` (the raw value).
    Authorization,
    /// The header `name`.
    Header,
    /// The query parameter `name`.
    Query,
    /// The form field `name` (default `token`).
    Form,
    /// The top-level JSON body field `name` (default `token`).
    Json,
    /// `{token}` in the URL path.
    Path,
}

/// `token: { in: …, name: … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    #[serde(rename = "in")]
    pub location: TokenIn,
    pub name: Option<String>,
}

/// `credential:` — either a bearer key or HTTP Basic, secrets from env or files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFile {
    pub bearer: Option<String>,
    pub bearer_file: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
}

/// What `if_missing` does when a predicate's pointer is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IfMissing {
    Pass,
    Fail,
}

/// A check on the value at `pointer`: exactly one of `equals`, `one_of`, `not_one_of`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicateFile {
    pub pointer: String,
    pub equals: Option<serde_json::Value>,
    pub one_of: Option<Vec<serde_json::Value>>,
    pub not_one_of: Option<Vec<serde_json::Value>>,
    pub if_missing: Option<IfMissing>,
}

/// A rule: HTTP statuses and/or one body predicate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub status: Option<Vec<u16>>,
    pub pointer: Option<String>,
    pub equals: Option<serde_json::Value>,
    pub one_of: Option<Vec<serde_json::Value>>,
    pub not_one_of: Option<Vec<serde_json::Value>>,
    pub if_missing: Option<IfMissing>,
}

/// How an expiry is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryFormatFile {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    LifetimeSeconds,
}

/// `expires: { pointer, format, base }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiresFile {
    pub pointer: String,
    pub format: ExpiryFormatFile,
    /// For `lifetime_seconds`: pointer to the Unix-seconds start; absent = time of answer.
    pub base: Option<String>,
}

/// `response:` — classification rules and the identity mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseFile {
    pub invalid_when: Option<Vec<RuleFile>>,
    pub broken_when: Option<Vec<RuleFile>>,
    pub success: Option<Vec<PredicateFile>>,
    pub active: Option<Vec<PredicateFile>>,
    pub subject: Option<OneOrMany>,
    pub session_id: Option<OneOrMany>,
    pub scopes: Option<OneOrMany>,
    pub expires: Option<ExpiresFile>,
    pub ip_restrict: Option<String>,
    pub organizations: Option<Vec<String>>,
    /// Claim name → pointer; forwarded as `<prefix>Claim-<Name>`.
    pub claims: Option<BTreeMap<String, String>>,
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

/// One of `clients` (kind `client_certificate`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// The certificate's id: its URI SAN (`spiffe://…`), else DNS SAN, else CN.
    pub id: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
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
