//! `kind: jwt`: JWT access tokens verified locally, no provider call per token.
//!
//! - Algorithms come from an explicit allow-list of asymmetric algorithms (RS*, PS*, ES*,
//!   EdDSA); `none` and HMAC algorithms are refused at config time, so an RSA public key
//!   can never be used as an HMAC secret (algorithm confusion), and a key is only used
//!   with the algorithm family its JWK declares.
//! - Keys come from a JWKS file, or from a JWKS URL: fetched at start, refreshed in the
//!   background every `jwks_refresh` (jittered; after a failure retried with exponential
//!   backoff from `jwks_min_refresh_interval`, capped at [`RETRY_CAP`] — not at
//!   `jwks_refresh` — the old keys kept). Requests read the current key set without
//!   waiting for any scheduled refresh. While no keys are loaded, or for a token with an
//!   unknown `kid`, a request may fetch once per `jwks_min_refresh_interval` (at least
//!   [`FAILED_FETCH_FLOOR`] apart after a failure, whatever the failures before: a JWKS
//!   that comes back is used at the next such fetch, not after a grown backoff);
//!   concurrent requests share that fetch, and a hanging endpoint holds them at most the
//!   fetch `timeout`. The key set is swapped atomically, so no lock is held while a JWKS
//!   is fetched.
//! - `iss`, `aud`, `exp` (required) and `nbf` are checked with `leeway`; `typ`, when
//!   present, must be `JWT` or `at+jwt` (RFC 9068).
//! - The claims map to the identity like an HTTP provider's answer ([`ResponseMapping`]);
//!   the identity is cached until `exp`, so a signature is verified once per token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex;

use super::mapping::ResponseMapping;
use super::{BuildError, InvalidReason, Provider, ProviderError, Resolution};
use crate::clock::SharedClock;

/// Where the verification keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// A JWKS document fetched over HTTP(S) (the client is built with the provider).
    Url {
        url: reqwest::Url,
        max_bytes: usize,
        /// Whole-fetch timeout.
        timeout: Duration,
        /// Extra PEM CA certificates trusted on top of the system store.
        extra_roots: Vec<reqwest::Certificate>,
    },
    /// A JWKS document read at start.
    Static(JwkSet),
}

/// Everything a JWT provider needs.
#[derive(Debug, Clone)]
pub struct JwtSpec {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) keys: KeySource,
    pub(crate) refresh: Duration,
    pub(crate) min_refresh_interval: Duration,
    pub(crate) leeway: Duration,
    pub(crate) mapping: ResponseMapping,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    /// Keys without a `kid`, usable only when a token names none.
    anonymous: Vec<(DecodingKey, Option<Algorithm>)>,
    /// False until a key set was loaded.
    loaded: bool,
}

/// Who may fetch the JWKS next, and when.
#[derive(Default)]
struct FetchState {
    /// Bumped by every finished fetch: a request that waited for another's fetch sees it
    /// changed and does not fetch again.
    generation: u64,
    last_attempt: Option<Instant>,
    /// Failures in a row; the next attempt waits `backoff(failures)`.
    failures: u32,
}

/// The key set and its fetching, shared with the background refresh task.
struct KeyStore {
    spec: JwtSpec,
    /// For a URL key source.
    client: Option<reqwest::Client>,
    /// Read by every request without a lock; replaced whole by a fetch.
    keys: ArcSwap<Keys>,
    /// Held by the one fetch in progress (never by readers of `keys`).
    fetch: Mutex<FetchState>,
    /// What identities' expiry is judged on (the signature's `exp` is checked by
    /// `jsonwebtoken` against the system clock).
    clock: SharedClock,
}

/// The JWT provider.
pub(crate) struct JwtProvider {
    store: Arc<KeyStore>,
    refresher_started: AtomicBool,
}

impl std::fmt::Debug for JwtProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtProvider")
            .field("issuer", &self.store.spec.issuer)
            .finish_non_exhaustive()
    }
}

/// True when `token` has the shape of a JWS compact serialization: three base64url
/// segments, the first one decoding to a JSON header with an `alg`.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
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
        loaded: true,
    }
}

/// The longest wait between two background attempts while the JWKS keeps failing.
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(30);

/// After a failed fetch, requests wait at least this long before fetching again.
pub(crate) const FAILED_FETCH_FLOOR: Duration = Duration::from_secs(1);

/// How long after the last attempt a request may fetch again: `min`, and after a failure
/// at least [`FAILED_FETCH_FLOOR`] (not a growing backoff: requests that need keys are
/// the sign the keys are needed now).
fn request_wait(min: Duration, failures: u32) -> Duration {
    if failures == 0 {
        min
    } else {
        min.max(FAILED_FETCH_FLOOR)
    }
}

