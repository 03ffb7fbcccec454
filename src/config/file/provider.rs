//! A provider entry as written (`providers.<name>`): the keys every kind shares, each
//! kind's keys (`kind_keys`), the request template and the response mapping.

use super::*;

/// `providers.<name>.protection`: concurrency bound and circuit breaker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProtectionFile {
    pub(crate) max_concurrent: Option<usize>,
    pub(crate) queue_timeout: Option<ConfigDuration>,
    pub(crate) failures: Option<u32>,
    pub(crate) open_for: Option<ConfigDuration>,
    pub(crate) half_open_probes: Option<u32>,
}

/// `providers.<name>.token_format`: the syntactic check a token passes before any call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenFormatFile {
    pub(crate) min_length: Option<usize>,
    pub(crate) max_length: Option<usize>,
    /// `visible` (default), `b64token`, `base64url`, `hex`, `alphanumeric`, or `jwt`.
    pub(crate) charset: Option<String>,
    /// A prefix every token starts with (`v2x` for BitGo access tokens, say).
    pub(crate) prefix: Option<String>,
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
pub(crate) fn kind_keys(kind: ProviderKind) -> &'static [&'static [&'static str]] {
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
pub(crate) struct ProviderFile {
    pub(crate) kind: ProviderKind,
    /// Session / introspection endpoint (http kinds); may contain `{token}` in the path.
    pub(crate) url: Option<String>,
    /// Per-call timeout (http kinds). Default 2s.
    pub(crate) timeout: Option<ConfigDuration>,
    /// Largest response body accepted (http kinds). Default 65536 bytes.
    pub(crate) max_response_bytes: Option<usize>,
    /// Extra PEM CA bundle trusted for this provider (private CAs), on top of the system store.
    pub(crate) ca_file: Option<String>,
    /// `GET` or `POST`.
    pub(crate) method: Option<String>,
    /// Where the user's token goes.
    pub(crate) token: Option<TokenFile>,
    /// Static request headers (not secrets: use `credential`).
    pub(crate) headers: Option<BTreeMap<String, String>>,
    /// Static fields added to a form or JSON body.
    pub(crate) body: Option<BTreeMap<String, serde_json::Value>>,
    /// The gateway's own credential for the provider.
    pub(crate) credential: Option<CredentialFile>,
    /// How answers are judged and mapped to an identity.
    pub(crate) response: Option<ResponseFile>,
    /// rfc7662: client id for HTTP Basic authentication.
    pub(crate) client_id: Option<String>,
    /// rfc7662: client secret, as `${ENV_VAR}`.
    pub(crate) client_secret: Option<String>,
    /// rfc7662: client secret read from a file.
    pub(crate) client_secret_file: Option<String>,
    /// static: the tokens this provider knows.
    pub(crate) tokens: Option<Vec<StaticTokenFile>>,
    /// client_certificate: the certificate ids this provider knows, with their scopes.
    pub(crate) clients: Option<Vec<ClientFile>>,
    /// client_certificate: a verified certificate not in `clients` gets an identity (its
    /// id as subject, no scopes) instead of a refusal (default false).
    pub(crate) allow_unlisted: Option<bool>,
    /// jwt: the required `iss`.
    pub(crate) issuer: Option<String>,
    /// jwt: accepted `aud` values (a token must carry one).
    pub(crate) audiences: Option<Vec<String>>,
    /// jwt: allowed algorithms (asymmetric only).
    pub(crate) algorithms: Option<Vec<String>>,
    /// jwt: where the verification keys are published.
    pub(crate) jwks_url: Option<String>,
    /// jwt: a JWKS file instead of a URL.
    pub(crate) jwks_file: Option<String>,
    /// jwt: how often the JWKS is fetched again (default 10m).
    pub(crate) jwks_refresh: Option<ConfigDuration>,
    /// jwt: least time between fetches caused by unknown `kid`s (default 30s).
    pub(crate) jwks_min_refresh_interval: Option<ConfigDuration>,
    /// jwt: clock skew allowed on `nbf` / `iat` (default 30s).
    pub(crate) leeway: Option<ConfigDuration>,
    /// Concurrency bound and circuit breaker for calls to this provider (http, jwt kinds).
    pub(crate) protection: Option<ProtectionFile>,
    /// Syntactic token check before any call.
    pub(crate) token_format: Option<TokenFormatFile>,
}

/// Where the user's token goes in the provider request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TokenIn {
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
pub(crate) struct TokenFile {
    #[serde(rename = "in")]
    pub(crate) location: TokenIn,
    pub(crate) name: Option<String>,
}

/// `credential:` — either a bearer key or HTTP Basic, secrets from env or files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialFile {
    pub(crate) bearer: Option<String>,
    pub(crate) bearer_file: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<String>,
}

