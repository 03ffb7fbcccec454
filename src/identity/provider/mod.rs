//! Identity providers: something that turns a token into an [`Identity`], or says it is not
//! valid, or fails. The three answers are kept apart all the way to the client: a valid
//! identity may pass, an invalid token is a 401 (and is negative-cached), a failure is a
//! 503 (never cached, never an allow).
//!
//! - [`static_tokens`]: tokens listed in the config.
//! - [`http`]: any JSON "get session" / introspection endpoint, described by a request
//!   template and a response mapping; [`presets`] holds the built-in descriptions.

pub mod format;
pub(crate) mod guard;
pub mod http;
pub(crate) mod jwt;
pub(crate) mod mapping;
pub(crate) mod metered;
pub mod presets;
pub(crate) mod static_tokens;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::clock::SharedClock;
use crate::identity::Identity;
pub use crate::identity::ProviderId;

/// What kind of identity provider a `providers.<name>` entry is: the one list of kinds
/// (config keys per kind: the structs `config::file::ProviderFile` reads each kind into;
/// HTTP presets: `presets::Preset::for_kind`; both exhaustive matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Tokens and their identities listed in the config.
    Static,
    /// Any JSON session endpoint, described entirely by `token` and `response`.
    Http,
    /// RFC 7662 token introspection.
    Rfc7662,
    /// BitGo `GET /api/v2/user/session`.
    Bitgo,
    /// Krystal Identity `POST /api/v1/user/authorization`.
    Krystal,
    /// Prefactor `GET /api/v1/session/{session_id}`.
    Prefactor,
    /// EnOS IAM `POST /enos-iam-service/v2.0/session/info`.
    Enos,
    /// OIDC UserInfo.
    Userinfo,
    /// JWT access tokens verified locally against a JWKS.
    Jwt,
    /// The verified client certificate of the TLS connection (mTLS), by its id.
    #[serde(rename = "client_certificate")]
    ClientCertificate,
}

impl ProviderKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [ProviderKind; 10] = [
        ProviderKind::Static,
        ProviderKind::Http,
        ProviderKind::Rfc7662,
        ProviderKind::Bitgo,
        ProviderKind::Krystal,
        ProviderKind::Prefactor,
        ProviderKind::Enos,
        ProviderKind::Userinfo,
        ProviderKind::Jwt,
        ProviderKind::ClientCertificate,
    ];

    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Static => "static",
            ProviderKind::Http => "http",
            ProviderKind::Rfc7662 => "rfc7662",
            ProviderKind::Bitgo => "bitgo",
            ProviderKind::Krystal => "krystal",
            ProviderKind::Prefactor => "prefactor",
            ProviderKind::Enos => "enos",
            ProviderKind::Userinfo => "userinfo",
            ProviderKind::Jwt => "jwt",
            ProviderKind::ClientCertificate => "client_certificate",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider as the configuration describes it: plain data — no HTTP client, no socket,
/// no task — so validating a config (`--check`, the config fuzz target) builds nothing
/// live. [`ProviderSpec::build`] is the one place live providers come from.
#[derive(Debug, Clone)]
pub enum ProviderSpec {
    /// `kind: static`: (SHA-256 of a token, its identity).
    Static(Vec<([u8; 32], Identity)>),
    /// Every HTTP session-endpoint kind (presets included).
    Http(http::HttpProviderSpec),
    /// `kind: jwt`.
    Jwt(jwt::JwtSpec),
    /// `kind: client_certificate`: identities by certificate id, and whether a verified
    /// certificate not listed gets a bare identity.
    ClientCertificate {
        clients: Vec<(String, Identity)>,
        allow_unlisted: bool,
    },
}

impl ProviderSpec {
    /// Drops the mapped claims `keep` refuses (claims no rule reads and no header
    /// carries need not be kept in the cache); what stays, for the fingerprint.
    pub(crate) fn keep_claims(&mut self, keep: impl Fn(&mapping::ClaimMapping) -> bool) -> String {
        let mapping = match self {
            ProviderSpec::Http(h) => &mut h.mapping,
            ProviderSpec::Jwt(j) => &mut j.mapping,
            ProviderSpec::Static(_) | ProviderSpec::ClientCertificate { .. } => {
                return String::new()
            }
        };
        mapping.claims.retain(|c| keep(c));
        format!("{:?}", mapping.claims)
    }
}

