//! Memory per cached identity: fills the identity cache with N BitGo-sized identities
//! (5 scopes, 1 organization, 1 CIDR, distinct subject and session ids) and reports the
//! growth of the process's resident set divided by N.
//!
//! Run: `cargo bench --bench cache_memory` (N = 1,000,000; `SG_BENCH_IDENTITIES=N` to
//! change). Target: ≤ 512 bytes per identity.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sessiongate::identity::cache::{CacheSettings, IdentityCache, LookupRequest};
use sessiongate::identity::provider::{Provider, ProviderError, ProviderId, Resolution};
use sessiongate::identity::token::TokenHasher;
use sessiongate::identity::{Identity, IdentityParts};

/// A BitGo-shaped identity for a token `tok-<n>`, every string its own allocation as a
/// real provider answer would give.
#[derive(Debug)]
struct BitgoSized;

#[async_trait]
impl Provider for BitgoSized {
    fn kind(&self) -> &'static str {
        "bench"
    }
    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        let n: u64 = token[4..].parse().unwrap_or(0);
        Ok(Resolution::Valid(Identity::from(IdentityParts {
            subject: format!("{n:032x}"),
            session_id: Some(format!("{:032x}", n ^ 0xdead_beef)),
            scopes: [
                "wallet_view_all",
                "wallet_spend_all",
                "openid",
                "profile",
                "user_manage",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            expires_at: Some(SystemTime::now() + Duration::from_secs(7200)),
            ip_restrict: vec!["203.0.113.0/24".to_string()],
            organizations: vec![format!("{:032x}", n.wrapping_mul(31))],
            claims: vec![],
        })))
    }
}

/// The allocator the sessiongate binary uses, so the figure is the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    if std::env::var_os("SG_BENCH_FLOOD_CHILD").is_some() {
        return flood();
    }
    if std::env::var_os("SG_BENCH_MOKA_CHILD").is_some() {
        return moka_alone();
    }
    // `cargo bench` passes flags such as --bench; only the env var configures this.
    let n: u64 = std::env::var("SG_BENCH_IDENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = IdentityCache::new(CacheSettings {
        ttl: Duration::from_secs(3600),
        max_entries: n * 2,
        ..CacheSettings::default()
    });
    let hasher = TokenHasher::with_key(&[1; 32]);
    let provider: std::sync::Arc<dyn Provider> = std::sync::Arc::new(BitgoSized);
    let provider_id = ProviderId::new("bitgo", 0);
    // 1. N identities in the identity cache (keys, entries, moka's
    //    bookkeeping included).
    let cache_before = rss_bytes();
    rt.block_on(async {
        for i in 0..n {
            let token = format!("tok-{i}");
            cache
                .lookup(LookupRequest::new(
                    hasher.key(&provider_id, &token),
                    &token,
                    &provider_id,
                    &provider,
                ))
                .await;
        }
        cache.sync().await;
    });
    let cache_after = rss_bytes();
    let entries = cache.entry_count();
    let per = (cache_after.saturating_sub(cache_before)) as f64 / entries.max(1) as f64;
    // 2. For comparison, the identities alone, as the provider mapping produces them
    //    (measured second: freed memory is kept by the allocator and would be reused).
    let before = rss_bytes();
    let alone: Vec<Identity> = rt.block_on(async {
        let mut v = Vec::with_capacity(n as usize);
        for i in 0..n {
            if let Ok(Resolution::Valid(id)) = provider.resolve(&format!("tok-{i}")).await {
                v.push(id);
            }
        }
        v
    });
    let identity_bytes = rss_bytes().saturating_sub(before) as f64 / n as f64;
    drop(alone);

    println!("cache_memory: the identity alone (Vec<Identity>): {identity_bytes:.0} bytes");
    // The random-token flood, in a child process with a fresh heap.
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SG_BENCH_FLOOD_CHILD", "1")
        .status()
        .unwrap();
    assert!(status.success());
    for variant in ["as-cache", "ttl", "plain"] {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env("SG_BENCH_MOKA_CHILD", variant)
            .status()
            .unwrap();
        assert!(status.success());
    }
    println!(
        "cache_memory: {entries} identities cached, RSS {:.1} MiB -> {:.1} MiB, {per:.0} bytes per cached identity (target <= 512)",
        cache_before as f64 / 1048576.0,
        cache_after as f64 / 1048576.0
    );
}

