//! What the proxy and the admin listener share, and how a configuration becomes it.
//!
//! [`GatewayState`] lives as long as the process: the identity cache, the token hasher,
//! minted assertions, metrics and the clock. What a configuration defines — routes,
//! providers, header settings, the admin token — is a [`Snapshot`] behind an `ArcSwap`:
//! a reload builds a new snapshot and swaps it in whole. Each request takes the snapshot
//! once when it starts and keeps it to the end, so in-flight requests finish under the
//! configuration they began with.
//!
//! Token keys are derived from the provider's `name#fingerprint`, so cached identities
//! survive a reload exactly while their provider's definition is unchanged; a changed
//! provider starts from an empty cache (its old entries age out).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::clock::SharedClock;
use crate::config::{self, ConfigError, Secret, Settings};
use crate::identity::cache::IdentityCache;
use crate::identity::token::TokenHasher;
use crate::policy::Mode;
use crate::provider::guard::Guarded;
use crate::provider::metered::Metered;
use crate::provider::{Provider, ProviderId};
use crate::proxy::assertion::AssertionCache;
use crate::proxy::forwarded::TrustedProxies;
use crate::proxy::headers::IdentityHeaders;
use crate::proxy::route::{ProviderEntry, Route, RouteAuth, RouteTable, Upstream, UpstreamTarget};
use crate::telemetry::metrics::Metrics;

/// How long a reload waits for new providers' warm-up (JWKS fetches) before swapping.
const RELOAD_WARM_UP_LIMIT: Duration = Duration::from_secs(5);

/// One configuration, built.
pub struct Snapshot {
    pub routes: RouteTable,
    /// Every configured provider (for purges by token), in name order.
    pub providers: Vec<Arc<ProviderEntry>>,
    pub identity_headers: IdentityHeaders,
    pub trusted_proxies: TrustedProxies,
    /// The JWKS document of the assertion keys, served by the admin listener.
    pub jwks: Vec<u8>,
    pub admin_token: Option<Secret>,
    /// The settings this snapshot was built from.
    pub settings: Settings,
}

/// Everything the proxy and the admin listener share.
pub struct GatewayState {
    pub current: ArcSwap<Snapshot>,
    pub cache: IdentityCache,
    pub hasher: TokenHasher,
    pub assertions: AssertionCache,
    pub metrics: Metrics,
    pub clock: SharedClock,
    /// The file reloads read (`None` when the gateway was built from settings in code).
    pub config_path: Option<PathBuf>,
    /// Serializes reloads.
    reload_lock: tokio::sync::Mutex<()>,
}

/// What a reload changed, for its log line and the admin answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub routes: usize,
    /// Providers whose definition changed (their cached identities are not reused).
    pub providers_changed: Vec<String>,
    /// Keys that changed but take effect only on restart.
    pub needs_restart: Vec<&'static str>,
}

