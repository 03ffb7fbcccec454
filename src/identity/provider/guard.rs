//! Provider protection: a bound on concurrent calls (with a queue wait limit) and a
//! circuit breaker, per provider. Both turn into provider *failures* for the request
//! (503, or a stale identity where the route allows), never into an allow.
//!
//! Breaker: `failures` consecutive failures (unreachable, timeout, 5xx, garbage — an
//! "invalid token" answer is a success here) open it for `open_for`; then up to
//! `half_open_probes` calls go through: one success closes it, a failure opens it again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{Provider, ProviderError, Resolution};
use crate::clock::{lock, SharedClock};
use crate::telemetry::metrics::Metrics;

/// `providers.<name>.protection` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protection {
    /// Most calls in flight at once; 0: unbounded.
    pub(crate) max_concurrent: usize,
    /// How long a call may wait for a free slot before failing.
    pub(crate) queue_timeout: Duration,
    /// Consecutive failures that open the breaker; 0: no breaker.
    pub(crate) failures: u32,
    /// How long the breaker stays open before letting probes through.
    pub(crate) open_for: Duration,
    /// Calls let through at once while half-open.
    pub(crate) half_open_probes: u32,
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            max_concurrent: 100,
            queue_timeout: Duration::from_secs(1),
            failures: 5,
            open_for: Duration::from_secs(10),
            half_open_probes: 1,
        }
    }
}

/// Breaker state, as the `provider_circuit_state` gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

#[derive(Debug)]
struct Breaker {
    state: CircuitState,
    consecutive_failures: u32,
    opened_at: SystemTime,
    probes_in_flight: u32,
}

/// `inner`, protected. Wraps the metered provider, so rejected calls are not counted as
/// provider calls.
#[derive(Debug)]
pub(crate) struct Guarded {
    name: Arc<str>,
    inner: Arc<dyn Provider>,
    settings: Protection,
    slots: Option<Semaphore>,
    breaker: Mutex<Breaker>,
    clock: SharedClock,
    metrics: Metrics,
}

/// What the breaker lets a call do.
enum Admit {
    Call,
    Probe,
}

impl Guarded {
    pub fn new(
        name: Arc<str>,
        inner: Arc<dyn Provider>,
        settings: Protection,
        clock: SharedClock,
        metrics: Metrics,
    ) -> Self {
        metrics
            .provider_circuit_state
            .with_label_values(&[&*name])
            .set(0);
        Guarded {
            name,
            inner,
            slots: (settings.max_concurrent > 0).then(|| Semaphore::new(settings.max_concurrent)),
            settings,
            breaker: Mutex::new(Breaker {
                state: CircuitState::Closed,
                consecutive_failures: 0,
                opened_at: SystemTime::UNIX_EPOCH,
                probes_in_flight: 0,
            }),
            clock,
            metrics,
        }
    }

    /// The breaker's state now.
    #[cfg(test)]
    pub(crate) fn circuit_state(&self) -> CircuitState {
        lock(&self.breaker).state
    }

    fn set_state(&self, b: &mut Breaker, state: CircuitState) {
        if b.state != state {
            match state {
                CircuitState::Open => {
                    tracing::error!(provider = %self.name, failures = b.consecutive_failures, open_for = ?self.settings.open_for, "provider circuit opened: calls fail fast (or serve stale identities) until it recovers")
                }
                CircuitState::HalfOpen => {
                    tracing::info!(provider = %self.name, "provider circuit half-open: probing")
                }
                CircuitState::Closed => {
                    tracing::info!(provider = %self.name, "provider circuit closed: provider recovered")
                }
            }
            b.state = state;
            self.metrics
                .provider_circuit_state
                .with_label_values(&[&*self.name])
                .set(state.gauge());
        }
    }

    fn admit(&self) -> Option<Admit> {
        if self.settings.failures == 0 {
            return Some(Admit::Call);
        }
        let mut b = lock(&self.breaker);
        if b.state == CircuitState::Open {
            let elapsed = self
                .clock
                .now()
                .duration_since(b.opened_at)
                .unwrap_or_default();
            if elapsed < self.settings.open_for {
                return None;
            }
            self.set_state(&mut b, CircuitState::HalfOpen);
        }
        match b.state {
            CircuitState::Closed => Some(Admit::Call),
            CircuitState::HalfOpen
                if b.probes_in_flight < self.settings.half_open_probes.max(1) =>
            {
                b.probes_in_flight += 1;
                Some(Admit::Probe)
            }
            _ => None,
        }
    }

    fn record(&self, admit: &Admit, failed: bool) {
        if self.settings.failures == 0 {
            return;
        }
        let mut b = lock(&self.breaker);
        if matches!(admit, Admit::Probe) {
            b.probes_in_flight = b.probes_in_flight.saturating_sub(1);
        }
        if failed {
            b.consecutive_failures = b.consecutive_failures.saturating_add(1);
            let trip = match b.state {
                CircuitState::HalfOpen => matches!(admit, Admit::Probe),
                CircuitState::Closed => b.consecutive_failures >= self.settings.failures,
                CircuitState::Open => false,
            };
            if trip {
                b.opened_at = self.clock.now();
                self.set_state(&mut b, CircuitState::Open);
            }
        } else {
            b.consecutive_failures = 0;
            if b.state == CircuitState::HalfOpen {
                self.set_state(&mut b, CircuitState::Closed);
            }
        }
    }

    fn reject(&self, reason: &str) {
        self.metrics
            .provider_rejected
            .with_label_values(&[&*self.name, reason])
            .inc();
    }
}