impl ProviderSpec {
    /// The live provider (HTTP clients built here). Fails only when an HTTP client cannot
    /// be built (a CA bundle rustls refuses).
    /// `clock` is what identities' expiry is judged on.
    pub fn build(&self, clock: &SharedClock) -> Result<Arc<dyn Provider>, BuildError> {
        let clock = clock.clone();
        Ok(match self {
            ProviderSpec::Static(entries) => Arc::new(static_tokens::StaticProvider::new(
                entries.iter().cloned(),
                clock,
            )),
            ProviderSpec::Http(spec) => Arc::new(http::HttpProvider::new(spec.clone(), clock)?),
            ProviderSpec::Jwt(spec) => Arc::new(jwt::JwtProvider::new(spec.clone(), clock)?),
            ProviderSpec::ClientCertificate {
                clients,
                allow_unlisted,
            } => Arc::new(static_tokens::ClientCertificateProvider::new(
                clients.iter().cloned(),
                *allow_unlisted,
            )),
        })
    }
}

/// Why a live provider could not be built from its spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("`{url}` is not a valid URL: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
}

/// What a provider said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The token is valid and belongs to this identity.
    Valid(Identity),
    /// The provider says the token is not valid (unknown, revoked, expired, inactive).
    Invalid(InvalidReason),
}

/// Why a provider refused a token; goes to logs, never to a metric label beyond these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// The provider does not know the token.
    Unknown,
    /// The provider answered a status configured as "token not valid" (e.g. BitGo 401).
    RejectedStatus(u16),
    /// The provider's "active" predicate was false (RFC 7662 `active: false`).
    Inactive,
    /// The identity's own expiry has passed.
    Expired,
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidReason::Unknown => f.write_str("unknown token"),
            InvalidReason::RejectedStatus(s) => write!(f, "provider answered {s}"),
            InvalidReason::Inactive => f.write_str("token is not active"),
            InvalidReason::Expired => f.write_str("token has expired"),
        }
    }
}

/// The provider could not give an answer. Messages never contain the token (URLs that may
/// carry it are dropped from transport errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    #[error("provider did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("provider answered HTTP {0}")]
    Status(u16),
    /// A `broken_when` rule matched: typically the gateway's own credential or permissions
    /// are wrong (an RFC 7662 endpoint's 401, Krystal `403 scope_not_granted`).
    #[error("provider refused the gateway's request (HTTP {0}): check the gateway's credential and the provider settings")]
    Refused(u16),
    #[error("provider response larger than {0} bytes")]
    TooLarge(usize),
    #[error("provider response is not JSON: {0}")]
    NotJson(String),
    #[error("provider response at {pointer}: {problem}")]
    Mapping { pointer: String, problem: String },
    /// The provider's circuit breaker is open: the call was not made.
    #[error("provider circuit open after repeated failures; not called")]
    CircuitOpen,
    /// Every call slot stayed busy for the queue wait limit: the call was not made.
    #[error("provider busy: no call slot free within {0:?}")]
    Overloaded(std::time::Duration),
}

impl ProviderError {
    /// Bounded label for metrics: what kind of failure this was.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ProviderError::Unreachable(_) => "unreachable",
            ProviderError::Timeout(_) => "timeout",
            ProviderError::Status(_) => "bad_status",
            ProviderError::Refused(_) => "refused",
            ProviderError::TooLarge(_) => "too_large",
            ProviderError::NotJson(_) => "not_json",
            ProviderError::Mapping { .. } => "bad_response",
            ProviderError::CircuitOpen => "circuit_open",
            ProviderError::Overloaded(_) => "queue_timeout",
        }
    }
}

/// An identity provider. Implementations are cheap to share (`Arc<dyn Provider>`).
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The `kind` this provider was configured with, for logs.
    fn kind(&self) -> &'static str;

    /// Whether this provider handles tokens of this shape. When a route lists several
    /// providers, the first that accepts a token resolves it (a `jwt` provider accepts
    /// only JWT-shaped tokens, so opaque ones fall through to an introspection provider).
    fn accepts(&self, _token: &str) -> bool {
        true
    }

    /// Prepares what the provider needs before the first request (a JWKS fetch), once,
    /// when the gateway starts. A failure is logged and the first request tries again.
    async fn warm_up(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Resolves one token. Called only on a cache miss, at most once per token at a time.
    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError>;
}
