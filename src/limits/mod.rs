//! Rate limits per identity (`rate_limits:`): named policies a route attaches, each
//! counting requests under a key the decision derives — the subject, the session, the
//! organization the request is for, the token, the client address, a header, a claim or
//! a path parameter — at a rate with a burst, optionally chosen by tier (a scope or a
//! claim the identity has).
//!
//! The algorithm is GCRA (the generic cell rate algorithm, as in ATM networks and Redis'
//! `redis-cell`): per key one number, the theoretical arrival time of the next request.
//! A request is admitted when that time is at most `burst − 1` emission intervals ahead of
//! now, and moves it one interval further. It is a token bucket without a refill task: a
//! key idle for `burst × interval` is indistinguishable from a new one, so idle keys can be
//! dropped without changing any answer. Locally the GCRA is `governor`'s (lock-free: one
//! compare-and-swap on an `AtomicU64` per request); the keys live in a bounded, sharded
//! map of our own ([`local`]) instead of governor's unbounded one.
//!
//! With `cluster:`, replicas count together ([`SharedCounter`], implemented in Redis by
//! [`crate::cluster`]): one round trip per request for all of a route's policies. When
//! Redis cannot answer in time, each replica counts alone at its share of every rate
//! (the rate ÷ the replicas it knows of), so a Redis fault never fails a request and never
//! lets the cluster admit much more than its limit.
//!
//! This module knows keys only as bytes: what a key's value is for a request is the
//! decision's business ([`crate::decision`]), and no value is ever kept — only a keyed
//! hash of it.

pub mod local;

use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::ceil_seconds;
pub use local::{Admission, Limited, LivePolicy};

/// A rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// Parses `100/min`, `10/s`, `5000/hour`, `1/day`, `30/10s` (a count, a slash, an
    /// optional whole number and a unit: `s`, `sec`, `second`, `m`, `min`, `minute`, `h`,
    /// `hour`, `d`, `day`).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || {
            format!("{text:?} is not a rate: write requests/period, e.g. 100/min, 10/s, 5000/hour, 30/10s")
        };
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!(
                "{text:?}: a rate of 0 admits nothing; remove the route instead"
            ));
        }
        let period = period.trim();
        let digits = period.bytes().take_while(u8::is_ascii_digit).count();
        let times: u64 = match digits {
            0 => 1,
            _ => period[..digits].parse().map_err(|_| bad())?,
        };
        let unit = match &period[digits..] {
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3_600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(bad()),
        };
        if times == 0 || times > 366 * 86_400 / unit {
            return Err(bad());
        }
        Ok(Rate {
            count,
            per: Duration::from_secs(times * unit),
        })
    }

    /// Time between two requests at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.per.as_secs())
    }
}

/// What a policy counts requests by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// The identity's subject (the default).
    Subject,
    /// The identity's session id (the subject when the provider gives none).
    Session,
    /// The organization the request is for: the route's `require_organization`.
    Organization,
    /// The token itself (its keyed hash).
    Token,
    /// The client address (through trusted proxies).
    ClientAddress,
    /// A request header (lower-case name); a request without it is counted by client
    /// address.
    Header(String),
    /// A claim of the identity; an identity without it is counted by subject.
    Claim(String),
    /// A path template parameter.
    Param(String),
}

impl LimitKey {
    /// Whether the key is read from the identity (needs a route with a provider).
    pub fn needs_identity(&self) -> bool {
        matches!(
            self,
            LimitKey::Subject
                | LimitKey::Session
                | LimitKey::Organization
                | LimitKey::Token
                | LimitKey::Claim(_)
        )
    }

    /// How `explain` and the docs name it (`header:x-api-key`, …).
    pub fn describe(&self) -> String {
        match self {
            LimitKey::Subject => "subject".into(),
            LimitKey::Session => "session".into(),
            LimitKey::Organization => "organization".into(),
            LimitKey::Token => "token".into(),
            LimitKey::ClientAddress => "client_address".into(),
            LimitKey::Header(h) => format!("header:{h}"),
            LimitKey::Claim(c) => format!("claim:{c}"),
            LimitKey::Param(p) => format!("param:{p}"),
        }
    }
}

/// Which identities a tier is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TierWhen {
    /// The identity has this scope.
    Scope(String),
    /// The identity's claim, as text, equals this.
    Claim { name: String, equals: String },
}

/// A rate and burst for the identities a tier matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tier {
    pub name: Arc<str>,
    pub when: Option<TierWhen>,
    pub rate: Rate,
    pub burst: u32,
}

/// Whether a policy refuses over-limit requests or only counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LimitMode {
    #[default]
    Enforce,
    /// Over-limit requests are counted (`mode="report"`) and let through.
    Report,
}

