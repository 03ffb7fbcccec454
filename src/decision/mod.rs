//! The gateway's decision for one request, from what the client sent to allow or refuse,
//! as a list of steps (see [`decide`]): canonical form → route → network rules → methods →
//! client certificate → credential → same origin → provider → identity → policy. Each
//! step is a small function that records what it learnt in the [`Decision`] and returns
//! `Err(Refused)` to stop; report-only routes are handled in one place ([`enforce`]).
//!
//! The proxy and the admin `explain` endpoint both call [`decide`], so `explain` reports
//! exactly what a request would get. Side effects are limited to the identity cache (a
//! miss calls the provider and caches the answer); logging and metrics are the caller's.

pub mod canonical;
pub(crate) mod client;
pub(crate) mod limit;
pub(crate) mod refused;
pub(crate) mod respond;
pub mod route;
pub mod template;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};

use crate::clock::SharedClock;
use crate::decision::canonical::{
    canonical_host, normalize_path, without_parameters, CanonicalHost, CanonicalPath, PathError,
    Rejection,
};
use crate::decision::client::TrustedProxies;
use crate::decision::refused::Refused;
use crate::decision::route::RouteTable;
use crate::decision::route::{ProviderEntry, Route, RouteAuth, UpstreamTarget};
use crate::decision::template::Params;
use crate::identity::cache::IdentityCache;
use crate::identity::cache::{Lookup, LookupOutcome, LookupRequest};
use crate::identity::provider::InvalidReason;
use crate::identity::token::TokenHasher;
use crate::identity::token::{extract_token, TokenKey, TokenSource, DEFAULT_MAX_TOKEN_BYTES};
use crate::identity::{Claim, Identity, IdentityParts};
use crate::policy::rules::{Facts, RuleVerdict};
use crate::policy::{self, Denial, Mode, RuleDenial};

/// What a decision reads besides the request: the routes and trusted proxies of the
/// configuration in force, and the process's identity cache, token hasher and clock.
/// The proxy and `explain` build it from the same state (`proxy::shared`).
#[derive(Clone, Copy)]
pub(crate) struct Decider<'a> {
    pub(crate) routes: &'a RouteTable,
    pub(crate) trusted_proxies: &'a TrustedProxies,
    pub(crate) cache: &'a IdentityCache,
    pub(crate) hasher: &'a TokenHasher,
    pub(crate) clock: &'a SharedClock,
    /// The rate limits' key hasher.
    pub(crate) limiters: &'a crate::limits::Limiters,
    /// Count the request in the route's rate limits (`false`: `explain`, which only
    /// shows which policies and tiers apply).
    pub(crate) count_limits: bool,
    /// Judging for a front proxy (decision mode): routes without an upstream match.
    pub(crate) deciding: bool,
}

/// What the decision looks at.
pub(crate) struct DecisionInput<'a> {
    pub(crate) method: &'a Method,
    /// The `Host` header (port included or not; canonicalized here).
    pub(crate) host: Option<&'a [u8]>,
    /// The request path as sent (before normalization), without the query.
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    /// The TCP peer.
    pub(crate) peer: Option<IpAddr>,
    /// The request headers (`Authorization`, `X-Forwarded-For` are read).
    pub(crate) headers: &'a HeaderMap,
    /// The id of the connection's verified client certificate (`tls.client_certificates`).
    pub(crate) client_cert: Option<&'a str>,
}

/// Allow, or why not.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    Allow,
    Refuse(Refused),
}

/// The decision and everything learnt on the way (for headers, logs and `explain`).
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// The canonical path forwarded upstream, when it could be normalized.
    pub(crate) path: Option<String>,
    /// Why the request has no canonical form (a 400), when it has none.
    pub(crate) rejection: Option<Rejection>,
    /// The canonical host the route was chosen for (what the upstream's `Host` must be).
    pub(crate) host: Option<CanonicalHost>,

    pub(crate) route: Option<Arc<Route>>,
    /// What the route's path template took from the path (empty for a prefix route).
    pub(crate) params: Params,
    /// The client address (the peer, or read through trusted proxies).
    pub(crate) client: Option<IpAddr>,
    /// The provider that judged the token.
    pub(crate) provider: Option<Arc<ProviderEntry>>,
    pub(crate) token_key: Option<TokenKey>,
    /// Which of the route's `token_sources` the token came from.
    pub(crate) token_source: Option<usize>,
    pub(crate) cache: Option<LookupOutcome>,
    pub(crate) identity: Option<Identity>,
    /// The route's network rule (`allow_cidrs`/`deny_cidrs`), when it refused the client
    /// (whether or not the route enforces it).
    pub(crate) network_denial: Option<Denial>,
    /// Every finding of the identity policy (scopes, `ipRestrict`, expiry), in the order
    /// they are judged; the first one enforced decided the refusal.
    pub(crate) identity_denials: Vec<Denial>,
    /// On a report-only route: the denials that were let through.
    pub(crate) would_deny: Vec<Denial>,
    /// Each of the route's `rules:` verdicts, in order (empty on routes without rules, or
    /// when the decision ended before them).
    pub(crate) rules: Vec<RuleVerdict>,
    /// The route's rate limits as they judged the request (empty on routes without).
    pub(crate) limits: Vec<limit::LimitCheck>,
    /// How many of [`Step::ALL`] the request passed, in order (the refusing one is not
    /// among them); see [`Decision::steps_passed`].
    passed: usize,
    pub(crate) verdict: Verdict,
}

