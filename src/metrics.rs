//! Prometheus metrics. Each gateway owns its registry (so several gateways in one test
//! process never collide); `/metrics` on the admin listener renders it. Labels are bounded:
//! route names and provider names come from the config, outcomes and results are fixed
//! words. Never a token, a subject or a raw path.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// All metrics of one gateway.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `sessiongate_requests_total{route, outcome}`.
    pub requests: IntCounterVec,
    /// `sessiongate_policy_would_deny_total{route, reason}`: report-only routes.
    pub would_deny: IntCounterVec,
    /// `sessiongate_request_duration_seconds{route}`: whole request, as the gateway saw it.
    pub request_duration: HistogramVec,
    /// `sessiongate_auth_duration_seconds{route}`: token → identity, cache included.
    pub auth_duration: HistogramVec,
    /// `sessiongate_provider_calls_total{provider, result}`.
    pub provider_calls: IntCounterVec,
    /// `sessiongate_provider_call_duration_seconds{provider}`.
    pub provider_duration: HistogramVec,
    /// `sessiongate_provider_calls_in_flight{provider}`.
    pub provider_in_flight: IntGaugeVec,
    /// `sessiongate_cache_lookups_total{result}`: hit, miss, negative_hit, coalesced.
    pub cache_lookups: IntCounterVec,
    /// `sessiongate_cache_evictions_total{cache, cause}`: size / expired removals.
    pub cache_evictions: IntCounterVec,
    /// `sessiongate_cache_entries{cache}`: positive / negative, set at scrape time.
    pub cache_entries: IntGaugeVec,
    /// `sessiongate_upstream_errors_total{upstream}`.
    pub upstream_errors: IntCounterVec,
    /// `sessiongate_build_info{version}` = 1.
    pub build_info: IntGauge,
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
        build_info.set(1);
        Metrics {
            requests: counter(
                "sessiongate_requests_total",
                "Requests by route and outcome (allowed or the deny/failure reason).",
                &["route", "outcome"],
            ),
            would_deny: counter(
                "sessiongate_policy_would_deny_total",
                "Requests a report-only route let through that its policy would have denied, by reason.",
                &["route", "reason"],
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
            cache_lookups: counter(
                "sessiongate_cache_lookups_total",
                "Identity cache lookups by result (hit, miss, negative_hit, coalesced).",
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
            build_info,
            registry,
        }
    }

    /// Creates the series every dashboard and alert expects, at zero, so that a quiet
    /// gateway exposes them too (a series that appears only on its first event breaks
    /// `rate()` and "absent" alerts).
    pub fn init_series<'a>(
        &self,
        routes: impl IntoIterator<Item = &'a str>,
        providers: impl IntoIterator<Item = &'a str>,
        upstreams: impl IntoIterator<Item = &'a str>,
    ) {
        for route in routes {
            self.requests.with_label_values(&[route, "allowed"]);
            self.request_duration.with_label_values(&[route]);
        }
        for provider in providers {
            for result in ["valid", "invalid"] {
                self.provider_calls.with_label_values(&[provider, result]);
            }
            self.provider_duration.with_label_values(&[provider]);
            self.provider_in_flight.with_label_values(&[provider]);
        }
        for upstream in upstreams {
            self.upstream_errors.with_label_values(&[upstream]);
        }
        for result in ["hit", "miss", "negative_hit", "coalesced"] {
            self.cache_lookups.with_label_values(&[result]);
        }
        for cache in ["positive", "negative"] {
            self.cache_entries.with_label_values(&[cache]);
            for cause in ["size", "expired"] {
                self.cache_evictions.with_label_values(&[cache, cause]);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        out
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
        a.requests.with_label_values(&["r", "allowed"]).inc();
        let text = String::from_utf8(a.render()).unwrap();
        assert!(text.contains("sessiongate_requests_total{outcome=\"allowed\",route=\"r\"} 1"));
        assert!(text.contains("sessiongate_build_info{version="));
        let text_b = String::from_utf8(b.render()).unwrap();
        assert!(!text_b.contains("sessiongate_requests_total{"));
    }
}