impl LimitMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitMode::Enforce => "enforce",
            LimitMode::Report => "report",
        }
    }
}

/// A `rate_limits:` policy as the config file defines it (plain data).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitSpec {
    pub name: Arc<str>,
    pub key: LimitKey,
    /// The tiers in order, the policy's own rate last (`when: None`): the first that
    /// matches the identity applies.
    pub tiers: Vec<Tier>,
    pub mode: LimitMode,
    /// `RateLimit-Policy` / `RateLimit` on every response of the route, not only on 429s.
    pub headers_always: bool,
    /// Keys tracked at most (each tier apart); those closest to a full burst go first.
    pub max_keys: u64,
}

/// The `RateLimit-Policy` and `RateLimit` field values (draft-ietf-httpapi-ratelimit-headers,
/// -10) for one policy: its quota `q` per window `w` seconds, the requests `r` that may go
/// now and the seconds `t` until the key is back to a full burst (after a refusal: until
/// the next request is admitted, as `Retry-After`). Policy names are checked tokens, so
/// quoting them as Structured Field strings needs no escaping.
pub fn fields(name: &str, rate: Rate, remaining: u32, reset: Duration) -> (String, String) {
    let t = ceil_seconds(reset);
    (
        format!("\"{name}\";q={};w={}", rate.count, rate.per.as_secs()),
        format!("\"{name}\";r={remaining};t={t}"),
    )
}

/// Whole seconds a client waits: rounded up, so that a client that waits exactly that
/// long is admitted.
pub fn retry_after_secs(wait: Duration) -> u64 {
    ceil_seconds(wait).max(1)
}

/// Keys tracked per policy unless `max_keys` says otherwise.
pub const DEFAULT_MAX_KEYS: u64 = 100_000;

/// One request to count in the cluster: a policy's tier under a key.
#[derive(Debug, Clone, Copy)]
pub struct SharedCount<'a> {
    pub policy: &'a LivePolicy,
    pub tier: usize,
    pub key: u64,
    /// An enforcing policy that refuses ends the count (the policies after it are not
    /// counted), as locally.
    pub enforce: bool,
}

/// Counters every replica shares (Redis, with `cluster:`).
#[async_trait]
pub trait SharedCounter: Send + Sync {
    /// Counts one request under each of `counts` in order, stopping after the first
    /// enforcing refusal (the answers are then fewer than the counts). `None`: the shared
    /// counters cannot answer now (the caller counts locally, at its share).
    async fn count(&self, counts: &[SharedCount<'_>]) -> Option<Vec<Admission>>;

    /// Forgets one key of `policy` (every tier); false when the counters cannot be
    /// reached.
    async fn forget(&self, policy: &LivePolicy, key: u64) -> bool;

    /// Replicas sharing the limits, as far as this one knows (at least 1): each counts at
    /// this share of every rate while the shared counters cannot answer.
    fn replicas(&self) -> u32;

    /// Called when the local fallback counted a request (for metrics).
    fn fell_back(&self);
}

/// The live policies of a process, kept across reloads: a policy whose definition did
/// not change keeps its counters; a changed or removed one starts again (or goes).
pub struct Limiters {
    live: std::sync::Mutex<Vec<Arc<LivePolicy>>>,
    /// SipHash keys of the key hash: random per process, or derived from the cluster's
    /// secret so that every replica names a key alike.
    hash_keys: (u64, u64),
    shared: Option<Arc<dyn SharedCounter>>,
}

impl Default for Limiters {
    fn default() -> Self {
        Limiters::new(rand::random(), None)
    }
}

impl Limiters {
    /// Limiters hashing keys under `hash_key` (16 bytes of it used), counting in `shared`
    /// when there is one.
    pub fn new(hash_key: [u8; 16], shared: Option<Arc<dyn SharedCounter>>) -> Self {
        let (a, b) = hash_key.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        Limiters {
            live: Default::default(),
            hash_keys: (word(a), word(b)),
            shared,
        }
    }

    /// The counters shared with other replicas, when limits are cluster-wide.
    pub fn shared(&self) -> Option<&Arc<dyn SharedCounter>> {
        self.shared.as_ref()
    }

    /// The live policies for `specs`: those whose definition is unchanged keep their
    /// counters, the others start empty. Nothing changes until [`Limiters::commit`] (a
    /// reload that fails after this leaves the policies in force as they were).
    pub fn prepare(&self, specs: &[LimitSpec]) -> Vec<Arc<LivePolicy>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        specs
            .iter()
            .map(|spec| {
                live.iter()
                    .find(|p| p.spec == *spec)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(LivePolicy::new(spec.clone())))
            })
            .collect()
    }