/// What `if_missing` does when a predicate's pointer is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum IfMissing {
    Pass,
    Fail,
}

/// A check on the value at `pointer`: exactly one of `equals`, `one_of`, `not_one_of`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PredicateFile {
    pub(crate) pointer: String,
    pub(crate) equals: Option<serde_json::Value>,
    pub(crate) one_of: Option<Vec<serde_json::Value>>,
    pub(crate) not_one_of: Option<Vec<serde_json::Value>>,
    pub(crate) if_missing: Option<IfMissing>,
}

/// A rule: HTTP statuses and/or one body predicate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    pub(crate) status: Option<Vec<u16>>,
    pub(crate) pointer: Option<String>,
    pub(crate) equals: Option<serde_json::Value>,
    pub(crate) one_of: Option<Vec<serde_json::Value>>,
    pub(crate) not_one_of: Option<Vec<serde_json::Value>>,
    pub(crate) if_missing: Option<IfMissing>,
}

/// How an expiry is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExpiryFormatFile {
    Rfc3339,
    UnixSeconds,
    UnixMillis,
    LifetimeSeconds,
}

/// `expires: { pointer, format, base }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpiresFile {
    pub(crate) pointer: String,
    pub(crate) format: ExpiryFormatFile,
    /// For `lifetime_seconds`: pointer to the Unix-seconds start; absent = time of answer.
    pub(crate) base: Option<String>,
}

/// `response:` — classification rules and the identity mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponseFile {
    pub(crate) invalid_when: Option<Vec<RuleFile>>,
    pub(crate) broken_when: Option<Vec<RuleFile>>,
    pub(crate) success: Option<Vec<PredicateFile>>,
    pub(crate) active: Option<Vec<PredicateFile>>,
    pub(crate) subject: Option<OneOrMany>,
    pub(crate) session_id: Option<OneOrMany>,
    pub(crate) scopes: Option<OneOrMany>,
    pub(crate) expires: Option<ExpiresFile>,
    pub(crate) ip_restrict: Option<String>,
    pub(crate) organizations: Option<Vec<String>>,
    /// Claim name → pointer; forwarded as `<prefix>Claim-<Name>`.
    pub(crate) claims: Option<BTreeMap<String, String>>,
}

/// One token of a `static` provider. Exactly one of `token`, `token_file`, `token_sha256`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticTokenFile {
    /// The token, as `${ENV_VAR}`.
    pub(crate) token: Option<String>,
    /// A file holding the token.
    pub(crate) token_file: Option<String>,
    /// Lower-case hex SHA-256 digest of the token: safe to write in the file.
    pub(crate) token_sha256: Option<String>,
    pub(crate) identity: StaticIdentityFile,
}

/// One of `clients` (kind `client_certificate`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientFile {
    /// The certificate's id: its URI SAN (`spiffe://…`), else DNS SAN, else CN.
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    #[serde(default)]
    pub(crate) organizations: Vec<String>,
}

/// The identity a static token resolves to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticIdentityFile {
    pub(crate) subject: String,
    pub(crate) session_id: Option<String>,
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
    #[serde(default)]
    pub(crate) organizations: Vec<String>,
    /// RFC 3339 time after which the token is refused.
    pub(crate) expires_at: Option<String>,
    /// Client addresses or CIDR blocks allowed to use the token (empty: any).
    #[serde(default)]
    pub(crate) ip_restrict: Vec<String>,
}
