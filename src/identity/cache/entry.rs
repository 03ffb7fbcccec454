//! One cached identity, its freshness windows, and the moka expiry policy that stores it
//! exactly as long as it may still serve (fresh or stale).

use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;

use crate::identity::provider::ProviderId;
use crate::identity::token::TokenKey;
use crate::identity::Identity;

/// One cached identity and its freshness. Times after `fetched_at` are kept as
/// milliseconds (`u32`: up to 49 days, more than any sensible ttl) to keep entries small.
#[derive(Debug, Clone)]
pub(crate) struct CachedIdentity {
    pub(crate) identity: Identity,
    /// The provider that resolved it (config name and definition fingerprint).
    pub(crate) provider: ProviderId,
    /// When the provider answered.
    pub(crate) fetched_at: SystemTime,
    /// Served without asking the provider for this long: `min(ttl, time to expiry)`.
    pub(super) fresh_ms: u32,
    /// From this offset on a use starts a background refresh (`u32::MAX`: never).
    pub(super) refresh_ms: u32,
    /// How long moka stores the entry (freshness plus the longest stale budget, never
    /// past the identity's expiry).
    pub(super) keep_ms: u32,
    /// Taken from the tier replicas share rather than from this replica's provider call
    /// (fits in the padding: entries stay the same size).
    pub(super) from_shared: bool,
}

pub(super) fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX - 1)
}

impl CachedIdentity {
    /// Served without asking the provider until then.
    pub(crate) fn fresh_until(&self) -> SystemTime {
        self.fetched_at + Duration::from_millis(self.fresh_ms.into())
    }

    pub(super) fn refresh_at(&self) -> Option<SystemTime> {
        (self.refresh_ms != u32::MAX)
            .then(|| self.fetched_at + Duration::from_millis(self.refresh_ms.into()))
    }

    pub(super) fn keep_for(&self) -> Duration {
        Duration::from_millis(self.keep_ms.into())
    }
}

/// moka's expiry policy: an entry is stored for its own `keep_for`.
pub(super) struct KeepFor;

impl Expiry<TokenKey, CachedIdentity> for KeepFor {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &CachedIdentity,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_for())
    }

    fn expire_after_update(
        &self,
        _key: &TokenKey,
        value: &CachedIdentity,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_for())
    }
}