/// How long after the last attempt the background refresh tries again: `min` while
/// fetches succeed; after `failures` failures in a row, 1 s (or `min`, if longer) doubled
/// per further failure, capped at `cap`.
fn backoff(min: Duration, cap: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return min;
    }
    let base = min.max(Duration::from_secs(1));
    let factor = 1u32 << (failures - 1).min(16);
    base.saturating_mul(factor).min(cap.max(base))
}

/// `d` scaled by a random factor in [0.8, 1.0]: replicas started together spread their
/// refreshes out.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.8 + rand::random::<f64>() * 0.2)
}

impl KeyStore {
    fn lookup(&self, kid: Option<&str>) -> Option<(DecodingKey, Option<Algorithm>)> {
        let k = self.keys.load();
        match kid {
            Some(kid) => k.by_kid.get(kid).cloned(),
            None if k.anonymous.len() == 1 && k.by_kid.is_empty() => k.anonymous.first().cloned(),
            None => None,
        }
    }

    fn is_url(&self) -> bool {
        matches!(self.spec.keys, KeySource::Url { .. })
    }

    /// Fetches the JWKS unless a fetch that started after `seen_generation` already
    /// finished, or the rate limit says not yet ([`request_wait`]; `force` skips it: the
    /// scheduled refresh). Returns the error of a fetch made here.
    async fn refetch(&self, seen_generation: u64, force: bool) -> Result<(), ProviderError> {
        let mut state = self.fetch.lock().await;
        if state.generation != seen_generation {
            return Ok(()); // someone else fetched while we waited
        }
        let wait = request_wait(self.spec.min_refresh_interval, state.failures);
        if !force && state.last_attempt.is_some_and(|t| t.elapsed() < wait) {
            return Ok(());
        }
        state.last_attempt = Some(Instant::now());
        let result = self.fetch_set().await;
        state.generation += 1;
        match result {
            Ok(set) => {
                self.keys.store(Arc::new(load(&set)));
                state.failures = 0;
                Ok(())
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                Err(e)
            }
        }
    }

    /// A fetch now, whatever the rate limit: start-up and the scheduled refresh.
    async fn refresh_now(&self) -> Result<(), ProviderError> {
        let generation = self.fetch.lock().await.generation;
        self.refetch(generation, true).await
    }

    fn generation_hint(&self) -> u64 {
        self.fetch.try_lock().map_or(u64::MAX, |s| s.generation)
    }

    async fn fetch_set(&self) -> Result<JwkSet, ProviderError> {
        let (KeySource::Url { url, max_bytes, .. }, Some(client)) = (&self.spec.keys, &self.client)
        else {
            return Err(ProviderError::Unreachable(
                "JWKS: no URL to fetch keys from".into(),
            ));
        };
        // Fetched for a request (a key it names is not known yet): a child span of its
        // trace. The refresh loop's fetches belong to no request.
        let (get, mut span) = super::http::traced_call(
            client.get(url.clone()),
            "GET",
            ("url.path", url.path()),
            url,
        );
        if let Some(s) = &mut span {
            s.attr("sessiongate.jwks", true);
        }
        let resp = get.send().await.map_err(|e| {
            if let Some(s) = &mut span {
                s.fail("unreachable");
            }
            ProviderError::Unreachable(format!("JWKS: {}", e.without_url()))
        })?;
        super::http::answered(&mut span, resp.status(), !resp.status().is_success());
        if !resp.status().is_success() {
            return Err(ProviderError::Status(resp.status().as_u16()));
        }
        let body = super::http::read_limited(resp, *max_bytes, |e| {
            ProviderError::Unreachable(format!("JWKS: {}", e.without_url()))
        })
        .await?;
        serde_json::from_slice(&body).map_err(|e| ProviderError::NotJson(format!("JWKS: {e}")))
    }
}

/// Refreshes the keys every `refresh` (jittered) while the provider exists; after a
/// failure, retries with backoff.
async fn refresh_loop(store: Weak<KeyStore>) {
    loop {
        let delay = {
            let Some(s) = store.upgrade() else { return };
            let failures = s.fetch.lock().await.failures;
            if failures == 0 {
                jittered(s.spec.refresh)
            } else {
                jittered(backoff(
                    s.spec.min_refresh_interval,
                    s.spec.refresh.min(RETRY_CAP),
                    failures,
                ))
            }
        };
        tokio::time::sleep(delay).await;
        let Some(s) = store.upgrade() else { return };
        if let Err(e) = s.refresh_now().await {
            tracing::warn!(issuer = %s.spec.issuer, error = %e, "JWKS refresh failed; keeping the previous keys");
        }
    }
}

