//! OpenTelemetry traces (docs/traces.md): W3C Trace Context read from each request and
//! written to its upstream, a server span per request and client spans for what it waited
//! on (provider calls, JWKS fetches, Redis, the upstream), exported over OTLP/HTTP by
//! [`export`]. A leaf like the rest of `telemetry`: the request path hands it ids, names
//! and attribute values.
//!
//! What a request costs: with no `tracing:` section, nothing (no [`Tracer`] exists). Not
//! sampled: its `traceparent` read, one or two random ids, the header written upstream.
//! Sampled: its spans' attributes and a slot each in the bounded export queue; a full
//! queue drops the span and counts it, a request never waits for the exporter.
//!
//! Sampling is parent-based with a ratio for roots: a caller's `sampled` flag is believed
//! only from the peers [`ParentSampling`] names (by default `trusted_proxies`), so a
//! client cannot have every request it sends traced; from anyone else the trace id is
//! continued and the gateway draws at `sample_ratio` itself (a fresh draw, not a function
//! of the trace id, which the client chose).

mod context;
pub(crate) mod export;

pub use context::{format_traceparent, parse_traceparent, TraceParent};

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;

use crate::telemetry::metrics::TraceMetrics;

/// Whose `sampled` flag (in `traceparent`) decides whether a request is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentSampling {
    /// Peers in `trusted_proxies` (the default): what a mesh sidecar or an ingress with
    /// tracing decided is followed; a client's own flag is not.
    TrustedProxies,
    /// Every caller (a private network where every client's decision is wanted).
    Everyone,
    /// Nobody: every request is sampled at `sample_ratio`.
    Nobody,
}

/// `tracing:`, validated (plain data; the exporter is built from it at start).
#[derive(Clone, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// Headers sent with each export (a SaaS collector's key): name, value.
    pub headers: Vec<(String, String)>,
    /// One export's deadline.
    pub timeout: Duration,
    /// PEM bundle of extra CAs for an `https` endpoint.
    pub ca_pem: Option<Vec<u8>>,
    /// Share of root requests traced, 0 to 1.
    pub sample_ratio: f64,
    pub parent_sampling: ParentSampling,
    /// Put the identity's subject (personal data) on server spans as `enduser.id`.
    pub include_subject: bool,
    /// Resource attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
    /// Spans waiting for export at most; beyond, new spans are dropped (and counted).
    pub queue_size: usize,
    /// Spans per export at most.
    pub batch_size: usize,
    /// How long a span waits for a batch to fill before it is exported anyway.
    pub export_interval: Duration,
}

impl fmt::Debug for TraceSettings {
    /// Header values may be keys: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceSettings")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("sample_ratio", &self.sample_ratio)
            .field("parent_sampling", &self.parent_sampling)
            .field("include_subject", &self.include_subject)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// OTLP `SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpanKind {
    #[default]
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute value. Shared strings and addresses are kept as they are and spelled out
/// by the exporter, off the request path.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(Cow<'static, str>),
    Shared(Arc<str>),
    Ip(std::net::IpAddr),
    Int(i64),
    Bool(bool),
}

impl From<&Arc<str>> for AttrValue {
    fn from(v: &Arc<str>) -> Self {
        AttrValue::Shared(v.clone())
    }
}

impl From<std::net::IpAddr> for AttrValue {
    fn from(v: std::net::IpAddr) -> Self {
        AttrValue::Ip(v)
    }
}

impl From<&'static str> for AttrValue {
    fn from(v: &'static str) -> Self {
        AttrValue::Str(Cow::Borrowed(v))
    }
}

impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(Cow::Owned(v))
    }
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}

impl From<u16> for AttrValue {
    fn from(v: u16) -> Self {
        AttrValue::Int(i64::from(v))
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        AttrValue::Bool(v)
    }
}

/// A finished span, waiting for export.
#[derive(Debug, Clone, Default)]
pub struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// `Some`: the span failed (OTLP status ERROR), with this description.
    pub error: Option<Cow<'static, str>>,
}

