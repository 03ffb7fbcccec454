//! The identity cache: token key → identity, so a hot token costs no provider call.
//!
//! - Keys are [`TokenKey`]s (keyed hashes), never raw tokens.
//! - A found identity is kept until `min(ttl, identity expiry)`; an identity past its expiry
//!   is never returned, even if it is still stored.
//! - A definite "invalid token" answer is kept in a separate, separately bounded negative
//!   cache for `negative_ttl`, so a flood of random tokens cannot evict valid identities.
//! - Provider failures are never cached.
//! - Concurrent misses for one key make one provider call (moka's `try_get_with`); the
//!   other callers wait for it and are reported as `Coalesced`.
//!
//! Entries carry `fetched_at` and `fresh_until` so that later features (stale-if-error,
//! refresh-ahead, purge) can be added without changing the shape.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::Expiry;
use prometheus::IntCounterVec;

use crate::identity::Identity;
use crate::provider::{InvalidReason, Provider, ProviderError, Resolution};
use crate::token::TokenKey;

/// Cache sizes and lifetimes (`cache:` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Longest time a found identity is served without asking the provider again.
    pub ttl: Duration,
    /// How long an "invalid token" answer is remembered; zero disables negative caching.
    pub negative_ttl: Duration,
    /// Bound on cached identities.
    pub max_entries: u64,
    /// Bound on remembered invalid tokens.
    pub negative_max_entries: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
            negative_max_entries: 10_000,
        }
    }
}

/// One cached identity and its freshness.
#[derive(Debug, Clone)]
pub struct CachedIdentity {
    pub identity: Arc<Identity>,
    /// Wall-clock time of the provider answer.
    pub fetched_at: SystemTime,
    /// The entry is served until this instant: `min(fetched + ttl, identity expiry)`.
    pub fresh_until: Instant,
}

/// How a lookup was answered, for metrics and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the identity cache.
    Hit,
    /// Served from the negative cache (known-invalid token).
    NegativeHit,
    /// This request called the provider.
    Miss,
    /// Another request was already calling the provider for this token; this one waited.
    Coalesced,
}

impl CacheStatus {
    /// Label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::NegativeHit => "negative_hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
        }
    }
}

/// The answer for one token.
#[derive(Debug, Clone)]
pub enum Lookup {
    Valid(Arc<Identity>),
    Invalid(InvalidReason),
    Failed(Arc<ProviderError>),
}

/// What the single-flight fetch hands to every waiter when it does not produce an entry.
#[derive(Debug)]
enum FetchFailure {
    Invalid(InvalidReason),
    Provider(ProviderError),
}

struct FreshUntil;

impl Expiry<TokenKey, CachedIdentity> for FreshUntil {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &CachedIdentity,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.fresh_until.saturating_duration_since(created_at))
    }
}

/// Positive and negative identity caches for all providers (keys include the provider).
#[derive(Clone)]
pub struct IdentityCache {
    positive: Cache<TokenKey, CachedIdentity>,
    negative: Cache<TokenKey, InvalidReason>,
    settings: CacheSettings,
}

/// Counts removals the cache made on its own, as `{cache, cause}` (`size`, `expired`).
fn count_removals<V>(
    counter: Option<IntCounterVec>,
    cache: &'static str,
) -> impl Fn(Arc<TokenKey>, V, RemovalCause) + Send + Sync + 'static {
    move |_, _, cause| {
        let cause = match cause {
            RemovalCause::Size => "size",
            RemovalCause::Expired => "expired",
            RemovalCause::Explicit | RemovalCause::Replaced => return,
        };
        if let Some(c) = &counter {
            c.with_label_values(&[cache, cause]).inc();
        }
    }
}

impl IdentityCache {
    /// A cache without eviction metrics (tests, benches).
    pub fn new(settings: CacheSettings) -> Self {
        Self::with_eviction_counter(settings, None)
    }

