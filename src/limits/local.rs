//! A policy's counters in this process: one governor GCRA limiter per tier, whose per-key
//! states (8 bytes each: the key's theoretical arrival time) live in a sharded map of our
//! own. governor's own keyed store is unbounded; moka's cache is bounded but does LRU
//! and idle bookkeeping on every read (≈ 1,000 instructions and ≈ 300 bytes per key,
//! measured in BENCHMARKS.md). Here a read is a shard's read lock and a hash lookup, and a
//! key costs ≈ 20–30 bytes.
//!
//! The bound: a shard that is full when a new key arrives first drops every key that is
//! back to a full burst (its state is indistinguishable from a new key's, so forgetting it
//! changes no answer); if none is, it drops the eighth of its keys that are closest to
//! full — the keys whose forgetting changes the least, where an LRU would drop a key
//! regardless of how much of its quota it has used.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use super::LimitSpec;
use crate::identity::cache::PassThroughHasher;

/// Shards per tier: enough that two workers rarely meet on one lock.
const SHARDS: usize = 64;

/// Keys arrive as keyed SipHash outputs: the maps use them as they are.
type Shard = RwLock<HashMap<u64, InMemoryState, BuildHasherDefault<PassThroughHasher>>>;

/// Per-key GCRA states, bounded by `cap` per shard.
struct KeyStates {
    shards: Box<[Shard]>,
    cap: usize,
    /// The limiter's time origin (taken just before the limiter's own): GCRA times are
    /// nanoseconds since it.
    start: Instant,
}

impl KeyStates {
    fn new(max_keys: u64) -> KeyStates {
        let cap = usize::try_from(max_keys.div_ceil(SHARDS as u64)).unwrap_or(usize::MAX);
        KeyStates {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            cap: cap.max(1),
            start: Instant::now(),
        }
    }

    /// The shard of a key: middle bits (hashbrown takes the low bits for the bucket and
    /// the top seven for its control bytes).
    fn shard(&self, key: u64) -> &Shard {
        &self.shards[(key >> 32) as usize % SHARDS]
    }

    /// GCRA time now, in the limiter's nanoseconds.
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Drops the keys that are full again; if that frees nothing, the eighth closest to
    /// full. Called with the shard's write lock.
    fn make_room(
        &self,
        map: &mut HashMap<u64, InMemoryState, BuildHasherDefault<PassThroughHasher>>,
    ) {
        // A key whose next arrival time has passed (with a millisecond of slack for the
        // two clocks' origins) has its whole burst back.
        let now = self.now().saturating_sub(1_000_000);
        map.retain(|_, state| tat(state) > now);
        if map.len() < self.cap {
            return;
        }
        let mut by_time: Vec<(u64, u64)> = map.iter().map(|(k, s)| (tat(s), *k)).collect();
        let drop = (by_time.len() / 8).max(1);
        by_time.select_nth_unstable(drop - 1);
        for (_, key) in &by_time[..drop] {
            map.remove(key);
        }
    }

    /// Keys held now, after dropping those that are full again.
    fn sweep_and_count(&self) -> usize {
        let now = self.now().saturating_sub(1_000_000);
        self.shards
            .iter()
            .map(|shard| {
                let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
                map.retain(|_, state| tat(state) > now);
                map.len()
            })
            .sum()
    }

    fn forget(&self, key: u64) {
        self.shard(key)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

/// A state's theoretical arrival time, read without changing it (a measurement that
/// declines to replace leaves the state as it was).
fn tat(state: &InMemoryState) -> u64 {
    match state.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>) {
        Err(Some(t)) => t.as_u64(),
        _ => 0,
    }
}

/// The store governor's limiter runs on: a shared handle, so the policy can sweep and
/// forget keys.
struct Store(Arc<KeyStates>);

impl StateStore for Store {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let states = &*self.0;
        let shard = states.shard(*key);
        if let Some(state) = shard.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= states.cap && !map.contains_key(key) {
            states.make_room(&mut map);
        }
        map.entry(*key)
            .or_default()
            .measure_and_replace(&NotKeyed::NonKey, f)
    }
}

type Limiter = RateLimiter<u64, Store, MonotonicClock, StateInformationMiddleware>;

