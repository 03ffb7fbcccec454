//! The gateway's decision for one request, from what the client sent to allow or refuse:
//! path → route → client address and network rules → token → provider and format →
//! identity cache (and provider) → identity policy.
//!
//! The proxy and the admin `explain` endpoint both call [`decide`], so `explain` reports
//! exactly what a request would get. Side effects are limited to the identity cache (a
//! miss calls the provider and caches the answer); logging and metrics are the caller's.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};

use crate::identity::cache::{Lookup, LookupOutcome, LookupRequest};
use crate::identity::provider::InvalidReason;
use crate::identity::token::{
    extract_token, TokenError, TokenKey, TokenSource, DEFAULT_MAX_TOKEN_BYTES,
};
use crate::identity::{Identity, IdentityParts};
use crate::policy::{self, Denial, DenialKind, Mode};
use crate::proxy::canonical::{
    self, canonical_host, normalize_path, without_parameters, CanonicalHost, PathError, Rejection,
};
use crate::proxy::respond::Refusal;
use crate::proxy::route::{ProviderEntry, Route, RouteAuth};
use crate::proxy::shared::{GatewayState, Snapshot};

/// What the decision looks at.
pub struct DecisionInput<'a> {
    pub method: &'a Method,
    /// The `Host` header (port included or not; canonicalized here).
    pub host: Option<&'a [u8]>,
    /// The request path as sent (before normalization), without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// The request headers (`Authorization`, `X-Forwarded-For` are read).
    pub headers: &'a HeaderMap,
    /// The id of the connection's verified client certificate (`tls.client_certificates`).
    pub client_cert: Option<&'a str>,
}

/// How a request ended, as `sessiongate_requests_total{outcome}` and the access log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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
}

impl Outcome {
    /// How many outcomes there are (indexes `0..COUNT`).
    pub const COUNT: usize = Outcome::FIXED + DenialKind::ALL.len();
    const FIXED: usize = 14;

    /// This outcome's position in [`Outcome::all`].
    pub fn index(self) -> usize {
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
            Outcome::Denied(kind) => Outcome::FIXED + kind.index(),
        }
    }

    /// Every outcome (each `requests_total` label value).
    pub fn all() -> impl Iterator<Item = Outcome> {
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
        }
    }

    /// The outcome of a token that could not be read.
    pub fn of_token_error(e: TokenError) -> Self {
        match e {
            TokenError::Missing | TokenError::NotBearer => Outcome::MissingToken,
            TokenError::Ambiguous => Outcome::InvalidRequest,
            _ => Outcome::InvalidToken,
        }
    }

    /// The outcome of a policy denial.
    pub fn of_denial(d: &Denial) -> Self {
        Outcome::Denied(d.kind())
    }
}

/// Allow, or the response to send instead.
#[derive(Debug, Clone)]
pub enum Verdict {
    Allow,
    Refuse {
        /// The outcome for metrics and logs.
        outcome: Outcome,
        refusal: Refusal,
        /// The policy denial behind a 403, when there is one.
        denial: Option<Denial>,
    },
}

/// The decision and everything learnt on the way (for headers, logs and `explain`).
#[derive(Debug, Clone)]
pub struct Decision {
    /// The canonical path forwarded upstream, when it could be normalized.
    pub path: Option<String>,
    /// Why the request has no canonical form (a 400), when it has none.
    pub rejection: Option<Rejection>,
    /// The canonical host the route was chosen for (what the upstream's `Host` must be).
    pub host: Option<CanonicalHost>,

    pub route: Option<Arc<Route>>,
    /// The client address (the peer, or read through trusted proxies).
    pub client: Option<IpAddr>,
    /// The provider that judged the token.
    pub provider: Option<Arc<ProviderEntry>>,
    pub token_key: Option<TokenKey>,
    /// Which of the route's `token_sources` the token came from.
    pub token_source: Option<usize>,
    pub cache: Option<LookupOutcome>,
    pub identity: Option<Identity>,
    /// The route's network rule (`allow_cidrs`/`deny_cidrs`), when it refused the client
    /// (whether or not the route enforces it).
    pub network_denial: Option<Denial>,
    /// Every finding of the identity policy (scopes, `ipRestrict`, expiry), in the order
    /// they are judged; the first one enforced decided the refusal.
    pub identity_denials: Vec<Denial>,
    /// On a report-only route: the denials that were let through.
    pub would_deny: Vec<Denial>,
    pub verdict: Verdict,
}

