//! What the proxy and the admin listener share while running.
//!
//! [`GatewayState`] lives as long as the process: the identity cache, the token hasher,
//! minted assertions, metrics and the clock. What a configuration defines — routes,
//! providers, header settings, the admin token — is a [`Snapshot`] behind an `ArcSwap`:
//! a reload builds a new snapshot and swaps it in whole. Each request takes the snapshot
//! once when it starts and keeps it to the end, so in-flight requests finish under the
//! configuration they began with.
//!
//! Building a snapshot from a configuration is the assembly's job ([`crate::state`]), one
//! stage up: the request path reaches it only through the [`Reload`] trait, so nothing
//! here imports the config.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;

use crate::clock::SharedClock;
use crate::identity::cache::IdentityCache;
use crate::identity::token::TokenHasher;
use crate::proxy::assertion::AssertionCache;
use crate::proxy::canonical::HeaderHygiene;
use crate::proxy::forwarded::TrustedProxies;
use crate::proxy::headers::IdentityHeaders;
use crate::proxy::route::{ProviderEntry, RouteTable};
use crate::secret::Secret;
use crate::telemetry::metrics::Metrics;

/// `connections:` — limits on downstream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// An idle keep-alive connection (between requests) is closed after this.
    pub idle_timeout: Duration,
    /// Longest pause while a request body is being received.
    pub body_idle_timeout: Duration,
    /// Connections open at once on the proxy listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// A tunnel (WebSocket, after `101`) with no byte either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// A tunnel is closed this long after it opened, busy or not (`None`: never) — the
    /// bound on how long a connection outlives the identity checked at its upgrade.
    pub tunnel_max_duration: Option<Duration>,
    /// Streams open at once on one HTTP/2 connection (what a stalled reader can pin is
    /// this many streams' response buffers, until `body_idle_timeout` resets them).
    pub http2_max_concurrent_streams: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            tunnel_idle_timeout: Duration::from_secs(3600),
            tunnel_max_duration: None,
            http2_max_concurrent_streams: 100,
        }
    }
}

/// One configuration, built.
pub struct Snapshot {
    pub routes: RouteTable,
    /// Every configured provider (for purges by token), in name order.
    pub providers: Vec<Arc<ProviderEntry>>,
    pub identity_headers: IdentityHeaders,
    pub trusted_proxies: TrustedProxies,
    /// `requests.*`: which client headers are refused or stripped.
    pub hygiene: HeaderHygiene,
    /// `connections:` (read when a connection opens).
    pub connections: ConnectionLimits,
    /// The JWKS document of the assertion keys, served by the admin listener.
    pub jwks: Vec<u8>,
    pub admin_token: Option<Secret>,
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

/// Why a reload was not applied (the old configuration keeps serving).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReloadRejected(pub String);

/// Applies the configuration file again. Implemented by the assembly
/// ([`crate::state::ConfigReloader`]), which reads and validates the file, builds a
/// [`Snapshot`] and swaps it into the state it is given.
#[async_trait]
pub trait Reload: Send + Sync {
    async fn reload_from_file(&self, state: &GatewayState) -> Result<ReloadReport, ReloadRejected>;

    /// The file reloads read (`None` when the gateway was built from settings in code).
    fn config_path(&self) -> Option<&Path>;
}

/// Everything the proxy and the admin listener share.
pub struct GatewayState {
    pub current: ArcSwap<Snapshot>,
    pub cache: IdentityCache,
    pub hasher: TokenHasher,
    /// The replicas' shared revocation stream (`cluster:`), when configured.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The TLS listener's certificates (`tls:`), reloaded in place.
    pub tls: Option<Arc<crate::tls::CertStore>>,
    /// Verified client certificates of open TLS connections (`tls.client_certificates`).
    pub client_certs: Arc<crate::tls::ClientCertRegistry>,
    pub assertions: AssertionCache,
    pub metrics: Metrics,
    pub clock: SharedClock,
    pub reloader: Box<dyn Reload>,
}

impl GatewayState {
    /// The configuration in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads the config file again and applies it; on error the old one keeps serving.
    pub async fn reload_from_file(&self) -> Result<ReloadReport, ReloadRejected> {
        self.reloader.reload_from_file(self).await
    }

    /// Reads the TLS certificate files again, as an explicit reload does (SIGHUP, the admin
    /// API, a config reload): a changed set that loads replaces the one in use, one that does
    /// not is logged and counted and the old one stays.
    pub fn reload_certificates(&self) {
        if let Some(store) = &self.tls {
            self.apply_certificates(store.reload());
        }
    }

    /// The periodic `tls.watch` check: as [`GatewayState::reload_certificates`], but changed
    /// files are acted on once they have stayed the same for one more check, so files caught
    /// mid-write are neither loaded nor reported.
    pub fn check_certificates(&self) {
        if let Some(store) = &self.tls {
            self.apply_certificates(store.check());
        }
    }

    fn apply_certificates(&self, outcome: crate::tls::CertificateChange) {
        use crate::tls::CertificateChange;
        let Some(store) = &self.tls else { return };
        let reloads = &self.metrics.tls_certificate_reloads;
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
    pub fn publish_certificates(&self) {
        let Some(store) = &self.tls else { return };
        for (i, c) in store.current().iter().enumerate() {
            self.metrics
                .tls_certificate_expiry
                .with_label_values(&[i.to_string().as_str()])
                .set(c.not_after);
        }
    }

    /// The file reloads read.
    pub fn config_path(&self) -> Option<&Path> {
        self.reloader.config_path()
    }
}
