//! Shared identities as Redis holds them: sealed (AES-256-GCM) with a key derived from the
//! token itself, so a Redis dump — or anyone with write access to Redis — can neither read
//! an identity nor forge one without the token.
//!
//! - Value key: `HMAC-SHA256(cluster key "identity values", provider name and fingerprint,
//!   token)`: different for every token and provider definition; the cluster secret is in
//!   it too, so a token alone does not open a value either.
//! - Layout: version byte `1`, a random 96-bit nonce, then the ciphertext and its tag. The
//!   Redis key the value is stored under is authenticated with it (a value moved to another
//!   key does not open).
//! - Plaintext: a small JSON object (`f` fetched at, Unix ms; then either `x` an invalid
//!   reason, or the identity's fields and `g`, the revocation stream's epoch the sealing
//!   replica was reading: a value from before the stream was lost is told apart exactly).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::identity::provider::{InvalidReason, ProviderId};
use crate::identity::{Claim, Identity, IdentityParts};

const VERSION: u8 = 1;

/// What a shared value says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opened {
    Valid {
        identity: Identity,
        fetched_at: SystemTime,
        /// The revocation stream's epoch when it was sealed (`None`: not known then).
        epoch: Option<String>,
    },
    Invalid(InvalidReason),
}

/// A claim as stored: `[name, text]` for a forwarded string (what every version wrote),
/// `[name, value, flags]` otherwise (flags: 1 JSON, 2 forwarded). A replica of a version
/// before typed claims does not read the second form, so it takes the value as a miss and
/// asks the provider: never a claim of the wrong type.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredClaim {
    Typed(String, String, u8),
    Text(String, String),
}

impl From<Claim> for StoredClaim {
    fn from(c: Claim) -> Self {
        if !c.json && c.forward {
            StoredClaim::Text(c.name, c.value)
        } else {
            StoredClaim::Typed(
                c.name,
                c.value,
                u8::from(c.json) | (2 * u8::from(c.forward)),
            )
        }
    }
}

impl From<StoredClaim> for Claim {
    fn from(c: StoredClaim) -> Self {
        match c {
            StoredClaim::Text(name, value) => Claim::text(name, value),
            StoredClaim::Typed(name, value, flags) => Claim {
                name,
                value,
                json: flags & 1 != 0,
                forward: flags & 2 != 0,
            },
        }
    }
}

/// Seals and opens shared values with keys derived from the token.
pub(crate) struct Sealer {
    mac: Hmac<Sha256>,
}

#[derive(Serialize, Deserialize, Default)]
struct Stored {
    /// When the provider answered (Unix ms).
    f: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    s: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sc: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ip: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    o: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    c: Vec<StoredClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    g: Option<String>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn reason_code(r: InvalidReason) -> String {
    match r {
        InvalidReason::Unknown => "unknown".into(),
        InvalidReason::Inactive => "inactive".into(),
        InvalidReason::Expired => "expired".into(),
        InvalidReason::RejectedStatus(s) => format!("status:{s}"),
    }
}

fn parse_reason(code: &str) -> Option<InvalidReason> {
    Some(match code {
        "unknown" => InvalidReason::Unknown,
        "inactive" => InvalidReason::Inactive,
        "expired" => InvalidReason::Expired,
        _ => InvalidReason::RejectedStatus(code.strip_prefix("status:")?.parse().ok()?),
    })
}

impl Sealer {
    /// `key`: the cluster's derived key for identity values.
    pub fn new(key: &[u8; 32]) -> Self {
        Sealer {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length"),
        }
    }

    fn key(&self, provider: &ProviderId, token: &str) -> LessSafeKey {
        let mut mac = self.mac.clone();
        mac.update(&provider.fingerprint().to_be_bytes());
        mac.update(provider.name().as_bytes());
        mac.update(&[0]);
        mac.update(token.as_bytes());
        let bytes = mac.finalize().into_bytes();
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("a 32-byte key"))
    }

    /// The sealed value for an identity (`fetched_at`: when its provider answered;
    /// `epoch`: the revocation stream's epoch this replica reads, if it knows it).
    pub(crate) fn seal_identity(
        &self,
        provider: &ProviderId,
        token: &str,
        redis_key: &str,
        identity: &Identity,
        fetched_at: SystemTime,
        epoch: Option<&str>,
    ) -> Vec<u8> {
        let p = identity.to_parts();
        let stored = Stored {
            f: unix_ms(fetched_at),
            x: None,
            s: p.subject,
            i: p.session_id,
            sc: p.scopes,
            e: p.expires_at.map(unix_ms),
            ip: p.ip_restrict,
            o: p.organizations,
            c: p.claims.into_iter().map(StoredClaim::from).collect(),
            g: epoch.map(str::to_string),
        };
        self.seal(provider, token, redis_key, &stored)
    }