/// Gives a probe slot back if the call is cancelled before it records its result.
struct ProbeGuard<'a> {
    guarded: &'a Guarded,
    admit: Option<Admit>,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(Admit::Probe) = self.admit.take() {
            let mut b = lock(&self.guarded.breaker);
            b.probes_in_flight = b.probes_in_flight.saturating_sub(1);
        }
    }
}

#[async_trait]
impl Provider for Guarded {
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
        let _permit = match &self.slots {
            Some(slots) => {
                match tokio::time::timeout(self.settings.queue_timeout, slots.acquire()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        self.reject("queue_timeout");
                        return Err(ProviderError::Overloaded(self.settings.queue_timeout));
                    }
                }
            }
            None => None,
        };
        let Some(admit) = self.admit() else {
            self.reject("circuit_open");
            return Err(ProviderError::CircuitOpen);
        };
        let mut guard = ProbeGuard {
            guarded: self,
            admit: Some(admit),
        };
        let result = self.inner.resolve(token).await;
        if let Some(admit) = guard.admit.take() {
            self.record(&admit, result.is_err());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::identity::provider::InvalidReason;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Flaky {
        fail: AtomicBool,
        calls: AtomicUsize,
        delay_ms: u64,
    }

    #[async_trait]
    impl Provider for Flaky {
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn resolve(&self, _token: &str) -> Result<Resolution, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            if self.fail.load(Ordering::SeqCst) {
                Err(ProviderError::Timeout(Duration::from_secs(1)))
            } else {
                Ok(Resolution::Invalid(InvalidReason::Unknown))
            }
        }
    }

    fn guarded(inner: Arc<Flaky>, settings: Protection) -> (Guarded, ManualClock, Metrics) {
        let clock = ManualClock::new();
        let metrics = Metrics::new();
        let g = Guarded::new(
            "idp".into(),
            inner,
            settings,
            Arc::new(clock.clone()),
            metrics.clone(),
        );
        (g, clock, metrics)
    }

    #[tokio::test]
    async fn breaker_opens_fails_fast_probes_and_closes() {
        let inner = Arc::new(Flaky::default());
        let (g, clock, metrics) = guarded(
            inner.clone(),
            Protection {
                failures: 3,
                ..Protection::default()
            },
        );
        let state = || {
            metrics
                .provider_circuit_state
                .with_label_values(&["idp"])
                .get()
        };
        inner.fail.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            assert!(matches!(
                g.resolve("t").await,
                Err(ProviderError::Timeout(_))
            ));
        }
        assert_eq!(g.circuit_state(), CircuitState::Open);
        assert_eq!(state(), 2);
        // Open: fails fast without calling.
        assert_eq!(g.resolve("t").await, Err(ProviderError::CircuitOpen));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            metrics
                .provider_rejected
                .with_label_values(&["idp", "circuit_open"])
                .get(),
            1
        );
        // After the cool-down a probe goes through; it fails: open again.
        clock.advance(Duration::from_secs(10));
        assert!(matches!(
            g.resolve("t").await,
            Err(ProviderError::Timeout(_))
        ));
        assert_eq!(g.circuit_state(), CircuitState::Open);
        assert_eq!(g.resolve("t").await, Err(ProviderError::CircuitOpen));
        // Next probe succeeds (an "invalid token" answer is a working provider): closed.
        clock.advance(Duration::from_secs(10));
        inner.fail.store(false, Ordering::SeqCst);
        assert!(g.resolve("t").await.is_ok());
        assert_eq!(g.circuit_state(), CircuitState::Closed);
        assert_eq!(state(), 0);
        // A success resets the count: two failures do not open it again.
        inner.fail.store(true, Ordering::SeqCst);
        let _ = g.resolve("t").await;
        let _ = g.resolve("t").await;
        assert_eq!(g.circuit_state(), CircuitState::Closed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_open_lets_only_the_probes_through() {
        let inner = Arc::new(Flaky {
            delay_ms: 100,
            ..Flaky::default()
        });
        let (g, clock, _) = guarded(
            inner.clone(),
            Protection {
                failures: 1,
                ..Protection::default()
            },
        );
        inner.fail.store(true, Ordering::SeqCst);
        let _ = g.resolve("t").await;
        assert_eq!(g.circuit_state(), CircuitState::Open);
        clock.advance(Duration::from_secs(11));
        inner.fail.store(false, Ordering::SeqCst);
        let g = Arc::new(g);
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.resolve("t").await })
            })
            .collect();
        let mut fast_failures = 0;
        for t in tasks {
            if t.await.unwrap() == Err(ProviderError::CircuitOpen) {
                fast_failures += 1;
            }
        }
        assert_eq!(fast_failures, 4);
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        assert_eq!(g.circuit_state(), CircuitState::Closed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_bound_with_queue_timeout() {
        let inner = Arc::new(Flaky {
            delay_ms: 300,
            ..Flaky::default()
        });
        let settings = Protection {
            max_concurrent: 2,
            queue_timeout: Duration::from_millis(50),
            ..Protection::default()
        };
        let (g, _, metrics) = guarded(inner.clone(), settings);
        let g = Arc::new(g);
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.resolve("t").await })
            })
            .collect();
        let mut overloaded = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Err(ProviderError::Overloaded(_))) {
                overloaded += 1;
            }
        }
        assert_eq!(overloaded, 3);
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            metrics
                .provider_rejected
                .with_label_values(&["idp", "queue_timeout"])
                .get(),
            3
        );
        // Overload is not a provider failure: the breaker stays closed.
        assert_eq!(g.circuit_state(), CircuitState::Closed);
    }
}