impl Decision {
    fn reject(mut self, rejection: Rejection) -> Self {
        let refusal = refusal_for_rejection(&rejection);
        self.rejection = Some(rejection);
        self.refuse(Outcome::BadRequest, refusal)
    }

    fn refuse(mut self, outcome: Outcome, refusal: Refusal) -> Self {
        self.verdict = Verdict::Refuse {
            outcome,
            refusal,
            denial: None,
        };
        self
    }

    /// For a stale identity: its age.
    pub fn stale_age(&self) -> Option<Duration> {
        self.cache.as_ref().and_then(|c| c.stale_age)
    }
}

/// The refusal for a request without a canonical form: 400 naming what was ambiguous.
pub fn refusal_for_rejection(rejection: &Rejection) -> Refusal {
    Refusal::plain(400, rejection.code(), rejection.to_string())
}

/// The refusal for a policy denial.
pub fn refusal_for(denial: &Denial) -> Refusal {
    let kind = denial.kind();
    match denial {
        // RFC 6750: an expired token is `invalid_token` with a Bearer challenge, and a
        // scope refusal names the scopes in its challenge.
        Denial::Expired => Refusal::bearer("invalid_token", kind.description()),
        Denial::InsufficientScope { required } => Refusal::insufficient_scope(required),
        _ => Refusal::plain(kind.status(), kind.as_str(), kind.description()),
    }
}

/// True when an identity value the gateway forwards contains the token itself.
fn carries_token(identity: &Identity, token: &str) -> bool {
    identity.subject().contains(token)
        || identity.session_id().is_some_and(|s| s.contains(token))
        || identity.claims().any(|(_, v)| v.contains(token))
}

/// `identity` with every forwarded value that contains `token` replaced by `stand_in` (a
/// keyed hash of the token: stable for the life of the process, useless elsewhere).
fn hide_token(identity: &Identity, token: &str, stand_in: &str) -> Identity {
    let hide = |v: &str| {
        if v.contains(token) {
            stand_in.to_string()
        } else {
            v.to_string()
        }
    };
    let parts = identity.to_parts();
    IdentityParts {
        subject: hide(&parts.subject),
        session_id: parts.session_id.as_deref().map(hide),
        claims: parts
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), hide(v)))
            .collect(),
        ..parts
    }
    .into()
}

