//! Prometheus metrics. Each gateway owns its registry (so several gateways in one test
//! process never collide); `/metrics` on the admin listener renders it. Labels are bounded:
//! route names and provider names come from the config, outcomes and results are fixed
//! words. Never a token, a subject or a raw path.

use std::sync::{Arc, OnceLock};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// One route's series, resolved once instead of hashing the labels on every request. A
/// series is created on first use (exactly when `with_label_values` would have created
/// it), so `/metrics` shows the same series as before.
#[derive(Clone)]
pub struct RouteSeries {
    route: Arc<str>,
    requests: IntCounterVec,
    /// `requests_total{route, outcome, mode}`, by outcome index, proxy mode's first (see
    /// [`RouteSeries::requests`]).
    by_outcome: Box<[OnceLock<IntCounter>]>,
    request_duration: Histogram,
    auth_duration_vec: HistogramVec,
    auth_duration: OnceLock<Histogram>,
}

impl RouteSeries {
    /// Series of `route`, for `outcomes` distinct outcome indexes.
    pub fn new(metrics: &Metrics, route: &Arc<str>, outcomes: usize) -> Self {
        RouteSeries {
            route: route.clone(),
            requests: metrics.requests.clone(),
            by_outcome: (0..2 * outcomes).map(|_| OnceLock::new()).collect(),
            request_duration: metrics.request_duration.with_label_values(&[route]),
            auth_duration_vec: metrics.auth_duration.clone(),
            auth_duration: OnceLock::new(),
        }
    }

    /// `requests_total{route, outcome, mode}` for the outcome with this index and label,
    /// in `mode` (`proxy` or `decision`).
    pub(crate) fn requests(
        &self,
        index: usize,
        outcome: &str,
        mode: RequestMode,
    ) -> Option<&IntCounter> {
        let half = self.by_outcome.len() / 2;
        if index >= half {
            return None;
        }
        let slot = self.by_outcome.get(index + half * mode as usize)?;
        Some(slot.get_or_init(|| {
            self.requests
                .with_label_values(&[&self.route, outcome, mode.as_str()])
        }))
    }

    pub(crate) fn request_duration(&self) -> &Histogram {
        &self.request_duration
    }

    pub(crate) fn auth_duration(&self) -> &Histogram {
        self.auth_duration
            .get_or_init(|| self.auth_duration_vec.with_label_values(&[&self.route]))
    }
}

/// Which front door a request came through: the `mode` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestMode {
    /// The proxy listener: forwarded by sessiongate.
    Proxy = 0,
    /// The decision listener: a front proxy's question.
    Decision = 1,
}

impl RequestMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RequestMode::Proxy => "proxy",
            RequestMode::Decision => "decision",
        }
    }
}

impl std::fmt::Debug for RouteSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteSeries({})", self.route)
    }
}

/// Label values that are fixed words defined by the modules that own them.
pub(crate) struct FixedLabels {
    /// `cache_lookups_total{result}`: the cache's statuses.
    pub(crate) cache_results: &'static [&'static str],
    /// `requests_rejected_total{reason}`: the canonical request's rejection reasons.
    pub(crate) rejection_reasons: &'static [&'static str],
}

