//! The `cluster:` section, resolved, and the keys its shared secret derives.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{RateLimitSettings, SharedCacheSettings};
use crate::secret::Secret;

/// The `cluster:` section, resolved.
#[derive(Clone)]
pub(crate) struct ClusterSettings {
    /// `redis://` or `rediss://` (TLS), without a password.
    pub(crate) url: String,
    pub(crate) password: Option<Secret>,
    /// Longest wait for a connection.
    pub(crate) connect_timeout: Duration,
    /// Longest wait for one command (a purge waits at most this for its publication).
    pub(crate) command_timeout: Duration,
    /// The secret every replica shares; keys token keys and purge names.
    pub(crate) key_secret: Secret,
    /// The stream's key.
    pub(crate) stream: String,
    /// The stream is trimmed (approximately) to this many entries.
    pub(crate) max_entries: u64,
    /// The shared identity cache; `None`: replicas share revocations only.
    pub(crate) shared_cache: Option<SharedCacheSettings>,
    /// Rate limits counted across replicas; `None`: each replica counts alone.
    pub(crate) rate_limits: Option<RateLimitSettings>,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("url", &self.url)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("stream", &self.stream)
            .field("max_entries", &self.max_entries)
            .field("shared_cache", &self.shared_cache)
            .field("rate_limits", &self.rate_limits)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClusterSettings {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
            && self.password.as_ref().map(Secret::expose)
                == other.password.as_ref().map(Secret::expose)
            && self.connect_timeout == other.connect_timeout
            && self.command_timeout == other.command_timeout
            && self.key_secret.expose() == other.key_secret.expose()
            && self.stream == other.stream
            && self.max_entries == other.max_entries
            && self.shared_cache == other.shared_cache
            && self.rate_limits == other.rate_limits
    }
}

impl ClusterSettings {
    /// A 32-byte key for one use (`label`), derived from the shared secret.
    pub(crate) fn derive_key(&self, label: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key_secret.expose().as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(b"sessiongate cluster key: ");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}