    /// A cache that counts its evictions in `evictions{cache, cause}`.
    pub fn with_eviction_counter(
        settings: CacheSettings,
        evictions: Option<IntCounterVec>,
    ) -> Self {
        let positive = Cache::builder()
            .max_capacity(settings.max_entries)
            .expire_after(FreshUntil)
            .eviction_listener(count_removals(evictions.clone(), "positive"))
            .build();
        let negative = Cache::builder()
            .max_capacity(settings.negative_max_entries)
            .time_to_live(settings.negative_ttl.max(Duration::from_millis(1)))
            .eviction_listener(count_removals(evictions, "negative"))
            .build();
        IdentityCache {
            positive,
            negative,
            settings,
        }
    }

    /// Resolves `token` (whose key is `key`) through the cache, calling `provider` at most
    /// once for all concurrent callers with the same key.
    pub async fn lookup(
        &self,
        key: TokenKey,
        token: &str,
        provider: &dyn Provider,
    ) -> (CacheStatus, Lookup) {
        if let Some(entry) = self.positive.get(&key).await {
            if self.usable(&entry) {
                return (CacheStatus::Hit, Lookup::Valid(entry.identity));
            }
            self.positive.invalidate(&key).await;
        }
        if let Some(reason) = self.negative.get(&key).await {
            return (CacheStatus::NegativeHit, Lookup::Invalid(reason));
        }
        let mut called = false;
        let result = self
            .positive
            .try_get_with(key, async {
                called = true;
                self.fetch(key, token, provider).await
            })
            .await;
        let status = if called {
            CacheStatus::Miss
        } else {
            CacheStatus::Coalesced
        };
        let lookup = match result {
            // Just fetched (or fetched by the call we waited for): valid unless the identity
            // itself has expired meanwhile. Freshness matters only for later hits, so a
            // `ttl` of zero still lets the token through, it just caches nothing.
            Ok(entry) if !entry.identity.is_expired_at(SystemTime::now()) => {
                Lookup::Valid(entry.identity)
            }
            Ok(_) => Lookup::Invalid(InvalidReason::Expired),
            Err(failure) => match &*failure {
                FetchFailure::Invalid(reason) => Lookup::Invalid(*reason),
                FetchFailure::Provider(e) => Lookup::Failed(Arc::new(e.clone())),
            },
        };
        (status, lookup)
    }

    fn usable(&self, entry: &CachedIdentity) -> bool {
        Instant::now() < entry.fresh_until && !entry.identity.is_expired_at(SystemTime::now())
    }

    async fn fetch(
        &self,
        key: TokenKey,
        token: &str,
        provider: &dyn Provider,
    ) -> Result<CachedIdentity, FetchFailure> {
        let reason = match provider.resolve(token).await {
            Ok(Resolution::Valid(identity)) => {
                let now = SystemTime::now();
                let lifetime = match identity.remaining(now) {
                    Some(left) => left.min(self.settings.ttl),
                    None => self.settings.ttl,
                };
                if identity.is_expired_at(now) {
                    InvalidReason::Expired
                } else {
                    return Ok(CachedIdentity {
                        identity: Arc::new(identity),
                        fetched_at: now,
                        fresh_until: Instant::now() + lifetime,
                    });
                }
            }
            Ok(Resolution::Invalid(reason)) => reason,
            Err(e) => return Err(FetchFailure::Provider(e)),
        };
        if !self.settings.negative_ttl.is_zero() {
            self.negative.insert(key, reason).await;
        }
        Err(FetchFailure::Invalid(reason))
    }

    /// Applies moka's pending bookkeeping (expirations, evictions) so counts are current.
    pub async fn sync(&self) {
        self.positive.run_pending_tasks().await;
        self.negative.run_pending_tasks().await;
    }

    /// Number of cached identities (approximate, as moka counts).
    pub fn entry_count(&self) -> u64 {
        self.positive.entry_count()
    }

    /// Number of remembered invalid tokens (approximate).
    pub fn negative_entry_count(&self) -> u64 {
        self.negative.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenHasher;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers by token text: `valid-*`, `short-*` (expires in 300 ms), `fail`, else invalid.
    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Provider for Counting {
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let id = |exp: Option<SystemTime>| Identity {
                subject: token.to_string(),
                expires_at: exp,
                ..Default::default()
            };
            match token {
                t if t.starts_with("valid") => Ok(Resolution::Valid(id(None))),
                t if t.starts_with("short") => Ok(Resolution::Valid(id(Some(
                    SystemTime::now() + Duration::from_millis(300),
                )))),
                "past" => Ok(Resolution::Valid(id(Some(SystemTime::UNIX_EPOCH)))),
                "fail" => Err(ProviderError::Status(502)),
                _ => Ok(Resolution::Invalid(InvalidReason::Unknown)),
            }
        }
    }

