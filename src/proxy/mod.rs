//! The request path. Each request takes one of two ways (see [`direct`]): the direct path
//! for requests that need no framing decision, Pingora's `ProxyHttp` phases for the rest.
//! Both run the same steps, the methods of [`Proxy`]:
//!
//! ```text
//! filter ─ request id (client's if well-formed, else new)
//!   │     ─ the decision ([`crate::decision::decide`]): allowed, or the refusal's answer
//!   │     ─ strip client identity headers, hop-by-hop tricks, h2c upgrades (every route)
//!   │     ─ [echo upstream] answer with what the upstream would have received
//! peer ─ the route's upstream
//! prepare_upstream_request ─ normalized path, identity headers, X-Request-Id
//! prepare_response ─ X-Request-Id on the response
//! fail ─ the JSON error for a request that failed after `filter` (502 …)
//! log_request ─ metrics and one access-log event per request (denials included)
//! ```
//!
//! Denials are responses written in `filter` (which then returns `Ok(true)`); they never
//! reach an upstream.

mod context;
mod denials;
pub(crate) use context::{BodyProgress, RequestCtx, HTTP2_BODY};
pub mod connection;
pub(crate) mod direct;
pub(crate) mod echo;
pub(crate) mod ext_authz;
pub(crate) mod forwarded;
pub(crate) mod front;
pub mod headers;
pub mod outgoing;
mod phases;
pub(crate) mod shared;
mod spans;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::decision::canonical::{self, Rejection};
use crate::decision::refused::{Outcome, Refused};
use crate::decision::respond::Refusal;
use crate::decision::route::{
    Route, Upstream, UpstreamProtocol, UpstreamTarget, UPSTREAM_SLOT_WAIT,
};
use crate::decision::{decide, Decision, DecisionInput, Verdict};
use crate::identity::cache::CacheStatus;
use crate::identity::token::{without_cookie, TokenSource};
use crate::identity::Identity;
use crate::policy::Denial;
use crate::proxy::outgoing::Outgoing;
pub(crate) use crate::proxy::shared::GatewayState;
use crate::proxy::shared::Snapshot;
use crate::telemetry::access::{self, AccessRecord};
use crate::telemetry::metrics::RequestMode;
use crate::wire_name::WireName;

/// Route label for requests that matched no route.
pub(crate) const UNMATCHED: &str = "_unmatched";

/// Upstream connect timeout.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Pingora proxy application.
pub struct Proxy {
    state: Arc<GatewayState>,
    front: front::FrontDoor,
    /// `decision.envoy_http_prefix`: requests under it are Envoy's HTTP checks.
    envoy_http_prefix: Option<Arc<str>>,
}

impl Proxy {
    /// What the proxy shares with the rest of the process.
    pub(crate) fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    pub fn new(state: Arc<GatewayState>) -> Self {
        Proxy {
            state,
            front: front::FrontDoor::Proxy,
            envoy_http_prefix: None,
        }
    }

    /// The decision listener's application: front proxies ask, nothing is forwarded.
    pub(crate) fn deciding(state: Arc<GatewayState>, envoy_http_prefix: Option<Arc<str>>) -> Self {
        Proxy {
            state,
            front: front::FrontDoor::Decision,
            envoy_http_prefix,
        }
    }

    /// Writes `refusal`, records `outcome`, and tells Pingora the request is answered.
    async fn refuse(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        refused: Refused,
    ) -> Result<bool> {
        ctx.outcome = refused.outcome();
        let refusal = refused.response();
        if ctx.envoy == Some(ext_authz::Flavour::Grpc) {
            ext_authz::deny(session, &refusal, &ctx.request_id).await?;
            return Ok(true);
        }
        let mut keep_alive = ctx.rejection.is_none() && denials::body_is_safe_to_skip(session);
        // Pingora closes a connection whose response goes out before the request body was
        // read: drain the (small, bounded) body first.
        if keep_alive && !session.is_body_empty() {
            keep_alive = session.drain_request_body().await.is_ok();
        }
        let grpc_form = self.front == front::FrontDoor::Proxy;
        let described = front::framed_for_asker(self.front, session, ctx);
        let sent = refusal
            .send(session, &ctx.request_id, keep_alive, grpc_form)
            .await;
        front::unframe(session, described);
        sent?;
        Ok(true)
    }