/// Nanoseconds since the Unix epoch.
pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One request's trace, decided when the request begins.
#[derive(Debug)]
pub struct RequestTrace {
    pub trace_id: [u8; 16],
    /// The gateway's server span.
    pub span_id: [u8; 8],
    /// The upstream request's client span: the parent the upstream is told of.
    pub upstream_span_id: [u8; 8],
    /// The caller's span, when the request continued a trace.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    /// The caller sent a `traceparent` (the gateway's replaces it).
    pub caller_sent: bool,
    /// When the request was let through to its upstream (the upstream span's start).
    pub upstream_started: Option<Instant>,
}

impl RequestTrace {
    /// The caller sent a `traceparent` that could not be read: its `tracestate` belongs
    /// to no trace the upstream will see, and is not passed on.
    pub fn unreadable_parent(&self) -> bool {
        self.caller_sent && self.parent.is_none()
    }

    /// The `traceparent` the upstream receives: this trace, the upstream span as parent.
    pub fn upstream_traceparent(&self) -> [u8; 55] {
        format_traceparent(&self.trace_id, &self.upstream_span_id, self.sampled)
    }

    /// The trace id and the server span's, as lower-case hex (for the access log).
    pub fn ids_hex(&self) -> HexIds {
        let mut out = [0u8; 48];
        context::write_hex(&mut out[..32], &self.trace_id);
        context::write_hex(&mut out[32..], &self.span_id);
        HexIds(out)
    }
}

/// A trace id and a span id in lower-case hex.
pub struct HexIds([u8; 48]);

impl HexIds {
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.0[..32]).unwrap_or_default()
    }

    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.0[32..]).unwrap_or_default()
    }
}

/// The process's tracer: sampling, and the queue spans wait in for [`export`].
pub struct Tracer {
    /// A request the gateway draws for is sampled when a random `u64` is below this
    /// (2^64 · `sample_ratio`; 0: never).
    threshold: u64,
    /// `sample_ratio: 1`: every request drawn for is sampled.
    always: bool,
    parent_sampling: ParentSampling,
    include_subject: bool,
    queue: tokio::sync::mpsc::Sender<SpanData>,
    /// Wakes the exporter when the queue holds `batch_size` spans.
    full: Arc<tokio::sync::Notify>,
    batch_size: usize,
    metrics: TraceMetrics,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

thread_local! {
    /// Ids and sampling draws: a small generator per thread, seeded from the system's.
    /// Not secret — an id is no credential, and knowing the draws would only decide *which*
    /// requests are sampled, never how many — but fast: a request that is not sampled
    /// still draws two ids.
    static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_os_rng());
}

/// A random `u64`, never 0.
fn random_u64() -> u64 {
    RNG.with(|r| loop {
        let v = r.borrow_mut().next_u64();
        if v != 0 {
            return v;
        }
    })
}

fn random_id<const N: usize>() -> [u8; N] {
    let mut id = [0u8; N];
    for chunk in id.chunks_mut(8) {
        chunk.copy_from_slice(&random_u64().to_le_bytes()[..chunk.len()]);
    }
    id
}

impl Tracer {
    /// The tracer and its exporter (run it with [`export::Exporter::run`]).
    pub(crate) fn new(
        settings: &TraceSettings,
        client: reqwest::Client,
        metrics: TraceMetrics,
    ) -> (Arc<Tracer>, export::Exporter) {
        let (tx, rx) = tokio::sync::mpsc::channel(settings.queue_size.max(1));
        let full = Arc::new(tokio::sync::Notify::new());
        let ratio = settings.sample_ratio.clamp(0.0, 1.0);
        let tracer = Arc::new(Tracer {
            // 2^64 · ratio (`as` saturates); ratio 1 is `always`.
            threshold: (ratio * 18_446_744_073_709_551_616.0) as u64,
            always: ratio >= 1.0,
            parent_sampling: settings.parent_sampling,
            include_subject: settings.include_subject,
            queue: tx,
            full: full.clone(),
            batch_size: settings.batch_size.max(1),
            metrics: metrics.clone(),
        });
        (
            tracer,
            export::Exporter::new(settings, client, rx, full, metrics),
        )
    }

    /// Whether server spans carry the subject (`tracing.include_subject`).
    pub fn include_subject(&self) -> bool {
        self.include_subject
    }

