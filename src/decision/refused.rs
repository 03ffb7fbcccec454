//! The one refusal type: every reason the gateway answers a request itself instead of
//! forwarding it is one variant of [`Refused`], and each variant knows its outcome label
//! (`sessiongate_requests_total{outcome}`, the access log), its response — status, error
//! code, RFC 6750 challenge, `Allow`, `Retry-After` — and through the response its gRPC
//! status. Nothing pairs an outcome with a response by hand.

use http::Method;

use crate::decision::canonical::Rejection;
use crate::decision::respond::Refusal;
use crate::identity::token::TokenError;
use crate::policy::{Denial, DenialKind};

/// Why a request was not forwarded.
#[derive(Debug, Clone)]
pub(crate) enum Refused {
    /// The request has no canonical form: ambiguous path, host or method (400, and the
    /// connection is closed).
    Unreadable(Rejection),
    /// No route matches (404).
    NoRoute,
    /// The route's `methods` do not include the request's (405 with `Allow`). Enforced in
    /// report-only mode too: the methods a route takes are its shape, not a rule.
    MethodNotAllowed(Vec<Method>),
    /// The route's `allow_cidrs` / `deny_cidrs` refuse the client address (403).
    Network(Denial),
    /// The route's `require_client_certificate`: none presented (401).
    ClientCertificateRequired,
    /// The route's `require_client_certificate`: another one presented (403).
    ClientCertificateNotAllowed,
    /// A route whose credential is the client certificate (`token_sources:
    /// [client_certificate]`) got none: a missing credential (401).
    NoCertificateCredential,
    /// The token could not be read: none, another scheme, empty, too long, bad
    /// characters, or two credentials (401, or 400 `invalid_request`).
    Credential(TokenError),
    /// A cookie-authenticated request another site made the browser send (403 `csrf`).
    CrossSite(&'static str),
    /// The token fits none of the route's providers' `token_format` (401, no lookup).
    MalformedToken,
    /// The provider says the token is not valid (401).
    InvalidToken,
    /// The provider says the token has expired (401).
    ExpiredToken,
    /// The provider failed and no outage budget covers it (503 with `Retry-After`).
    ProviderUnavailable,
    /// The client address is over its cache-miss rate (429).
    Throttled,
    /// The identity policy refused it: scopes, the identity's IP restrictions, expiry.
    Policy(Denial),
    /// The route's identity assertion could not be signed (500; never forwarded without).
    AssertionFailed,
    /// The upstream had `max_in_flight` requests running for the whole wait (503).
    UpstreamBusy,
    /// A `rate_limits:` policy: the key is over its rate (429 with `Retry-After`).
    RateLimited(Box<RateLimited>),
    /// Decision mode: the request asking for a decision came from a peer that is not a
    /// configured front proxy (`trusted_proxies`), so the request it describes is not
    /// believed (403).
    UntrustedFrontProxy,
}

/// Which policy limited a request, and when its key may send again.
#[derive(Debug, Clone)]
pub(crate) struct RateLimited {
    pub(crate) policy: std::sync::Arc<crate::limits::LivePolicy>,
    pub(crate) tier: usize,
    pub(crate) retry_after: std::time::Duration,
}

const CERTIFICATE_REQUIRED: &str =
    "this route needs a verified client certificate (mTLS on the TLS listener)";

impl Refused {
    /// The outcome label.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Refused::Unreadable(_) => Outcome::BadRequest,
            Refused::NoRoute => Outcome::NoRoute,
            Refused::MethodNotAllowed(_) => Outcome::MethodNotAllowed,
            Refused::Network(d) | Refused::Policy(d) => Outcome::Denied(d.kind()),
            Refused::ClientCertificateRequired | Refused::ClientCertificateNotAllowed => {
                Outcome::ClientCertificateRefused
            }
            Refused::NoCertificateCredential => Outcome::MissingToken,
            Refused::Credential(TokenError::Missing | TokenError::NotBearer) => {
                Outcome::MissingToken
            }
            Refused::Credential(TokenError::Ambiguous) => Outcome::InvalidRequest,
            Refused::Credential(_) | Refused::InvalidToken => Outcome::InvalidToken,
            Refused::CrossSite(_) => Outcome::CrossSite,
            Refused::MalformedToken => Outcome::MalformedToken,
            Refused::ExpiredToken => Outcome::Denied(DenialKind::Expired),
            Refused::ProviderUnavailable => Outcome::ProviderUnavailable,
            Refused::Throttled => Outcome::ClientThrottled,
            Refused::AssertionFailed => Outcome::AssertionFailed,
            Refused::UpstreamBusy => Outcome::UpstreamBusy,
            Refused::RateLimited(_) => Outcome::RateLimited,
            Refused::UntrustedFrontProxy => Outcome::UntrustedFrontProxy,
        }
    }

    /// The response the client gets.
    pub(crate) fn response(&self) -> Refusal {
        match self {
            Refused::Unreadable(r) => Refusal::plain(400, r.code(), r.to_string()),
            Refused::NoRoute => Refusal::plain(404, "no_route", "no route matches this request"),
            Refused::MethodNotAllowed(methods) => Refusal::method_not_allowed(methods),
            Refused::Network(d) | Refused::Policy(d) => match d {
                // RFC 6750: an expired token is `invalid_token` with a Bearer challenge,
                // and a scope refusal names the scopes in its challenge.
                Denial::Expired => Refusal::bearer("invalid_token", d.kind().description()),
                Denial::InsufficientScope { required } => Refusal::insufficient_scope(required),
                Denial::Rule(r) => Refusal::rule(&r.name, r.message.as_deref(), r.status),
                _ => Refusal::plain(d.kind().status(), d.kind().as_str(), d.kind().description()),
            },
            Refused::ClientCertificateRequired | Refused::NoCertificateCredential => {
                Refusal::plain(401, "client_certificate_required", CERTIFICATE_REQUIRED)
            }
            Refused::ClientCertificateNotAllowed => Refusal::plain(
                403,
                "client_certificate_not_allowed",
                "this route does not accept the client certificate presented",
            ),
            Refused::Credential(e @ (TokenError::Missing | TokenError::NotBearer)) => {
                Refusal::no_credentials(e.to_string())
            }
            Refused::Credential(e) => Refusal::bearer(e.rfc6750_code(), e.to_string()),
            Refused::CrossSite(why) => Refusal::cross_site(why),
            Refused::MalformedToken | Refused::InvalidToken => {
                Refusal::bearer("invalid_token", "the token is not valid")
            }
            Refused::ExpiredToken => Refusal::bearer("invalid_token", "the token has expired"),
            Refused::ProviderUnavailable => Refusal::provider_unavailable(),
            Refused::Throttled => Refusal::too_many_requests(
                "too many unknown tokens from this client address; slow down",
            ),
            Refused::AssertionFailed => Refusal::plain(
                500,
                "internal_error",
                "the gateway could not sign the identity assertion",
            ),
            Refused::UpstreamBusy => Refusal::plain(
                503,
                "upstream_busy",
                "the upstream has too many requests in flight; retry shortly",
            ),
            Refused::RateLimited(l) => {
                let name = &l.policy.spec.name;
                let rate = l.policy.tier(l.tier).rate;
                Refusal::rate_limited(
                    name,
                    crate::limits::retry_after_secs(l.retry_after),
                    crate::limits::fields(name, rate, 0, l.retry_after),
                )
            }
            Refused::UntrustedFrontProxy => Refusal::plain(
                403,
                "untrusted_front_proxy",
                "decisions are given to the front proxies in trusted_proxies only",
            ),
        }
    }

    /// The policy finding behind it (logged and counted as a denial), when there is one.
    pub(crate) fn denial(&self) -> Option<&Denial> {
        match self {
            Refused::Network(d) | Refused::Policy(d) => Some(d),
            _ => None,
        }
    }
}

