//! How the cache is sized and what each lookup found (`cache:` and the
//! `cache_lookups_total` results).

use super::*;

/// Cache sizes and lifetimes (`cache:` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Longest time a found identity is served without asking the provider again.
    pub ttl: Duration,
    /// How long an "invalid token" answer is remembered; zero disables negative caching.
    pub negative_ttl: Duration,
    /// Bound on cached identities.
    pub max_entries: u64,
    /// Bound on remembered invalid tokens.
    pub negative_max_entries: u64,
    /// Last part of the freshness window (0–1) in which a use triggers a background
    /// refresh; 0 turns refresh-ahead off.
    pub refresh_ahead: f64,
    /// Cache misses (provider calls) one client address may cause per second; 0: no limit.
    pub client_miss_rate: u32,
    /// Burst allowance for `client_miss_rate`.
    pub client_miss_burst: u32,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
            negative_max_entries: 10_000,
            refresh_ahead: 0.2,
            client_miss_rate: 0,
            client_miss_burst: 0,
        }
    }
}

/// How a lookup was answered, for metrics, the access log and `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served fresh from the identity cache.
    Hit,
    /// The provider failed; a lapsed identity was served within the route's stale budget.
    Stale,
    /// Served from the negative cache (known-invalid token).
    NegativeHit,
    /// This request called the provider.
    Miss,
    /// Another request was already calling the provider for this token; this one waited.
    Coalesced,
    /// Answered by the tier replicas share (another replica's provider answer).
    Shared,
    /// The client exceeded its cache-miss rate; the provider was not called.
    Throttled,
}

impl CacheStatus {
    /// Label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Stale => "stale",
            CacheStatus::NegativeHit => "negative_hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Shared => "shared",
            CacheStatus::Throttled => "throttled",
        }
    }

    /// This status's position in [`CacheStatus::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Every label value, for creating metric series up front (in declaration order:
    /// [`CacheStatus::index`]).
    pub const ALL: [&'static str; 7] = [
        "hit",
        "stale",
        "negative_hit",
        "miss",
        "coalesced",
        "shared",
        "throttled",
    ];
}
