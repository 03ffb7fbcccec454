//! The identity cache: token key → identity, so a hot token costs no provider call.
//!
//! - Keys are [`TokenKey`]s (keyed hashes), never raw tokens.
//! - A found identity is *fresh* until `min(fetched + ttl, identity expiry)`. A fresh entry
//!   is served; an entry past the identity's own expiry is never served.
//! - **Refresh-ahead**: a fresh entry used in the last `refresh_ahead` part of its
//!   freshness window (with jitter) is refreshed in the background, once, so a hot token's
//!   refresh never lands on a client's request.
//! - **Stale-if-error**: a lapsed entry is kept (until the identity expires, at most the
//!   longest route budget past freshness) and served only when the provider *fails* and
//!   the route's `stale_if_error` budget covers its lateness. A provider that says
//!   "invalid" always wins.
//! - A definite "invalid token" answer is kept in a separate, separately bounded negative
//!   cache for `negative_ttl`, so a flood of random tokens cannot evict valid identities.
//! - Provider failures are never cached.
//! - Concurrent misses for one key make one provider call; the other callers wait for it
//!   and are reported as `Coalesced`.
//! - With a [`SharedTier`] (the cluster's Redis), a local miss asks it before the
//!   provider (reported as `Shared` when it answers), and a provider answer is shared
//!   with it; its freshness still counts from the provider's answer, so sharing never
//!   extends how long an identity is served.
//! - A secondary index (subject → keys, session id → keys) lets an operator purge every
//!   cached identity of a user or a session at once.
//! - Optionally, cache misses are rate-limited per client address, so one client cannot
//!   turn random tokens into provider load.
//!
//! Decisions use the [`Clock`](crate::clock::Clock) (tests step it by hand); moka only
//! bounds how long entries are stored.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::clock::{self, SharedClock};
use crate::identity::provider::{InvalidReason, Provider, ProviderError, ProviderId, Resolution};
use crate::identity::token::TokenKey;
use crate::identity::Identity;
use crate::telemetry::metrics::Metrics;

mod entry;
mod limiter;
mod purge;
pub(crate) use purge::PassThroughHasher;
mod purged;
mod settings;
mod tier;

pub(crate) use entry::CachedIdentity;
use entry::{millis, KeepFor};
use limiter::MissLimiter;
use purge::PurgeIndex;
pub(crate) use purge::{NameHash, NameKind, PurgeBy};
pub use purged::{Mark, Purged, SKEW as PURGE_SKEW};
pub use settings::{CacheSettings, CacheStatus};
pub(crate) use tier::{SharedAnswer, SharedFind, SharedQuery, SharedTier};

/// The answer for one token.
#[derive(Debug, Clone)]
pub enum Lookup {
    Valid(Identity),
    Invalid(InvalidReason),
    Failed(Arc<ProviderError>),
    /// Too many cache misses from this client: answer 429, nothing was asked.
    Throttled,
}

/// One lookup's question.
pub struct LookupRequest<'a> {
    pub(crate) key: TokenKey,
    pub(crate) token: &'a str,
    /// Provider key id (see [`CachedIdentity::provider`]).
    pub(crate) provider_id: &'a ProviderId,
    pub(crate) provider: &'a Arc<dyn Provider>,
    /// How long past freshness an identity may serve while the provider fails.
    pub(crate) stale_if_error: Duration,
    /// The client address, for the per-client miss limit.
    pub(crate) client: Option<IpAddr>,
}

impl<'a> LookupRequest<'a> {
    /// A lookup with no stale budget and no client address (set the fields to add them).
    pub fn new(
        key: TokenKey,
        token: &'a str,
        provider_id: &'a ProviderId,
        provider: &'a Arc<dyn Provider>,
    ) -> Self {
        LookupRequest {
            key,
            token,
            provider_id,
            provider,
            stale_if_error: Duration::ZERO,
            client: None,
        }
    }
}

/// One lookup's answer.
#[derive(Debug, Clone)]
pub struct LookupOutcome {
    pub status: CacheStatus,
    pub lookup: Lookup,
    /// For `Stale`: how old the served identity is (since the provider last confirmed it).
    pub(crate) stale_age: Option<Duration>,
    /// Whether this lookup started a background refresh.
    pub(crate) refresh_started: bool,
    /// What the cache held for this key before the lookup (`explain`).
    pub(crate) prior: Prior,
}