    /// The identity headers (with the stale age and client certificate id when there are)
    /// and the identity assertion: what the upstream may trust, and what a decision's
    /// answer carries.
    fn add_identity<'id>(
        &self,
        req: &mut impl Outgoing<'id>,
        ctx: &'id RequestCtx,
        snap: &'id Snapshot,
    ) -> Result<()> {
        if let (Some(identity), Some(provider)) = (ctx.identity(), ctx.provider()) {
            req.set_identity(&snap.identity_headers, identity, provider);
            if let Some(age) = ctx.stale_age() {
                snap.identity_headers.stale.insert(req, age.to_string())?;
            }
            if let Some(cert) = &ctx.client_cert {
                // The id is printable ASCII (checked when the certificate was read).
                snap.identity_headers
                    .client_certificate
                    .insert(req, cert.id.as_str())?;
            }
        }
        if let Some((name, value)) = &ctx.assertion {
            req.insert(name, value.clone())?;
        }
        Ok(())
    }

    /// What the upstream receives, applied to `req` (the upstream request, or a copy of the
    /// client request for the echo upstream).
    fn prepare_upstream_request<'id>(
        &self,
        req: &mut impl Outgoing<'id>,
        ctx: &'id RequestCtx,
    ) -> Result<()> {
        let Some(snap) = &ctx.snapshot else {
            return Error::e_explain(ErrorType::InternalError, "no configuration snapshot");
        };
        if let Some(path) = ctx.rewritten_path() {
            let target = match req.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            req.set_target(target.as_bytes())?;
        }
        self.add_identity(req, ctx, snap)?;
        if let Some(route) = ctx.route() {
            let credentials = &route.spec.credentials;
            if !route.spec.forward_authorization {
                req.remove(&AUTHORIZATION);
                // A named header credential is the same secret: it goes with it.
                for source in &credentials.sources {
                    if let TokenSource::Header(name) = source {
                        // Checked when the configuration was read; should it ever fail,
                        // the request fails rather than carry the secret on.
                        let name = HeaderName::from_bytes(name.as_bytes())
                            .explain_err(ErrorType::InternalError, |_| {
                                "a credential header name that is not a header name"
                            })?;
                        req.remove(&name);
                    }
                }
            }
            // Whichever source the token was read from: a credential cookie sent beside
            // the same token in a header is still the credential.
            if !credentials.forward_cookie {
                for source in &credentials.sources {
                    if let TokenSource::Cookie(name) = source {
                        strip_cookie(req, name)?;
                    }
                }
            }
        }
        crate::proxy::forwarded::set_forwarded(
            req,
            ctx.peer,
            ctx.client(),
            ctx.https,
            &snap.trusted_proxies,
        )?;
        headers::REQUEST_ID_HEADER.insert(req, ctx.request_id.as_str())?;
        spans::propagate(req, ctx)
    }

    /// Refuses a request that has no canonical form (400, closing the connection: a
    /// client sending such a request may not frame the next one as we would).
    async fn reject(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        rejection: Rejection,
    ) -> Result<bool> {
        self.count_rejection(&rejection);
        ctx.rejection = Some(rejection.clone());
        self.refuse(session, ctx, Refused::Unreadable(rejection))
            .await
    }

    fn count_rejection(&self, rejection: &Rejection) {
        self.state
            .metrics
            .rejected_requests
            .with_label_values(&[rejection.reason()])
            .inc();
    }

    /// The metrics of one decision, in one place: rejections, cache lookups, auth time.
    fn observe(&self, ctx: &mut RequestCtx, d: &Decision, verdict: &Verdict, auth: Duration) {
        let metrics = &self.state.metrics;
        if let Some(rejection) = &d.rejection {
            self.count_rejection(rejection);
        }
        if let Some(outcome) = &d.cache {
            metrics.count_cache_lookup(outcome.status.index(), outcome.status.as_str());
        }
        let Some(route) = &d.route else { return };
        for l in d.limits.iter().filter(|l| l.over()) {
            let mode = crate::decision::limit::effective_mode(route, &l.policy.spec).as_str();
            metrics
                .rate_limited
                .with_label_values(&[&*route.spec.name, &*l.policy.spec.name, mode])
                .inc();
        }
        // Requests refused by the route's network rules never reached the token.
        let network_refused = d.identity.is_none()
            && d.network_denial.is_some()
            && matches!(verdict, Verdict::Refuse(Refused::Network(_)));
        if route.auth_duration_applies() && !network_refused && d.rejection.is_none() {
            ctx.auth_time = Some(auth);
            route.series.auth_duration().observe(auth.as_secs_f64());
        }
    }

    /// The signed identity assertion the route's upstream expects, when it has one; the
    /// refusal to send when it cannot be signed (never forward without it).
    async fn sign_assertion(
        &self,
        ctx: &mut RequestCtx,
        route: &Route,
    ) -> std::result::Result<(), Refused> {
        let Some(spec) = &route.spec.assertion else {
            return Ok(());
        };
        let Some(d) = &ctx.decision else {
            return Ok(());
        };
        let (Some(key), Some(identity), Some(provider)) = (
            d.token_key,
            d.identity.as_ref(),
            d.provider.as_ref().map(|p| Arc::clone(p.name())),
        ) else {
            return Ok(());
        };
        match self
            .state
            .assertions
            .get(key, &route.spec.name, spec, identity, &provider)
            .await
        {
            Ok(value) => {
                ctx.assertion = Some((spec.header.clone(), value));
                Ok(())
            }
            Err(e) => {
                tracing::error!(request_id = %ctx.request_id, route = %route.spec.name, error = %e, "cannot sign the identity assertion");
                Err(Refused::AssertionFailed)
            }
        }
    }

    /// The first step of every request: its id, the configuration snapshot it runs under,
    /// connection settings, `Host` from an absolute-form target, and the peer address.
    fn begin(&self, session: &mut ServerSession, ctx: &mut RequestCtx) -> Result<Arc<Snapshot>> {
        ctx.request_id = headers::request_id(session.req_header());
        ctx.upgrade_requested = session.is_upgrade_req();
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        ctx.https = tls.is_some();
        ctx.client_cert = tls.and_then(|t| self.state.client_certs.get(&t.cert_digest));
        let snap = self.state.snapshot();
        ctx.snapshot = Some(snap.clone());
        let limits = &snap.connections;
        // A request body may pause at most `body_idle_timeout`; idle connections are
        // closed by `connection::Deadlines` (no per-request timer here).
        // Pingora reads only the first `Connection` header; `close` in any of them counts.
        let close = session
            .req_header()
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        if close {
            session.set_keepalive(None);
        }
        session.set_read_timeout(Some(limits.body_idle_timeout));
        if session.as_http2().is_some() {
            if !session.is_body_done() {
                let _ = HTTP2_BODY.try_with(|p| p.progressed());
            }
            headers::join_cookie_fields(session.req_header_mut())?;
            // An HTTP/2 client that stops reading (a zero flow-control window) would hold
            // this stream's response buffers and its upstream connection for ever: a write
            // that makes no progress for `body_idle_timeout` resets the stream. (HTTP/1's
            // socket buffer is the kernel's; a write timer per write would cost the
            // request path a timer.)
            session.set_write_timeout(Some(limits.body_idle_timeout));
        }
        // An absolute-form target (`GET http://host/path`) is forwarded in origin-form, so
        // the upstream reads the host only from `Host`, which is what routing used (Pingora
        // refuses a `Host` that differs from the target's authority, RFC 9112 §3.2.2). A
        // URI that still carries an authority (HTTP/2 style) sets `Host` the same way.
        if let Some(authority) = session.req_header().uri.authority().cloned() {
            session
                .req_header_mut()
                .insert_header(http::header::HOST, authority.as_str())?;
        }
        // A dual-stack listener reports IPv4 clients as `::ffff:a.b.c.d`: rules, logs and
        // forwarded headers use the IPv4 form.
        ctx.peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        self.start_trace(session, ctx, &snap);
        Ok(snap)
    }

    fn route_label(ctx: &RequestCtx) -> &str {
        ctx.route().map_or(UNMATCHED, |r| &r.spec.name)
    }
}