impl JwtProvider {
    /// Builds the provider (and, for a JWKS URL, its HTTP client: up to 3 redirects).
    pub fn new(spec: JwtSpec, clock: SharedClock) -> Result<Self, BuildError> {
        let (keys, client) = match &spec.keys {
            KeySource::Static(set) => (load(set), None),
            KeySource::Url {
                timeout,
                extra_roots,
                ..
            } => {
                let client = super::http::client(
                    *timeout,
                    extra_roots.clone(),
                    reqwest::redirect::Policy::limited(3),
                )?;
                (Keys::default(), Some(client))
            }
        };
        Ok(JwtProvider {
            store: Arc::new(KeyStore {
                spec,
                client,
                keys: ArcSwap::from_pointee(keys),
                fetch: Mutex::new(FetchState::default()),
                clock,
            }),
            refresher_started: AtomicBool::new(false),
        })
    }

    /// The key for `kid`. `Ok(None)`: no such key (the token is not valid). Only an
    /// unknown `kid` (or no key set yet) can make a request wait, for one shared fetch.
    async fn key(
        &self,
        kid: Option<&str>,
    ) -> Result<Option<(DecodingKey, Option<Algorithm>)>, ProviderError> {
        let store = &self.store;
        if let Some(found) = store.lookup(kid) {
            return Ok(Some(found));
        }
        if !store.is_url() {
            return Ok(None);
        }
        let seen = store.generation_hint();
        let fetched = store.refetch(seen, false).await;
        match (fetched, store.keys.load().loaded) {
            // With no keys at all, the provider cannot answer: fail closed (503).
            (Err(e), false) => Err(e),
            (Ok(()), false) => Err(ProviderError::Unreachable(
                "JWKS: no keys loaded yet (fetch failing, retried with backoff)".into(),
            )),
            (Err(e), true) => {
                tracing::warn!(error = %e, "JWKS fetch for an unknown kid failed; keeping the previous keys");
                Ok(store.lookup(kid))
            }
            (Ok(()), true) => Ok(store.lookup(kid)),
        }
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

    /// Fetches the JWKS at start, so the first token does not wait for it, and starts the
    /// background refresh (which ends when the provider is dropped, e.g. by a reload).
    async fn warm_up(&self) -> Result<(), ProviderError> {
        if !self.store.is_url() {
            return Ok(());
        }
        if !self.refresher_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(refresh_loop(Arc::downgrade(&self.store)));
        }
        if self.store.keys.load().loaded {
            return Ok(());
        }
        self.store.refresh_now().await
    }

    async fn resolve(&self, token: &str) -> Result<Resolution, ProviderError> {
        let invalid = Ok(Resolution::Invalid(InvalidReason::Unknown));
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return invalid;
        };
        if !self.store.spec.algorithms.contains(&header.alg) {
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
        let spec = &self.store.spec;
        validation.set_issuer(&[&spec.issuer]);
        validation.set_audience(&spec.audiences);
        validation.leeway = spec.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
            Ok(data) => spec.mapping.apply(&data.claims, self.store.clock.now()),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Ok(Resolution::Invalid(InvalidReason::Expired))
                }
                _ => invalid,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_up_to_the_refresh_period() {
        let s = Duration::from_secs;
        let b = |min, failures| backoff(min, s(600), failures);
        assert_eq!(b(s(30), 0), s(30));
        assert_eq!(b(Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(b(Duration::ZERO, 1), s(1));
        assert_eq!(b(Duration::ZERO, 2), s(2));
        assert_eq!(b(Duration::ZERO, 5), s(16));
        assert_eq!(b(s(30), 1), s(30));
        assert_eq!(b(s(30), 3), s(120));
        assert_eq!(b(s(30), 40), s(600));
        // The background retries, capped well below a 10-minute refresh period.
        assert_eq!(backoff(s(1), s(600).min(RETRY_CAP), 40), s(30));
    }

    /// Requests that need keys fetch again after `min` — after failures too, never after
    /// a grown backoff — and not more than once a second while the JWKS fails.
    #[test]
    fn requests_fetch_again_after_the_minimum_interval_whatever_failed_before() {
        let s = Duration::from_secs;
        assert_eq!(request_wait(s(5), 0), s(5));
        assert_eq!(request_wait(s(5), 12), s(5));
        assert_eq!(request_wait(Duration::ZERO, 0), Duration::ZERO);
        assert_eq!(request_wait(Duration::ZERO, 12), FAILED_FETCH_FLOOR);
    }
}