impl LookupOutcome {
    /// An outcome with no stale age and no refresh started.
    fn new(status: CacheStatus, lookup: Lookup, prior: Prior) -> Self {
        LookupOutcome {
            status,
            lookup,
            stale_age: None,
            refresh_started: false,
            prior,
        }
    }
}

/// The cache state for a key before a lookup, as `explain` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prior {
    Fresh,
    /// Lapsed but kept for the stale budget.
    Lapsed,
    Negative,
    Absent,
}

impl Prior {
    pub fn as_str(self) -> &'static str {
        match self {
            Prior::Fresh => "fresh",
            Prior::Lapsed => "stale",
            Prior::Negative => "negative",
            Prior::Absent => "miss",
        }
    }
}

/// What the single-flight fetch hands to every waiter when it does not produce an entry.
#[derive(Debug)]
enum FetchFailure {
    /// Not valid: the provider said so (`false`) or the shared tier did (`true`).
    Invalid(InvalidReason, bool),
    Provider(ProviderError),
}

/// Positive and negative identity caches for all providers (keys include the provider).
#[derive(Clone)]
pub struct IdentityCache {
    positive: Cache<TokenKey, CachedIdentity>,
    negative: Cache<TokenKey, InvalidReason>,
    /// In-flight provider calls, for single-flight; entries live only while a call runs
    /// (plus a one-second safety net).
    flights: Cache<TokenKey, CachedIdentity>,
    /// Keys whose background refresh is running, or failed less than 5 s ago.
    refreshing: Cache<TokenKey, ()>,
    index: Arc<Mutex<PurgeIndex>>,
    limiter: Option<Arc<MissLimiter>>,
    /// The longest `stale_if_error` of any route, in milliseconds: how long past
    /// freshness entries are stored.
    stale_horizon_ms: Arc<AtomicU64>,
    settings: CacheSettings,
    clock: SharedClock,
    metrics: Option<Metrics>,
    /// The tier replicas share, when there is one (`cluster:`).
    shared: Option<Arc<dyn SharedTier>>,
    /// Recent purges, so a shared value sealed before one is never served (with `shared`).
    purged: Option<Arc<Mutex<Purged>>>,
}

impl IdentityCache {
    /// A cache on the system clock without metrics (tests, benches).
    pub fn new(settings: CacheSettings) -> Self {
        Self::build(settings, clock::system(), None)
    }

    /// A cache deciding on `clock` and counting into `metrics`.
    pub fn build(settings: CacheSettings, clock: SharedClock, metrics: Option<Metrics>) -> Self {
        let index = Arc::new(Mutex::new(PurgeIndex::default()));
        let evictions = metrics.as_ref().map(|m| m.cache_evictions.clone());
        let positive_evictions = evictions.clone();
        let listener_index = index.clone();
        let positive = Cache::builder()
            .max_capacity(settings.max_entries)
            .expire_after(KeepFor)
            .eviction_listener(move |key: Arc<TokenKey>, value: CachedIdentity, cause| {
                if cause != RemovalCause::Replaced {
                    clock::lock(&listener_index).remove(&key, &value.identity);
                }
                count_removal(positive_evictions.as_ref(), "positive", cause);
            })
            .build();
        let negative = Cache::builder()
            .max_capacity(settings.negative_max_entries)
            .time_to_live(settings.negative_ttl.max(Duration::from_millis(1)))
            .eviction_listener(move |_, _, cause| {
                count_removal(evictions.as_ref(), "negative", cause)
            })
            .build();
        let refreshing = Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(Duration::from_secs(5))
            .build();
        let flights = Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(Duration::from_secs(1))
            .build();
        let limiter = (settings.client_miss_rate > 0).then(|| {
            Arc::new(MissLimiter {
                rate: f64::from(settings.client_miss_rate),
                burst: f64::from(settings.client_miss_burst.max(settings.client_miss_rate)),
                buckets: Cache::builder()
                    .max_capacity(100_000)
                    .time_to_idle(Duration::from_secs(60))
                    .build(),
                clock: clock.clone(),
            })
        });
        IdentityCache {
            positive,
            negative,
            flights,
            refreshing,
            index,
            limiter,
            stale_horizon_ms: Arc::new(AtomicU64::new(0)),
            settings,
            clock,
            metrics,
            shared: None,
            purged: None,
        }
    }

