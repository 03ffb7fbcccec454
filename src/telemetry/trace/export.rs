//! OTLP/HTTP export (protobuf, `POST <endpoint>` with `Content-Type:
//! application/x-protobuf`): spans taken from the queue in batches of at most
//! `batch_size`, sent once `batch_size` spans wait, else every `export_interval`. One
//! export at a time, each bounded by `timeout`; a batch the collector did not take (an error status, no answer in time, no connection) is dropped
//! and counted, never retried: spans queue behind a slow collector only up to
//! `queue_size`, so memory stays bounded whatever the collector does. Message layout:
//! `opentelemetry/proto/collector/trace/v1/trace_service.proto` and
//! `opentelemetry/proto/trace/v1/trace.proto`; the tests decode it with the project's
//! own generated classes (Python `opentelemetry-proto`).

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use super::{AttrValue, SpanData, TraceSettings};
use crate::telemetry::logging::error_chain;
use crate::telemetry::metrics::TraceMetrics;
use crate::telemetry::protobuf::Writer;

/// Sends queued spans to the collector (run by the process's background service).
pub(crate) struct Exporter {
    rx: Receiver<SpanData>,
    /// Signalled when the queue holds a batch.
    full: std::sync::Arc<tokio::sync::Notify>,
    client: reqwest::Client,
    endpoint: String,
    headers: reqwest::header::HeaderMap,
    /// The `Resource` message, written once.
    resource: Vec<u8>,
    batch_size: usize,
    interval: Duration,
    timeout: Duration,
    metrics: TraceMetrics,
    /// The last export failed (failures are logged when they start and when they end).
    failing: bool,
}

impl Exporter {
    pub(super) fn new(
        settings: &TraceSettings,
        client: reqwest::Client,
        rx: Receiver<SpanData>,
        full: std::sync::Arc<tokio::sync::Notify>,
        metrics: TraceMetrics,
    ) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &settings.headers {
            // Both were checked when the configuration was read.
            if let (Ok(n), Ok(mut v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                v.set_sensitive(true);
                headers.append(n, v);
            }
        }
        let mut resource = Writer::default();
        for (k, v) in &settings.resource {
            key_value(&mut resource, 1, k, &AttrValue::Str(v.clone().into()));
        }
        Exporter {
            rx,
            full,
            client,
            endpoint: settings.endpoint.clone(),
            headers,
            resource: resource.buf,
            batch_size: settings.batch_size.max(1),
            interval: settings.export_interval,
            timeout: settings.timeout,
            metrics,
            failing: false,
        }
    }

    /// Exports until `shutdown` resolves, then sends what is queued once more. Wakes each
    /// `export_interval`, or when the queue holds a batch ([`super::Tracer::submit`]
    /// signals that once, when it gets there): never once per span — a wake-up per span
    /// is a futex call per request for a sampled request path.
    pub(crate) async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(self.interval) => false,
                () = self.full.notified() => false,
                () = &mut shutdown => true,
            };
            self.drain().await;
            if stopping {
                return;
            }
        }
    }

    /// Exports what is queued, in batches of at most `batch_size`, until the queue is
    /// empty (spans queued meanwhile included).
    async fn drain(&mut self) {
        let mut batch = Vec::with_capacity(self.batch_size);
        while let Ok(s) = self.rx.try_recv() {
            batch.push(s);
            if batch.len() == self.batch_size {
                self.export(&mut batch).await;
            }
        }
        if !batch.is_empty() {
            self.export(&mut batch).await;
        }
    }

    async fn export(&mut self, batch: &mut Vec<SpanData>) {
        let body = encode(&self.resource, batch);
        let n = batch.len() as u64;
        batch.clear();
        let sent = self
            .client
            .post(&self.endpoint)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .timeout(self.timeout)
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(resp) if resp.status().is_success() => None,
            Ok(resp) => Some(format!("the collector answered {}", resp.status())),
            Err(e) if e.is_timeout() => Some(format!("no answer within {:?}", self.timeout)),
            // Without the URL: a collector's address may carry a key in its query.
            Err(e) => Some(error_chain(&e.without_url())),
        };
        match failure {
            None => {
                self.metrics.exported.inc_by(n);
                if std::mem::take(&mut self.failing) {
                    tracing::info!("trace export works again");
                }
            }
            Some(why) => {
                self.metrics.dropped_export_failed.inc_by(n);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        error = %why,
                        spans = n,
                        "trace export failed; spans are dropped (sessiongate_trace_spans_dropped_total) until it works again"
                    );
                }
            }
        }
    }
}

/// `key_value` field `number`: an OTLP `KeyValue` (`AnyValue` string, bool or int).
fn key_value(w: &mut Writer, number: u64, key: &str, value: &AttrValue) {
    w.message(number, |kv| {
        kv.bytes(1, key.as_bytes());
        kv.message(2, |v| match value {
            AttrValue::Str(s) => v.bytes(1, s.as_bytes()),
            AttrValue::Shared(s) => v.bytes(1, s.as_bytes()),
            AttrValue::Ip(ip) => v.bytes(1, ip.to_string().as_bytes()),
            AttrValue::Bool(b) => v.uint(2, u64::from(*b)),
            // int64 as a varint: two's complement.
            AttrValue::Int(i) => v.uint(3, *i as u64),
        });
    });
}

/// An `ExportTraceServiceRequest`: one `ResourceSpans` (this process), one `ScopeSpans`
/// (scope `sessiongate`), the spans.
pub(crate) fn encode(resource: &[u8], spans: &[SpanData]) -> Vec<u8> {
    let mut w = Writer::default();
    w.message(1, |rs| {
        rs.bytes(1, resource);
        rs.message(2, |ss| {
            ss.message(1, |scope| {
                scope.bytes(1, b"sessiongate");
                scope.bytes(2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for s in spans {
                ss.message(2, |m| span(m, s));
            }
        });
    });
    w.buf
}

/// `Span`'s fields (trace.proto numbers).
fn span(m: &mut Writer, s: &SpanData) {
    m.bytes(1, &s.trace_id);
    m.bytes(2, &s.span_id);
    if let Some(p) = &s.parent {
        m.bytes(4, p);
    }
    m.bytes(5, s.name.as_bytes());
    m.uint(6, s.kind as u64);
    m.fixed64(7, s.start_unix_ns);
    m.fixed64(8, s.end_unix_ns.max(s.start_unix_ns));
    for (k, v) in &s.attributes {
        key_value(m, 9, k, v);
    }
    if let Some(why) = &s.error {
        m.message(15, |st| {
            st.bytes(2, why.as_bytes());
            st.uint(3, 2); // STATUS_CODE_ERROR
        });
    }
}

#[cfg(test)]
impl Exporter {
    pub(super) async fn next_for_test(&mut self) -> SpanData {
        self.rx.recv().await.expect("a span")
    }
}
