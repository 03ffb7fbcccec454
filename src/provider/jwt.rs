//! `kind: jwt`: JWT access tokens verified locally, no provider call per token.
//!
//! - Algorithms come from an explicit allow-list of asymmetric algorithms (RS*, PS*, ES*,
//!   EdDSA); `none` and HMAC algorithms are refused at config time, so an RSA public key
//!   can never be used as an HMAC secret (algorithm confusion), and a key is only used
//!   with the algorithm family its JWK declares.
//! - Keys come from a JWKS URL (fetched on first use, refreshed every `jwks_refresh`, and
//!   again when an unknown `kid` arrives, at most once per `jwks_min_refresh_interval`) or
//!   from a JWKS file.
//! - `iss`, `aud`, `exp` (required) and `nbf` are checked with `leeway`; `typ`, when
//!   present, must be `JWT` or `at+jwt` (RFC 9068).
//! - The claims map to the identity like an HTTP provider's answer ([`ResponseMapping`]);
//!   the identity is cached until `exp`, so a signature is verified once per token.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex;

use super::mapping::ResponseMapping;
use super::{InvalidReason, Provider, ProviderError, Resolution};

/// Where the verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS document fetched over HTTP(S).
    Url {
        url: reqwest::Url,
        client: reqwest::Client,
        max_bytes: usize,
    },
    /// A JWKS document read at start.
    Static(JwkSet),
}

/// Everything a JWT provider needs.
#[derive(Debug, Clone)]
pub struct JwtSpec {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySource,
    pub refresh: Duration,
    pub min_refresh_interval: Duration,
    pub leeway: Duration,
    pub mapping: ResponseMapping,
}

struct Keys {
    by_kid: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    /// Keys without a `kid`, usable only when a token names none.
    anonymous: Vec<(DecodingKey, Option<Algorithm>)>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// The JWT provider.
pub struct JwtProvider {
    spec: JwtSpec,
    keys: Mutex<Keys>,
}

impl std::fmt::Debug for JwtProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtProvider")
            .field("issuer", &self.spec.issuer)
            .finish_non_exhaustive()
    }
}

/// True when `token` has the shape of a JWS compact serialization: three base64url
/// segments, the first one decoding to a JSON header with an `alg`.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64 = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    b64(h) && b64(p) && jsonwebtoken::decode_header(token).is_ok()
}

fn load(set: &JwkSet) -> Keys {
    let mut by_kid = HashMap::new();
    let mut anonymous = Vec::new();
    for jwk in &set.keys {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            tracing::warn!(kid = ?jwk.common.key_id, "JWKS entry skipped: not a usable public key");
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        match &jwk.common.key_id {
            Some(kid) => {
                by_kid.insert(kid.clone(), (key, alg));
            }
            None => anonymous.push((key, alg)),
        }
    }
    Keys {
        by_kid,
        anonymous,
        fetched: Some(Instant::now()),
        last_attempt: Some(Instant::now()),
    }
}

impl JwtProvider {
    pub fn new(spec: JwtSpec) -> Self {
        let keys = match &spec.keys {
            KeySource::Static(set) => load(set),
            KeySource::Url { .. } => Keys {
                by_kid: HashMap::new(),
                anonymous: Vec::new(),
                fetched: None,
                last_attempt: None,
            },
        };
        JwtProvider {
            spec,
            keys: Mutex::new(keys),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, ProviderError> {
        let KeySource::Url {
            url,
            client,
            max_bytes,
        } = &self.spec.keys
        else {
            unreachable!("only URL key sources are fetched")
        };
        let resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(format!("JWKS: {}", e.without_url())))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Status(resp.status().as_u16()));
        }
        let body = super::http::read_limited(resp, *max_bytes, |e| {
            ProviderError::Unreachable(format!("JWKS: {}", e.without_url()))
        })
        .await?;
        serde_json::from_slice(&body).map_err(|e| ProviderError::NotJson(format!("JWKS: {e}")))
    }

    /// The key for `kid`, fetching or refreshing the JWKS as the schedule and the rate
    /// limit allow. `Ok(None)`: no such key (the token is not valid).
    async fn key(
        &self,
        kid: Option<&str>,
    ) -> Result<Option<(DecodingKey, Option<Algorithm>)>, ProviderError> {
        let mut keys = self.keys.lock().await;
        let is_url = matches!(self.spec.keys, KeySource::Url { .. });
        let find = |k: &Keys| match kid {
            Some(kid) => k.by_kid.get(kid).cloned(),
            None if k.anonymous.len() == 1 && k.by_kid.is_empty() => k.anonymous.first().cloned(),
            None => None,
        };
        let stale = keys
            .fetched
            .is_none_or(|t| t.elapsed() >= self.spec.refresh);
        let found = find(&keys);
        let may_retry = keys
            .last_attempt
            .is_none_or(|t| t.elapsed() >= self.spec.min_refresh_interval);
        if is_url && (stale || (found.is_none() && may_retry)) {
            keys.last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => *keys = load(&set),
                // With no keys at all, the provider cannot answer: fail closed (503).
                Err(e) if keys.fetched.is_none() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys")
                }
            }
            return Ok(find(&keys));
        }
        Ok(found)
    }
}

#[async_trait]
impl Provider for JwtProvider {
    fn kind(&self) -> &'static str {
        "jwt"
    }

    fn accepts(&self, token: &str) -> bool {
        looks_like_jwt(token)
    }

    /// Fetches the JWKS at start, so the first token does not wait for it.
    async fn warm_up(&self) -> Result<(), ProviderError> {
        if !matches!(self.spec.keys, KeySource::Url { .. }) {
            return Ok(());
        }
        let mut keys = self.keys.lock().await;
        if keys.fetched.is_none() {
            keys.last_attempt = Some(Instant::now());
            *keys = load(&self.fetch().await?);
        }
        Ok(())
    }

    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        let invalid = Ok(Resolution::Invalid(InvalidReason::Unknown));
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return invalid;
        };
        if !self.spec.algorithms.contains(&header.alg) {
            return invalid;
        }
        if let Some(typ) = &header.typ {
            let t = typ.to_ascii_lowercase();
            if !matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
                return invalid;
            }
        }
        let Some((key, key_alg)) = self.key(header.kid.as_deref()).await? else {
            return invalid;
        };
        if key_alg.is_some_and(|a| a != header.alg) {
            return invalid;
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.spec.issuer]);
        validation.set_audience(&self.spec.audiences);
        validation.leeway = self.spec.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
            Ok(data) => self.spec.mapping.apply(&data.claims, SystemTime::now()),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Ok(Resolution::Invalid(InvalidReason::Expired))
                }
                _ => invalid,
            },
        }
    }
}