impl Decision {
    fn new() -> Self {
        Decision {
            path: None,
            rejection: None,
            host: None,
            route: None,
            params: Params::new(),
            client: None,
            provider: None,
            token_key: None,
            token_source: None,
            cache: None,
            identity: None,
            network_denial: None,
            identity_denials: Vec::new(),
            would_deny: Vec::new(),
            rules: Vec::new(),
            limits: Vec::new(),
            passed: 0,
            verdict: Verdict::Allow,
        }
    }

    /// The steps the request passed, in order.
    pub(crate) fn steps_passed(&self) -> &'static [Step] {
        &Step::ALL[..self.passed]
    }

    /// For a stale identity: its age.
    pub(crate) fn stale_age(&self) -> Option<Duration> {
        self.cache.as_ref().and_then(|c| c.stale_age)
    }
}

/// The steps of a decision, in order (what `explain` lists as passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    CanonicalForm,
    Route,
    Network,
    Methods,
    ClientCertificate,
    Credential,
    SameOrigin,
    Provider,
    Identity,
    Policy,
    Rules,
    RateLimit,
}

impl Step {
    /// Every step, in the order [`decide`] takes them.
    pub const ALL: [Step; 12] = [
        Step::CanonicalForm,
        Step::Route,
        Step::Network,
        Step::Methods,
        Step::ClientCertificate,
        Step::Credential,
        Step::SameOrigin,
        Step::Provider,
        Step::Identity,
        Step::Policy,
        Step::Rules,
        Step::RateLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::CanonicalForm => "canonical_form",
            Step::Route => "route",
            Step::Network => "network",
            Step::Methods => "methods",
            Step::ClientCertificate => "client_certificate",
            Step::Credential => "credential",
            Step::SameOrigin => "same_origin",
            Step::Provider => "provider",
            Step::Identity => "identity",
            Step::Policy => "policy",
            Step::Rules => "rules",
            Step::RateLimit => "rate_limit",
        }
    }
}

/// True when an identity value the gateway forwards contains the token itself.
fn carries_token(identity: &Identity, token: &str) -> bool {
    identity.subject().contains(token)
        || identity.session_id().is_some_and(|s| s.contains(token))
        || identity.claims().any(|c| c.value.contains(token))
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
            .map(|c| {
                if c.value.contains(token) {
                    // Whatever its type was, it is now the stand-in's text.
                    Claim {
                        value: stand_in.to_string(),
                        json: false,
                        ..c.clone()
                    }
                } else {
                    c.clone()
                }
            })
            .collect(),
        ..parts
    }
    .into()
}

/// Decides one request: the steps in order, the first refusal ends it.
pub(crate) async fn decide(at: Decider<'_>, input: &DecisionInput<'_>) -> Decision {
    let mut d = Decision::new();
    if let Err(refused) = run(at, input, &mut d).await {
        if let Refused::Unreadable(rejection) = &refused {
            d.rejection = Some(rejection.clone());
        }
        d.verdict = Verdict::Refuse(refused);
    }
    d
}

/// One step: its result, recorded as passed when it let the request through.
macro_rules! step {
    ($d:ident, $step:expr, $result:expr) => {{
        let result = $result;
        passed($d, $step, result)?
    }};
}

