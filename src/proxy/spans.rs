//! The request path's side of traces (`tracing:`; docs/traces.md): the trace a request
//! starts or continues, the `traceparent` its upstream receives, and, for a sampled
//! request, its server span and its upstream's client span once it ends. Attribute names
//! follow OpenTelemetry's HTTP semantic conventions; the gateway's own are
//! `sessiongate.*`. What a span never holds: a token or any part of one, a cookie, a
//! credential header, the query string (which may carry `access_token`), the subject
//! unless `tracing.include_subject`.

use std::borrow::Cow;
use std::time::SystemTime;

use pingora::protocols::http::ServerSession;

use super::*;
use crate::telemetry::trace::{unix_ns, AttrValue, RequestTrace, SpanData, SpanKind};

const TRACEPARENT: WireName = WireName::constant("traceparent", "traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

impl Proxy {
    /// The request's trace, when traces are on: its `traceparent` read (its sampled flag
    /// believed as `tracing.parent_sampling` says), its ids drawn.
    pub(super) fn start_trace(
        &self,
        session: &ServerSession,
        ctx: &mut RequestCtx,
        snap: &Snapshot,
    ) {
        let Some(tracer) = &self.state.tracer else {
            return;
        };
        let peer = ctx.peer;
        let values = session
            .req_header()
            .headers
            .get_all(TRACEPARENT.name())
            .iter()
            .map(|v| v.as_bytes());
        ctx.trace = Some(tracer.start(values, || {
            peer.is_some_and(|p| snap.trusted_proxies.contains(p))
        }));
    }

    /// What child spans of the decision are recorded under (sampled requests only).
    pub(super) fn trace_parent(&self, ctx: &RequestCtx) -> Option<crate::telemetry::trace::Parent> {
        self.state.tracer.as_ref()?.parent_of(ctx.trace.as_ref()?)
    }
}

/// The upstream's `traceparent`: this trace, the gateway's upstream span as its parent
/// (whatever the client sent is replaced; its `tracestate` goes too when its
/// `traceparent` was unreadable).
pub(super) fn propagate<'id>(req: &mut impl Outgoing<'id>, ctx: &RequestCtx) -> Result<()> {
    let Some(t) = &ctx.trace else { return Ok(()) };
    let value = HeaderValue::from_bytes(&t.upstream_traceparent())
        .explain_err(ErrorType::InternalError, |_| "traceparent")?;
    if t.caller_sent {
        req.insert(&TRACEPARENT, value)?;
    } else {
        // Nothing to replace: no lookup of the client's headers.
        req.append(&TRACEPARENT, value)?;
    }
    if t.unreadable_parent() {
        req.remove(&TRACESTATE);
    }
    Ok(())
}