/// The header rules of the canonical request, applied in place (the `Host` value itself
/// is read by the decision, and rewritten from it: see [`forward_canonical_host`]).
fn canonicalize_headers(
    req: &mut RequestHeader,
    snap: &Snapshot,
    front: front::FrontDoor,
) -> std::result::Result<(), Rejection> {
    if front == front::FrontDoor::Decision {
        // Refused rather than removed: see the function.
        front::no_header_a_backend_may_obey(&req.headers, snap)?;
    } else {
        for name in canonical::unwanted_headers(&req.headers, &snap.hygiene)? {
            req.remove_header(&name);
        }
    }
    canonical::check_host_count(&req.headers, req.version)
}

/// Sets `Host` to the canonical host the route was chosen for, when the client spelled it
/// otherwise, so the upstream reads the host routing saw.
fn forward_canonical_host(req: &mut RequestHeader, decision: &Decision) {
    let Some(host) = &decision.host else { return };
    let current = req.headers.get(http::header::HOST).map(|v| v.as_bytes());
    if !current.is_some_and(|v| host.is_header_value(v)) {
        // A canonical host is ASCII: always a valid header value.
        let _ = req.insert_header(http::header::HOST, host.header_value());
    }
}

/// The steps both ways of serving a request share — the Pingora proxy phases above and
/// the direct path ([`direct`]) — on the downstream session.
impl Proxy {
    /// A fresh per-request context.
    pub(crate) fn new_request(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            request_id: String::new(),
            snapshot: None,
            peer: None,
            decision: None,
            rewrite_path: false,
            outcome: Outcome::Allowed,
            auth_time: None,
            rejection: None,
            assertion: None,
            upgrade_requested: false,
            https: false,
            client_cert: None,
            upstream_slot: None,
            envoy: None,
            asked_head: None,
            trace: None,
        }
    }

    /// Everything before the upstream: canonical request, decision, denials, assertion,
    /// header hygiene, the echo upstream. `Ok(true)`: the request is answered.
    pub(crate) async fn filter(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let snap = self.begin(session, ctx)?;
        if self.front == front::FrontDoor::Decision
            && Box::pin(self.read_description(session, ctx, &snap)).await?
        {
            return Ok(true);
        }
        if let Err(rejection) = canonicalize_headers(session.req_header_mut(), &snap, self.front) {
            return Box::pin(self.reject(session, ctx, rejection)).await;
        }
        let auth_started = Instant::now();
        let req = session.req_header();
        let decider = crate::decision::Decider {
            deciding: self.front == front::FrontDoor::Decision,
            ..self.state.decider(&snap)
        };
        let input = DecisionInput {
            method: &req.method,
            host: req.headers.get(http::header::HOST).map(|h| h.as_bytes()),
            path: req.uri.path(),
            query: req.uri.query(),
            peer: ctx.peer,
            headers: &req.headers,
            client_cert: ctx.client_cert.as_deref().map(|c| c.id.as_str()),
        };
        // A sampled request's provider calls, JWKS fetches and Redis commands become child
        // spans (boxed: an untraced request's future stays as it was).
        let mut decision = match self.trace_parent(ctx) {
            None => decide(decider, &input).await,
            Some(p) => Box::pin(crate::telemetry::trace::within(p, decide(decider, &input))).await,
        };
        if let Some(path) = &decision.path {
            // Compared with the bytes the client sent (what Pingora would forward), not the
            // parsed URI, which may have dropped a fragment or an authority.
            let raw = req.raw_path();
            let raw_path = raw.split(|b| *b == b'?').next().unwrap_or(raw);
            ctx.rewrite_path = raw_path != path.as_bytes();
        }
        forward_canonical_host(session.req_header_mut(), &decision);
        let verdict = std::mem::replace(&mut decision.verdict, Verdict::Allow);
        self.observe(ctx, &decision, &verdict, auth_started.elapsed());
        ctx.rejection = decision.rejection.clone();
        // Report-only routes: what would have been denied (empty Vecs do not allocate).
        let would_deny = decision.would_deny.clone();
        ctx.decision = Some(decision);
        if let Some(route) = ctx.route().cloned() {
            for denial in &would_deny {
                self.record_denial(ctx, &route, denial, false);
            }
        }

        if let Verdict::Refuse(refused) = verdict {
            if let (Some(route), Some(denial)) = (ctx.route().cloned(), refused.denial()) {
                self.record_denial(ctx, &route, denial, true);
            }
            // Refusals, like the other rare branches below, are boxed: the future of an
            // allowed request then does not carry their size.
            return Box::pin(self.refuse(session, ctx, refused)).await;
        }
        let Some(route) = ctx.route().cloned() else {
            return Error::e_explain(ErrorType::InternalError, "allowed without a route");
        };
        if let Some(secs) = ctx.stale_age() {
            let provider = ctx.provider().unwrap_or("");
            self.state
                .metrics
                .stale_served
                .with_label_values(&[&*route.spec.name, provider])
                .inc();
            // Visible per request in the access log (`cache=stale`, `stale_age_s`) and the
            // metric; the provider failure itself is logged once per call by the provider.
            tracing::debug!(
                request_id = %ctx.request_id,
                route = %route.spec.name,
                provider,
                stale_age_s = secs,
                "serving a stale identity within the route's stale_if_error budget"
            );
        }
        if route.spec.assertion.is_some() {
            if let Err(refused) = Box::pin(self.sign_assertion(ctx, &route)).await {
                return Box::pin(self.refuse(session, ctx, refused)).await;
            }
        }

        if self.front == front::FrontDoor::Decision {
            return Box::pin(self.answer_decision(session, ctx, &snap)).await;
        }
        headers::sanitize_request(session.req_header_mut(), &snap.identity_headers);

        match &route.upstream {
            UpstreamTarget::Echo => Box::pin(self.answer_echo(session, ctx)).await,
            UpstreamTarget::Http(up) => match up.slots.free.clone().try_acquire_owned() {
                Ok(slot) => {
                    ctx.upstream_slot = Some(slot);
                    Ok(false)
                }
                Err(_) => Box::pin(self.wait_for_slot(session, ctx, up.clone())).await,
            },
            // The decision's route step refuses these on the proxy listener; never forwarded.
            UpstreamTarget::FrontProxyOnly => {
                Box::pin(self.refuse(session, ctx, Refused::NoRoute)).await
            }
        }
    }

    /// The upstream has `max_in_flight` requests running: wait a moment for one to end,
    /// else refuse with 503 `upstream_busy` (the upstream is not asked).
    async fn wait_for_slot(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        up: Arc<Upstream>,
    ) -> Result<bool> {
        let free = up.slots.free.clone();
        if let Ok(Ok(slot)) = tokio::time::timeout(UPSTREAM_SLOT_WAIT, free.acquire_owned()).await {
            ctx.upstream_slot = Some(slot);
            return Ok(false);
        }
        tracing::warn!(
            request_id = %ctx.request_id,
            upstream = %up.name,
            max_in_flight = up.slots.max,
            "upstream busy: every slot stayed taken"
        );
        self.refuse(session, ctx, Refused::UpstreamBusy).await
    }

    /// The upstream the request goes to (from here, the upstream span of a traced request).
    pub(crate) fn peer(&self, ctx: &mut RequestCtx) -> Result<HttpPeer> {
        if let Some(t) = ctx.trace.as_mut().filter(|t| t.sampled) {
            t.upstream_started = Some(Instant::now());
        }
        match ctx.route().map(|r| &r.upstream) {
            Some(UpstreamTarget::Http(up)) => {
                let mut peer = HttpPeer::new(up.address, up.tls, up.host.clone());
                peer.options.connection_timeout = Some(UPSTREAM_CONNECT_TIMEOUT);
                peer.group_key = up.pool_key;
                match up.protocol {
                    UpstreamProtocol::Http1 => {}
                    UpstreamProtocol::Http2 => peer.options.set_http_version(2, 2),
                    UpstreamProtocol::Auto => peer.options.set_http_version(2, 1),
                }
                if let Some(tls) = &up.tls_options {
                    peer.options.ca.clone_from(&tls.ca);
                    peer.client_cert_key.clone_from(&tls.client_cert);
                    peer.options.verify_hostname = tls.verify_hostname;
                    if let Some(name) = &tls.server_name {
                        peer.sni.clone_from(name);
                    }
                }
                Ok(peer)
            }
            // `filter` answers every request that has no HTTP upstream.
            _ => Error::e_explain(
                ErrorType::InternalError,
                "no HTTP upstream for this request",
            ),
        }
    }

    /// What the client receives of the upstream's response header.
    pub(crate) fn prepare_response(
        &self,
        resp: &mut ResponseHeader,
        ctx: &RequestCtx,
    ) -> Result<()> {
        // RFC 9110 §15.2.2: a server switches only to a protocol the client asked for.
        // Pingora passes a 101 on when neither side asked (the client then waits on a
        // connection that is neither HTTP nor a tunnel): a 502 instead, on both paths.
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS && !ctx.upgrade_requested {
            return Error::e_explain(
                ErrorType::InvalidHTTPHeader,
                "101 Switching Protocols for a request that asked for no upgrade",
            )
            .map_err(|e| e.into_up());
        }
        headers::strip_response_hop_by_hop(resp);
        resp.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(d) = ctx.decision.as_ref().filter(|d| !d.limits.is_empty()) {
            if let Some((policy, now)) = crate::decision::limit::response_fields(&d.limits) {
                // The gateway's count, not the upstream's: any it sent are replaced.
                resp.insert_header("ratelimit-policy", policy)?;
                resp.insert_header("ratelimit", now)?;
            }
        }
        Ok(())
    }

    /// Answers a request that failed after `filter` (upstream unreachable, a body that
    /// stalled, an internal error); returns the status written, 0 when none could be.
    pub(crate) async fn fail(
        &self,
        session: &mut ServerSession,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> u16 {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if e.esource() == &ErrorSource::Downstream {
            let reason = match e.etype() {
                // A request body that paused longer than `connections.body_idle_timeout`.
                ErrorType::ReadTimedout => Some("body_timeout"),
                // A response the client stopped reading (HTTP/2: its stream is reset).
                ErrorType::WriteTimedout => Some("send_timeout"),
                _ => None,
            };
            if let Some(reason) = reason {
                self.state
                    .metrics
                    .connections_closed
                    .with_label_values(&[reason])
                    .inc();
            }
        }
        if let Some(UpstreamTarget::Http(up)) = ctx.route().map(|r| &r.upstream) {
            if code == 502 || code == 504 {
                self.state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[up.name.as_str()])
                    .inc();
                tracing::warn!(request_id = %ctx.request_id, upstream = %up.name, error = %e, "upstream failed");
            }
        }
        if code > 0 {
            let refusal = match code {
                502 | 504 => Refusal::plain(
                    code,
                    "upstream_unavailable",
                    "the upstream could not be reached",
                ),
                400..=499 => Refusal::plain(code, "bad_request", "the request could not be read"),
                _ => Refusal::plain(
                    code,
                    "internal_error",
                    "the gateway failed to handle the request",
                ),
            };
            if session.response_written().is_none() {
                let grpc_form = self.front == front::FrontDoor::Proxy;
                let described = front::framed_for_asker(self.front, session, ctx);
                if let Err(write_err) = refusal
                    .send(session, &ctx.request_id, false, grpc_form)
                    .await
                {
                    tracing::debug!(error = %write_err, "could not write the error response");
                }
                front::unframe(session, described);
            }
        }
        code
    }

    /// Metrics and the access-log event of a finished request (denials included).
    pub(crate) fn log_request(&self, session: &ServerSession, e: Option<&Error>, ctx: &RequestCtx) {
        let route = Self::route_label(ctx);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let total = ctx.started.elapsed();
        let outcome = ctx.outcome;
        let mode = match self.front {
            front::FrontDoor::Proxy => RequestMode::Proxy,
            front::FrontDoor::Decision => RequestMode::Decision,
        };
        match ctx.route().map(|r| &r.series) {
            Some(series) => {
                if let Some(c) = series.requests(outcome.index(), outcome.as_str(), mode) {
                    c.inc();
                }
                series.request_duration().observe(total.as_secs_f64());
            }
            None => {
                let metrics = &self.state.metrics;
                metrics
                    .requests
                    .with_label_values(&[route, outcome.as_str(), mode.as_str()])
                    .inc();
                metrics
                    .request_duration
                    .with_label_values(&[route])
                    .observe(total.as_secs_f64());
            }
        }
        spans::finish(self, session, e, ctx, status, total);
        if !access::enabled() {
            return;
        }
        let req = session.req_header();
        let mut token = [0u8; 12];
        let trace = ctx.trace.as_ref().map(|t| t.ids_hex());
        access::log(&AccessRecord {
            request_id: &ctx.request_id,
            route,
            method: req.method.as_str(),
            path: ctx.rewritten_path().unwrap_or(req.uri.path()),
            status,
            outcome: outcome.as_str(),
            subject: ctx.identity().map(|i| i.subject()),
            provider: ctx.provider(),
            cache: ctx.cache_status().map(CacheStatus::as_str),
            stale_age_s: ctx.stale_age(),
            token: ctx
                .decision
                .as_ref()
                .and_then(|d| d.token_key.as_ref())
                .map(|k| k.short_into(&mut token)),
            client: ctx.client(),
            would_deny: ctx.would_deny(),
            rate_limit: ctx.rate_limit(),
            mode: (self.front == front::FrontDoor::Decision).then_some("decision"),
            trace: trace.as_ref(),
            auth: ctx.auth_time,
            total,
            error: e.map(|e| e as &dyn std::fmt::Display),
        });
    }
}

/// Removes cookie `name` (the credential) from every `Cookie` header of the upstream
/// request; a header left empty is dropped.
fn strip_cookie<'id>(req: &mut impl Outgoing<'id>, name: &str) -> Result<()> {
    const COOKIE: WireName = WireName::constant("cookie", "Cookie");
    let values: Vec<Vec<u8>> = req
        .values(COOKIE.name())
        .filter_map(|v| without_cookie(v.as_bytes(), name))
        .collect();
    req.remove(COOKIE.name());
    for v in values {
        let value = HeaderValue::try_from(v)
            .explain_err(ErrorType::InvalidHTTPHeader, |_| "invalid cookie value")?;
        req.append(&COOKIE, value)?;
    }
    Ok(())
}
