//! `kind: static`: tokens and their identities listed in the config, for trials, tests and
//! service tokens. Tokens are held only as SHA-256 digests, so the config may give the digest
//! (`token_sha256`) instead of the secret.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::clock::SharedClock;
use sha2::{Digest, Sha256};

use super::{InvalidReason, Provider, ProviderError, Resolution};
use crate::identity::Identity;

/// A provider that answers from a fixed table.
#[derive(Debug)]
pub(crate) struct StaticProvider {
    by_digest: HashMap<[u8; 32], Identity>,
    clock: SharedClock,
}

/// SHA-256 of a token, as the static table keys it.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl StaticProvider {
    /// Builds the table from (digest, identity) pairs.
    pub fn new(
        entries: impl IntoIterator<Item = ([u8; 32], Identity)>,
        clock: SharedClock,
    ) -> Self {
        StaticProvider {
            by_digest: entries.into_iter().collect(),
            clock,
        }
    }
}

#[async_trait]
impl Provider for StaticProvider {
    fn kind(&self) -> &'static str {
        "static"
    }

    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        Ok(match self.by_digest.get(&token_digest(token)) {
            Some(id) if id.is_expired_at(self.clock.now()) => {
                Resolution::Invalid(InvalidReason::Expired)
            }
            Some(id) => Resolution::Valid(id.clone()),
            None => Resolution::Invalid(InvalidReason::Unknown),
        })
    }
}

/// `kind: client_certificate`: the "token" is the id of the connection's verified client
/// certificate (URI SAN, DNS SAN or CN; see `tls::client_cert`), never a header value:
/// routes that use this kind read only `client_certificate` (checked in the config).
#[derive(Debug)]
pub(crate) struct ClientCertificateProvider {
    by_id: HashMap<String, Identity>,
    allow_unlisted: bool,
}

impl ClientCertificateProvider {
    pub fn new(
        clients: impl IntoIterator<Item = (String, Identity)>,
        allow_unlisted: bool,
    ) -> Self {
        ClientCertificateProvider {
            by_id: clients.into_iter().collect(),
            allow_unlisted,
        }
    }
}

#[async_trait]
impl Provider for ClientCertificateProvider {
    fn kind(&self) -> &'static str {
        "client_certificate"
    }

    async fn resolve(&self, id: &str) -> Result<Resolution, ProviderError> {
        Ok(match self.by_id.get(id) {
            Some(identity) => Resolution::Valid(identity.clone()),
            None if self.allow_unlisted => Resolution::Valid(
                crate::identity::IdentityParts {
                    subject: id.to_string(),
                    ..Default::default()
                }
                .into(),
            ),
            None => Resolution::Invalid(InvalidReason::Unknown),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::identity::IdentityParts;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn answers_from_the_table_judging_expiry_on_its_clock() {
        let clock = ManualClock::new();
        let alice: Identity = IdentityParts {
            subject: "alice".into(),
            ..Default::default()
        }
        .into();
        let old: Identity = IdentityParts {
            subject: "old".into(),
            expires_at: Some(clock.now() + Duration::from_secs(10)),
            ..Default::default()
        }
        .into();
        let p = StaticProvider::new(
            [
                (token_digest("t-alice"), alice.clone()),
                (token_digest("t-old"), old.clone()),
            ],
            Arc::new(clock.clone()),
        );
        assert_eq!(p.resolve("t-alice").await, Ok(Resolution::Valid(alice)));
        assert_eq!(p.resolve("t-old").await, Ok(Resolution::Valid(old)));
        clock.advance(Duration::from_secs(11));
        assert_eq!(
            p.resolve("t-old").await,
            Ok(Resolution::Invalid(InvalidReason::Expired))
        );
        assert_eq!(
            p.resolve("nope").await,
            Ok(Resolution::Invalid(InvalidReason::Unknown))
        );
    }
}