/// Decides one request (see the module docs).
pub async fn decide(state: &GatewayState, snap: &Snapshot, input: &DecisionInput<'_>) -> Decision {
    let mut d = Decision {
        path: None,
        rejection: None,
        host: None,
        route: None,
        client: None,
        provider: None,
        token_key: None,
        token_source: None,
        cache: None,
        identity: None,
        network_denial: None,
        identity_denials: Vec::new(),
        would_deny: Vec::new(),
        verdict: Verdict::Allow,
    };
    if let Err(e) = canonical::check_method(input.method) {
        return d.reject(e);
    }
    d.host = match input.host.map(canonical_host).transpose() {
        Ok(h) => h,
        Err(e) => return d.reject(e),
    };
    let host = d.host.as_ref().map(|h| h.name.as_str());
    let path = match normalize_path(input.path) {
        Ok(p) => p,
        Err(e) => return d.reject(e.into()),
    };
    let route = snap.routes.find(host, path.routing()).cloned();
    // Tomcat and Spring route `/admin;x/users` as `/admin/users`: a parameter must not
    // move the request to another route.
    if let Some(bare) = without_parameters(path.routing()) {
        let other = snap.routes.find(host, &bare);
        if other.map(Arc::as_ptr) != route.as_ref().map(Arc::as_ptr) {
            return d.reject(PathError::Parameter.into());
        }
    }
    d.path = Some(path.forward);
    let Some(route) = route else {
        return d.refuse(
            Outcome::NoRoute,
            Refusal::plain(404, "no_route", "no route matches this request"),
        );
    };
    if path.encoded_slash && !route.spec.allow_encoded_slashes {
        d.route = Some(route);
        return d.reject(PathError::EncodedSlash.into());
    }
    d.route = Some(route.clone());
    d.client = snap.trusted_proxies.client_address(
        input.peer,
        input
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes()),
    );
    if let Err(denial) = policy::check_network(&route.spec.policy, d.client) {
        d.network_denial = Some(denial.clone());
        if route.spec.policy.mode == Mode::Report {
            d.would_deny.push(denial);
        } else {
            d.verdict = Verdict::Refuse {
                outcome: Outcome::of_denial(&denial),
                refusal: refusal_for(&denial),
                denial: Some(denial),
            };
            return d;
        }
    }
    if !policy::method_allowed(&route.spec.policy, input.method) {
        // Enforced in report-only mode too: which methods a route takes is its shape,
        // not a rule being rolled out.
        return d.refuse(
            Outcome::MethodNotAllowed,
            Refusal::method_not_allowed(&route.spec.policy.methods),
        );
    }
    let wanted = &route.spec.require_client_certificate;
    if !wanted.is_empty() {
        match input.client_cert {
            None => {
                return d.refuse(
                    Outcome::ClientCertificateRefused,
                    Refusal::plain(
                        401,
                        "client_certificate_required",
                        "this route needs a verified client certificate (mTLS on the TLS listener)",
                    ),
                )
            }
            Some(id) if !wanted.iter().any(|w| w == "*" || w == id) => {
                return d.refuse(
                    Outcome::ClientCertificateRefused,
                    Refusal::plain(
                        403,
                        "client_certificate_not_allowed",
                        "this route does not accept the client certificate presented",
                    ),
                )
            }
            Some(_) => {}
        }
    }
    let RouteAuth::Providers(providers) = &route.auth else {
        return d;
    };

    let credentials = &route.spec.credentials;
    let token = if let [TokenSource::ClientCertificate] = credentials.sources.as_slice() {
        // The config pairs this source with `client_certificate` providers only.
        let Some(id) = input.client_cert else {
            return d.refuse(
                Outcome::MissingToken,
                Refusal::plain(
                    401,
                    "client_certificate_required",
                    "this route needs a verified client certificate (mTLS on the TLS listener)",
                ),
            );
        };
        d.token_source = Some(0);
        id
    } else {
        match extract_token(
            &credentials.sources,
            input.headers,
            input.query,
            DEFAULT_MAX_TOKEN_BYTES,
        ) {
            Ok((t, source)) => {
                d.token_source = Some(source);
                t
            }
            Err(e) => {
                let refusal = match e {
                    TokenError::Missing | TokenError::NotBearer => {
                        Refusal::no_credentials(e.to_string())
                    }
                    _ => Refusal::bearer(e.rfc6750_code(), e.to_string()),
                };
                return d.refuse(Outcome::of_token_error(e), refusal);
            }
        }
    };
    if let Some(TokenSource::Cookie(_)) = d.token_source.map(|i| &credentials.sources[i]) {
        if let Err(why) = same_site(input, &credentials.trusted_origins) {
            return d.refuse(Outcome::CrossSite, Refusal::cross_site(why));
        }
    }
    let Some(entry) = providers
        .iter()
        .find(|p| p.format.check(token).is_ok() && p.provider.accepts(token))
    else {
        return d.refuse(
            Outcome::MalformedToken,
            Refusal::bearer("invalid_token", "the token is not valid"),
        );
    };
    let key = state.hasher.key(&entry.id, token);
    d.token_key = Some(key);
    d.provider = Some(entry.clone());
    let outcome = state
        .cache
        .lookup(LookupRequest {
            key,
            token,
            provider_id: &entry.id,
            provider: &entry.provider,
            stale_if_error: route.spec.stale_if_error,
            client: d.client,
        })
        .await;
    let lookup = outcome.lookup.clone();
    d.cache = Some(outcome);
    let identity = match lookup {
        Lookup::Valid(identity) => identity,
        Lookup::Invalid(InvalidReason::Expired) => {
            return d.refuse(
                Outcome::Denied(DenialKind::Expired),
                Refusal::bearer("invalid_token", "the token has expired"),
            )
        }
        Lookup::Invalid(_) => {
            return d.refuse(
                Outcome::InvalidToken,
                Refusal::bearer("invalid_token", "the token is not valid"),
            )
        }
        Lookup::Failed(_) => {
            return d.refuse(
                Outcome::ProviderUnavailable,
                Refusal::provider_unavailable(),
            )
        }
        Lookup::Throttled => {
            return d.refuse(
                Outcome::ClientThrottled,
                Refusal::too_many_requests(
                    "too many unknown tokens from this client address; slow down",
                ),
            )
        }
    };
    // The session id *is* the token for Prefactor and EnOS: on a route that keeps the
    // token from the upstream, it must not arrive under another name either.
    let identity = if !route.spec.forward_authorization && carries_token(&identity, token) {
        hide_token(&identity, token, &key.hex())
    } else {
        identity
    };
    let denials = policy::identity_denials(
        &route.spec.policy,
        &identity,
        d.client,
        input.method,
        state.clock.now(),
    );
    d.identity = Some(identity);
    d.identity_denials = denials;
    for denial in &d.identity_denials {
        // An expired identity is refused even on a report-only route.
        if route.spec.policy.mode == Mode::Report && !denial.kind().always_enforced() {
            d.would_deny.push(denial.clone());
            continue;
        }
        d.verdict = Verdict::Refuse {
            outcome: Outcome::of_denial(denial),
            refusal: refusal_for(denial),
            denial: Some(denial.clone()),
        };
        break;
    }
    d
}

