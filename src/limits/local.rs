//! A policy's counters in this process: one governor GCRA limiter per tier, its per-key
//! states in a moka cache bounded by `max_keys` (least recently used evicted first) and
//! dropping a key once it has been idle long enough to be full again — so eviction by
//! idleness never changes an answer, and memory stays bounded however many keys come.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::LimitSpec;

/// Per-key GCRA states, bounded; a key's insertion is counted in `tracked` (its eviction
/// subtracts it again).
struct KeyStates {
    states: moka::sync::Cache<u64, Arc<InMemoryState>>,
    tracked: Arc<AtomicI64>,
}

impl StateStore for KeyStates {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<governor::nanos::Nanos>) -> Result<(T, governor::nanos::Nanos), E>,
    {
        self.states
            .get_with(*key, || {
                self.tracked.fetch_add(1, Ordering::Relaxed);
                Default::default()
            })
            .measure_and_replace(&NotKeyed::NonKey, f)
    }
}

type Limiter = RateLimiter<u64, KeyStates, MonotonicClock, StateInformationMiddleware>;

/// One tier's limiter, and its key states (moka's handle is shared with the limiter's).
struct Bucket {
    limiter: Limiter,
    states: moka::sync::Cache<u64, Arc<InMemoryState>>,
    quota: Quota,
}

/// A policy with its counters.
pub struct LivePolicy {
    pub spec: LimitSpec,
    buckets: Vec<Bucket>,
    /// Keys tracked now, all tiers (moka's count lags; this one is exact enough for a
    /// gauge: incremented on insertion, decremented on eviction).
    tracked: Arc<AtomicI64>,
}

/// What one policy said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; `remaining` more could go at once, and the key is back to a full burst
    /// after `full_in`.
    Admitted { remaining: u32, full_in: Duration },
    /// Over the limit: the next request under this key is admitted after `retry_after`.
    Limited(Limited),
}

/// An over-limit answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl LivePolicy {
    pub(super) fn new(spec: LimitSpec) -> LivePolicy {
        let tracked = Arc::new(AtomicI64::new(0));
        let buckets = spec
            .tiers
            .iter()
            .map(|tier| {
                let burst = NonZeroU32::new(tier.burst.max(1)).unwrap_or(NonZeroU32::MIN);
                // A rate's interval is at least 1 ns: Rate::parse caps counts and periods.
                let quota = Quota::with_period(tier.rate.interval().max(Duration::from_nanos(1)))
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
                    .allow_burst(burst);
                // Idle for a whole burst's replenishment, a key is as good as new: then it
                // may go (plus a second of slack for the clock's reading).
                let idle = quota.burst_size_replenished_in() + Duration::from_secs(1);
                let on_evict = tracked.clone();
                let states = moka::sync::Cache::builder()
                    .max_capacity(spec.max_keys)
                    .time_to_idle(idle)
                    .eviction_listener(move |_, _, _| {
                        on_evict.fetch_sub(1, Ordering::Relaxed);
                    })
                    .build();
                let store = KeyStates {
                    states: states.clone(),
                    tracked: tracked.clone(),
                };
                let limiter: Limiter = RateLimiter::<u64, KeyStates, MonotonicClock>::new(
                    quota,
                    store,
                    MonotonicClock,
                )
                .with_middleware();
                Bucket {
                    limiter,
                    states,
                    quota,
                }
            })
            .collect();
        LivePolicy {
            spec,
            buckets,
            tracked,
        }
    }

    /// Counts one request under `key` in tier `tier` (an index into the spec's tiers).
    pub fn check(&self, tier: usize, key: u64) -> Admission {
        let Some(bucket) = self.buckets.get(tier) else {
            return Admission::Admitted {
                remaining: 0,
                full_in: Duration::ZERO,
            };
        };
        match bucket.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = bucket.quota.burst_size().get().saturating_sub(remaining);
                Admission::Admitted {
                    remaining,
                    full_in: bucket.quota.replenish_interval() * used,
                }
            }
            Err(not_until) => Admission::Limited(Limited {
                retry_after: not_until.wait_time_from(MonotonicClock.now()),
            }),
        }
    }

    /// Forgets `key` in every tier.
    pub(super) fn forget(&self, key: u64) {
        for b in &self.buckets {
            b.states.invalidate(&key);
        }
    }

    /// Keys tracked now, all tiers (evictions due are carried out first).
    pub fn tracked_keys(&self) -> i64 {
        for b in &self.buckets {
            b.states.run_pending_tasks();
        }
        self.tracked.load(Ordering::Relaxed).max(0)
    }

    /// The quota (requests, window in seconds) `RateLimit-Policy` advertises for a tier.
    pub fn advertised(&self, tier: usize) -> (u32, u64) {
        self.spec
            .tiers
            .get(tier)
            .map_or((0, 0), |t| (t.rate.count, t.rate.per.as_secs()))
    }
}

impl std::fmt::Debug for LivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePolicy")
            .field("spec", &self.spec)
            .field("tracked", &self.tracked_keys())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{LimitKey, LimitSpec, Rate, Tier};

    fn policy(rate: &str, burst: u32, max_keys: u64) -> LivePolicy {
        LivePolicy::new(LimitSpec {
            name: "p".into(),
            key: LimitKey::Subject,
            tiers: vec![Tier {
                name: "default".into(),
                when: None,
                rate: Rate::parse(rate).unwrap(),
                burst,
            }],
            mode: Default::default(),
            headers_always: false,
            max_keys,
        })
    }

    #[test]
    fn a_burst_then_a_wait_of_one_interval() {
        let p = policy("60/min", 3, 10);
        for left in [2, 1, 0] {
            match p.check(0, 7) {
                Admission::Admitted { remaining, full_in } => {
                    assert_eq!(remaining, left);
                    assert_eq!(full_in, Duration::from_secs(u64::from(3 - left)));
                }
                other => panic!("{other:?}"),
            }
        }
        match p.check(0, 7) {
            Admission::Limited(l) => {
                assert!(l.retry_after <= Duration::from_secs(1), "{l:?}");
                assert!(l.retry_after > Duration::from_millis(900), "{l:?}");
            }
            other => panic!("{other:?}"),
        }
        // Another key has its own burst; a forgotten key starts again.
        assert!(matches!(p.check(0, 8), Admission::Admitted { .. }));
        p.forget(7);
        assert!(matches!(
            p.check(0, 7),
            Admission::Admitted { remaining: 2, .. }
        ));
    }

    #[test]
    fn keys_are_bounded_by_max_keys() {
        let p = policy("10/s", 10, 1_000);
        for key in 0..20_000u64 {
            p.check(0, key);
        }
        let tracked = p.tracked_keys();
        assert!(tracked <= 1_100, "{tracked} keys tracked for max_keys 1000");
        assert!(tracked >= 500, "{tracked}: eviction went too far");
    }
}
