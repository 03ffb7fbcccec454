//! `Identity`: who a token belongs to, as resolved by an identity provider.
//!
//! Pingora calls each HTTP exchange a "session", and several providers call their token
//! record a "session" too; to keep the words apart, the thing a token resolves to is an
//! *identity* everywhere in this crate, its config and its docs. The provider's own session
//! id is kept as [`Identity::session_id`].
//!
//! This folder holds everything between a bearer token and an identity: [`token`]
//! (reading it, its keyed hash), [`cache`] and the [`provider`] kinds. It is heavier than
//! the request path's own folder (`proxy/`) for one reason: each provider kind (static,
//! HTTP presets and their response mapping, JWT with JWKS refresh, the breaker) is its
//! own file. The request path meets only `IdentityCache::lookup` and `Provider::resolve`.

pub mod cache;
pub mod provider;
pub mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which provider, in which definition: its config name and a fingerprint of its
/// definition as written. Token keys are derived from both, so cached identities survive a
/// reload exactly while the provider's definition is unchanged (a changed provider starts
/// from an empty cache). Cloning is one reference count; `Display` shows the name only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProviderId(Arc<(Arc<str>, u64)>);

impl ProviderId {
    pub fn new(name: impl Into<Arc<str>>, fingerprint: u64) -> Self {
        ProviderId(Arc::new((name.into(), fingerprint)))
    }

    /// The config name (metric labels, logs, purge filters).
    pub fn name(&self) -> &Arc<str> {
        &self.0 .0
    }

    pub fn fingerprint(&self) -> u64 {
        self.0 .1
    }
}

impl std::fmt::Debug for ProviderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{:016x}", self.name(), self.fingerprint())
    }
}

impl std::fmt::Display for ProviderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The normalized result of resolving a token (see `PROVIDERS.md`, "Normalization").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The user or client the token belongs to.
    pub subject: String,
    /// The provider's id for the token / login session, when it has one.
    pub session_id: Option<String>,
    /// Granted scopes, exactly as the provider spells them (`wallet_spend:<id>` included).
    pub scopes: Vec<String>,
    /// When the token stops being valid, if the provider says.
    pub expires_at: Option<SystemTime>,
    /// Client addresses / CIDR blocks the identity may be used from (empty: any). Kept as
    /// the provider wrote them; the policy parses them and fails closed on garbage.
    pub ip_restrict: Vec<String>,
    /// Organizations / enterprises the subject belongs to.
    pub organizations: Vec<String>,
    /// Extra provider values the config asked to forward: (claim name, text).
    pub claims: Vec<(String, String)>,
}

impl Identity {
    /// True when the identity carries an expiry that is at or before `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now)
    }

    /// Time left until expiry as seen at `now`; `None` when the identity has no expiry.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|exp| exp.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Expiry as whole Unix seconds, for the `Expires` identity header.
    pub fn expires_unix(&self) -> Option<u64> {
        self.expires_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_helpers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut id = Identity::default();
        assert!(!id.is_expired_at(now));
        assert_eq!(id.remaining(now), None);
        id.expires_at = Some(now + Duration::from_secs(30));
        assert!(!id.is_expired_at(now));
        assert_eq!(id.remaining(now), Some(Duration::from_secs(30)));
        assert_eq!(id.expires_unix(), Some(1_030));
        id.expires_at = Some(now);
        assert!(id.is_expired_at(now));
        assert_eq!(id.remaining(now), Some(Duration::ZERO));
    }
}
