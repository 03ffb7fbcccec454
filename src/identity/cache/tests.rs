//! Unit tests of the identity cache: freshness, negative caching, single flight,
//! refresh-ahead, stale-if-error, purges, the shared tier.

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::identity::token::TokenHasher;
use crate::identity::IdentityParts;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU8, AtomicUsize};

#[test]
fn each_status_sits_at_its_index_among_the_label_values() {
    use CacheStatus::*;
    let all = [Hit, Stale, NegativeHit, Miss, Coalesced, Shared, Throttled];
    assert_eq!(all.len(), CacheStatus::ALL.len());
    for status in all {
        assert_eq!(CacheStatus::ALL[status.index()], status.as_str());
    }
}

const VALID: u8 = 0;
const FAIL: u8 = 1;
const INVALID: u8 = 2;

/// Answers by token text — `valid-*`, `exp<secs>-*` (expires `secs` after the clock's
/// start), `past`, anything else unknown — unless switched to fail or invalid.
#[derive(Debug)]
struct Scripted {
    calls: AtomicUsize,
    mode: AtomicU8,
    start: SystemTime,
}

#[async_trait]
impl Provider for Scripted {
    fn kind(&self) -> &'static str {
        "test"
    }
    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        match self.mode.load(Ordering::SeqCst) {
            FAIL => return Err(ProviderError::Status(502)),
            INVALID => return Ok(Resolution::Invalid(InvalidReason::Inactive)),
            _ => {}
        }
        let id = |exp: Option<SystemTime>| -> Identity {
            IdentityParts {
                subject: token.split('-').next_back().unwrap_or("").to_string(),
                session_id: Some(format!("sid-{token}")),
                expires_at: exp,
                ..Default::default()
            }
            .into()
        };
        match token {
            t if t.starts_with("valid") => Ok(Resolution::Valid(id(None))),
            t if t.starts_with("exp") => {
                let secs: u64 = t[3..].split('-').next().unwrap().parse().unwrap();
                Ok(Resolution::Valid(id(Some(
                    self.start + Duration::from_secs(secs),
                ))))
            }
            "past" => Ok(Resolution::Valid(id(Some(SystemTime::UNIX_EPOCH)))),
            _ => Ok(Resolution::Invalid(InvalidReason::Unknown)),
        }
    }
}

struct Setup {
    cache: IdentityCache,
    provider: Arc<Scripted>,
    dyn_provider: Arc<dyn Provider>,
    hasher: TokenHasher,
    clock: ManualClock,
    metrics: Metrics,
    id: ProviderId,
}

fn setup_with(settings: CacheSettings) -> Setup {
    let clock = ManualClock::new();
    let metrics = Metrics::new();
    let cache = IdentityCache::build(settings, Arc::new(clock.clone()), Some(metrics.clone()));
    cache.set_stale_horizon(Duration::from_secs(300));
    let provider = Arc::new(Scripted {
        calls: AtomicUsize::new(0),
        mode: AtomicU8::new(VALID),
        start: clock.now(),
    });
    Setup {
        cache,
        dyn_provider: provider.clone(),
        provider,
        hasher: TokenHasher::random(),
        clock,
        metrics,
        id: ProviderId::new("p", 1),
    }
}

fn setup() -> Setup {
    setup_with(CacheSettings {
        refresh_ahead: 0.0,
        ..CacheSettings::default()
    })
}