impl GatewayState {
    /// Builds the state for `settings` (upstream host names are resolved here).
    pub fn new(
        settings: Settings,
        clock: SharedClock,
        config_path: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let metrics = Metrics::new();
        let cache =
            IdentityCache::build(settings.cache.clone(), clock.clone(), Some(metrics.clone()));
        let snapshot = build(settings, &metrics, &clock)?;
        cache.set_stale_horizon(stale_horizon(&snapshot));
        metrics.config_last_reload_success.set(1);
        metrics.config_last_reload_success_time.set(unix_now());
        Ok(GatewayState {
            current: ArcSwap::from_pointee(snapshot),
            cache,
            hasher: TokenHasher::random(),
            assertions: AssertionCache::new(clock.clone()),
            metrics,
            clock,
            config_path,
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads the config file again and applies it (see [`GatewayState::reload`]).
    pub async fn reload_from_file(&self) -> Result<ReloadReport, ConfigError> {
        let Some(path) = &self.config_path else {
            return Err(ConfigError::at(
                "",
                "the gateway was not started from a config file",
            ));
        };
        let loaded = config::load(path);
        match loaded {
            Ok(settings) => self.reload(settings).await,
            Err(e) => {
                self.reload_failed(&e);
                Err(e)
            }
        }
    }

    /// Applies new settings: builds a snapshot, warms up its providers, swaps it in. On
    /// any error the old configuration keeps serving and the error is returned.
    pub async fn reload(&self, settings: Settings) -> Result<ReloadReport, ConfigError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let old = self.snapshot();
        let report = ReloadReport {
            routes: settings.routes.len(),
            providers_changed: old
                .settings
                .providers
                .iter()
                .filter(|(name, p)| {
                    settings
                        .providers
                        .get(*name)
                        .is_some_and(|n| n.fingerprint != p.fingerprint)
                })
                .map(|(name, _)| name.clone())
                .collect(),
            needs_restart: restart_only_changes(&old.settings, &settings),
        };
        let snapshot = match build(settings, &self.metrics, &self.clock) {
            Ok(s) => s,
            Err(e) => {
                self.reload_failed(&e);
                return Err(e);
            }
        };
        // Every provider of the new snapshot is a new instance (secret files are read
        // again, so a rotated credential takes effect): each warms up before the swap.
        for p in &snapshot.providers {
            match tokio::time::timeout(RELOAD_WARM_UP_LIMIT, p.provider.warm_up()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(provider = %p.name(), error = %e, "warm-up after reload failed; the first request will try again")
                }
                Err(_) => {
                    tracing::warn!(provider = %p.name(), "warm-up after reload timed out; the first request will try again")
                }
            }
        }
        self.cache
            .set_stale_horizon(stale_horizon(&snapshot).max(stale_horizon(&old)));
        self.current.store(Arc::new(snapshot));
        self.metrics.config_last_reload_success.set(1);
        self.metrics.config_last_reload_success_time.set(unix_now());
        self.metrics
            .config_reloads
            .with_label_values(&["applied"])
            .inc();
        if !report.needs_restart.is_empty() {
            tracing::warn!(keys = ?report.needs_restart, "configuration reloaded, but these keys take effect only on restart");
        }
        tracing::info!(routes = report.routes, providers_changed = ?report.providers_changed, "configuration reloaded");
        Ok(report)
    }

    fn reload_failed(&self, e: &ConfigError) {
        self.metrics.config_last_reload_success.set(0);
        self.metrics
            .config_reloads
            .with_label_values(&["rejected"])
            .inc();
        tracing::error!(error = %e, "configuration reload rejected; the previous configuration keeps serving");
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn stale_horizon(s: &Snapshot) -> Duration {
    s.routes
        .iter()
        .map(|r| r.spec.stale_if_error)
        .max()
        .unwrap_or_default()
}

/// Keys a running process cannot change (listeners, runtimes, cache sizing, logging).
fn restart_only_changes(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.listen != new.listen {
        out.push("listen");
    }
    if old.admin_listen != new.admin_listen {
        out.push("admin_listen");
    }
    if old.admin_api_listen != new.admin_api_listen {
        out.push("admin.listen");
    }
    if old.threads != new.threads {
        out.push("threads");
    }
    if old.shutdown_grace_period != new.shutdown_grace_period {
        out.push("shutdown_grace_period");
    }
    if old.pid_file != new.pid_file {
        out.push("pid_file");
    }
    if old.upgrade_sock != new.upgrade_sock {
        out.push("upgrade_sock");
    }
    if old.cache != new.cache {
        out.push("cache");
    }
    if old.log.level != new.log.level || old.log.format != new.log.format {
        out.push("log");
    }
    out
}

/// Builds a snapshot: wraps providers (metrics, protection), resolves upstream host names
/// once, creates metric series.
pub fn build(
    settings: Settings,
    metrics: &Metrics,
    clock: &SharedClock,
) -> Result<Snapshot, ConfigError> {
    // Live providers (and their HTTP clients) are built here, from the config's specs.
    let mut providers: Vec<Arc<ProviderEntry>> = Vec::with_capacity(settings.providers.len());
    for (name, p) in &settings.providers {
        let live = p
            .spec
            .build(clock)
            .map_err(|e| ConfigError::at(format!("providers.{name}"), e.to_string()))?;
        let name: Arc<str> = name.as_str().into();
        let metered: Arc<dyn Provider> =
            Arc::new(Metered::new(name.clone(), live, metrics.clone()));
        let provider: Arc<dyn Provider> = match &p.protection {
            Some(protection) => Arc::new(Guarded::new(
                name.clone(),
                metered,
                protection.clone(),
                clock.clone(),
                metrics.clone(),
            )),
            None => metered,
        };
        providers.push(Arc::new(ProviderEntry {
            id: ProviderId::new(name, p.fingerprint),
            provider,
            format: p.token_format.clone(),
        }));
    }
    let by_name: HashMap<&str, Arc<ProviderEntry>> =
        providers.iter().map(|p| (&**p.name(), p.clone())).collect();
    // Each upstream's host name is resolved once, here, so requests never wait on DNS.
    let mut upstreams: HashMap<&str, Arc<Upstream>> = HashMap::new();
    for (name, spec) in &settings.upstreams {
        let up = spec
            .resolve()
            .map_err(|e| ConfigError::at(format!("upstreams.{name}"), e.to_string()))?;
        upstreams.insert(name, Arc::new(up));
    }
    let routes: Vec<Route> = settings
        .routes
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            Route::resolve(spec.clone(), &by_name, &upstreams)
                .map_err(|e| ConfigError::at(format!("routes[{i}]"), e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let upstreams: Vec<&str> = routes
        .iter()
        .filter_map(|r| match &r.upstream {
            UpstreamTarget::Http(u) => Some(u.name.as_str()),
            UpstreamTarget::Echo => None,
        })
        .collect();
    metrics.init_series(
        routes.iter().map(|r| &**r.name()),
        providers.iter().map(|p| &**p.name()),
        upstreams,
        &crate::telemetry::metrics::FixedLabels {
            cache_results: &crate::identity::cache::CacheStatus::ALL,
            rejection_reasons: crate::proxy::canonical::Rejection::REASONS,
        },
    );
    for r in &routes {
        let name = &**r.name();
        if r.auth_duration_applies() {
            metrics.auth_duration.with_label_values(&[name]);
        }
        if r.spec.policy.mode == Mode::Report {
            for reason in ["insufficient_scope", "ip_not_allowed"] {
                metrics.would_deny.with_label_values(&[name, reason]);
            }
        }
        if let (RouteAuth::Providers(list), false) = (&r.auth, r.spec.stale_if_error.is_zero()) {
            for p in list {
                metrics.stale_served.with_label_values(&[name, &**p.name()]);
            }
        }
    }
    Ok(Snapshot {
        routes: RouteTable::new(routes, settings.requests.case_insensitive_paths),
        providers,
        identity_headers: settings.identity_headers.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
        jwks: crate::proxy::assertion::jwks(&settings.assertion_keys),
        admin_token: settings.admin_token.clone(),
        settings,
    })
}