    /// The same cache asking `tier` on a local miss. Set before the cache is cloned.
    /// Shared identities are trusted only once [`IdentityCache::seed_purges`] told the
    /// cache which purges were made lately.
    pub(crate) fn with_shared(mut self, tier: Arc<dyn SharedTier>) -> Self {
        self.shared = Some(tier);
        self.purged = Some(Arc::new(Mutex::new(Purged::new(self.settings.ttl))));
        self
    }

    /// The purges made lately that this cache did not apply itself (a replica starting:
    /// the revocation stream's last `cache.ttl`) and the floor they imply; until this is
    /// called, no shared identity is served. Returns how many marks are remembered.
    pub(crate) fn seed_purges(
        &self,
        marks: impl IntoIterator<Item = (SystemTime, Mark)>,
        floor: Option<SystemTime>,
    ) -> usize {
        let Some(purged) = &self.purged else {
            return 0;
        };
        let mut purged = clock::lock(purged);
        purged.seed(marks, floor);
        purged.marks()
    }

    /// Whether a shared identity the provider gave at `fetched_at` postdates every purge
    /// that reached it (its token key, subject, session id) and every flush.
    fn trusted(&self, key: TokenKey, identity: &Identity, fetched_at: SystemTime) -> bool {
        let Some(purged) = &self.purged else {
            return true;
        };
        let mut marks = vec![
            Mark::Token(key),
            Mark::Name(self.name_hash(NameKind::Subject, identity.subject())),
        ];
        if let Some(sid) = identity.session_id() {
            marks.push(Mark::Name(self.name_hash(NameKind::Session, sid)));
        }
        clock::lock(purged).allows(fetched_at, &marks, self.clock.now())
    }

    /// Remembers a purge (with a shared tier: see [`Purged`]).
    fn remember(&self, marks: impl IntoIterator<Item = Mark>) {
        if let Some(purged) = &self.purged {
            let now = self.clock.now();
            let mut purged = clock::lock(purged);
            for m in marks {
                purged.record(m, now);
            }
        }
    }

    /// Sets how long past freshness entries are kept: the longest route `stale_if_error`.
    pub(crate) fn set_stale_horizon(&self, horizon: Duration) {
        self.stale_horizon_ms
            .store(horizon.as_millis() as u64, Ordering::Relaxed);
    }

    /// The settings this cache was built with.
    pub(crate) fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Resolves a token through the cache (see the module docs for the rules).
    pub async fn lookup(&self, req: LookupRequest<'_>) -> LookupOutcome {
        let now = self.clock.now();
        let mut lapsed: Option<CachedIdentity> = None;
        if let Some(entry) = self.positive.get(&req.key).await {
            if !entry.identity.is_expired_at(now) {
                if now < entry.fresh_until() {
                    let mut out = LookupOutcome::new(
                        CacheStatus::Hit,
                        Lookup::Valid(entry.identity.clone()),
                        Prior::Fresh,
                    );
                    out.refresh_started = self.maybe_refresh(&entry, &req, now).await;
                    return out;
                }
                lapsed = Some(entry);
            } else {
                self.positive.invalidate(&req.key).await;
            }
        }
        let prior = if lapsed.is_some() {
            Prior::Lapsed
        } else if let Some(reason) = self.negative.get(&req.key).await {
            let lookup = Lookup::Invalid(reason);
            return LookupOutcome::new(CacheStatus::NegativeHit, lookup, Prior::Negative);
        } else {
            Prior::Absent
        };
        // Everything past here may call out (miss limiter, shared tier, provider): its
        // future is several KiB, boxed so that a hit's future — and every future awaiting
        // it, up to the one Pingora boxes per request — stays small.
        Box::pin(self.fetch_for(req, lapsed, prior)).await
    }

