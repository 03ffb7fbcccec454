//! Assembly of the process: a validated configuration built into a [`Snapshot`] (live
//! providers, resolved routes and upstreams, metric series) inside the [`GatewayState`]
//! the request path shares, and the [`Process`] around it — what only the process as a
//! whole has (the cluster link, the TLS certificate store) and the reload that builds a
//! snapshot again on SIGHUP, a file change or `POST /admin/reload` (asked for through
//! [`crate::reload`]).
//!
//! Token keys are derived from the provider's [`ProviderId`] (name and definition
//! fingerprint), so cached identities survive a reload exactly while their provider's
//! definition is unchanged; a changed provider starts from an empty cache (its old
//! entries age out).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::clock::SharedClock;
use crate::cluster::Cluster;
use crate::config::{self, ConfigError, Settings};
use crate::decision::refused::Outcome;
use crate::decision::route::{
    ProviderEntry, Route, RouteAuth, RouteTable, Upstream, UpstreamTarget,
};
use crate::identity::assertion::AssertionCache;
use crate::identity::cache::IdentityCache;
use crate::identity::provider::guard::Guarded;
use crate::identity::provider::metered::Metered;
use crate::identity::provider::{Provider, ProviderId};
use crate::identity::token::TokenHasher;
use crate::policy::{DenialKind, Mode};
pub(crate) use crate::proxy::shared::{GatewayState, Snapshot};
pub(crate) use crate::reload::{ReloadRejected, ReloadReport};
use crate::telemetry::metrics::{Metrics, RouteSeries};

/// How long a reload waits for new providers' warm-up (JWKS fetches) before swapping.
const RELOAD_WARM_UP_LIMIT: Duration = Duration::from_secs(5);

/// Builds the state for `settings` (upstream host names are resolved here); reloads read
/// `config_path`.
pub(crate) fn start(
    settings: Settings,
    clock: SharedClock,
    config_path: Option<PathBuf>,
) -> Result<Process, ConfigError> {
    let metrics = Metrics::new();
    let mut cache =
        IdentityCache::build(settings.cache.clone(), clock.clone(), Some(metrics.clone()));
    // Replicas derive the same token keys, purge names and rate-limit keys from the
    // shared secret, so a purge can name them in the stream and a limit counts one key
    // alike everywhere; alone, the keys are random per process.
    let (hasher, cluster, limiters) = match &settings.cluster {
        Some(c) => {
            cache.share_names(&c.derive_key("purge names"));
            let (cluster, shared) = Cluster::new(c.clone(), cache, metrics.cluster.clone())
                .map_err(|e| ConfigError::at("cluster.redis.url", e))?;
            cache = shared;
            let counter = cluster
                .limits()
                .map(|l| l.clone() as Arc<dyn crate::limits::SharedCounter>);
            let limit_key = c.derive_key("rate limit keys");
            (
                TokenHasher::with_key(&c.derive_key("token keys")),
                Some(Arc::new(cluster)),
                crate::limits::Limiters::new(
                    limit_key[..16].try_into().unwrap_or_default(),
                    counter,
                ),
            )
        }
        None => (
            TokenHasher::random(),
            None,
            crate::limits::Limiters::default(),
        ),
    };
    let (snapshot, live) = build(&settings, &metrics, &clock, &limiters)?;
    limiters.commit(live);
    cache.set_stale_horizon(stale_horizon(&snapshot));
    // Read and parsed when the configuration was checked.
    let tls = settings.tls.as_ref().map(|t| t.certificates.clone());
    let (tracer, trace_exporter) = match &settings.tracing {
        Some(t) => {
            let (tracer, exporter) = trace_pipeline(t, &metrics)?;
            (Some(tracer), Some(exporter))
        }
        None => (None, None),
    };
    metrics.config_last_reload_success.set(1);
    metrics.config_last_reload_success_time.set(unix_now());
    let process = Process {
        shared: Arc::new(GatewayState {
            current: ArcSwap::from_pointee(snapshot),
            cache,
            hasher,
            assertions: AssertionCache::new(clock.clone()),
            metrics,
            clock,
            client_certs: Default::default(),
            limiters,
            tracer,
        }),
        trace_exporter: std::sync::Mutex::new(trace_exporter),
        cluster,
        tls,
        config_path,
        applied: tokio::sync::Mutex::new(settings),
    };
    process.publish_certificates();
    Ok(process)
}

/// The running process: the state the request path shares, and what only the process as
/// a whole has — the cluster link, the TLS certificate store, the config file and the
/// settings in force (to reload and report what changed).
pub(crate) struct Process {
    pub(crate) shared: Arc<GatewayState>,
    /// The replicas' shared revocation stream (`cluster:`), when configured.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// The TLS listener's certificates (`tls:`), reloaded in place.
    pub(crate) tls: Option<Arc<crate::tls::CertStore>>,
    /// The OTLP exporter (`tracing:`), taken and run by the background service.
    pub(crate) trace_exporter: std::sync::Mutex<Option<crate::telemetry::trace::export::Exporter>>,
    config_path: Option<PathBuf>,
    /// The settings applied last; the lock also serializes reloads.
    applied: tokio::sync::Mutex<Settings>,
}