    fn draw(&self) -> bool {
        self.always || (self.threshold > 0 && random_u64() < self.threshold)
    }

    /// Starts a request's trace from the `traceparent` values it carried (`values`: each
    /// header field, in order; more than one is unreadable). `trusted_peer`: the TCP peer
    /// is in `trusted_proxies` (asked only when a readable `traceparent` came).
    pub fn start<'a>(
        &self,
        mut values: impl Iterator<Item = &'a [u8]>,
        trusted_peer: impl FnOnce() -> bool,
    ) -> RequestTrace {
        let first = values.next();
        let parent = match (first, values.next()) {
            (Some(v), None) => parse_traceparent(v),
            _ => None,
        };
        let believed = || match self.parent_sampling {
            ParentSampling::TrustedProxies => trusted_peer(),
            ParentSampling::Everyone => true,
            ParentSampling::Nobody => false,
        };
        let (trace_id, sampled) = match parent {
            Some(p) if believed() => (p.trace_id, p.sampled),
            Some(p) => (p.trace_id, self.draw()),
            None => (random_id(), self.draw()),
        };
        RequestTrace {
            trace_id,
            span_id: random_id(),
            upstream_span_id: random_id(),
            parent: parent.map(|p| p.span_id),
            sampled,
            caller_sent: first.is_some(),
            upstream_started: None,
        }
    }

    /// Queues a finished span for export; a full queue drops it (counted).
    pub fn submit(&self, span: SpanData) {
        if self.queue.try_send(span).is_err() {
            self.metrics.dropped_queue_full.inc();
        } else if self.queue.max_capacity() - self.queue.capacity() == self.batch_size {
            // Once, as the queue reaches a batch (the exporter's timer covers a miss).
            self.full.notify_one();
        }
    }

    /// What child spans of this request's server span need (sampled requests only).
    pub fn parent_of(self: &Arc<Self>, t: &RequestTrace) -> Option<Parent> {
        t.sampled.then(|| Parent {
            tracer: self.clone(),
            trace_id: t.trace_id,
            span_id: t.span_id,
        })
    }
}

/// The span child spans are recorded under, for the task that runs [`within`].
#[derive(Clone)]
pub struct Parent {
    tracer: Arc<Tracer>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

tokio::task_local! {
    static PARENT: Parent;
}

/// Runs `fut` with [`child`] spans recorded under `parent`.
pub async fn within<F: std::future::Future>(parent: Parent, fut: F) -> F::Output {
    PARENT.scope(parent, fut).await
}

/// A child span in progress, recorded when dropped (a call cancelled with its request
/// is recorded as far as it got).
pub struct ChildSpan {
    tracer: Arc<Tracer>,
    data: SpanData,
}

/// Starts a child span of the running request's server span, when the request is
/// sampled (`None` otherwise, or outside a request: background refreshes).
pub fn child(name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Option<ChildSpan> {
    PARENT
        .try_with(|p| ChildSpan {
            tracer: p.tracer.clone(),
            data: SpanData {
                trace_id: p.trace_id,
                span_id: random_id(),
                parent: Some(p.span_id),
                name: name.into(),
                kind,
                start_unix_ns: unix_ns(SystemTime::now()),
                end_unix_ns: 0,
                attributes: Vec::new(),
                error: None,
            },
        })
        .ok()
}

impl ChildSpan {
    pub fn attr(&mut self, key: &'static str, value: impl Into<AttrValue>) {
        self.data.attributes.push((key, value.into()));
    }

    /// Marks the span failed, with a description that carries no secret.
    pub fn fail(&mut self, description: impl Into<Cow<'static, str>>) {
        self.data.error = Some(description.into());
    }

    /// The `traceparent` a callee is told of: this span as its parent.
    pub fn traceparent(&self) -> [u8; 55] {
        format_traceparent(&self.data.trace_id, &self.data.span_id, true)
    }
}

impl Drop for ChildSpan {
    fn drop(&mut self) {
        self.data.end_unix_ns = unix_ns(SystemTime::now());
        self.tracer.submit(std::mem::take(&mut self.data));
    }
}

#[cfg(test)]
mod tests;