/// How a request ended, as `sessiongate_requests_total{outcome}` and the access log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed,
    /// No canonical form, or unreadable framing (400).
    BadRequest,
    NoRoute,
    MissingToken,
    /// RFC 6750 `invalid_request`: two tokens.
    InvalidRequest,
    /// The token fits no provider's `token_format`.
    MalformedToken,
    InvalidToken,
    /// Refused by a policy rule (or an expired token): labelled by the rule's kind.
    Denied(DenialKind),
    ProviderUnavailable,
    ClientThrottled,
    AssertionFailed,
    /// A cookie-authenticated unsafe request from another site (403 `csrf`).
    CrossSite,
    /// A route's `require_client_certificate` not met: none presented (401) or another
    /// one (403).
    ClientCertificateRefused,
    /// The upstream had `max_in_flight` requests in flight for longer than the gateway
    /// waits for a free slot (503 `upstream_busy`).
    UpstreamBusy,
    /// The route's `methods` do not include the request's (405).
    MethodNotAllowed,
    /// A `rate_limits:` policy refused it (429).
    RateLimited,
    /// Decision mode: asked by a peer that is not a front proxy (403).
    UntrustedFrontProxy,
}

impl Outcome {
    /// How many outcomes there are (indexes `0..COUNT`).
    pub(crate) const COUNT: usize = Outcome::FIXED + DenialKind::ALL.len();
    const FIXED: usize = 16;