async fn run(at: Decider<'_>, input: &DecisionInput<'_>, d: &mut Decision) -> Result<(), Refused> {
    let path = step!(d, Step::CanonicalForm, canonical_form(input, d));
    let route = step!(d, Step::Route, route(at, path, d));
    step!(d, Step::Network, network(at, &route, input, d));
    step!(d, Step::Methods, methods(&route, input.method));
    step!(
        d,
        Step::ClientCertificate,
        client_certificate(&route, input)
    );
    let RouteAuth::Providers(providers) = &route.auth else {
        // auth: none — only rate limits keyed by the request apply (not a step passed
        // in order: the identity's steps are skipped).
        if route.limits.is_empty() {
            return Ok(());
        }
        return limit::rate_limit(at, &route, input, d).await;
    };
    let token = step!(d, Step::Credential, credential(&route, input, d));
    step!(d, Step::SameOrigin, same_origin(&route, input, d));
    let (entry, key) = step!(d, Step::Provider, provider(at, providers, token, d));
    let identity = step!(
        d,
        Step::Identity,
        identity(at, &route, entry, key, token, d).await
    );
    step!(
        d,
        Step::Policy,
        judge_identity(at, &route, input, identity, d)
    );
    step!(d, Step::Rules, judge_rules(at, &route, input, entry, d));
    // Checked here, not in the step: a route without limits does not make its future.
    step!(
        d,
        Step::RateLimit,
        if route.limits.is_empty() {
            Ok(())
        } else {
            limit::rate_limit(at, &route, input, d).await
        }
    );
    Ok(())
}

/// Records a step that let the request through.
fn passed<T>(d: &mut Decision, step: Step, result: Result<T, Refused>) -> Result<T, Refused> {
    debug_assert_eq!(Step::ALL.get(d.passed), Some(&step), "steps out of order");
    if result.is_ok() {
        d.passed += 1;
    }
    result
}

/// The one place report-only mode is applied: a denial on a report-only route is kept as
/// `would_deny` and lets the request go on (unless it is always enforced, as expiry is).
fn enforce(d: &mut Decision, route: &Route, denial: Denial) -> Result<(), Denial> {
    if route.spec.policy.mode == Mode::Report && !denial.kind().always_enforced() {
        d.would_deny.push(denial);
        Ok(())
    } else {
        Err(denial)
    }
}

/// The method, host and path have one meaning (else 400); the path is normalized.
fn canonical_form(input: &DecisionInput<'_>, d: &mut Decision) -> Result<CanonicalPath, Refused> {
    canonical::check_method(input.method).map_err(Refused::Unreadable)?;
    d.host = input
        .host
        .map(canonical_host)
        .transpose()
        .map_err(Refused::Unreadable)?;
    normalize_path(input.path).map_err(|e| Refused::Unreadable(e.into()))
}

/// The most specific matching route (404 without one), and its template's parameters. A
/// `;` parameter must not move the request to another route or change a template
/// parameter (Tomcat and Spring route `/admin;x/users` as `/admin/users`), and encoded
/// slashes pass only on routes that allow them.
fn route(at: Decider<'_>, path: CanonicalPath, d: &mut Decision) -> Result<Arc<Route>, Refused> {
    let host = d.host.as_ref().map(|h| h.name.as_str());
    let found = at.routes.find(host, path.routing(), &path.forward);
    if let Some(bare) = without_parameters(path.routing()) {
        let bare_forward = without_parameters(&path.forward);
        let bare_forward = bare_forward.as_deref().unwrap_or(&path.forward);
        let other = at.routes.find(host, &bare, bare_forward);
        // Nor change what a template parameter is (`/orgs/acme;x/` is `acme` to them).
        let same = match (&other, &found) {
            (Some((a, pa)), Some((b, pb))) => Arc::ptr_eq(a, b) && pa == pb,
            (None, None) => true,
            _ => false,
        };
        if !same {
            return Err(Refused::Unreadable(PathError::Parameter.into()));
        }
    }
    let found = found.map(|(r, params)| (r.clone(), params));
    let encoded_slash = path.encoded_slash;
    d.path = Some(path.forward);
    let (route, params) = found.ok_or(Refused::NoRoute)?;
    // A route judged for front proxies only is no route for a client of the proxy.
    if !at.deciding && matches!(route.upstream, UpstreamTarget::FrontProxyOnly) {
        return Err(Refused::NoRoute);
    }
    d.route = Some(route.clone());
    d.params = params;
    if encoded_slash && !route.spec.allow_encoded_slashes {
        return Err(Refused::Unreadable(PathError::EncodedSlash.into()));
    }
    Ok(route)
}