/// One tier's limiter, and its key states (shared with the limiter's store).
struct Bucket {
    limiter: Limiter,
    states: Arc<KeyStates>,
    quota: Quota,
}

/// A policy with its counters.
pub struct LivePolicy {
    pub spec: LimitSpec,
    buckets: Vec<Bucket>,
    /// Per tier, the name its counters have in the shared counters: a digest of what
    /// the counting depends on, so a tier whose rate, burst or key changes starts again
    /// on every replica, as a changed policy does locally.
    tags: Vec<String>,
    /// The local fallback of cluster-wide limits: the tiers at `1/replicas` of their rate
    /// and burst, built when first needed (and again when the replica count changes).
    share: RwLock<Option<Arc<Share>>>,
}

/// The tiers at a replica's share.
struct Share {
    replicas: u32,
    buckets: Vec<Bucket>,
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
        let tags = spec
            .tiers
            .iter()
            .map(|tier| {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(format!(
                    "{}|{}|{}|{}|{}|{}",
                    spec.name,
                    spec.key.describe(),
                    tier.name,
                    tier.rate.count,
                    tier.rate.per.as_nanos(),
                    tier.burst
                ));
                hex::encode(&digest[..4])
            })
            .collect();
        LivePolicy {
            buckets: buckets(&spec, 1),
            tags,
            share: RwLock::new(None),
            spec,
        }
    }

    /// Counts one request under `key` in tier `tier` (an index into the spec's tiers).
    pub fn check(&self, tier: usize, key: u64) -> Admission {
        check(&self.buckets, tier, key)
    }

    /// Counts one request at this replica's share of the tier (`1/replicas` of its rate
    /// and burst): the fallback while the shared counters cannot answer.
    pub fn check_share(&self, tier: usize, key: u64, replicas: u32) -> Admission {
        let replicas = replicas.max(1);
        if replicas == 1 {
            return self.check(tier, key);
        }
        let current = self.share.read().unwrap_or_else(|e| e.into_inner()).clone();
        let share = match current {
            Some(s) if s.replicas == replicas => s,
            _ => {
                let mut slot = self.share.write().unwrap_or_else(|e| e.into_inner());
                match &*slot {
                    Some(s) if s.replicas == replicas => s.clone(),
                    _ => {
                        let s = Arc::new(Share {
                            replicas,
                            buckets: buckets(&self.spec, replicas),
                        });
                        *slot = Some(s.clone());
                        s
                    }
                }
            }
        };
        check(&share.buckets, tier, key)
    }

    /// The name tier `tier`'s counters have in the shared counters.
    pub fn tag(&self, tier: usize) -> &str {
        &self.tags[tier.min(self.tags.len() - 1)]
    }

    /// The fallback's tiers, when it has been needed.
    fn share(&self) -> Option<Arc<Share>> {
        self.share.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets `key` in every tier (and in the fallback's).
    pub(super) fn forget(&self, key: u64) {
        let share = self.share();
        let fallback = share.iter().flat_map(|s| &s.buckets);
        for b in self.buckets.iter().chain(fallback) {
            b.states.forget(key);
        }
    }

    /// Keys tracked here now, all tiers and the fallback's (keys that are full again are
    /// dropped first). Keys counted in the shared counters are not here.
    pub fn tracked_keys(&self) -> i64 {
        let share = self.share();
        let fallback = share.iter().flat_map(|s| &s.buckets);
        let n: usize = self
            .buckets
            .iter()
            .chain(fallback)
            .map(|b| b.states.sweep_and_count())
            .sum();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// Tier `i` (an index the policy gave; the policy's own rate, last, for any other).
    pub fn tier(&self, i: usize) -> &super::Tier {
        let tiers = &self.spec.tiers;
        &tiers[i.min(tiers.len() - 1)]
    }
}

/// A limiter per tier, at `1/divide` of the tier's rate and burst (the burst at least 1).
fn buckets(spec: &LimitSpec, divide: u32) -> Vec<Bucket> {
    spec.tiers
        .iter()
        .map(|tier| {
            let burst =
                NonZeroU32::new(tier.burst.div_ceil(divide).max(1)).unwrap_or(NonZeroU32::MIN);
            // A rate's interval is at least 1 ns: Rate::parse caps counts and periods.
            let interval = tier.rate.interval().saturating_mul(divide);
            let quota = Quota::with_period(interval.max(Duration::from_nanos(1)))
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
                .allow_burst(burst);
            let states = Arc::new(KeyStates::new(spec.max_keys));
            let limiter: Limiter = RateLimiter::<u64, Store, MonotonicClock>::new(
                quota,
                Store(states.clone()),
                MonotonicClock,
            )
            .with_middleware();
            Bucket {
                limiter,
                states,
                quota,
            }
        })
        .collect()
}

/// Counts one request under `key` in `buckets[tier]`.
fn check(buckets: &[Bucket], tier: usize, key: u64) -> Admission {
    let Some(bucket) = buckets.get(tier) else {
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

impl std::fmt::Debug for LivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePolicy")
            .field("spec", &self.spec)
            .field("tiers", &self.buckets.len())
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
    fn the_fallback_counts_a_share_of_rate_and_burst() {
        // 60/min, burst 6, three replicas: each admits 2 at once, then one per 3 s.
        let p = policy("60/min", 6, 10);
        for left in [1, 0] {
            match p.check_share(0, 7, 3) {
                Admission::Admitted { remaining, .. } => assert_eq!(remaining, left),
                other => panic!("{other:?}"),
            }
        }
        match p.check_share(0, 7, 3) {
            Admission::Limited(l) => {
                assert!(l.retry_after > Duration::from_millis(2_900), "{l:?}");
                assert!(l.retry_after <= Duration::from_secs(3), "{l:?}");
            }
            other => panic!("{other:?}"),
        }
        // The whole rate is untouched by the fallback's counting; a new replica count
        // starts the share again, and a reset reaches it.
        assert!(matches!(
            p.check(0, 7),
            Admission::Admitted { remaining: 5, .. }
        ));
        assert!(matches!(
            p.check_share(0, 7, 2),
            Admission::Admitted { remaining: 2, .. }
        ));
        p.forget(7);
        assert!(matches!(
            p.check_share(0, 7, 2),
            Admission::Admitted { remaining: 2, .. }
        ));
        assert_eq!(
            p.tracked_keys(),
            1,
            "the reset cleared both; the share counted again"
        );
        // A share never rounds the burst to nothing.
        assert!(matches!(
            p.check_share(0, 9, 100),
            Admission::Admitted { remaining: 0, .. }
        ));
    }

    #[test]
    fn tiers_have_stable_tags_that_change_with_their_counting() {
        let a = policy("60/min", 6, 10);
        let b = policy("60/min", 6, 10);
        let c = policy("60/min", 7, 10);
        assert_eq!(a.tag(0), b.tag(0));
        assert_ne!(a.tag(0), c.tag(0));
        assert_eq!(a.tag(0).len(), 8);
    }

    /// Keys as the policy gets them: keyed hashes, spread over every bit.
    fn spread(n: u64) -> u64 {
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
    }

    #[test]
    fn keys_are_bounded_by_max_keys() {
        let p = policy("10/min", 10, 1_000);
        for key in 0..20_000u64 {
            p.check(0, spread(key));
        }
        let tracked = p.tracked_keys();
        assert!(tracked <= 1_100, "{tracked} keys tracked for max_keys 1000");
        assert!(tracked >= 500, "{tracked}: eviction went too far");
    }

    #[test]
    fn keys_back_to_a_full_burst_go_first_then_the_closest_to_full() {
        // 20/s with a burst of 10: a key that spent its burst is full again after 0.5 s.
        let p = policy("20/s", 10, 8 * SHARDS as u64);
        let busy: Vec<u64> = (0..8u64).map(spread).collect();
        for k in &busy {
            for _ in 0..10 {
                assert!(matches!(p.check(0, *k), Admission::Admitted { .. }));
            }
        }
        // A flood of keys that each send one request (nearly full) overfills the shards.
        for k in 1_000..1_000 + 20 * SHARDS as u64 {
            p.check(0, spread(k));
        }
        assert!(p.tracked_keys() <= 8 * SHARDS as i64);
        // The busy keys kept their state: still out of burst.
        let limited = busy
            .iter()
            .filter(|k| matches!(p.check(0, **k), Admission::Limited(_)))
            .count();
        assert_eq!(limited, 8, "busy keys lost their state to nearly-full ones");
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(p.tracked_keys(), 0, "every key is full again and dropped");
    }
}