impl Process {
    /// The file reloads read (`None` when the gateway was built from settings in code).
    pub(crate) fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Reads the config file again and applies it; on error the old one keeps serving
    /// (the error is logged and counted).
    pub(crate) async fn reload_from_file(&self) -> Result<ReloadReport, ReloadRejected> {
        let Some(path) = &self.config_path else {
            return Err(ReloadRejected(
                "the gateway was not started from a config file".into(),
            ));
        };
        let result = match config::load(path) {
            Ok(settings) => self.reload(settings).await,
            Err(e) => Err(e),
        };
        result.map_err(|e| {
            reload_failed(&self.shared, &e);
            ReloadRejected(e.to_string())
        })
    }

    /// Applies new settings: builds a snapshot, warms up its providers, swaps it in. On
    /// any error the old configuration keeps serving and the error is returned.
    async fn reload(&self, settings: Settings) -> Result<ReloadReport, ConfigError> {
        let state = &*self.shared;
        let mut applied = self.applied.lock().await;
        let old = state.snapshot();
        let report = ReloadReport {
            routes: settings.routes.len(),
            providers_changed: applied
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
            needs_restart: restart_only_changes(&applied, &settings),
        };
        let (snapshot, live) = build(&settings, &state.metrics, &state.clock, &state.limiters)?;
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
        state
            .cache
            .set_stale_horizon(stale_horizon(&snapshot).max(stale_horizon(&old)));
        state.current.store(Arc::new(snapshot));
        // Unchanged policies kept their counters in the new routes; now they are the ones
        // a later reload compares with.
        state.limiters.commit(live);
        *applied = settings;
        // A reload (SIGHUP, the admin API, a changed file) also picks up rotated certificates.
        self.reload_certificates();
        state.metrics.config_last_reload_success.set(1);
        state
            .metrics
            .config_last_reload_success_time
            .set(unix_now());
        state
            .metrics
            .config_reloads
            .with_label_values(&["applied"])
            .inc();
        if !report.needs_restart.is_empty() {
            tracing::warn!(keys = ?report.needs_restart, "configuration reloaded, but these keys take effect only on restart");
        }
        tracing::info!(routes = report.routes, providers_changed = ?report.providers_changed, "configuration reloaded");
        Ok(report)
    }

    /// Reads the TLS certificate files again, as an explicit reload does (SIGHUP, the admin
    /// API, a config reload): a changed set that loads replaces the one in use, one that does
    /// not is logged and counted and the old one stays.
    pub(crate) fn reload_certificates(&self) {
        if let Some(store) = &self.tls {
            self.apply_certificates(store.reload());
        }
    }

    /// The periodic `tls.watch` check: as [`Process::reload_certificates`], but changed
    /// files are acted on once they have stayed the same for one more check, so files caught
    /// mid-write are neither loaded nor reported.
    pub(crate) fn check_certificates(&self) {
        if let Some(store) = &self.tls {
            self.apply_certificates(store.check());
        }
    }

    fn apply_certificates(&self, outcome: crate::tls::CertificateChange) {
        use crate::tls::CertificateChange;
        let Some(store) = &self.tls else { return };
        let reloads = &self.shared.metrics.tls_certificate_reloads;
        match outcome {
            CertificateChange::Unchanged
            | CertificateChange::StillRejected
            | CertificateChange::Settling => {}
            CertificateChange::Loaded => {
                reloads.with_label_values(&["loaded"]).inc();
                self.publish_certificates();
                let names: Vec<String> =
                    store.current().iter().map(|c| c.names.join(",")).collect();
                tracing::info!(certificates = ?names, "TLS certificates reloaded");
            }
            CertificateChange::Rejected(why) => {
                reloads.with_label_values(&["rejected"]).inc();
                tracing::error!(error = %why, "TLS certificate files changed but do not load; the previous certificates stay in use");
            }
        }
    }

    /// Sets the certificate expiry gauges from the certificates in use.
    pub(crate) fn publish_certificates(&self) {
        let Some(store) = &self.tls else { return };
        for (i, c) in store.current().iter().enumerate() {
            self.shared
                .metrics
                .tls_certificate_expiry
                .with_label_values(&[i.to_string().as_str()])
                .set(c.not_after);
        }
    }
}

