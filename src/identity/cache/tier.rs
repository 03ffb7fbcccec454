//! The tier replicas share (the cluster's Redis), asked on a local miss before the
//! provider. The cache only knows this interface; `crate::cluster` implements it.
//!
//! Its contract, which the cache relies on:
//! - `find` never takes longer than its own bounded wait, and answers `Nothing` whenever
//!   the tier is unreachable, slow, or holds something it cannot open: the cache then
//!   calls the provider as it would alone.
//! - `store` never blocks the request: it prepares what to write and sends it in the
//!   background.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::identity::cache::NameHash;
use crate::identity::provider::{InvalidReason, ProviderId};
use crate::identity::token::TokenKey;
use crate::identity::Identity;

/// The token a shared lookup is about.
pub(crate) struct SharedQuery<'a> {
    pub(crate) key: TokenKey,
    /// Needed to open (and seal) the shared value: without the token, a stored identity
    /// cannot be read or forged.
    pub(crate) token: &'a str,
    pub(crate) provider: &'a ProviderId,
}

/// What the shared tier knew.
#[derive(Debug)]
pub(crate) enum SharedFind {
    /// Another replica resolved the token (at `fetched_at`, by the provider's answer).
    Valid {
        identity: Identity,
        fetched_at: SystemTime,
    },
    /// Another replica was told the token is not valid.
    Invalid(InvalidReason),
    /// Call the provider. `claimed`: this replica now holds the token's claim, and must
    /// hand the answer to [`SharedTier::store`] (which releases it).
    Nothing { claimed: bool },
}

/// What the provider answered, for the other replicas.
pub(crate) enum SharedAnswer<'a> {
    Valid {
        identity: &'a Identity,
        fetched_at: SystemTime,
        /// How long it may be served: `min(cache.ttl, time to the identity's expiry)`.
        ttl: Duration,
        /// The keyed hashes of its subject and session id (purges by name reach it).
        names: [Option<NameHash>; 2],
    },
    Invalid {
        reason: InvalidReason,
        ttl: Duration,
    },
    /// The provider failed: nothing to share; the claim (if held) is released so another
    /// replica may try.
    Failed,
}

#[async_trait]
pub(crate) trait SharedTier: Send + Sync {
    /// What another replica resolved for this token. With `newer_than` (a background
    /// refresh), an answer fetched at or before it counts as nothing; so does an identity
    /// `trusted` refuses (given it and when the provider answered: sealed before a purge
    /// that reached it). While another replica holds the token's claim, waits (bounded)
    /// for its answer.
    async fn find(
        &self,
        query: &SharedQuery<'_>,
        newer_than: Option<SystemTime>,
        trusted: &(dyn for<'i> Fn(&'i Identity, SystemTime) -> bool + Sync),
    ) -> SharedFind;

    /// Shares the provider's answer and releases the claim when `claimed`. Returns at
    /// once; the write happens in the background.
    fn store(&self, query: &SharedQuery<'_>, answer: SharedAnswer<'_>, claimed: bool);
}