    /// The sealed value for "this token is not valid".
    pub(crate) fn seal_invalid(
        &self,
        provider: &ProviderId,
        token: &str,
        redis_key: &str,
        reason: InvalidReason,
        at: SystemTime,
    ) -> Vec<u8> {
        let stored = Stored {
            f: unix_ms(at),
            x: Some(reason_code(reason)),
            ..Stored::default()
        };
        self.seal(provider, token, redis_key, &stored)
    }

    fn seal(
        &self,
        provider: &ProviderId,
        token: &str,
        redis_key: &str,
        stored: &Stored,
    ) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + 256);
        out.push(VERSION);
        out.extend_from_slice(&nonce_bytes);
        let mut body = serde_json::to_vec(stored).unwrap_or_default();
        self.key(provider, token)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(redis_key.as_bytes()),
                &mut body,
            )
            .expect("AES-GCM seals any length Redis can hold");
        out.extend_from_slice(&body);
        out
    }

    /// What a sealed value says; `None` when it does not open (another token, a changed
    /// provider definition, a different cluster secret, or tampering) or makes no sense.
    pub(crate) fn open(
        &self,
        provider: &ProviderId,
        token: &str,
        redis_key: &str,
        sealed: &[u8],
    ) -> Option<Opened> {
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let mut body = body.to_vec();
        let plain = self
            .key(provider, token)
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(redis_key.as_bytes()),
                &mut body,
            )
            .ok()?;
        let stored: Stored = serde_json::from_slice(plain).ok()?;
        if let Some(code) = &stored.x {
            return parse_reason(code).map(Opened::Invalid);
        }
        if stored.s.is_empty() {
            return None;
        }
        let identity: Identity = IdentityParts {
            subject: stored.s,
            session_id: stored.i,
            scopes: stored.sc,
            expires_at: stored.e.map(from_unix_ms),
            ip_restrict: stored.ip,
            organizations: stored.o,
            claims: stored.c.into_iter().map(Claim::from).collect(),
        }
        .into();
        Some(Opened::Valid {
            identity,
            fetched_at: from_unix_ms(stored.f),
            epoch: stored.g,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        IdentityParts {
            subject: "user-secret-subject".into(),
            session_id: Some("session-secret-id".into()),
            scopes: vec!["wallet_spend:abc".into(), "openid".into()],
            expires_at: Some(from_unix_ms(4_000_000_000_000)),
            ip_restrict: vec!["10.0.0.0/8".into()],
            organizations: vec!["org-1".into()],
            claims: vec![
                Claim::text("email", "a@example.com"),
                Claim {
                    json: true,
                    forward: false,
                    ..Claim::text("until", "1893456000")
                },
            ],
        }
        .into()
    }

    #[test]
    fn a_sealed_identity_opens_only_with_its_token_key_and_provider() {
        let sealer = Sealer::new(&[7; 32]);
        let p = ProviderId::new("bitgo", 42);
        let at = from_unix_ms(1_700_000_000_123);
        let sealed = sealer.seal_identity(&p, "tok-1", "k:1", &identity(), at, Some("ep0ch"));
        assert_eq!(
            sealer.open(&p, "tok-1", "k:1", &sealed),
            Some(Opened::Valid {
                identity: identity(),
                fetched_at: at,
                epoch: Some("ep0ch".into()),
            })
        );
        // Nothing in clear.
        let text = String::from_utf8_lossy(&sealed);
        for secret in [
            "user-secret",
            "session-secret",
            "wallet_spend",
            "10.0.0.0",
            "org-1",
            "example.com",
        ] {
            assert!(!text.contains(secret), "{secret} in clear");
        }
        // Another token, another provider definition, another key, another secret.
        assert_eq!(sealer.open(&p, "tok-2", "k:1", &sealed), None);
        assert_eq!(
            sealer.open(&ProviderId::new("bitgo", 43), "tok-1", "k:1", &sealed),
            None
        );
        assert_eq!(sealer.open(&p, "tok-1", "k:2", &sealed), None);
        assert_eq!(
            Sealer::new(&[8; 32]).open(&p, "tok-1", "k:1", &sealed),
            None
        );
        // Any changed byte, a truncation, garbage.
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(sealer.open(&p, "tok-1", "k:1", &t), None, "byte {i}");
        }
        assert_eq!(
            sealer.open(&p, "tok-1", "k:1", &sealed[..sealed.len() - 1]),
            None
        );
        assert_eq!(sealer.open(&p, "tok-1", "k:1", b""), None);
        assert_eq!(sealer.open(&p, "tok-1", "k:1", b"\x01short"), None);
    }

    #[test]
    fn invalid_answers_round_trip() {
        let sealer = Sealer::new(&[1; 32]);
        let p = ProviderId::new("p", 1);
        for r in [
            InvalidReason::Unknown,
            InvalidReason::Inactive,
            InvalidReason::Expired,
            InvalidReason::RejectedStatus(401),
        ] {
            let sealed = sealer.seal_invalid(&p, "t", "k", r, SystemTime::now());
            assert_eq!(sealer.open(&p, "t", "k", &sealed), Some(Opened::Invalid(r)));
        }
    }
}