fn reload_failed(state: &GatewayState, e: &ConfigError) {
    state.metrics.config_last_reload_success.set(0);
    state
        .metrics
        .config_reloads
        .with_label_values(&["rejected"])
        .inc();
    tracing::error!(error = %e, "configuration reload rejected; the previous configuration keeps serving");
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

/// The tracer and its exporter: an HTTP client like the providers' (system CAs plus
/// `ca_file`, no redirects: a collector's key must not follow one).
fn trace_pipeline(
    t: &crate::telemetry::trace::TraceSettings,
    metrics: &Metrics,
) -> Result<
    (
        Arc<crate::telemetry::trace::Tracer>,
        crate::telemetry::trace::export::Exporter,
    ),
    ConfigError,
> {
    let roots = match &t.ca_pem {
        Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ConfigError::at("tracing.ca_file", e.to_string()))?,
        None => Vec::new(),
    };
    let client = crate::identity::provider::http::client(
        t.timeout,
        roots,
        reqwest::redirect::Policy::none(),
    )
    .map_err(|e| ConfigError::at("tracing.endpoint", e.to_string()))?;
    Ok(crate::telemetry::trace::Tracer::new(
        t,
        client,
        metrics.trace.clone(),
    ))
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
    if old.decision != new.decision {
        out.push("decision");
    }
    if old.admin_api_listen != new.admin_api_listen {
        out.push("admin.listen");
    }
    if old.tls != new.tls {
        // Certificate *content* is reloaded live (`tls.watch`, or any reload).
        out.push("tls");
    }
    if old.h2c != new.h2c {
        out.push("h2c");
    }
    if old.connections.http2_max_concurrent_streams != new.connections.http2_max_concurrent_streams
    {
        // HTTP/2's settings are fixed when the server starts.
        out.push("connections.http2_max_concurrent_streams");
    }
    if old.threads != new.threads {
        out.push("threads");
    }
    if old.work_stealing != new.work_stealing {
        out.push("work_stealing");
    }
    if old.direct_path != new.direct_path {
        out.push("direct_path");
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
    if old.cluster != new.cluster {
        out.push("cluster");
    }
    if old.tracing != new.tracing {
        out.push("tracing");
    }
    if old.log.level != new.log.level || old.log.format != new.log.format {
        out.push("log");
    }
    out
}

/// Builds a snapshot: wraps providers (metrics, protection), resolves upstream host names
/// once, creates metric series, gives routes their rate limits' counters (those of an
/// unchanged policy are `limiters`' own; the live policies are returned for
/// [`crate::limits::Limiters::commit`] once the snapshot is in force).
pub fn build(
    settings: &Settings,
    metrics: &Metrics,
    clock: &SharedClock,
    limiters: &crate::limits::Limiters,
) -> Result<(Snapshot, Vec<Arc<crate::limits::LivePolicy>>), ConfigError> {
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
    let live = limiters.prepare(&settings.rate_limits);
    let routes: Vec<Route> = settings
        .routes
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let series = RouteSeries::new(metrics, &spec.name, Outcome::COUNT);
            let mut route = Route::resolve(spec.clone(), &by_name, &upstreams, series)
                .map_err(|e| ConfigError::at(format!("routes[{i}]"), e.to_string()))?;
            route.limits = spec
                .rate_limits
                .iter()
                .filter_map(|s| live.iter().find(|l| l.spec == *s).cloned())
                .collect();
            Ok(route)
        })
        .collect::<Result<_, ConfigError>>()?;
    let upstreams: Vec<&str> = routes
        .iter()
        .filter_map(|r| match &r.upstream {
            UpstreamTarget::Http(u) => Some(u.name.as_str()),
            UpstreamTarget::Echo | UpstreamTarget::FrontProxyOnly => None,
        })
        .collect();
    metrics.init_series(
        routes.iter().map(|r| &**r.name()),
        providers.iter().map(|p| &**p.name()),
        upstreams,
        &crate::telemetry::metrics::FixedLabels {
            cache_results: &crate::identity::cache::CacheStatus::ALL,
            rejection_reasons: crate::decision::canonical::Rejection::REASONS,
        },
    );
    for r in &routes {
        let name = &**r.name();
        if r.auth_duration_applies() {
            metrics.auth_duration.with_label_values(&[name]);
        }
        for l in &r.limits {
            let mode = crate::decision::limit::effective_mode(r, &l.spec).as_str();
            metrics
                .rate_limited
                .with_label_values(&[name, &*l.spec.name, mode]);
            metrics.rate_limit_keys.with_label_values(&[&*l.spec.name]);
        }
        for rule in &r.spec.rules.list {
            metrics.rule_denials.with_label_values(&[name, &*rule.name]);
            metrics.rule_errors.with_label_values(&[name, &*rule.name]);
        }
        if r.spec.policy.mode == Mode::Report {
            for kind in DenialKind::ALL.into_iter().filter(|k| !k.always_enforced()) {
                metrics.would_deny.with_label_values(&[name, kind.as_str()]);
            }
        }
        if let (RouteAuth::Providers(list), false) = (&r.auth, r.spec.stale_if_error.is_zero()) {
            for p in list {
                metrics.stale_served.with_label_values(&[name, &**p.name()]);
            }
        }
    }
    Ok((
        Snapshot {
            routes: RouteTable::new(routes, settings.requests.case_insensitive_paths),
            providers,
            identity_headers: settings.identity_headers.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            hygiene: settings.requests.hygiene.clone(),
            connections: settings.connections,
            jwks: crate::identity::assertion::jwks(&settings.assertion_keys),
            admin_token: settings.admin_token.clone(),
        },
        live,
    ))
}