/// The client address (through trusted proxies only) against the route's CIDR rules.
fn network(
    at: Decider<'_>,
    route: &Route,
    input: &DecisionInput<'_>,
    d: &mut Decision,
) -> Result<(), Refused> {
    let forwarded = input.headers.get_all("x-forwarded-for");
    d.client = at
        .trusted_proxies
        .client_address(input.peer, forwarded.iter().map(|v| v.as_bytes()));
    let Err(denial) = policy::check_network(&route.spec.policy, d.client) else {
        return Ok(());
    };
    d.network_denial = Some(denial.clone());
    enforce(d, route, denial).map_err(Refused::Network)
}

/// The route's `methods` (405 with `Allow`), enforced in report-only mode too: which
/// methods a route takes is its shape, not a rule being rolled out.
fn methods(route: &Route, method: &Method) -> Result<(), Refused> {
    if policy::method_allowed(&route.spec.policy, method) {
        Ok(())
    } else {
        Err(Refused::MethodNotAllowed(route.spec.policy.methods.clone()))
    }
}

/// The route's `require_client_certificate`: a verified certificate with a listed id.
fn client_certificate(route: &Route, input: &DecisionInput<'_>) -> Result<(), Refused> {
    let wanted = &route.spec.require_client_certificate;
    match input.client_cert {
        _ if wanted.is_empty() => Ok(()),
        None => Err(Refused::ClientCertificateRequired),
        Some(id) if wanted.iter().any(|w| w == "*" || w == id) => Ok(()),
        Some(_) => Err(Refused::ClientCertificateNotAllowed),
    }
}

/// The credential from the route's `token_sources`: exactly one, well-formed.
fn credential<'i>(
    route: &Route,
    input: &DecisionInput<'i>,
    d: &mut Decision,
) -> Result<&'i str, Refused> {
    let credentials = &route.spec.credentials;
    if let [TokenSource::ClientCertificate] = credentials.sources.as_slice() {
        // The config pairs this source with `client_certificate` providers only.
        let id = input.client_cert.ok_or(Refused::NoCertificateCredential)?;
        d.token_source = Some(0);
        return Ok(id);
    }
    let (token, source) = extract_token(
        &credentials.sources,
        input.headers,
        input.query,
        DEFAULT_MAX_TOKEN_BYTES,
    )
    .map_err(Refused::Credential)?;
    d.token_source = Some(source);
    Ok(token)
}

/// A cookie credential must come from the request's own site or a trusted origin.
fn same_origin(route: &Route, input: &DecisionInput<'_>, d: &Decision) -> Result<(), Refused> {
    let credentials = &route.spec.credentials;
    match d.token_source.map(|i| &credentials.sources[i]) {
        Some(TokenSource::Cookie(_)) => {
            same_site(input, &credentials.trusted_origins).map_err(Refused::CrossSite)
        }
        _ => Ok(()),
    }
}

/// The first of the route's providers whose token format fits (401 if none, no lookup).
fn provider<'p>(
    at: Decider<'_>,
    providers: &'p [Arc<ProviderEntry>],
    token: &str,
    d: &mut Decision,
) -> Result<(&'p ProviderEntry, TokenKey), Refused> {
    let entry = providers
        .iter()
        .find(|p| p.format.check(token).is_ok() && p.provider.accepts(token))
        .ok_or(Refused::MalformedToken)?;
    let key = at.hasher.key(&entry.id, token);
    d.token_key = Some(key);
    d.provider = Some(entry.clone());
    Ok((entry, key))
}

/// The token's identity, through the cache (and the provider on a miss).
async fn identity(
    at: Decider<'_>,
    route: &Route,
    entry: &ProviderEntry,
    key: TokenKey,
    token: &str,
    d: &mut Decision,
) -> Result<Identity, Refused> {
    let outcome = at
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
        Lookup::Invalid(InvalidReason::Expired) => return Err(Refused::ExpiredToken),
        Lookup::Invalid(_) => return Err(Refused::InvalidToken),
        Lookup::Failed(_) => return Err(Refused::ProviderUnavailable),
        Lookup::Throttled => return Err(Refused::Throttled),
    };
    // The session id *is* the token for Prefactor and EnOS: on a route that keeps the
    // token from the upstream, it must not arrive under another name either.
    if !route.spec.forward_authorization && carries_token(&identity, token) {
        return Ok(hide_token(&identity, token, &key.hex()));
    }
    Ok(identity)
}

/// The identity policy: expiry, the identity's IP restrictions, scopes. Every finding is
/// kept (for `explain`); the first one enforced refuses.
fn judge_identity(
    at: Decider<'_>,
    route: &Route,
    input: &DecisionInput<'_>,
    identity: Identity,
    d: &mut Decision,
) -> Result<(), Refused> {
    let now = at.clock.now();
    let policy = &route.spec.policy;
    d.identity_denials =
        policy::identity_denials(policy, &identity, d.client, input.method, now, &d.params);
    d.identity = Some(identity);
    for denial in d.identity_denials.clone() {
        enforce(d, route, denial).map_err(Refused::Policy)?;
    }
    Ok(())
}