    /// The rest of [`Self::lookup`] when no fresh identity is cached.
    async fn fetch_for(
        &self,
        req: LookupRequest<'_>,
        lapsed: Option<CachedIdentity>,
        prior: Prior,
    ) -> LookupOutcome {
        if let (Some(limiter), Some(client)) = (&self.limiter, req.client) {
            if !limiter.allow(client).await {
                return LookupOutcome::new(CacheStatus::Throttled, Lookup::Throttled, prior);
            }
        }
        let (called, result) = self
            .fetch_shared(req.key, req.token, req.provider_id, req.provider, None)
            .await;
        let from_shared = match &result {
            Ok(entry) => entry.from_shared,
            Err(f) => matches!(**f, FetchFailure::Invalid(_, true)),
        };
        let status = match (called, from_shared) {
            (true, false) => CacheStatus::Miss,
            (true, true) => CacheStatus::Shared,
            (false, _) => CacheStatus::Coalesced,
        };
        let now = self.clock.now();
        let lookup = match result {
            // Just fetched (or fetched by the call we waited for): valid unless the identity
            // itself has expired meanwhile. Freshness matters only for later hits, so a
            // `ttl` of zero still lets the token through, it just caches nothing.
            Ok(entry) if !entry.identity.is_expired_at(now) => {
                Lookup::Valid(entry.identity.clone())
            }
            Ok(_) => Lookup::Invalid(InvalidReason::Expired),
            Err(failure) => match &*failure {
                FetchFailure::Invalid(reason, _) => Lookup::Invalid(*reason),
                FetchFailure::Provider(e) => {
                    if let Some(entry) =
                        lapsed.filter(|e| self.stale_usable(e, req.stale_if_error, now))
                    {
                        let mut out = LookupOutcome::new(
                            CacheStatus::Stale,
                            Lookup::Valid(entry.identity.clone()),
                            prior,
                        );
                        out.stale_age =
                            Some(now.duration_since(entry.fetched_at).unwrap_or_default());
                        return out;
                    }
                    Lookup::Failed(Arc::new(e.clone()))
                }
            },
        };
        LookupOutcome::new(status, lookup, prior)
    }

    /// A lapsed entry may serve while the provider fails: within the route's budget past
    /// freshness, and never past the identity's own expiry.
    fn stale_usable(&self, entry: &CachedIdentity, budget: Duration, now: SystemTime) -> bool {
        !budget.is_zero()
            && !entry.identity.is_expired_at(now)
            && now < entry.fresh_until() + budget
    }