    /// This outcome's position in [`Outcome::all`].
    pub(crate) fn index(self) -> usize {
        match self {
            Outcome::Allowed => 0,
            Outcome::BadRequest => 1,
            Outcome::NoRoute => 2,
            Outcome::MissingToken => 3,
            Outcome::InvalidRequest => 4,
            Outcome::MalformedToken => 5,
            Outcome::InvalidToken => 6,
            Outcome::ProviderUnavailable => 7,
            Outcome::ClientThrottled => 8,
            Outcome::AssertionFailed => 9,
            Outcome::CrossSite => 10,
            Outcome::ClientCertificateRefused => 11,
            Outcome::UpstreamBusy => 12,
            Outcome::MethodNotAllowed => 13,
            Outcome::RateLimited => 14,
            Outcome::UntrustedFrontProxy => 15,
            Outcome::Denied(kind) => Outcome::FIXED + kind.index(),
        }
    }

    /// Every outcome (each `requests_total` label value).
    #[cfg(test)]
    pub(crate) fn all() -> impl Iterator<Item = Outcome> {
        [
            Outcome::Allowed,
            Outcome::BadRequest,
            Outcome::NoRoute,
            Outcome::MissingToken,
            Outcome::InvalidRequest,
            Outcome::MalformedToken,
            Outcome::InvalidToken,
            Outcome::ProviderUnavailable,
            Outcome::ClientThrottled,
            Outcome::AssertionFailed,
            Outcome::CrossSite,
            Outcome::ClientCertificateRefused,
            Outcome::UpstreamBusy,
            Outcome::MethodNotAllowed,
            Outcome::RateLimited,
            Outcome::UntrustedFrontProxy,
        ]
        .into_iter()
        .chain(DenialKind::ALL.into_iter().map(Outcome::Denied))
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::BadRequest => "bad_request",
            Outcome::NoRoute => "no_route",
            Outcome::MissingToken => "missing_token",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::MalformedToken => "malformed_token",
            Outcome::InvalidToken => "invalid_token",
            Outcome::Denied(kind) => kind.as_str(),
            Outcome::ProviderUnavailable => "provider_unavailable",
            Outcome::ClientThrottled => "client_throttled",
            Outcome::AssertionFailed => "assertion_failed",
            Outcome::CrossSite => "cross_site",
            Outcome::ClientCertificateRefused => "client_certificate_refused",
            Outcome::UpstreamBusy => "upstream_busy",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::RateLimited => "rate_limited",
            Outcome::UntrustedFrontProxy => "untrusted_front_proxy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::canonical::PathError;

    #[test]
    fn every_outcome_has_its_own_label_and_every_policy_kind_is_one() {
        let labels: Vec<&str> = Outcome::all().map(Outcome::as_str).collect();
        let mut unique = labels.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), labels.len(), "{labels:?}");
        for kind in DenialKind::ALL {
            assert!(labels.contains(&kind.as_str()), "{kind:?}");
        }
        let indexes: Vec<usize> = Outcome::all().map(Outcome::index).collect();
        assert_eq!(indexes, (0..Outcome::COUNT).collect::<Vec<_>>());
    }

    fn limited_policy() -> std::sync::Arc<crate::limits::LivePolicy> {
        let rate = crate::limits::Rate::parse("10/min").unwrap();
        let spec = crate::limits::LimitSpec {
            name: "per-user".into(),
            key: crate::limits::LimitKey::Subject,
            tiers: vec![crate::limits::Tier {
                name: "default".into(),
                when: None,
                rate,
                burst: 10,
            }],
            mode: Default::default(),
            headers_always: false,
            max_keys: 10,
        };
        crate::limits::Limiters::default()
            .prepare(&[spec])
            .remove(0)
    }

    #[test]
    fn a_rate_limit_refusal_carries_its_wait_and_fields_in_http_and_grpc() {
        let refused = Refused::RateLimited(Box::new(RateLimited {
            policy: limited_policy(),
            tier: 0,
            retry_after: std::time::Duration::from_millis(1_500),
        }));
        let r = refused.response();
        let h = r.header("req-1", 10).unwrap();
        let get = |n: &str| h.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(get("retry-after").as_deref(), Some("2"));
        assert_eq!(
            get("ratelimit-policy").as_deref(),
            Some("\"per-user\";q=10;w=60")
        );
        assert_eq!(get("ratelimit").as_deref(), Some("\"per-user\";r=0;t=2"));
        let body: serde_json::Value = serde_json::from_slice(&r.body("req-1")).unwrap();
        assert_eq!(body["policy"], "per-user");
        let g = r.grpc_header("req-1").unwrap();
        assert_eq!(g.headers.get("grpc-status").unwrap(), "8");
        assert_eq!(g.headers.get("retry-after").unwrap(), "2");
    }

    /// Every refusal: its outcome label, status, error code and RFC 6750 challenge (`""`:
    /// a challenge without an error code), in one table.
    #[test]
    fn each_refusal_knows_its_outcome_status_code_and_challenge() {
        let scope = Denial::InsufficientScope {
            required: vec!["a".into(), "b".into()],
        };
        let ip = Denial::IpNotAllowed { detail: "x".into() };
        let table: Vec<(Refused, &str, u16, &str, Option<&str>)> = vec![
            (
                Refused::Unreadable(PathError::EncodedSlash.into()),
                "bad_request",
                400,
                "invalid_path",
                None,
            ),
            (Refused::NoRoute, "no_route", 404, "no_route", None),
            (
                Refused::MethodNotAllowed(vec![Method::GET]),
                "method_not_allowed",
                405,
                "method_not_allowed",
                None,
            ),
            (
                Refused::Network(ip.clone()),
                "ip_not_allowed",
                403,
                "ip_not_allowed",
                None,
            ),
            (
                Refused::ClientCertificateRequired,
                "client_certificate_refused",
                401,
                "client_certificate_required",
                None,
            ),
            (
                Refused::ClientCertificateNotAllowed,
                "client_certificate_refused",
                403,
                "client_certificate_not_allowed",
                None,
            ),
            (
                Refused::NoCertificateCredential,
                "missing_token",
                401,
                "client_certificate_required",
                None,
            ),
            (
                Refused::Credential(TokenError::Missing),
                "missing_token",
                401,
                "missing_token",
                Some(""),
            ),
            (
                Refused::Credential(TokenError::NotBearer),
                "missing_token",
                401,
                "missing_token",
                Some(""),
            ),
            (
                Refused::Credential(TokenError::Ambiguous),
                "invalid_request",
                400,
                "invalid_request",
                Some("invalid_request"),
            ),
            (
                Refused::Credential(TokenError::TooLong),
                "invalid_token",
                401,
                "invalid_token",
                Some("invalid_token"),
            ),
            (Refused::CrossSite("x"), "cross_site", 403, "csrf", None),
            (
                Refused::MalformedToken,
                "malformed_token",
                401,
                "invalid_token",
                Some("invalid_token"),
            ),
            (
                Refused::InvalidToken,
                "invalid_token",
                401,
                "invalid_token",
                Some("invalid_token"),
            ),
            (
                Refused::ExpiredToken,
                "expired",
                401,
                "invalid_token",
                Some("invalid_token"),
            ),
            (
                Refused::ProviderUnavailable,
                "provider_unavailable",
                503,
                "provider_unavailable",
                None,
            ),
            (
                Refused::Throttled,
                "client_throttled",
                429,
                "too_many_requests",
                None,
            ),
            (
                Refused::Policy(scope.clone()),
                "insufficient_scope",
                403,
                "insufficient_scope",
                Some("insufficient_scope"),
            ),
            (
                Refused::Policy(ip),
                "ip_not_allowed",
                403,
                "ip_not_allowed",
                None,
            ),
            (
                Refused::Policy(Denial::Expired),
                "expired",
                401,
                "invalid_token",
                Some("invalid_token"),
            ),
            (
                Refused::AssertionFailed,
                "assertion_failed",
                500,
                "internal_error",
                None,
            ),
            (
                Refused::UpstreamBusy,
                "upstream_busy",
                503,
                "upstream_busy",
                None,
            ),
            (
                Refused::RateLimited(Box::new(RateLimited {
                    policy: limited_policy(),
                    tier: 0,
                    retry_after: std::time::Duration::from_millis(1_500),
                })),
                "rate_limited",
                429,
                "rate_limited",
                None,
            ),
        ];
        for (refused, outcome, status, error, challenge) in table {
            let r = refused.response();
            assert_eq!(
                (refused.outcome().as_str(), r.status, r.error, r.challenge),
                (outcome, status, error, challenge),
                "{refused:?}"
            );
        }
        assert_eq!(
            Refused::Policy(scope).response().scope.as_deref(),
            Some("a b")
        );
        let allow = Refused::MethodNotAllowed(vec![Method::GET, Method::HEAD, Method::POST]);
        assert_eq!(allow.response().allow.as_deref(), Some("GET, HEAD, POST"));
        assert!(Refused::ProviderUnavailable.response().retry_after);
    }

    #[test]
    fn a_policy_refusal_carries_its_kind_as_status_and_error() {
        let denials = [
            Denial::InsufficientScope {
                required: vec!["a".into()],
            },
            Denial::IpNotAllowed { detail: "x".into() },
            Denial::IpRestrictMalformed { detail: "x".into() },
            Denial::Expired,
        ];
        for d in denials {
            let refused = Refused::Policy(d.clone());
            let r = refused.response();
            assert_eq!(r.status, d.kind().status(), "{d:?}");
            let expected = match d.kind() {
                DenialKind::Expired => "invalid_token",
                kind => kind.as_str(),
            };
            assert_eq!(r.error, expected, "{d:?}");
            assert_eq!(refused.outcome().as_str(), d.reason());
        }
    }
}