    /// Makes `policies` the ones in force (the others' counters go with the last route
    /// that holds them).
    pub fn commit(&self, policies: Vec<Arc<LivePolicy>>) {
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = policies;
    }

    /// The keyed hash a key's value is tracked under (the value itself is never kept).
    /// The key's kind is part of it, so `subject` alice and `header` alice differ. The
    /// input is spelled byte for byte (no `Hash` derive), so replicas of any build and
    /// platform that share the secret agree.
    pub fn key(&self, key: &LimitKey, value: &[u8]) -> u64 {
        #[allow(deprecated)] // SipHash-2-4, keyed: the std type is the only keyed one.
        let mut h = std::hash::SipHasher::new_with_keys(self.hash_keys.0, self.hash_keys.1);
        let (kind, name): (u8, &str) = match key {
            LimitKey::Subject => (1, ""),
            LimitKey::Session => (2, ""),
            LimitKey::Organization => (3, ""),
            LimitKey::Token => (4, ""),
            LimitKey::ClientAddress => (5, ""),
            LimitKey::Header(n) => (6, n),
            LimitKey::Claim(n) => (7, n),
            LimitKey::Param(n) => (8, n),
        };
        h.write_u8(kind);
        h.write(&(name.len() as u64).to_le_bytes());
        h.write(name.as_bytes());
        h.write(value);
        h.finish()
    }

    /// Forgets one key's counters in one policy (every tier, here and in the shared
    /// counters): the admin API's reset. `None`: no such policy; `Some(false)`: forgotten
    /// here, but the shared counters could not be reached.
    pub async fn reset(&self, policy: &str, key: u64) -> Option<bool> {
        let found = {
            let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            live.iter().find(|p| &*p.spec.name == policy).cloned()
        }?;
        found.forget(key);
        match &self.shared {
            Some(shared) => Some(shared.forget(&found, key).await),
            None => Some(true),
        }
    }

    /// The live policies (for metrics and the admin API).
    pub fn policies(&self) -> Vec<Arc<LivePolicy>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of claim `tenant` = `acme` under keys `0123456789abcdef`, as a reference
    /// SipHash-2-4 written apart (in Python, from the paper) computes it over the bytes
    /// `07`, `06 00 00 00 00 00 00 00`, `tenant`, `acme`.
    const KNOWN_KEY: u64 = 9_344_306_505_252_441_591;

    #[test]
    fn rates_read_as_people_write_them() {
        let r = |t: &str| Rate::parse(t).map(|r| (r.count, r.per.as_secs()));
        assert_eq!(r("100/min"), Ok((100, 60)));
        assert_eq!(r("10/s"), Ok((10, 1)));
        assert_eq!(r(" 5000 / hour "), Ok((5000, 3600)));
        assert_eq!(r("1/day"), Ok((1, 86_400)));
        assert_eq!(r("30/10s"), Ok((30, 10)));
        assert_eq!(r("30/10seconds"), Ok((30, 10)));
        for bad in [
            "",
            "100",
            "100/",
            "/min",
            "x/min",
            "100/fortnight",
            "-1/s",
            "1/0s",
            "1.5/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Rate::parse("0/s").unwrap_err().contains("admits nothing"));
        assert_eq!(
            Rate::parse("100/min").unwrap().interval(),
            Duration::from_millis(600)
        );
    }

    #[test]
    fn keys_of_different_kinds_do_not_collide() {
        let l = Limiters::default();
        assert_ne!(
            l.key(&LimitKey::Subject, b"alice"),
            l.key(&LimitKey::Header("x".into()), b"alice")
        );
        assert_eq!(
            l.key(&LimitKey::Subject, b"a"),
            l.key(&LimitKey::Subject, b"a")
        );
        // A header's name is delimited: `ab` + `c` is not `a` + `bc`.
        assert_ne!(
            l.key(&LimitKey::Header("ab".into()), b"c"),
            l.key(&LimitKey::Header("a".into()), b"bc")
        );
    }

    #[test]
    fn replicas_sharing_a_secret_name_keys_alike_and_only_they() {
        let a = Limiters::new([7; 16], None);
        let b = Limiters::new([7; 16], None);
        let other = Limiters::new([8; 16], None);
        let k = |l: &Limiters| l.key(&LimitKey::Claim("tenant".into()), b"acme");
        assert_eq!(k(&a), k(&b));
        assert_ne!(k(&a), k(&other));
        // SipHash-2-4 under fixed keys: the same number on every build and platform.
        assert_eq!(k(&Limiters::new(*b"0123456789abcdef", None)), KNOWN_KEY);
    }
}
