//! Cluster-wide rate limits: every replica counts in Redis, one script per request for
//! all of a route's policies (GCRA on Redis' own clock, one round trip), and falls back
//! to counting alone at its share of every rate when Redis cannot answer in time.
//!
//! Redis keys, under `cluster.rate_limits.key_prefix` (`P`):
//! - `P:<policy>:<tier tag>:<key>` — a key's theoretical arrival time (µs on Redis'
//!   clock), expiring when the key is back to a full burst: Redis holds only keys that
//!   are in use. `<key>` is the key's keyed hash under the cluster secret (16 hex
//!   digits): no subject, address or header value is ever in Redis. The tier tag is a
//!   digest of the tier's rate, burst and key, so a changed tier starts again.
//! - `P:replicas` — the replicas counting together (a sorted set of process ids by last
//!   heartbeat, [`HEARTBEAT`]): what each divides the rates by when it falls back.
//!
//! Why one script per request rather than local counters reconciled at an interval:
//! the script is exact (the cluster admits what one process would), and its cost is
//! one Redis round trip, which a sidecar's request to Redis in the same cluster pays
//! in ≈ 0.1–0.5 ms; reconciled counters answer at once but over-admit by up to
//! `replicas × rate × interval` per key. BENCHMARKS.md has the measured figures.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus::IntCounter;

use super::link::Link;
use crate::limits::{Admission, Limited, LivePolicy, SharedCount, SharedCounter};
use crate::telemetry::metrics::ClusterMetrics;

/// How often a replica says it is there.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);

/// A replica not heard from for this long is no longer counted.
const HEARTBEAT_WINDOW: Duration = Duration::from_secs(15);

/// `cluster.rate_limits`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateLimitSettings {
    /// Prefix of every key (default `sessiongate:ratelimit`).
    pub(crate) key_prefix: String,
    /// Longest wait for Redis on the request path before counting locally (default 50ms).
    pub(crate) timeout: Duration,
    /// The fallback divides every rate by at least this many replicas (default 1: by the
    /// replicas seen in Redis lately).
    pub(crate) replicas: u32,
}

/// GCRA for each key in order; ARGV holds, per key, its emission interval (µs), its
/// burst and whether it enforces. An admitted request moves the key's time one interval
/// on; a refusal by an enforcing policy ends the count. Answers, per key counted:
/// `{1, remaining, µs until full}` or `{0, 0, µs until the next admission}`. Times are
/// whole microseconds on Redis' clock (written with `%.0f`: Lua's `tostring` keeps 14
/// digits only).
const COUNT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if tat < now then tat = now end
  local ahead = tat - now
  local limit = (burst - 1) * interval
  if ahead <= limit then
    local new = tat + interval
    local full_in = new - now
    redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', math.ceil(full_in / 1000) + 1)
    out[#out + 1] = {1, math.floor((burst * interval - full_in) / interval + 1e-9), math.ceil(full_in)}
  else
    out[#out + 1] = {0, 0, math.ceil(ahead - limit)}
    if ARGV[3 * i] == '1' then break end
  end
end
return out
";

/// Marks this replica present and answers how many are (ARGV: id, window in ms).
const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
";

/// The replica's side of the cluster's rate limits.
pub(crate) struct SharedLimits {
    link: Arc<Link>,
    settings: RateLimitSettings,
    origin: String,
    count: redis::Script,
    heartbeat: redis::Script,
    /// Replicas seen in Redis at the last heartbeat (0: not known yet).
    seen: AtomicU32,
    /// The last request was counted locally (for `/readyz`).
    falling_back: AtomicBool,
    counted_in_redis: IntCounter,
    counted_locally: IntCounter,
    metrics: ClusterMetrics,
}

impl SharedLimits {
    pub(crate) fn new(
        link: Arc<Link>,
        settings: RateLimitSettings,
        origin: String,
        metrics: ClusterMetrics,
    ) -> Self {
        metrics
            .rate_limit_replicas
            .set(i64::from(settings.replicas.max(1)));
        SharedLimits {
            link,
            origin,
            count: redis::Script::new(COUNT),
            heartbeat: redis::Script::new(HEARTBEAT_SCRIPT),
            seen: AtomicU32::new(0),
            falling_back: AtomicBool::new(false),
            counted_in_redis: metrics.rate_limit_checks.with_label_values(&["redis"]),
            counted_locally: metrics.rate_limit_checks.with_label_values(&["fallback"]),
            metrics,
            settings,
        }
    }

    fn redis_key(&self, policy: &LivePolicy, tier: usize, key: u64) -> String {
        format!(
            "{}:{}:{}:{key:016x}",
            self.settings.key_prefix,
            policy.spec.name,
            policy.tag(tier)
        )
    }

    fn replicas_key(&self) -> String {
        format!("{}:replicas", self.settings.key_prefix)
    }

    /// One line for `/readyz`.
    pub(crate) fn status_line(&self) -> String {
        let replicas = self.replicas();
        if self.falling_back.load(Ordering::Relaxed) {
            format!(
                "rate limits: counted locally at 1/{replicas} of each rate (Redis unavailable)\n"
            )
        } else {
            format!("rate limits: cluster-wide ({replicas} replicas seen)\n")
        }
    }

    /// Says this replica is there every [`HEARTBEAT`] and learns how many are, until
    /// `stop` fires; then leaves the set, so the others' share grows at once.
    pub(crate) async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.beat().await;
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = stop.changed() => break,
            }
        }
        if let Some(conn) = self.link.ready() {
            let key = self.replicas_key();
            let origin = self.origin.clone();
            let _ = self
                .link
                .run(
                    "rate_limit_heartbeat",
                    self.settings.timeout.max(Duration::from_millis(200)),
                    conn,
                    |mut c| async move {
                        redis::cmd("ZREM")
                            .arg(key)
                            .arg(origin)
                            .query_async::<i64>(&mut c)
                            .await
                    },
                )
                .await;
        }
    }

    async fn beat(&self) {
        let Some(conn) = self.link.connected().await else {
            return;
        };
        let mut invocation = self.heartbeat.prepare_invoke();
        invocation
            .key(self.replicas_key())
            .arg(&self.origin)
            .arg(HEARTBEAT_WINDOW.as_millis() as u64);
        let seen = self
            .link
            .run(
                "rate_limit_heartbeat",
                self.settings.timeout.max(Duration::from_millis(200)),
                conn,
                |mut c| async move { invocation.invoke_async::<u32>(&mut c).await },
            )
            .await;
        if let Ok(n) = seen {
            self.seen.store(n, Ordering::Relaxed);
            self.metrics
                .rate_limit_replicas
                .set(i64::from(self.replicas()));
        }
    }
}