impl Setup {
    async fn look_with(
        &self,
        token: &str,
        stale: Duration,
        client: Option<IpAddr>,
    ) -> LookupOutcome {
        self.cache
            .lookup(LookupRequest {
                key: self.hasher.key(&self.id, token),
                token,
                provider_id: &self.id,
                provider: &self.dyn_provider,
                stale_if_error: stale,
                client,
            })
            .await
    }
    async fn look(&self, token: &str) -> CacheStatus {
        self.look_with(token, Duration::ZERO, None).await.status
    }
    fn calls(&self) -> usize {
        self.provider.calls.load(Ordering::SeqCst)
    }
    fn set(&self, mode: u8) {
        self.provider.mode.store(mode, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn hit_after_miss_and_negative_caching() {
    let s = setup();
    assert_eq!(s.look("valid-a").await, CacheStatus::Miss);
    assert_eq!(s.look("valid-a").await, CacheStatus::Hit);
    assert_eq!(s.look("nope").await, CacheStatus::Miss);
    assert_eq!(s.look("nope").await, CacheStatus::NegativeHit);
    assert_eq!(s.calls(), 2);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let s = setup();
    s.set(FAIL);
    for _ in 0..3 {
        let out = s.look_with("valid-a", Duration::from_secs(300), None).await;
        assert_eq!(out.status, CacheStatus::Miss);
        assert!(matches!(out.lookup, Lookup::Failed(_)));
    }
    assert_eq!(s.calls(), 3);
}

#[tokio::test]
async fn already_expired_identity_is_invalid_and_not_cached_as_valid() {
    let s = setup();
    let out = s.look_with("past", Duration::ZERO, None).await;
    assert!(matches!(
        out.lookup,
        Lookup::Invalid(InvalidReason::Expired)
    ));
    assert_eq!(s.look("past").await, CacheStatus::NegativeHit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_call() {
    let s = Arc::new(setup());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.look("valid-b").await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(s.calls(), 1);
    assert_eq!(
        statuses.iter().filter(|s| **s == CacheStatus::Miss).count(),
        1
    );
}

#[tokio::test]
async fn random_token_flood_is_bounded_apart_from_identities() {
    let s = setup_with(CacheSettings {
        max_entries: 5,
        negative_max_entries: 5,
        ..CacheSettings::default()
    });
    for i in 0..5 {
        s.look(&format!("valid-{i}")).await;
    }
    for i in 0..200 {
        s.look(&format!("random-{i}")).await;
    }
    s.cache.sync().await;
    assert!(
        s.cache.negative_entry_count() <= 5,
        "{}",
        s.cache.negative_entry_count()
    );
    let ev = &s.metrics.cache_evictions;
    assert!(ev.with_label_values(&["negative", "size"]).get() >= 195);
    assert_eq!(ev.with_label_values(&["positive", "size"]).get(), 0);
    for i in 0..5 {
        assert_eq!(s.look(&format!("valid-{i}")).await, CacheStatus::Hit);
    }
    // Every random token cost exactly one provider call, none more.
    assert_eq!(s.calls(), 205);
}

#[tokio::test]
async fn freshness_is_capped_by_identity_expiry() {
    let s = setup();
    assert_eq!(s.look("exp30-x").await, CacheStatus::Miss);
    s.clock.advance(Duration::from_secs(29));
    assert_eq!(s.look("exp30-x").await, CacheStatus::Hit);
    s.clock.advance(Duration::from_secs(2));
    // Past its own expiry: asked again, and the provider's (stale) answer is refused.
    let out = s.look_with("exp30-x", Duration::from_secs(300), None).await;
    assert_eq!(out.status, CacheStatus::Miss);
    assert!(matches!(
        out.lookup,
        Lookup::Invalid(InvalidReason::Expired)
    ));
    assert_eq!(s.calls(), 2);
}

#[tokio::test]
async fn ttl_lapses_on_the_clock() {
    let s = setup();
    assert_eq!(s.look("valid-a").await, CacheStatus::Miss);
    s.clock.advance(Duration::from_secs(59));
    assert_eq!(s.look("valid-a").await, CacheStatus::Hit);
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(s.look("valid-a").await, CacheStatus::Miss);
}

#[tokio::test]
async fn stale_if_error_serves_within_budget_only_when_the_provider_fails() {
    let s = setup();
    let budget = Duration::from_secs(300);
    s.look("valid-a").await;
    s.clock.advance(Duration::from_secs(61));
    s.set(FAIL);
    let out = s.look_with("valid-a", budget, None).await;
    assert_eq!(out.status, CacheStatus::Stale);
    assert_eq!(out.prior, Prior::Lapsed);
    assert_eq!(out.stale_age, Some(Duration::from_secs(61)));
    assert!(matches!(out.lookup, Lookup::Valid(_)));
    // A route without a budget fails closed on the same entry.
    let out = s.look_with("valid-a", Duration::ZERO, None).await;
    assert!(matches!(out.lookup, Lookup::Failed(_)));
    // The budget counts from the end of freshness (60 s): 60 + 300 is the last moment.
    s.clock.advance(Duration::from_secs(298));
    assert_eq!(
        s.look_with("valid-a", budget, None).await.status,
        CacheStatus::Stale
    );
    s.clock.advance(Duration::from_secs(2));
    assert!(matches!(
        s.look_with("valid-a", budget, None).await.lookup,
        Lookup::Failed(_)
    ));
}

#[tokio::test]
async fn stale_never_outlives_the_identity_or_an_invalid_answer() {
    let s = setup();
    let budget = Duration::from_secs(300);
    s.look("exp90-a").await;
    s.look("valid-b").await;
    s.clock.advance(Duration::from_secs(91));
    s.set(FAIL);
    assert!(matches!(
        s.look_with("exp90-a", budget, None).await.lookup,
        Lookup::Failed(_)
    ));
    // The provider says the token is no longer valid: the kept entry is dropped.
    s.set(INVALID);
    assert!(matches!(
        s.look_with("valid-b", budget, None).await.lookup,
        Lookup::Invalid(_)
    ));
    s.set(FAIL);
    assert_eq!(
        s.look_with("valid-b", budget, None).await.status,
        CacheStatus::NegativeHit
    );
}

async fn settle(s: &Setup, calls: usize) {
    for _ in 0..200 {
        if s.calls() >= calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_refreshes_once_in_the_background() {
    let s = setup_with(CacheSettings::default()); // ttl 60 s, last 20 %
    s.look("valid-a").await;
    s.clock.advance(Duration::from_secs(40));
    assert!(
        !s.look_with("valid-a", Duration::ZERO, None)
            .await
            .refresh_started
    );
    // 54 s is inside the window whatever the jitter (it starts at 48–54 s).
    s.clock.advance(Duration::from_secs(14));
    let mut started = 0;
    for _ in 0..20 {
        let out = s.look_with("valid-a", Duration::ZERO, None).await;
        assert_eq!(out.status, CacheStatus::Hit);
        started += usize::from(out.refresh_started);
    }
    assert_eq!(started, 1);
    settle(&s, 2).await;
    assert_eq!(s.calls(), 2);
    assert_eq!(
        s.metrics.cache_refreshes.with_label_values(&["ok"]).get(),
        1
    );
    // The refreshed entry is fresh past the old entry's end (60 s).
    s.clock.advance(Duration::from_secs(10));
    assert_eq!(s.look("valid-a").await, CacheStatus::Hit);
    assert_eq!(s.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_refresh_keeps_the_entry_until_it_lapses() {
    let s = setup_with(CacheSettings::default());
    s.look("valid-a").await;
    s.set(FAIL);
    s.clock.advance(Duration::from_secs(55));
    assert!(
        s.look_with("valid-a", Duration::ZERO, None)
            .await
            .refresh_started
    );
    settle(&s, 2).await;
    assert_eq!(
        s.metrics
            .cache_refreshes
            .with_label_values(&["failed"])
            .get(),
        1
    );
    assert_eq!(s.look("valid-a").await, CacheStatus::Hit);
    s.clock.advance(Duration::from_secs(5));
    assert!(matches!(
        s.look_with("valid-a", Duration::ZERO, None).await.lookup,
        Lookup::Failed(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_that_finds_the_token_revoked_drops_it() {
    let s = setup_with(CacheSettings::default());
    s.look("valid-a").await;
    s.set(INVALID);
    s.clock.advance(Duration::from_secs(55));
    assert!(
        s.look_with("valid-a", Duration::ZERO, None)
            .await
            .refresh_started
    );
    settle(&s, 2).await;
    assert_eq!(s.look("valid-a").await, CacheStatus::NegativeHit);
}

#[tokio::test]
async fn purge_by_subject_session_and_token() {
    let s = setup();
    for t in ["valid-1-alice", "valid-2-alice", "valid-3-bob"] {
        s.look(t).await;
    }
    let by_subject = PurgeBy::Subject("alice".into());
    assert_eq!(s.cache.purge(&by_subject, Some("other")).await, 0);
    assert_eq!(s.cache.purge(&by_subject, None).await, 2);
    assert_eq!(s.cache.purge(&by_subject, None).await, 0);
    assert_eq!(s.look("valid-1-alice").await, CacheStatus::Miss);
    assert_eq!(s.look("valid-3-bob").await, CacheStatus::Hit);
    let by_sid = PurgeBy::SessionId("sid-valid-3-bob".into());
    assert_eq!(s.cache.purge(&by_sid, Some("p")).await, 1);
    assert_eq!(s.look("valid-3-bob").await, CacheStatus::Miss);
    let by_key = PurgeBy::Keys(vec![s.hasher.key(&s.id, "valid-1-alice")]);
    assert_eq!(s.cache.purge(&by_key, None).await, 1);
    assert_eq!(s.look("valid-1-alice").await, CacheStatus::Miss);
    s.look("nope").await;
    s.cache
        .purge(&PurgeBy::Keys(vec![s.hasher.key(&s.id, "nope")]), None)
        .await;
    assert_eq!(s.look("nope").await, CacheStatus::Miss);
}

#[tokio::test]
async fn misses_are_limited_per_client_but_hits_are_not() {
    let s = setup_with(CacheSettings {
        client_miss_rate: 2,
        client_miss_burst: 2,
        refresh_ahead: 0.0,
        ..CacheSettings::default()
    });
    let a = Some(IpAddr::from([10, 0, 0, 1]));
    let b = Some(IpAddr::from([10, 0, 0, 2]));
    assert_eq!(
        s.look_with("valid-1", Duration::ZERO, a).await.status,
        CacheStatus::Miss
    );
    assert_eq!(
        s.look_with("r1", Duration::ZERO, a).await.status,
        CacheStatus::Miss
    );
    let out = s.look_with("r2", Duration::ZERO, a).await;
    assert_eq!(out.status, CacheStatus::Throttled);
    assert!(matches!(out.lookup, Lookup::Throttled));
    assert_eq!(
        s.look_with("valid-1", Duration::ZERO, a).await.status,
        CacheStatus::Hit
    );
    assert_eq!(
        s.look_with("r1", Duration::ZERO, a).await.status,
        CacheStatus::NegativeHit
    );
    assert_eq!(
        s.look_with("r2", Duration::ZERO, b).await.status,
        CacheStatus::Miss
    );
    assert_eq!(s.calls(), 3);
}

/// An in-memory shared tier: what `store` got, and answers set by the test.
#[derive(Default)]
struct FakeTier {
    answer: Mutex<Option<(Identity, SystemTime)>>,
    invalid: Mutex<Option<InvalidReason>>,
    claim: AtomicU8,
    stored: Mutex<Vec<(String, Duration, bool)>>,
}

#[async_trait]
impl SharedTier for FakeTier {
    async fn find(
        &self,
        _: &SharedQuery<'_>,
        newer_than: Option<SystemTime>,
        trusted: &(dyn for<'i> Fn(&'i Identity, SystemTime) -> bool + Sync),
    ) -> SharedFind {
        if let Some(reason) = *self.invalid.lock().unwrap() {
            return SharedFind::Invalid(reason);
        }
        match self.answer.lock().unwrap().clone() {
            Some((identity, at)) if newer_than.is_none_or(|t| at > t) && trusted(&identity, at) => {
                SharedFind::Valid {
                    identity,
                    fetched_at: at,
                }
            }
            _ => SharedFind::Nothing {
                claimed: self.claim.load(Ordering::SeqCst) == 1,
            },
        }
    }
    fn store(&self, _: &SharedQuery<'_>, answer: SharedAnswer<'_>, claimed: bool) {
        let (what, ttl) = match answer {
            SharedAnswer::Valid {
                identity,
                ttl,
                names,
                ..
            } => {
                assert!(names[0].is_some() && names[1].is_some());
                (identity.subject().to_string(), ttl)
            }
            SharedAnswer::Invalid { ttl, .. } => ("invalid".into(), ttl),
            SharedAnswer::Failed => ("failed".into(), Duration::ZERO),
        };
        self.stored.lock().unwrap().push((what, ttl, claimed));
    }
}

fn with_tier(settings: CacheSettings) -> (Setup, Arc<FakeTier>) {
    let mut s = setup_with(settings);
    let tier = Arc::new(FakeTier::default());
    s.cache = s.cache.clone().with_shared(tier.clone());
    s.cache.seed_purges([], None);
    (s, tier)
}

#[tokio::test]
async fn a_shared_identity_sealed_before_a_purge_is_never_served() {
    let (s, tier) = with_tier(CacheSettings {
        ttl: Duration::from_secs(60),
        refresh_ahead: 0.0,
        ..CacheSettings::default()
    });
    let identity: Identity = IdentityParts {
        subject: "carol".into(),
        session_id: Some("s-carol".into()),
        ..Default::default()
    }
    .into();
    let sealed = s.clock.now() - Duration::from_secs(1);
    let purges = [
        PurgeBy::Keys(vec![s.hasher.key(&s.id, "valid-c")]),
        PurgeBy::Subject("carol".into()),
        PurgeBy::SessionId("s-carol".into()),
        PurgeBy::Name(
            NameKind::Subject,
            s.cache.name_hash(NameKind::Subject, "carol"),
        ),
    ];
    for (n, by) in purges.iter().enumerate() {
        // Each purge reaches the value even when this replica had nothing cached.
        let (s, tier) = with_tier(CacheSettings {
            ttl: Duration::from_secs(60),
            refresh_ahead: 0.0,
            ..CacheSettings::default()
        });
        let by = match by {
            PurgeBy::Keys(_) => PurgeBy::Keys(vec![s.hasher.key(&s.id, "valid-c")]),
            PurgeBy::Name(kind, _) => PurgeBy::Name(*kind, s.cache.name_hash(*kind, "carol")),
            other => other.clone(),
        };
        *tier.answer.lock().unwrap() = Some((identity.clone(), sealed));
        assert_eq!(s.cache.purge(&by, None).await, 0);
        // Written back after the purge: the provider is asked instead (case {n}).
        assert_eq!(s.look("valid-c").await, CacheStatus::Miss, "case {n}");
        assert_eq!(s.calls(), 1, "case {n}");
    }
    // Sealed well after the purge: served.
    s.cache.purge(&purges[1], None).await;
    let later = s.clock.now() + PURGE_SKEW + Duration::from_secs(1);
    s.clock.advance(PURGE_SKEW + Duration::from_secs(2));
    *tier.answer.lock().unwrap() = Some((identity.clone(), later));
    assert_eq!(s.look("valid-c").await, CacheStatus::Shared);
    assert_eq!(s.calls(), 0);
    // A flush (purges may have been missed) distrusts everything sealed before it.
    s.cache.flush(true).await;
    assert_eq!(s.look("valid-c").await, CacheStatus::Miss);
    // A replica that does not know the stream yet trusts no shared value.
    let mut fresh = setup_with(CacheSettings::default());
    let tier = Arc::new(FakeTier::default());
    fresh.cache = fresh.cache.clone().with_shared(tier.clone());
    *tier.answer.lock().unwrap() = Some((identity, fresh.clock.now()));
    assert_eq!(fresh.look("valid-c").await, CacheStatus::Miss);
    fresh.cache.seed_purges([], None);
    assert_eq!(fresh.look("valid-d").await, CacheStatus::Shared);
}

#[tokio::test]
async fn a_shared_answer_serves_without_a_provider_call_and_keeps_its_age() {
    let (s, tier) = with_tier(CacheSettings {
        ttl: Duration::from_secs(60),
        refresh_ahead: 0.0,
        ..CacheSettings::default()
    });
    let identity: Identity = IdentityParts {
        subject: "other-replica".into(),
        session_id: Some("sid".into()),
        ..Default::default()
    }
    .into();
    // Another replica fetched it 50 s ago: 10 s of freshness are left, not 60.
    let at = s.clock.now() - Duration::from_secs(50);
    *tier.answer.lock().unwrap() = Some((identity, at));
    let out = s.look_with("valid-x", Duration::ZERO, None).await;
    assert_eq!(out.status, CacheStatus::Shared);
    assert!(matches!(&out.lookup, Lookup::Valid(i) if i.subject() == "other-replica"));
    assert_eq!(s.calls(), 0);
    assert_eq!(s.look("valid-x").await, CacheStatus::Hit);
    s.clock.advance(Duration::from_secs(11));
    *tier.answer.lock().unwrap() = None;
    // Lapsed after 10 s: the provider is asked, and its answer shared for the full ttl.
    assert_eq!(s.look("valid-x").await, CacheStatus::Miss);
    assert_eq!(s.calls(), 1);
    let stored = tier.stored.lock().unwrap().clone();
    assert_eq!(
        stored,
        vec![("x".to_string(), Duration::from_secs(60), false)]
    );
}

#[tokio::test]
async fn the_shared_ttl_never_outlives_the_identity_and_claims_are_released() {
    let (s, tier) = with_tier(CacheSettings {
        refresh_ahead: 0.0,
        ..CacheSettings::default()
    });
    tier.claim.store(1, Ordering::SeqCst);
    assert_eq!(s.look("exp20-a").await, CacheStatus::Miss);
    assert_eq!(s.look("nope").await, CacheStatus::Miss);
    s.set(FAIL);
    assert_eq!(s.look("valid-b").await, CacheStatus::Miss);
    let stored = tier.stored.lock().unwrap().clone();
    assert_eq!(
        stored,
        vec![
            ("a".to_string(), Duration::from_secs(20), true),
            ("invalid".to_string(), Duration::from_secs(5), true),
            ("failed".to_string(), Duration::ZERO, true),
        ]
    );
}

#[tokio::test]
async fn a_shared_refusal_is_remembered_and_a_refresh_takes_only_newer_answers() {
    let (s, tier) = with_tier(CacheSettings {
        ttl: Duration::from_secs(100),
        refresh_ahead: 0.5,
        ..CacheSettings::default()
    });
    *tier.invalid.lock().unwrap() = Some(InvalidReason::Inactive);
    assert_eq!(s.look("valid-n").await, CacheStatus::Shared);
    assert_eq!(s.look("valid-n").await, CacheStatus::NegativeHit);
    assert_eq!(s.calls(), 0);
    *tier.invalid.lock().unwrap() = None;
    // A refresh whose shared answer is not newer asks the provider.
    assert_eq!(s.look("valid-r").await, CacheStatus::Miss);
    let fetched = s.clock.now();
    *tier.answer.lock().unwrap() = Some((
        IdentityParts {
            subject: "old".into(),
            ..Default::default()
        }
        .into(),
        fetched,
    ));
    s.clock.advance(Duration::from_secs(80));
    let out = s.look_with("valid-r", Duration::ZERO, None).await;
    assert!(out.refresh_started);
    for _ in 0..100 {
        if s.calls() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.calls(), 2, "an answer as old as ours is no refresh");
}