/// All metrics of one gateway.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `sessiongate_requests_total{route, outcome}`.
    pub(crate) requests: IntCounterVec,
    /// `sessiongate_policy_would_deny_total{route, reason}`: report-only routes.
    pub(crate) would_deny: IntCounterVec,
    /// `sessiongate_policy_rule_denials_total{route, rule}`: each time a `rules:` entry
    /// said no (report-only routes included: what enforcing it would refuse).
    pub(crate) rule_denials: IntCounterVec,
    /// `sessiongate_policy_rule_errors_total{route, rule}`: of those, the ones that could
    /// not be evaluated (a missing key, a wrong type): each is a deny.
    pub(crate) rule_errors: IntCounterVec,
    /// `sessiongate_rate_limited_total{route, policy, mode}`: requests over a rate limit,
    /// refused (`enforce`) or let through (`report`).
    pub(crate) rate_limited: IntCounterVec,
    /// `sessiongate_rate_limit_keys{policy}`: keys a policy tracks now (set at scrape time).
    pub(crate) rate_limit_keys: IntGaugeVec,
    /// `sessiongate_request_duration_seconds{route}`: whole request, as the gateway saw it.
    pub(crate) request_duration: HistogramVec,
    /// `sessiongate_auth_duration_seconds{route}`: token → identity, cache included.
    pub(crate) auth_duration: HistogramVec,
    /// `sessiongate_provider_calls_total{provider, result}`.
    pub(crate) provider_calls: IntCounterVec,
    /// `sessiongate_provider_call_duration_seconds{provider}`.
    pub(crate) provider_duration: HistogramVec,
    /// `sessiongate_provider_calls_in_flight{provider}`.
    pub(crate) provider_in_flight: IntGaugeVec,
    /// `sessiongate_cache_lookups_total{result}`: hit, miss, negative_hit, coalesced.
    pub(crate) cache_lookups: IntCounterVec,
    /// The series of `cache_lookups`, one per label value in `FixedLabels::cache_results`
    /// order, resolved once (`init_series`) so that a lookup costs no label hashing.
    cache_lookup_series: OnceLock<Box<[(&'static str, IntCounter)]>>,
    /// `sessiongate_cache_evictions_total{cache, cause}`: size / expired removals.
    pub(crate) cache_evictions: IntCounterVec,
    /// `sessiongate_cache_entries{cache}`: positive / negative, set at scrape time.
    pub(crate) cache_entries: IntGaugeVec,
    /// `sessiongate_upstream_errors_total{upstream}`.
    pub(crate) upstream_errors: IntCounterVec,
    /// `sessiongate_cache_refreshes_total{result}`: background refreshes (ok, invalid, failed).
    pub(crate) cache_refreshes: IntCounterVec,
    /// `sessiongate_stale_served_total{route, provider}`: lapsed identities served because
    /// the provider failed (stale-if-error).
    pub(crate) stale_served: IntCounterVec,
    /// `sessiongate_cache_purged_total{by}`: identities removed by the admin purge.
    pub(crate) cache_purged: IntCounterVec,
    /// `sessiongate_provider_rejected_total{provider, reason}`: calls not made to protect
    /// the provider (`circuit_open`, `queue_timeout`).
    pub(crate) provider_rejected: IntCounterVec,
    /// `sessiongate_provider_circuit_state{provider}`: 0 closed, 1 half-open, 2 open.
    pub(crate) provider_circuit_state: IntGaugeVec,
    /// `sessiongate_config_last_reload_success`: 1 if the last reload (or the start) applied.
    pub(crate) config_last_reload_success: IntGauge,
    /// `sessiongate_config_last_reload_success_timestamp_seconds`.
    pub(crate) config_last_reload_success_time: IntGauge,
    /// `sessiongate_config_reloads_total{result}`: applied or rejected.
    pub(crate) config_reloads: IntCounterVec,
    /// `sessiongate_requests_rejected_total{reason}`: requests without a canonical form
    /// (400 before routing; see `canonical`).
    pub(crate) rejected_requests: IntCounterVec,
    /// `sessiongate_downstream_connections`: client connections open on the proxy listener.
    pub(crate) downstream_connections: IntGauge,
    /// `sessiongate_connections_closed_total{reason}`: client connections the gateway
    /// closed for a limit (header_timeout, idle_timeout, body_timeout, over_limit).
    pub(crate) connections_closed: IntCounterVec,
    /// `sessiongate_direct_path_requests_total`: requests served by the direct path
    /// (bodiless HTTP/1.1; `direct_path: false` turns it off); the others go through
    /// Pingora's full proxy.
    pub(crate) direct_path_requests: IntCounter,
    /// `sessiongate_tls_handshakes_total{outcome}`: TLS handshakes on `tls.listen` (ok;
    /// closed: the client hung up first, as TCP health checks do; failed: not TLS, no
    /// common version or cipher, a client alert; timeout: not done within
    /// `connections.header_timeout`).
    pub(crate) tls_handshakes: IntCounterVec,
    /// `sessiongate_tls_certificate_reloads_total{result}`: certificate files that changed
    /// and were loaded, or rejected (the old certificates stay in use).
    pub(crate) tls_certificate_reloads: IntCounterVec,
    /// `sessiongate_tls_certificate_expiry_timestamp_seconds{certificate}`: `notAfter` of
    /// each certificate in use, by its index in `tls.certificates`.
    pub(crate) tls_certificate_expiry: IntGaugeVec,
    /// `sessiongate_cluster_*`: the replicas' shared revocation stream (all zero without
    /// a `cluster:` section).
    pub(crate) cluster: ClusterMetrics,
    /// `sessiongate_trace_*`: the OTLP exporter (all zero without a `tracing:` section).
    pub(crate) trace: TraceMetrics,
}

/// The `tracing:` series: spans exported and dropped.
#[derive(Clone)]
pub(crate) struct TraceMetrics {
    /// `sessiongate_trace_spans_exported_total`: spans the collector took.
    pub(crate) exported: IntCounter,
    /// `sessiongate_trace_spans_dropped_total{reason="queue_full"}`: spans dropped
    /// because the export queue was full (the collector slower than the spans).
    pub(crate) dropped_queue_full: IntCounter,
    /// `…{reason="export_failed"}`: spans of batches the collector did not take.
    pub(crate) dropped_export_failed: IntCounter,
}

/// The `cluster:` series (see `cluster`).
#[derive(Clone)]
pub(crate) struct ClusterMetrics {
    /// `sessiongate_cluster_enabled`: 1 when a `cluster:` section is configured.
    pub(crate) enabled: IntGauge,
    /// `sessiongate_cluster_redis_up`: 1 while the revocation stream is being read.
    pub(crate) redis_up: IntGauge,
    /// `sessiongate_cluster_redis_errors_total{op}`: failed Redis commands (connect, read,
    /// publish, check, shared_find, shared_store, shared_purge).
    pub(crate) redis_errors: IntCounterVec,
    /// `sessiongate_cluster_purges_published_total`: purges appended to the stream.
    pub(crate) published: IntCounter,
    /// `sessiongate_cluster_purges_applied_total`: other replicas' purges applied here.
    pub(crate) applied: IntCounter,
    /// `sessiongate_cluster_purges_pending`: purges waiting for Redis to be published.
    pub(crate) pending: IntGauge,
    /// `sessiongate_cluster_flushes_total{reason}`: whole-cache flushes because purges may
    /// have been missed (trimmed, stream_lost, overflow) or a replica asked (remote).
    pub(crate) flushes: IntCounterVec,
    /// `sessiongate_cluster_stream_lag_seconds`: publish-to-apply time of the last
    /// entry applied; 0 once the replica has read everything there is.
    pub(crate) lag: Gauge,
    /// `sessiongate_cluster_stream_lag_entries`: entries in the stream after the last one
    /// applied here (counted up to 1000); 0 when caught up.
    pub(crate) lag_entries: IntGauge,
    /// `sessiongate_cluster_shared_cache_lookups_total{result}`: local misses asked of the
    /// shared cache (hit, invalid, miss, older, unreadable, unavailable).
    pub(crate) shared_lookups: IntCounterVec,
    /// `sessiongate_cluster_shared_cache_writes_total{result}`: answers shared (ok, error).
    pub(crate) shared_writes: IntCounterVec,
    /// `sessiongate_cluster_claim_waits_total{outcome}`: waits for another replica's
    /// provider call (answered, claimed, timed_out).
    pub(crate) claim_waits: IntCounterVec,
    /// `sessiongate_cluster_claim_wait_seconds`: how long those waits took.
    pub(crate) claim_wait_seconds: Histogram,
    /// `sessiongate_cluster_redis_breaker_open`: 1 while Redis is not asked (failing).
    pub(crate) breaker_open: IntGauge,
    /// `sessiongate_cluster_rate_limit_checks_total{counted}`: requests whose rate limits
    /// were counted in Redis (`redis`) or, Redis unavailable, locally at this replica's
    /// share (`fallback`).
    pub(crate) rate_limit_checks: IntCounterVec,
    /// `sessiongate_cluster_rate_limit_replicas`: what the local fallback divides every
    /// rate by (the replicas seen in Redis, at least `cluster.rate_limits.replicas`).
    pub(crate) rate_limit_replicas: IntGauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let build_info = IntGauge::with_opts(
            Opts::new("sessiongate_build_info", "Build information; always 1.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("registered once");
        // The registry holds it; nothing changes it after this.
        build_info.set(1);
        let plain_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let plain_counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let cluster = ClusterMetrics {
            enabled: plain_gauge(
                "sessiongate_cluster_enabled",
                "1 when this gateway shares revocations with other replicas through Redis (a cluster: section).",
            ),
            redis_up: plain_gauge(
                "sessiongate_cluster_redis_up",
                "1 while this replica reads the cluster's revocation stream in Redis; 0 otherwise (or without cluster).",
            ),
            redis_errors: counter(
                "sessiongate_cluster_redis_errors_total",
                "Failed Redis commands of the cluster, by operation (connect, read, publish, check, shared_find, shared_store, shared_purge, rate_limit, rate_limit_heartbeat, rate_limit_reset).",
                &["op"],
            ),
            published: plain_counter(
                "sessiongate_cluster_purges_published_total",
                "Purges this replica appended to the cluster's revocation stream.",
            ),
            applied: plain_counter(
                "sessiongate_cluster_purges_applied_total",
                "Purges of other replicas read from the revocation stream and applied here.",
            ),
            pending: plain_gauge(
                "sessiongate_cluster_purges_pending",
                "Purges applied locally and waiting for Redis to be published to the other replicas.",
            ),
            flushes: counter(
                "sessiongate_cluster_flushes_total",
                "Whole identity-cache flushes because purges may have been missed (trimmed, stream_lost, overflow) or another replica asked (remote).",
                &["reason"],
            ),
            lag: {
                let g = Gauge::new(
                    "sessiongate_cluster_stream_lag_seconds",
                    "Publish-to-apply time of the last revocation-stream entry applied here; 0 once this replica has read the whole stream.",
                )
                .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            lag_entries: plain_gauge(
                "sessiongate_cluster_stream_lag_entries",
                "Revocation-stream entries after the last one applied here (counted up to 1000); 0 when this replica has read the whole stream.",
            ),
            shared_lookups: counter(
                "sessiongate_cluster_shared_cache_lookups_total",
                "Local cache misses asked of the shared identity cache in Redis, by result (hit, invalid, miss, older, purged: sealed before a purge that reached it, unreadable: tampered or sealed under another secret, unavailable: Redis not asked).",
                &["result"],
            ),
            shared_writes: counter(
                "sessiongate_cluster_shared_cache_writes_total",
                "Provider answers written to the shared identity cache, by result (ok, error).",
                &["result"],
            ),
            claim_waits: counter(
                "sessiongate_cluster_claim_waits_total",
                "Waits for another replica's provider call for the same token, by outcome (answered, claimed: the other gave up, timed_out).",
                &["outcome"],
            ),
            claim_wait_seconds: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "sessiongate_cluster_claim_wait_seconds",
                        "How long waits for another replica's provider call took.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid metric");
                registry.register(Box::new(h.clone())).expect("registered once");
                h
            },
            breaker_open: plain_gauge(
                "sessiongate_cluster_redis_breaker_open",
                "1 while this replica does not ask Redis because its commands keep failing (or half-open after that, until one succeeds).",
            ),
            rate_limit_checks: counter(
                "sessiongate_cluster_rate_limit_checks_total",
                "Requests whose rate limits were counted across replicas in Redis (counted=redis) or, Redis unavailable or slower than cluster.rate_limits.timeout, by this replica alone at its share of each rate (counted=fallback).",
                &["counted"],
            ),
            rate_limit_replicas: plain_gauge(
                "sessiongate_cluster_rate_limit_replicas",
                "Replicas sharing the cluster's rate limits as this one last saw them in Redis (at least cluster.rate_limits.replicas): the local fallback counts 1/this of each rate.",
            ),
        };
        for counted in ["redis", "fallback"] {
            cluster.rate_limit_checks.with_label_values(&[counted]);
        }
        for result in [
            "hit",
            "invalid",
            "miss",
            "older",
            "purged",
            "unreadable",
            "unavailable",
        ] {
            cluster.shared_lookups.with_label_values(&[result]);
        }
        for result in ["ok", "error"] {
            cluster.shared_writes.with_label_values(&[result]);
        }
        for outcome in ["answered", "claimed", "timed_out"] {
            cluster.claim_waits.with_label_values(&[outcome]);
        }
        for op in [
            "connect",
            "read",
            "publish",
            "check",
            "shared_find",
            "shared_store",
            "shared_purge",
            "rate_limit",
            "rate_limit_heartbeat",
            "rate_limit_reset",
        ] {
            cluster.redis_errors.with_label_values(&[op]);
        }
        for reason in ["trimmed", "stream_lost", "overflow", "remote"] {
            cluster.flushes.with_label_values(&[reason]);
        }
        let dropped = counter(
            "sessiongate_trace_spans_dropped_total",
            "Trace spans not exported, by reason: queue_full (the export queue was full), export_failed (the collector did not take the batch).",
            &["reason"],
        );
        let trace = TraceMetrics {
            exported: plain_counter(
                "sessiongate_trace_spans_exported_total",
                "Trace spans the OTLP collector took.",
            ),
            dropped_queue_full: dropped.with_label_values(&["queue_full"]),
            dropped_export_failed: dropped.with_label_values(&["export_failed"]),
        };
        Metrics {
            trace,
            cluster,
            cache_refreshes: counter(
                "sessiongate_cache_refreshes_total",
                "Background refresh-ahead calls by result (ok, invalid, failed).",
                &["result"],
            ),
            stale_served: counter(
                "sessiongate_stale_served_total",
                "Requests served with a lapsed identity because the provider failed (stale-if-error).",
                &["route", "provider"],
            ),
            cache_purged: counter(
                "sessiongate_cache_purged_total",
                "Cached identities removed through the admin purge, by what was purged (token, subject, session_id).",
                &["by"],
            ),
            provider_rejected: counter(
                "sessiongate_provider_rejected_total",
                "Provider calls not made to protect the provider: circuit_open or queue_timeout.",
                &["provider", "reason"],
            ),
            provider_circuit_state: gauge(
                "sessiongate_provider_circuit_state",
                "Provider circuit breaker state: 0 closed, 1 half-open, 2 open.",
                &["provider"],
            ),
            config_last_reload_success: plain_gauge(
                "sessiongate_config_last_reload_success",
                "1 if the last configuration reload (or the start) applied, 0 if it was rejected.",
            ),
            config_last_reload_success_time: plain_gauge(
                "sessiongate_config_last_reload_success_timestamp_seconds",
                "Unix time of the last configuration that applied (start or reload).",
            ),
            config_reloads: counter(
                "sessiongate_config_reloads_total",
                "Configuration reloads by result (applied, rejected).",
                &["result"],
            ),
            requests: counter(
                "sessiongate_requests_total",
                "Requests by route, outcome (allowed or the deny/failure reason) and mode (proxy: forwarded by sessiongate; decision: a front proxy's question).",
                &["route", "outcome", "mode"],
            ),
            would_deny: counter(
                "sessiongate_policy_would_deny_total",
                "Requests a report-only route let through that its policy would have denied, by reason.",
                &["route", "reason"],
            ),
            rule_denials: counter(
                "sessiongate_policy_rule_denials_total",
                "Requests a route's rule denied (or would have, on a report-only route), by rule.",
                &["route", "rule"],
            ),
            rule_errors: counter(
                "sessiongate_policy_rule_errors_total",
                "Rule evaluations that failed (missing key, wrong type) and so denied, by rule.",
                &["route", "rule"],
            ),
            rate_limited: counter(
                "sessiongate_rate_limited_total",
                "Requests over a rate limit: refused (mode=enforce) or let through (mode=report), by route and policy.",
                &["route", "policy", "mode"],
            ),
            rate_limit_keys: gauge(
                "sessiongate_rate_limit_keys",
                "Keys a rate-limit policy tracks now (all tiers; bounded by its max_keys per tier).",
                &["policy"],
            ),
            request_duration: histogram(
                "sessiongate_request_duration_seconds",
                "Whole-request duration as seen by the gateway.",
                &["route"],
            ),
            auth_duration: histogram(
                "sessiongate_auth_duration_seconds",
                "Time spent resolving the token to an identity, cache included.",
                &["route"],
            ),
            provider_calls: counter(
                "sessiongate_provider_calls_total",
                "Identity provider calls by provider and result (valid, invalid, or the error kind).",
                &["provider", "result"],
            ),
            provider_duration: histogram(
                "sessiongate_provider_call_duration_seconds",
                "Identity provider call duration.",
                &["provider"],
            ),
            provider_in_flight: gauge(
                "sessiongate_provider_calls_in_flight",
                "Identity provider calls currently waiting for an answer.",
                &["provider"],
            ),
            cache_lookup_series: OnceLock::new(),
            cache_lookups: counter(
                "sessiongate_cache_lookups_total",
                "Identity cache lookups by result (hit, stale, miss, negative_hit, coalesced, throttled).",
                &["result"],
            ),
            cache_evictions: counter(
                "sessiongate_cache_evictions_total",
                "Entries the caches removed on their own: size (capacity) or expired.",
                &["cache", "cause"],
            ),
            cache_entries: gauge(
                "sessiongate_cache_entries",
                "Entries currently in the identity cache (positive) and the invalid-token cache (negative).",
                &["cache"],
            ),
            upstream_errors: counter(
                "sessiongate_upstream_errors_total",
                "Requests that failed while connecting to or talking with an upstream.",
                &["upstream"],
            ),
            rejected_requests: counter(
                "sessiongate_requests_rejected_total",
                "Requests refused with 400 because they have no single canonical reading, by reason.",
                &["reason"],
            ),
            downstream_connections: plain_gauge(
                "sessiongate_downstream_connections",
                "Client connections currently open on the proxy listener.",
            ),
            connections_closed: counter(
                "sessiongate_connections_closed_total",
                "Client connections closed by a limit: header_timeout, idle_timeout, body_timeout, over_limit, tunnel_idle_timeout, tunnel_max_duration.",
                &["reason"],
            ),
            direct_path_requests: plain_counter(
                "sessiongate_direct_path_requests_total",
                "Requests served by the gateway's direct path (bodiless HTTP/1.1); the others go through Pingora's full proxy.",
            ),
            tls_handshakes: counter(
                "sessiongate_tls_handshakes_total",
                "TLS handshakes on the proxy's TLS listener by outcome: ok, closed (client hung up), failed, timeout.",
                &["outcome"],
            ),
            tls_certificate_reloads: counter(
                "sessiongate_tls_certificate_reloads_total",
                "Changed TLS certificate files: loaded, or rejected (the old certificates stay in use).",
                &["result"],
            ),
            tls_certificate_expiry: gauge(
                "sessiongate_tls_certificate_expiry_timestamp_seconds",
                "notAfter of each TLS certificate in use, by its index in tls.certificates.",
                &["certificate"],
            ),
            registry,
        }
    }

    /// Creates the series every dashboard and alert expects, at zero, so that a quiet
    /// gateway exposes them too (a series that appears only on its first event breaks
    /// `rate()` and "absent" alerts). Label sets owned by other modules are passed in, so
    /// this module imports nothing of the request path.
    pub(crate) fn init_series<'a>(
        &self,
        routes: impl IntoIterator<Item = &'a str>,
        providers: impl IntoIterator<Item = &'a str>,
        upstreams: impl IntoIterator<Item = &'a str>,
        labels: &FixedLabels,
    ) {
        for route in routes {
            self.requests
                .with_label_values(&[route, "allowed", "proxy"]);
            self.request_duration.with_label_values(&[route]);
        }
        for provider in providers {
            for result in ["valid", "invalid"] {
                self.provider_calls.with_label_values(&[provider, result]);
            }
            self.provider_duration.with_label_values(&[provider]);
            self.provider_in_flight.with_label_values(&[provider]);
            self.provider_circuit_state.with_label_values(&[provider]);
            for reason in ["circuit_open", "queue_timeout"] {
                self.provider_rejected
                    .with_label_values(&[provider, reason]);
            }
        }
        for upstream in upstreams {
            self.upstream_errors.with_label_values(&[upstream]);
        }
        let series: Box<[(&'static str, IntCounter)]> = labels
            .cache_results
            .iter()
            .map(|result| (*result, self.cache_lookups.with_label_values(&[result])))
            .collect();
        let _ = self.cache_lookup_series.set(series);
        for result in ["ok", "invalid", "failed"] {
            self.cache_refreshes.with_label_values(&[result]);
        }
        for by in ["token", "subject", "session_id"] {
            self.cache_purged.with_label_values(&[by]);
        }
        for result in ["applied", "rejected"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for reason in labels.rejection_reasons {
            self.rejected_requests.with_label_values(&[reason]);
        }
        for reason in [
            "header_timeout",
            "idle_timeout",
            "body_timeout",
            "send_timeout",
            "over_limit",
            "tunnel_idle_timeout",
            "tunnel_max_duration",
        ] {
            self.connections_closed.with_label_values(&[reason]);
        }
        for outcome in ["ok", "closed", "failed", "timeout"] {
            self.tls_handshakes.with_label_values(&[outcome]);
        }
        for result in ["loaded", "rejected"] {
            self.tls_certificate_reloads.with_label_values(&[result]);
        }
        for cache in ["positive", "negative"] {
            self.cache_entries.with_label_values(&[cache]);
            for cause in ["size", "expired"] {
                self.cache_evictions.with_label_values(&[cache, cause]);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        out
    }

    /// Counts one identity cache lookup with result `label`, the `index`th value of
    /// `FixedLabels::cache_results` (a resolved series; by label when the series were not
    /// created or the index does not name `label`).
    pub(crate) fn count_cache_lookup(&self, index: usize, label: &str) {
        let series = self
            .cache_lookup_series
            .get()
            .and_then(|s| s.get(index))
            .filter(|(l, _)| *l == label);
        match series {
            Some((_, counter)) => counter.inc(),
            None => self.cache_lookups.with_label_values(&[label]).inc(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_instances_do_not_collide_and_render() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.requests
            .with_label_values(&["r", "allowed", "proxy"])
            .inc();
        let text = String::from_utf8(a.render()).unwrap();
        assert!(text.contains(
            "sessiongate_requests_total{mode=\"proxy\",outcome=\"allowed\",route=\"r\"} 1"
        ));
        assert!(text.contains("sessiongate_build_info{version="));
        let text_b = String::from_utf8(b.render()).unwrap();
        assert!(!text_b.contains("sessiongate_requests_total{"));
    }
}