    fn setup() -> (IdentityCache, Arc<Counting>, TokenHasher) {
        let cache = IdentityCache::new(CacheSettings::default());
        (cache, Arc::new(Counting::default()), TokenHasher::random())
    }

    async fn look(c: &IdentityCache, p: &Counting, h: &TokenHasher, t: &str) -> CacheStatus {
        c.lookup(h.key("p", t), t, p).await.0
    }

    #[tokio::test]
    async fn hit_after_miss_and_negative_caching() {
        let (c, p, h) = setup();
        assert_eq!(look(&c, &p, &h, "valid-a").await, CacheStatus::Miss);
        assert_eq!(look(&c, &p, &h, "valid-a").await, CacheStatus::Hit);
        assert_eq!(look(&c, &p, &h, "nope").await, CacheStatus::Miss);
        assert_eq!(look(&c, &p, &h, "nope").await, CacheStatus::NegativeHit);
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let (c, p, h) = setup();
        for _ in 0..3 {
            let (status, lookup) = c.lookup(h.key("p", "fail"), "fail", &*p).await;
            assert_eq!(status, CacheStatus::Miss);
            assert!(matches!(lookup, Lookup::Failed(_)));
        }
        assert_eq!(p.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn already_expired_identity_is_invalid_and_not_cached_as_valid() {
        let (c, p, h) = setup();
        let (_, lookup) = c.lookup(h.key("p", "past"), "past", &*p).await;
        assert!(matches!(lookup, Lookup::Invalid(InvalidReason::Expired)));
        assert_eq!(look(&c, &p, &h, "past").await, CacheStatus::NegativeHit);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_make_one_call() {
        let (c, p, h) = setup();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (c, p, h) = (c.clone(), p.clone(), h.clone());
                tokio::spawn(async move { look(&c, &p, &h, "valid-b").await })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            statuses.iter().filter(|s| **s == CacheStatus::Miss).count(),
            1
        );
    }

    #[tokio::test]
    async fn size_evictions_are_counted_and_negatives_are_bounded_apart() {
        let counter =
            IntCounterVec::new(prometheus::Opts::new("e", "e"), &["cache", "cause"]).unwrap();
        let settings = CacheSettings {
            max_entries: 5,
            negative_max_entries: 5,
            ..CacheSettings::default()
        };
        let c = IdentityCache::with_eviction_counter(settings, Some(counter.clone()));
        let p = Counting::default();
        let h = TokenHasher::random();
        for i in 0..5 {
            look(&c, &p, &h, &format!("valid-{i}")).await;
        }
        // A flood of random (invalid) tokens...
        for i in 0..50 {
            look(&c, &p, &h, &format!("random-{i}")).await;
        }
        c.sync().await;
        assert!(
            c.negative_entry_count() <= 5,
            "{}",
            c.negative_entry_count()
        );
        assert!(counter.with_label_values(&["negative", "size"]).get() >= 45);
        // ...evicted none of the valid identities.
        assert_eq!(counter.with_label_values(&["positive", "size"]).get(), 0);
        for i in 0..5 {
            assert_eq!(
                look(&c, &p, &h, &format!("valid-{i}")).await,
                CacheStatus::Hit
            );
        }
    }

    #[tokio::test]
    async fn ttl_is_capped_by_identity_expiry() {
        let (c, p, h) = setup();
        assert_eq!(look(&c, &p, &h, "short-x").await, CacheStatus::Miss);
        assert_eq!(look(&c, &p, &h, "short-x").await, CacheStatus::Hit);
        tokio::time::sleep(Duration::from_millis(350)).await;
        // Expired in the cache: asked again, not served.
        assert_eq!(look(&c, &p, &h, "short-x").await, CacheStatus::Miss);
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    }
}