/// Answers every `tok-<n>` with a BitGo-sized identity and everything else as unknown.
#[derive(Debug, Default)]
struct Counting {
    calls: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl Provider for Counting {
    fn kind(&self) -> &'static str {
        "bench"
    }
    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if token.starts_with("tok-") {
            BitgoSized.resolve(token).await
        } else {
            Ok(Resolution::Invalid(
                sessiongate::identity::provider::InvalidReason::Unknown,
            ))
        }
    }
}

/// A flood of random tokens against the default cache bounds, in its own process (a fresh
/// heap, so RSS is not blurred by what the identity measurement freed): provider calls,
/// negative entries, memory, and whether the valid identities survived.
fn flood() {
    let n: u64 = std::env::var("SG_BENCH_FLOOD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = CacheSettings::default();
    let cache = IdentityCache::new(settings.clone());
    let hasher = TokenHasher::with_key(&[2; 32]);
    let counting = std::sync::Arc::new(Counting::default());
    let provider: std::sync::Arc<dyn Provider> = counting.clone();
    let provider_id = ProviderId::new("bitgo", 0);
    let look = |token: String| {
        let cache = &cache;
        let provider = &provider;
        let provider_id = &provider_id;
        let key = hasher.key(provider_id, &token);
        async move {
            cache
                .lookup(LookupRequest::new(key, &token, provider_id, provider))
                .await
                .status
        }
    };
    let valid = 1_000;
    let (before, after, still) = rt.block_on(async {
        for i in 0..valid {
            look(format!("tok-{i}")).await;
        }
        cache.sync().await;
        let before = rss_bytes();
        for _ in 0..n {
            look(hex::encode(rand::random::<[u8; 16]>())).await;
        }
        cache.sync().await;
        let after = rss_bytes();
        let mut still = 0;
        for i in 0..valid {
            if look(format!("tok-{i}")).await == sessiongate::identity::cache::CacheStatus::Hit {
                still += 1;
            }
        }
        (before, after, still)
    });
    println!(
        "cache_memory: flood of {n} random tokens (negative_max_entries {}): {} provider calls, {} negative entries kept, RSS {:.1} MiB -> {:.1} MiB, {still}/{valid} valid identities still cached",
        settings.negative_max_entries,
        counting.calls.load(std::sync::atomic::Ordering::Relaxed) - valid,
        cache.negative_entry_count(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
    );
}

/// moka's own bookkeeping per entry, in a child process with a fresh heap: the same key
/// type and expiry policy as the identity cache, with an 8-byte value, so the figure is
/// what any entry costs before the identity and the purge index; and moka's floor (no
/// expiry, no listener).
fn moka_alone() {
    struct Keep;
    impl moka::Expiry<sessiongate::identity::token::TokenKey, u64> for Keep {
        fn expire_after_create(
            &self,
            _: &sessiongate::identity::token::TokenKey,
            _: &u64,
            _: std::time::Instant,
        ) -> Option<Duration> {
            Some(Duration::from_secs(3600))
        }
    }
    let n: u64 = std::env::var("SG_BENCH_IDENTITIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hasher = TokenHasher::with_key(&[3; 32]);
    let provider_id = ProviderId::new("bitgo", 0);
    // "as-cache": per-entry expiry and a listener, as the identity cache; "ttl": one
    // cache-wide time to live and a listener (what a cache without per-entry expiry
    // would need to keep the purge index in step); "plain": neither, moka's floor.
    let variant = std::env::var("SG_BENCH_MOKA_CHILD").unwrap_or_default();
    let b = moka::future::Cache::builder().max_capacity(n * 2);
    let cache: moka::future::Cache<sessiongate::identity::token::TokenKey, u64> =
        match variant.as_str() {
            "plain" => b.build(),
            "ttl" => b
                .time_to_live(Duration::from_secs(3600))
                .eviction_listener(|_, _, _| {})
                .build(),
            _ => b.expire_after(Keep).eviction_listener(|_, _, _| {}).build(),
        };
    let before = rss_bytes();
    rt.block_on(async {
        for i in 0..n {
            cache
                .insert(hasher.key(&provider_id, &format!("tok-{i}")), i)
                .await;
        }
        cache.run_pending_tasks().await;
    });
    let after = rss_bytes();
    println!(
        "cache_memory: moka alone ({} entries, token key + 8-byte value, {}): {:.0} bytes per entry",
        cache.entry_count(),
        match variant.as_str() {
            "plain" => "no expiry, no listener",
            "ttl" => "one cache-wide time to live and listener",
            _ => "per-entry expiry and listener, as the identity cache",
        },
        after.saturating_sub(before) as f64 / n as f64
    );
}
