//! Signed identity assertions for upstreams: a short-lived JWT carrying the identity, set
//! on the upstream request, so an upstream can verify who the caller is instead of
//! trusting plain headers. The public keys are served as a JWKS on the admin listener
//! (`/.well-known/jwks.json`), every configured key at once, so keys can rotate.
//!
//! Minted assertions are cached per (token, route) until shortly before they expire:
//! signing on every request was Oathkeeper's bottleneck (their issue #364).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use moka::future::Cache;
use serde_json::{json, Value};

use crate::clock::SharedClock;
use crate::identity::token::TokenKey;
use crate::identity::{Identity, IdentityRef};
use crate::wire_name::WireName;

/// A private key the gateway signs assertions with, and its public JWK.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) algorithm: Algorithm,
    encoding: EncodingKey,
    pub(crate) public_jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// Reads a PEM private key for `algorithm` (ES256: P-256 PKCS#8 or SEC1; EdDSA:
    /// Ed25519 PKCS#8; RS256/PS256: RSA PKCS#8 or PKCS#1) and derives its public JWK.
    pub(crate) fn from_pem(kid: &str, algorithm: Algorithm, pem: &str) -> Result<Self, String> {
        let bad =
            |e: &dyn std::fmt::Display| format!("not a usable {algorithm:?} private key: {e}");
        let (encoding, mut jwk) = match algorithm {
            Algorithm::ES256 => {
                use p256::pkcs8::DecodePrivateKey;
                let secret = p256::SecretKey::from_pkcs8_pem(pem)
                    .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
                    .map_err(|e| bad(&e))?;
                let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                    &secret.public_key(),
                    false,
                );
                let (x, y) = (point.x().ok_or("no x")?, point.y().ok_or("no y")?);
                (
                    EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| bad(&e))?,
                    json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}),
                )
            }
            Algorithm::EdDSA => {
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|e| bad(&e))?;
                (
                    EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| bad(&e))?,
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes())}),
                )
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::pkcs8::DecodePrivateKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                    .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
                    .map_err(|e| bad(&e))?;
                let public = key.to_public_key();
                (
                    EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| bad(&e))?,
                    json!({"kty": "RSA", "n": b64(&public.n().to_bytes_be()),
                           "e": b64(&public.e().to_bytes_be())}),
                )
            }
            other => {
                return Err(format!(
                    "{other:?} is not supported: use ES256, EdDSA, RS256 or PS256"
                ))
            }
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(format!("{algorithm:?}"));
        Ok(SigningKey {
            kid: kid.to_string(),
            algorithm,
            encoding,
            public_jwk: jwk,
        })
    }
}

/// The JWKS document for these keys.
pub(crate) fn jwks(keys: &[Arc<SigningKey>]) -> Vec<u8> {
    let doc = json!({"keys": keys.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>()});
    serde_json::to_vec_pretty(&doc).expect("a JSON value always serializes")
}

/// A route's assertion settings.
#[derive(Debug)]
pub struct AssertionSpec {
    /// The upstream request header (under the identity prefix, so clients cannot send it),
    /// spelled as configured.
    pub(crate) header: WireName,
    pub(crate) key: Arc<SigningKey>,
    pub(crate) ttl: Duration,
    pub(crate) audience: String,
    pub(crate) issuer: String,
}

impl AssertionSpec {
    /// Mints an assertion for `identity` (resolved by `provider`) at `now`: the token and
    /// the time it expires, `min(now + ttl, identity expiry)`.
    pub(crate) fn mint(
        &self,
        identity: &Identity,
        provider: &str,
        now: SystemTime,
    ) -> Result<(String, SystemTime), AssertionError> {
        let mut exp = now + self.ttl;
        if let Some(id_exp) = identity.expires_at() {
            exp = exp.min(id_exp);
        }
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": identity.subject(),
            "scope": identity.scopes().collect::<Vec<_>>().join(" "),
            "orgs": identity.organizations().collect::<Vec<_>>(),
            "provider": provider,
            "iat": secs(now),
            "exp": secs(exp),
            "jti": hex::encode(rand::random::<[u8; 16]>()),
        });
        if let Some(sid) = identity.session_id() {
            claims["sid"] = json!(sid);
        }
        let mut header = Header::new(self.key.algorithm);
        header.kid = Some(self.key.kid.clone());
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&header, &claims, &self.key.encoding)
            .map_err(|e| AssertionError::Sign(e.to_string()))?;
        Ok((token, exp))
    }
}

/// Why no assertion could be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AssertionError {
    #[error("cannot sign the assertion: {0}")]
    Sign(String),
    #[error("the signed assertion is not a valid header value")]
    HeaderValue,
}

/// Minted assertions, reused per (token, route) until shortly before they expire, and
/// only for the very identity they were minted from: a refreshed or re-fetched identity
/// (new scopes, a purge) gets a new assertion.
#[derive(Clone)]
pub(crate) struct AssertionCache {
    cache: Cache<(TokenKey, Arc<str>), Minted>,
    /// `iat`/`exp` and reuse are judged on it.
    clock: SharedClock,
}

/// A minted assertion, reusable until the time, for the identity it was minted from.
type Minted = (HeaderValue, SystemTime, IdentityRef);

impl AssertionCache {
    pub fn new(clock: SharedClock) -> Self {
        AssertionCache {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            clock,
        }
    }

    /// The assertion for this token on this route: a cached one while it has more than a
    /// quarter of its lifetime (at most 10 s) left, else a newly minted one.
    pub(crate) async fn get(
        &self,
        key: TokenKey,
        route: &Arc<str>,
        spec: &AssertionSpec,
        identity: &Identity,
        provider: &str,
    ) -> Result<HeaderValue, AssertionError> {
        let cache_key = (key, route.clone());
        let now = self.clock.now();
        if let Some((value, reuse_until, minted_from)) = self.cache.get(&cache_key).await {
            if now < reuse_until && identity.is(&minted_from) {
                return Ok(value);
            }
        }
        let (token, exp) = spec.mint(identity, provider, now)?;
        let left = exp.duration_since(now).unwrap_or_default();
        let margin = (left / 4).min(Duration::from_secs(10));
        let value = HeaderValue::try_from(token).map_err(|_| AssertionError::HeaderValue)?;
        self.cache
            .insert(
                cache_key,
                (
                    value.clone(),
                    now + left.saturating_sub(margin),
                    identity.downgrade(),
                ),
            )
            .await;
        Ok(value)
    }
}
