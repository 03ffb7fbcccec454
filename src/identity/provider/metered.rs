//! A provider wrapper that counts calls, results and latency, and logs failures loudly
//! (provider name and cause; never the token).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{Provider, ProviderError, Resolution};
use crate::telemetry::metrics::Metrics;

/// `inner`, instrumented under the config name `name`.
#[derive(Debug)]
pub(crate) struct Metered {
    name: Arc<str>,
    inner: Arc<dyn Provider>,
    metrics: Metrics,
}

/// Decrements the in-flight gauge however the call ends (a cancelled request included).
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metered {
    pub fn new(name: Arc<str>, inner: Arc<dyn Provider>, metrics: Metrics) -> Self {
        Metered {
            name,
            inner,
            metrics,
        }
    }
}

#[async_trait]
impl Provider for Metered {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn accepts(&self, token: &str) -> bool {
        self.inner.accepts(token)
    }

    async fn warm_up(&self) -> Result<(), ProviderError> {
        self.inner.warm_up().await
    }

    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        let gauge = self
            .metrics
            .provider_in_flight
            .with_label_values(&[&*self.name]);
        gauge.inc();
        let in_flight = InFlight(gauge);
        let started = Instant::now();
        let result = self.inner.resolve(token).await;
        drop(in_flight);
        self.metrics
            .provider_duration
            .with_label_values(&[&*self.name])
            .observe(started.elapsed().as_secs_f64());
        let label = match &result {
            Ok(Resolution::Valid(_)) => "valid",
            Ok(Resolution::Invalid(_)) => "invalid",
            Err(e) => {
                tracing::error!(
                    provider = %self.name,
                    kind = self.inner.kind(),
                    error_kind = e.kind(),
                    error = %e,
                    "identity provider failed; requests fail closed with 503"
                );
                e.kind()
            }
        };
        self.metrics
            .provider_calls
            .with_label_values(&[&*self.name, label])
            .inc();
        result
    }
}