/// A browser sends the cookie with requests other sites make it send (CSRF): a request
/// authenticated by a cookie that can change state or hand the page a channel must come
/// from the request's own origin or a trusted one. That is every method but GET, HEAD,
/// OPTIONS and TRACE — and those too when they open a connection rather than fetch a
/// resource: a WebSocket handshake is a GET (any `Upgrade` header, or `Sec-Fetch-Mode:
/// websocket`), and a cross-site page that gets its `101` can read and write the socket
/// as the victim (cross-site WebSocket hijacking). `Sec-Fetch-Site` decides when the
/// browser sent it (`same-origin`, `none`: a user's own navigation); else `Origin` must
/// match (scheme ignored: TLS may end before the gateway); a request with neither — not a
/// browser's — is refused too: such clients send their token in a header.
fn same_site(input: &DecisionInput<'_>, trusted: &[String]) -> Result<(), &'static str> {
    let safe = matches!(
        *input.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe && !opens_a_channel(input.headers) {
        return Ok(());
    }
    let origin = input
        .headers
        .get(http::header::ORIGIN)
        .map(|v| v.as_bytes());
    let trusted_origin = origin.is_some_and(|o| trusted.iter().any(|t| t.as_bytes() == o));
    match input
        .headers
        .get("sec-fetch-site")
        .map(|v| v.as_bytes().to_ascii_lowercase())
        .as_deref()
    {
        Some(b"same-origin") | Some(b"none") => return Ok(()),
        Some(_) if trusted_origin => return Ok(()),
        Some(_) => return Err("a cookie-authenticated request from another site (Sec-Fetch-Site)"),
        None => {}
    }
    let Some(origin) = origin else {
        return Err(
            "a cookie-authenticated unsafe request without Origin: send the token in a header",
        );
    };
    if trusted_origin {
        return Ok(());
    }
    // Same origin: Origin's host[:port] is the request's Host.
    let own = origin
        .split(|b| *b == b'/')
        .nth(2)
        .zip(input.host)
        .is_some_and(|(authority, host)| authority.eq_ignore_ascii_case(host));
    if own {
        Ok(())
    } else {
        Err("a cookie-authenticated request from another origin")
    }
}

/// A request that asks to turn the connection into something else (a WebSocket): any
/// `Upgrade` header, or a browser saying it opens a WebSocket.
fn opens_a_channel(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::UPGRADE)
        || headers
            .get("sec-fetch-mode")
            .is_some_and(|m| m.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let r = refusal_for(&d);
            assert_eq!(r.status, d.kind().status(), "{d:?}");
            let expected = match d.kind() {
                DenialKind::Expired => "invalid_token",
                kind => kind.as_str(),
            };
            assert_eq!(r.error, expected, "{d:?}");
            assert_eq!(Outcome::of_denial(&d).as_str(), d.reason());
        }
    }
}
