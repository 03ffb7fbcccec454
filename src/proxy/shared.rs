//! What the proxy and the admin listener share while running.
//!
//! [`GatewayState`] lives as long as the process: the identity cache, the token hasher,
//! minted assertions, metrics and the clock. What a configuration defines — routes,
//! providers, header settings, the admin token — is a [`Snapshot`] behind an `ArcSwap`:
//! a reload builds a new snapshot and swaps it in whole. Each request takes the snapshot
//! once when it starts and keeps it to the end, so in-flight requests finish under the
//! configuration they began with.
//!
//! Building a snapshot from a configuration, reloading it, and what only the process as a
//! whole has — the cluster link, the TLS certificate store — are the assembly's
//! ([`crate::state::Process`]); nothing here imports the config or asks for a reload.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::SharedClock;
use crate::decision::canonical::HeaderHygiene;
use crate::decision::client::TrustedProxies;
use crate::decision::route::{ProviderEntry, RouteTable};
use crate::decision::Decider;
use crate::identity::assertion::AssertionCache;
use crate::identity::cache::IdentityCache;
use crate::identity::token::TokenHasher;
use crate::proxy::headers::IdentityHeaders;
use crate::secret::Secret;
use crate::telemetry::metrics::Metrics;

/// `connections:` — limits on downstream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// From the first byte of a request to the end of its headers.
    pub(crate) header_timeout: Duration,
    /// An idle keep-alive connection (between requests) is closed after this.
    pub(crate) idle_timeout: Duration,
    /// Longest pause while a request body is being received.
    pub(crate) body_idle_timeout: Duration,
    /// Connections open at once on the proxy listener; more are answered 503 and closed.
    pub(crate) max_connections: usize,
    /// A tunnel (WebSocket, after `101`) with no byte either way for this long is closed.
    pub(crate) tunnel_idle_timeout: Duration,
    /// A tunnel is closed this long after it opened, busy or not (`None`: never) — the
    /// bound on how long a connection outlives the identity checked at its upgrade.
    pub(crate) tunnel_max_duration: Option<Duration>,
    /// Streams open at once on one HTTP/2 connection (what a stalled reader can pin is
    /// this many streams' response buffers, until `body_idle_timeout` resets them).
    pub(crate) http2_max_concurrent_streams: u32,
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
    pub(crate) routes: RouteTable,
    /// Every configured provider (for purges by token), in name order.
    pub(crate) providers: Vec<Arc<ProviderEntry>>,
    pub(crate) identity_headers: IdentityHeaders,
    pub(crate) trusted_proxies: TrustedProxies,
    /// `requests.*`: which client headers are refused or stripped.
    pub(crate) hygiene: HeaderHygiene,
    /// `connections:` (read when a connection opens).
    pub(crate) connections: ConnectionLimits,
    /// The JWKS document of the assertion keys, served by the admin listener.
    pub(crate) jwks: Vec<u8>,
    pub(crate) admin_token: Option<Secret>,
}

/// Everything the proxy and the admin listener share.
pub struct GatewayState {
    pub(crate) current: ArcSwap<Snapshot>,
    pub(crate) cache: IdentityCache,
    pub(crate) hasher: TokenHasher,
    /// Verified client certificates of open TLS connections (`tls.client_certificates`).
    pub(crate) client_certs: Arc<crate::tls::ClientCertRegistry>,
    pub(crate) assertions: AssertionCache,
    pub(crate) metrics: Metrics,
    pub(crate) clock: SharedClock,
    /// The rate limits' counters, kept across reloads for unchanged policies.
    pub(crate) limiters: crate::limits::Limiters,
    /// `tracing:`: sampling and the span queue; `None`: no traces (restart-only).
    pub(crate) tracer: Option<Arc<crate::telemetry::trace::Tracer>>,
}

impl GatewayState {
    /// The configuration in force now.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// What a decision reads: `snap`'s routes and trusted proxies, this state's cache,
    /// hasher and clock.
    pub(crate) fn decider<'a>(&'a self, snap: &'a Snapshot) -> Decider<'a> {
        Decider {
            routes: &snap.routes,
            trusted_proxies: &snap.trusted_proxies,
            cache: &self.cache,
            hasher: &self.hasher,
            clock: &self.clock,
            limiters: &self.limiters,
            count_limits: true,
            deciding: false,
        }
    }
}