#[async_trait]
impl SharedCounter for SharedLimits {
    async fn count(&self, counts: &[SharedCount<'_>]) -> Option<Vec<Admission>> {
        let conn = self.link.ready()?;
        let mut invocation = self.count.prepare_invoke();
        for c in counts {
            let tier = c.policy.tier(c.tier);
            let interval_us = tier.rate.interval().as_secs_f64() * 1e6;
            invocation
                .key(self.redis_key(c.policy, c.tier, c.key))
                .arg(interval_us)
                .arg(tier.burst.max(1))
                .arg(u8::from(c.enforce));
        }
        let answers = self
            .link
            .run(
                "rate_limit",
                self.settings.timeout,
                conn,
                |mut c| async move {
                    invocation
                        .invoke_async::<Vec<(i64, i64, i64)>>(&mut c)
                        .await
                },
            )
            .await
            .ok()?;
        if answers.is_empty() || answers.len() > counts.len() {
            // Not what the script answers: count locally rather than trust it.
            return None;
        }
        self.counted_in_redis.inc();
        self.falling_back.store(false, Ordering::Relaxed);
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Some(
            answers
                .into_iter()
                .map(|(admitted, remaining, us)| match admitted {
                    1 => Admission::Admitted {
                        remaining: u32::try_from(remaining).unwrap_or(0),
                        full_in: micros(us),
                    },
                    _ => Admission::Limited(Limited {
                        retry_after: micros(us),
                    }),
                })
                .collect(),
        )
    }

    async fn forget(&self, policy: &LivePolicy, key: u64) -> bool {
        let Some(conn) = self.link.connected().await else {
            return false;
        };
        let keys: Vec<String> = (0..policy.spec.tiers.len())
            .map(|tier| self.redis_key(policy, tier, key))
            .collect();
        self.link
            .run(
                "rate_limit_reset",
                self.settings.timeout.max(Duration::from_millis(200)),
                conn,
                |mut c| async move { redis::cmd("DEL").arg(keys).query_async::<i64>(&mut c).await },
            )
            .await
            .is_ok()
    }

    fn replicas(&self) -> u32 {
        self.seen
            .load(Ordering::Relaxed)
            .max(self.settings.replicas)
            .max(1)
    }

    fn fell_back(&self) {
        self.counted_locally.inc();
        self.falling_back.store(true, Ordering::Relaxed);
    }
}