/// The spans of a finished sampled request: the server span, and the upstream's client
/// span when the request was forwarded.
pub(super) fn finish(
    proxy: &Proxy,
    session: &ServerSession,
    e: Option<&Error>,
    ctx: &RequestCtx,
    status: u16,
    total: Duration,
) {
    let (Some(tracer), Some(t)) = (&proxy.state.tracer, &ctx.trace) else {
        return;
    };
    if !t.sampled {
        return;
    }
    let end = unix_ns(SystemTime::now());
    let req = session.req_header();
    let method = method_name(&req.method);
    let route = ctx.route();
    let mut attrs: Vec<(&'static str, AttrValue)> = Vec::with_capacity(20);
    attrs.push(("http.request.method", AttrValue::Str(method.clone())));
    let path = ctx.rewritten_path().unwrap_or(req.uri.path());
    attrs.push(("url.path", path.to_string().into()));
    attrs.push((
        "url.scheme",
        if ctx.https { "https" } else { "http" }.into(),
    ));
    attrs.push((
        "network.protocol.version",
        protocol_version(req.version).into(),
    ));
    if status > 0 {
        attrs.push(("http.response.status_code", status.into()));
    }
    if let Some(r) = route {
        attrs.push(("http.route", r.spec.path.as_str().to_string().into()));
    }
    if let Some(c) = ctx.client() {
        attrs.push(("client.address", c.into()));
    }
    if let Some(p) = ctx.peer {
        attrs.push(("network.peer.address", p.into()));
    }
    attrs.push((
        "sessiongate.route",
        match route {
            Some(r) => (&r.spec.name).into(),
            None => UNMATCHED.into(),
        },
    ));
    attrs.push(("sessiongate.outcome", ctx.outcome.as_str().into()));
    let mode = match proxy.front {
        front::FrontDoor::Proxy => "proxy",
        front::FrontDoor::Decision => "decision",
    };
    attrs.push(("sessiongate.mode", mode.into()));
    attrs.push(("sessiongate.request_id", ctx.request_id.clone().into()));
    if let Some(c) = ctx.cache_status() {
        attrs.push(("sessiongate.cache", c.as_str().into()));
    }
    if let Some(p) = ctx.provider() {
        attrs.push(("sessiongate.provider", p.to_string().into()));
    }
    if let Some(source) = token_source(ctx) {
        attrs.push(("sessiongate.token_source", source.into()));
    }
    if let Some(l) = ctx.rate_limit() {
        attrs.push(("sessiongate.rate_limit", l.to_string().into()));
    }
    if let Some(w) = ctx.would_deny() {
        attrs.push(("sessiongate.would_deny", w.into()));
    }
    if tracer.include_subject() {
        if let Some(id) = ctx.identity() {
            attrs.push(("enduser.id", id.subject().to_string().into()));
        }
    }
    let error = failure(status, e);
    if let Some(why) = &error {
        attrs.push(("error.type", why.clone().into()));
    }
    let name = match route {
        Some(r) => format!("{method} {}", r.spec.path.as_str()).into(),
        None => method.clone(),
    };
    let start = end.saturating_sub(total.as_nanos() as u64);
    if let (Some(up_started), Some(UpstreamTarget::Http(up))) =
        (t.upstream_started, route.map(|r| &r.upstream))
    {
        tracer.submit(upstream_span(
            t,
            up,
            method.clone(),
            status,
            e,
            end,
            up_started,
        ));
    }
    tracer.submit(SpanData {
        trace_id: t.trace_id,
        span_id: t.span_id,
        parent: t.parent,
        name,
        kind: SpanKind::Server,
        start_unix_ns: start,
        end_unix_ns: end,
        attributes: attrs,
        error: error.map(Into::into),
    });
}

/// The upstream request's client span: from the moment it was let through (connecting
/// included) to the end of its response.
fn upstream_span(
    t: &RequestTrace,
    up: &Upstream,
    method: Cow<'static, str>,
    status: u16,
    e: Option<&Error>,
    end: u64,
    started: Instant,
) -> SpanData {
    let mut attrs: Vec<(&'static str, AttrValue)> = vec![
        ("http.request.method", AttrValue::Str(method.clone())),
        ("server.address", up.host.clone().into()),
        ("server.port", i64::from(up.address.port()).into()),
        ("network.peer.address", up.address.ip().into()),
        ("sessiongate.upstream", up.name.clone().into()),
    ];
    // The status the client got is the upstream's unless the gateway failed the request.
    let upstream_failed = e.is_some_and(|e| e.esource() == &ErrorSource::Upstream);
    if status > 0 && !upstream_failed {
        attrs.push(("http.response.status_code", status.into()));
    }
    let error = if upstream_failed {
        Some(e.map_or_else(String::new, |e| e.etype().as_str().to_string()))
    } else {
        (status >= 500).then(|| status.to_string())
    };
    if let Some(why) = &error {
        attrs.push(("error.type", why.clone().into()));
    }
    SpanData {
        trace_id: t.trace_id,
        span_id: t.upstream_span_id,
        parent: Some(t.span_id),
        name: method,
        kind: SpanKind::Client,
        start_unix_ns: end.saturating_sub(started.elapsed().as_nanos() as u64),
        end_unix_ns: end,
        attributes: attrs,
        error: error.map(Into::into),
    }
}

/// A server span fails on a 5xx (a 4xx is the client's), or when no answer was written
/// because of an error: `error.type` is the status, or Pingora's error type.
fn failure(status: u16, e: Option<&Error>) -> Option<String> {
    match (status, e) {
        (500.., _) => Some(status.to_string()),
        (0, Some(e)) => Some(e.etype().as_str().to_string()),
        _ => None,
    }
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    }
}

/// Which kind of credential the token came from (never its name's value).
fn token_source(ctx: &RequestCtx) -> Option<&'static str> {
    let d = ctx.decision.as_ref()?;
    let source = d
        .route
        .as_ref()?
        .spec
        .credentials
        .sources
        .get(d.token_source?)?;
    Some(match source {
        TokenSource::Authorization => "authorization",
        TokenSource::Cookie(_) => "cookie",
        TokenSource::Header(_) => "header",
        TokenSource::ClientCertificate => "client_certificate",
    })
}

/// The method's name, without an allocation for the standard ones.
fn method_name(m: &http::Method) -> Cow<'static, str> {
    const STANDARD: [(http::Method, &str); 9] = [
        (http::Method::GET, "GET"),
        (http::Method::POST, "POST"),
        (http::Method::PUT, "PUT"),
        (http::Method::DELETE, "DELETE"),
        (http::Method::HEAD, "HEAD"),
        (http::Method::OPTIONS, "OPTIONS"),
        (http::Method::PATCH, "PATCH"),
        (http::Method::CONNECT, "CONNECT"),
        (http::Method::TRACE, "TRACE"),
    ];
    match STANDARD.iter().find(|(s, _)| s == m) {
        Some((_, name)) => Cow::Borrowed(*name),
        None => Cow::Owned(m.as_str().to_string()),
    }
}