    /// Starts the background refresh of a fresh entry in its refresh window, once.
    async fn maybe_refresh(
        &self,
        entry: &CachedIdentity,
        req: &LookupRequest<'_>,
        now: SystemTime,
    ) -> bool {
        match entry.refresh_at() {
            Some(at) if now >= at => {}
            _ => return false,
        }
        // One refresh per key: the first caller in the window inserts the marker.
        if self.refreshing.contains_key(&req.key)
            || !self
                .refreshing
                .entry(req.key)
                .or_insert(())
                .await
                .is_fresh()
        {
            return false;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let cache = self.clone();
        let key = req.key;
        let token = req.token.to_string();
        let provider_id = req.provider_id.clone();
        let provider = req.provider.clone();
        // Another replica's answer serves as a refresh only when it is newer than ours.
        let newer_than = Some(entry.fetched_at);
        handle.spawn(async move {
            let (_, result) = cache
                .fetch_shared(key, &token, &provider_id, &provider, newer_than)
                .await;
            if !matches!(&result, Err(f) if matches!(**f, FetchFailure::Provider(_))) {
                // Done (a new entry, or the token is gone). A failure keeps the marker until
                // it expires: at most one retry per 5 s while the old entry stays fresh.
                cache.refreshing.invalidate(&key).await;
            }
            let label = match &result {
                Ok(_) => "ok",
                Err(f) => match &**f {
                    FetchFailure::Invalid(..) => "invalid",
                    FetchFailure::Provider(e) => {
                        tracing::warn!(provider = %provider_id, error = %e, "background refresh failed; the cached identity serves until it lapses");
                        "failed"
                    }
                },
            };
            if let Some(m) = &cache.metrics {
                m.cache_refreshes.with_label_values(&[label]).inc();
            }
        });
        true
    }

    /// One provider call for all concurrent callers of `key`; `true` for the caller that
    /// made it.
    async fn fetch_shared(
        &self,
        key: TokenKey,
        token: &str,
        provider_id: &ProviderId,
        provider: &Arc<dyn Provider>,
        newer_than: Option<SystemTime>,
    ) -> (bool, Result<CachedIdentity, Arc<FetchFailure>>) {
        let mut called = false;
        let result = self
            .flights
            .try_get_with(key, async {
                called = true;
                self.fetch(key, token, provider_id, provider.as_ref(), newer_than)
                    .await
            })
            .await;
        if called {
            self.flights.invalidate(&key).await;
        }
        (called, result)
    }

    async fn fetch(
        &self,
        key: TokenKey,
        token: &str,
        provider_id: &ProviderId,
        provider: &dyn Provider,
        newer_than: Option<SystemTime>,
    ) -> Result<CachedIdentity, FetchFailure> {
        let query = SharedQuery {
            key,
            token,
            provider: provider_id,
        };
        let mut claimed = false;
        if let Some(tier) = &self.shared {
            let trusted = |identity: &Identity, fetched_at: SystemTime| {
                self.trusted(key, identity, fetched_at)
            };
            match tier.find(&query, newer_than, &trusted).await {
                SharedFind::Valid {
                    identity,
                    fetched_at,
                } => {
                    let now = self.clock.now();
                    let entry = self.entry(identity, provider_id.clone(), fetched_at.min(now), now);
                    if !entry.identity.is_expired_at(now) && now < entry.fresh_until() {
                        let entry = CachedIdentity {
                            from_shared: true,
                            ..entry
                        };
                        self.keep(key, &entry).await;
                        return Ok(entry);
                    }
                    // Lapsed on the way (clock skew between replicas): ask the provider.
                }
                SharedFind::Invalid(reason) => {
                    self.forget(key, reason).await;
                    return Err(FetchFailure::Invalid(reason, true));
                }
                SharedFind::Nothing { claimed: c } => claimed = c,
            }
        }
        let reason = match provider.resolve(token).await {
            Ok(Resolution::Valid(identity)) => {
                let now = self.clock.now();
                if identity.is_expired_at(now) {
                    InvalidReason::Expired
                } else {
                    let entry = self.entry(identity, provider_id.clone(), now, now);
                    self.keep(key, &entry).await;
                    if let Some(tier) = &self.shared {
                        let names = [
                            Some(self.name_hash(NameKind::Subject, entry.identity.subject())),
                            entry
                                .identity
                                .session_id()
                                .map(|s| self.name_hash(NameKind::Session, s)),
                        ];
                        let answer = SharedAnswer::Valid {
                            identity: &entry.identity,
                            fetched_at: now,
                            ttl: Duration::from_millis(entry.fresh_ms.into()),
                            names,
                        };
                        tier.store(&query, answer, claimed);
                    }
                    return Ok(entry);
                }
            }
            Ok(Resolution::Invalid(reason)) => reason,
            Err(e) => {
                if let Some(tier) = &self.shared {
                    tier.store(&query, SharedAnswer::Failed, claimed);
                }
                return Err(FetchFailure::Provider(e));
            }
        };
        self.forget(key, reason).await;
        if let Some(tier) = &self.shared {
            let answer = SharedAnswer::Invalid {
                reason,
                ttl: self.settings.negative_ttl,
            };
            tier.store(&query, answer, claimed);
        }
        Err(FetchFailure::Invalid(reason, false))
    }

    /// Caches a just-resolved identity (unless it may not be kept at all).
    async fn keep(&self, key: TokenKey, entry: &CachedIdentity) {
        self.negative.invalidate(&key).await;
        if entry.keep_ms > 0 {
            clock::lock(&self.index).add(key, &entry.identity);
            self.positive.insert(key, entry.clone()).await;
        }
    }

    /// The token is not valid: forget any identity kept for it, remember the refusal.
    async fn forget(&self, key: TokenKey, reason: InvalidReason) {
        self.positive.invalidate(&key).await;
        if !self.settings.negative_ttl.is_zero() {
            self.negative.insert(key, reason).await;
        }
    }

    /// The cache entry for an identity the provider gave at `fetched_at` (now, or
    /// earlier when another replica fetched it): fresh until `fetched_at + ttl` at most.
    fn entry(
        &self,
        identity: Identity,
        provider: ProviderId,
        fetched_at: SystemTime,
        now: SystemTime,
    ) -> CachedIdentity {
        let age = now.duration_since(fetched_at).unwrap_or_default();
        // Freshness from `fetched_at`.
        let fresh_for = match identity.remaining(now) {
            Some(left) => (age + left).min(self.settings.ttl),
            None => self.settings.ttl,
        };
        let horizon = Duration::from_millis(self.stale_horizon_ms.load(Ordering::Relaxed));
        // Storage from now.
        let keep_for = if fresh_for <= age {
            Duration::ZERO
        } else {
            let keep = fresh_for - age + horizon;
            identity.remaining(now).map_or(keep, |left| keep.min(left))
        };
        let refresh_ms = if self.settings.refresh_ahead > 0.0 && !fresh_for.is_zero() {
            // The window starts between 50% and 100% of its configured length before the
            // end of freshness, so tokens fetched together do not refresh together.
            let jitter = 0.5 + rand::random::<f64>() * 0.5;
            let window = fresh_for.mul_f64(self.settings.refresh_ahead.min(1.0) * jitter);
            millis(fresh_for - window)
        } else {
            u32::MAX
        };
        CachedIdentity {
            identity,
            provider,
            fetched_at,
            fresh_ms: millis(fresh_for),
            refresh_ms,
            keep_ms: millis(keep_for),
            from_shared: false,
        }
    }

    /// Removes every matching entry (identities, and for a token its negative entries
    /// too); returns how many cached identities were removed.
    pub(crate) async fn purge(&self, by: &PurgeBy, provider: Option<&str>) -> usize {
        if self.purged.is_some() {
            // Whatever the provider filter: a shared value of another provider for the
            // same name costs one provider call, never a wrong answer.
            match by {
                PurgeBy::Keys(keys) => self.remember(keys.iter().map(|k| Mark::Token(*k))),
                PurgeBy::Subject(s) => {
                    self.remember([Mark::Name(self.name_hash(NameKind::Subject, s))]);
                }
                PurgeBy::SessionId(s) => {
                    self.remember([Mark::Name(self.name_hash(NameKind::Session, s))]);
                }
                PurgeBy::Name(_, hash) => self.remember([Mark::Name(*hash)]),
            }
        }
        let keys: Vec<TokenKey> = match by {
            PurgeBy::Keys(keys) => {
                for k in keys {
                    self.negative.invalidate(k).await;
                }
                keys.clone()
            }
            PurgeBy::Subject(s) => clock::lock(&self.index).keys(NameKind::Subject, s),
            PurgeBy::SessionId(s) => clock::lock(&self.index).keys(NameKind::Session, s),
            PurgeBy::Name(_, hash) => clock::lock(&self.index).keys_of(*hash),
        };
        let mut removed = 0;
        for key in keys {
            let Some(entry) = self.positive.get(&key).await else {
                continue;
            };
            let matches = match by {
                PurgeBy::Keys(_) => true,
                PurgeBy::Subject(s) => entry.identity.subject() == s,
                PurgeBy::SessionId(s) => entry.identity.session_id() == Some(s),
                PurgeBy::Name(kind, hash) => {
                    let value = match kind {
                        NameKind::Subject => Some(entry.identity.subject()),
                        NameKind::Session => entry.identity.session_id(),
                    };
                    value.is_some_and(|v| self.name_hash(*kind, v) == *hash)
                }
            };
            let provider_ok = provider.is_none_or(|p| &**entry.provider.name() == p);
            if matches && provider_ok && self.positive.remove(&key).await.is_some() {
                removed += 1;
            }
        }
        removed
    }

    /// The keyed hash of a subject or session id, as [`PurgeBy::Name`] carries it.
    pub(crate) fn name_hash(&self, kind: NameKind, value: &str) -> NameHash {
        clock::lock(&self.index).hash(kind, value)
    }

    /// Keys subject and session-id names with the cluster's shared key, so that purges by
    /// name travel between replicas as hashes. Call before the cache is used.
    pub(crate) fn share_names(&self, key: &[u8; 32]) {
        clock::lock(&self.index).set_key(key);
    }

    /// Forgets every identity and every remembered invalid token (a replica that may have
    /// missed purges). With `shared_too`, shared identities sealed before now are not
    /// served either (the missed purges are unknown, so which shared values they reached
    /// is too). Returns how many identities there were.
    pub async fn flush(&self, shared_too: bool) -> u64 {
        if let (Some(purged), true) = (&self.purged, shared_too) {
            clock::lock(purged).flushed(self.clock.now());
        }
        let n = self.positive.entry_count();
        self.positive.invalidate_all();
        self.negative.invalidate_all();
        self.positive.run_pending_tasks().await;
        n
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

/// Counts removals the cache made on its own, as `{cache, cause}` (`size`, `expired`).
fn count_removal(counter: Option<&prometheus::IntCounterVec>, cache: &str, cause: RemovalCause) {
    let cause = match cause {
        RemovalCause::Size => "size",
        RemovalCause::Expired => "expired",
        RemovalCause::Explicit | RemovalCause::Replaced => return,
    };
    if let Some(c) = counter {
        c.with_label_values(&[cache, cause]).inc();
    }
}

#[cfg(test)]
mod tests;