/// The route's `rules:`, each evaluated (so `explain` shows every verdict); a false or
/// failed rule denies, in report-only mode too only as `would_deny`.
fn judge_rules(
    at: Decider<'_>,
    route: &Route,
    input: &DecisionInput<'_>,
    entry: &ProviderEntry,
    d: &mut Decision,
) -> Result<(), Refused> {
    let rules = &route.spec.rules;
    if rules.is_empty() {
        return Ok(());
    }
    let Some(identity) = d.identity.clone() else {
        return Ok(());
    };
    let credentials = &route.spec.credentials;
    let facts = Facts {
        identity: &identity,
        provider: entry.name(),
        method: input.method.as_str(),
        path: d.path.as_deref().unwrap_or(input.path),
        params: &d.params,
        host: d.host.as_ref().map(|h| h.name.as_str()),
        headers: input.headers,
        token_header: &|name| {
            credentials
                .sources
                .iter()
                .any(|s| matches!(s, TokenSource::Header(h) if h.eq_ignore_ascii_case(name)))
        },
        client: d.client,
        client_certificate: input.client_cert,
        token_source: match d.token_source.map(|i| &credentials.sources[i]) {
            Some(TokenSource::Cookie(_)) => "cookie",
            Some(TokenSource::Header(_)) => "header",
            Some(TokenSource::ClientCertificate) => "client_certificate",
            Some(TokenSource::Authorization) | None => "authorization",
        },
        now: at.clock.now(),
    };
    let verdicts = rules.judge(&facts);
    let mut first = None;
    for (rule, verdict) in rules.list.iter().zip(&verdicts) {
        let error = match verdict {
            RuleVerdict::Pass => continue,
            RuleVerdict::False => None,
            RuleVerdict::Failed(e) => Some(e.clone()),
        };
        let denial = Denial::Rule(Box::new(RuleDenial {
            name: rule.name.clone(),
            message: rule.message.clone(),
            status: rule.status,
            error,
        }));
        if let Err(denial) = enforce(d, route, denial) {
            first.get_or_insert(denial);
        }
    }
    d.rules = verdicts;
    first.map_or(Ok(()), |denial| Err(Refused::Policy(denial)))
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

    fn input<'a>(method: &'a Method, headers: &'a HeaderMap, host: &'a [u8]) -> DecisionInput<'a> {
        DecisionInput {
            method,
            host: Some(host),
            path: "/x",
            query: None,
            peer: None,
            headers,
            client_cert: None,
        }
    }

    /// The same-origin rule for cookie credentials, by method and browser headers.
    #[test]
    fn cookie_requests_pass_only_from_their_own_or_a_trusted_origin() {
        let trusted = ["https://admin.example.com".to_string()];
        type Case<'a> = (&'a Method, &'a [(&'a str, &'a str)], bool);
        let table: &[Case] = &[
            (&Method::GET, &[], true),
            (&Method::GET, &[("upgrade", "websocket")], false),
            (
                &Method::GET,
                &[
                    ("upgrade", "websocket"),
                    ("origin", "https://api.example.com"),
                ],
                true,
            ),
            (
                &Method::GET,
                &[
                    ("sec-fetch-mode", "websocket"),
                    ("sec-fetch-site", "cross-site"),
                ],
                false,
            ),
            (&Method::POST, &[], false),
            (
                &Method::POST,
                &[("origin", "https://api.example.com")],
                true,
            ),
            (&Method::POST, &[("origin", "https://evil.example")], false),
            (
                &Method::POST,
                &[("origin", "https://admin.example.com")],
                true,
            ),
            (&Method::POST, &[("sec-fetch-site", "same-origin")], true),
            (&Method::POST, &[("sec-fetch-site", "none")], true),
            (
                &Method::POST,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://api.example.com"),
                ],
                false,
            ),
            (
                &Method::POST,
                &[
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://admin.example.com"),
                ],
                true,
            ),
        ];
        for (method, headers, ok) in table {
            let mut map = HeaderMap::new();
            for (k, v) in *headers {
                map.insert(*k, v.parse().unwrap());
            }
            let got = same_site(&input(method, &map, b"api.example.com"), &trusted);
            assert_eq!(got.is_ok(), *ok, "{method} {headers:?}: {got:?}");
        }
    }
}
