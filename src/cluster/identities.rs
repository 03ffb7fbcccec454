//! The shared identity cache (L2): what one replica's provider answered, sealed in Redis
//! for the others, and one provider call per token across replicas.
//!
//! Redis keys, under `cluster.shared_cache.key_prefix` (`P`); `K` is the token key (a
//! keyed hash under the cluster secret), `N` a subject's or session id's keyed hash:
//! - `P:v:K` — the sealed answer ([`super::seal`]), expiring with its freshness:
//!   `min(cache.ttl, time to the identity's expiry)` after the provider answered (an
//!   "invalid" answer: `cache.negative_ttl`);
//! - `P:lock:K` — the claim of the replica calling the provider for it now (`SET NX PX`,
//!   expiring after `lock_wait`);
//! - `P:n:N` — the token keys of a subject or session id (as the fields of a small hash:
//!   Redis 7.0 stores small hashes compactly, small sets not), so purges by name reach L2.
//!
//! A replica that finds a claim waits for the answer at most `lock_wait`, polling; when
//! the claim is released without an answer (the provider failed) it takes the claim
//! itself; when the wait runs out it calls the provider anyway. A request never waits on
//! a dead claim holder longer than that, and never waits on Redis longer than
//! `shared_cache.timeout` per command (the link's breaker stops asking a failing Redis).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::link::Link;
use super::seal::{Opened, Sealer};
use crate::identity::cache::{NameHash, SharedAnswer, SharedFind, SharedQuery, SharedTier};
use crate::identity::token::TokenKey;
use crate::identity::Identity;
use crate::telemetry::metrics::ClusterMetrics;

/// `cluster.shared_cache`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SharedCacheSettings {
    /// Prefix of every key (default `sessiongate:identities`).
    pub(crate) key_prefix: String,
    /// Longest wait for one Redis command on the request path (default 50ms).
    pub(crate) timeout: Duration,
    /// Longest wait for another replica's provider call (default 1s).
    pub(crate) lock_wait: Duration,
}

/// GET the value, or take the claim: one round trip for a miss. A value larger than any
/// identity sealed here (64 KiB) is not sent back: it answers 2 (unreadable).
const FIND: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  if #v > 65536 then return 2 end
  return v
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// SET the value (if any) with its TTL, add it to its names' key sets (whose TTL covers
/// the longest member; members whose values are gone are dropped once one grows), release
/// the claim if it is still ours.
const STORE: &str = r"
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  for i = 3, #KEYS do
    redis.call('HSET', KEYS[i], ARGV[3], '')
    if redis.call('HLEN', KEYS[i]) > 32 then
      for _, m in ipairs(redis.call('HKEYS', KEYS[i])) do
        if redis.call('EXISTS', ARGV[5] .. m) == 0 then redis.call('HDEL', KEYS[i], m) end
      end
    end
    if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
      redis.call('PEXPIRE', KEYS[i], ARGV[2])
    end
  end
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
return 1
";

/// Removes every value of a name, and the name's set.
const PURGE_NAME: &str = r"
local members = redis.call('HKEYS', KEYS[1])
for _, m in ipairs(members) do redis.call('DEL', ARGV[1] .. m) end
redis.call('DEL', KEYS[1])
return #members
";

/// The replica's side of the shared identity cache.
pub(crate) struct SharedIdentities {
    link: Arc<Link>,
    settings: SharedCacheSettings,
    sealer: Sealer,
    /// This replica's claim value. One claim per key at a time: the cache makes one
    /// lookup per key at a time in a process.
    origin: String,
    metrics: ClusterMetrics,
    find: redis::Script,
    store: redis::Script,
    purge_name: redis::Script,
    /// The revocation stream's epoch this replica reads (set by the stream reader):
    /// sealed into every identity it shares, and required of every identity it takes, so
    /// a value from before the stream was lost (re-created) is never served.
    epoch: std::sync::Mutex<Option<Arc<str>>>,
}

impl SharedIdentities {
    pub fn new(
        link: Arc<Link>,
        settings: SharedCacheSettings,
        value_key: &[u8; 32],
        origin: String,
        metrics: ClusterMetrics,
    ) -> Self {
        SharedIdentities {
            link,
            settings,
            sealer: Sealer::new(value_key),
            origin,
            metrics,
            find: redis::Script::new(FIND),
            store: redis::Script::new(STORE),
            purge_name: redis::Script::new(PURGE_NAME),
            epoch: std::sync::Mutex::new(None),
        }
    }

    /// The revocation stream's current epoch, as the stream reader knows it.
    pub(crate) fn set_epoch(&self, epoch: &str) {
        let mut current = crate::clock::lock(&self.epoch);
        if current.as_deref() != Some(epoch) {
            *current = Some(Arc::from(epoch));
        }
    }

    fn epoch(&self) -> Option<Arc<str>> {
        crate::clock::lock(&self.epoch).clone()
    }

    fn value_key(&self, key: &TokenKey) -> String {
        format!("{}:v:{}", self.settings.key_prefix, key.hex())
    }

    fn lock_key(&self, key: &TokenKey) -> String {
        format!("{}:lock:{}", self.settings.key_prefix, key.hex())
    }

    fn name_key(&self, name: &NameHash) -> String {
        format!("{}:n:{}", self.settings.key_prefix, hex::encode(name.0))
    }

    /// A wait for another replica's provider call ended (`answered`, `claimed`: the
    /// holder gave up and this replica took over, `timed_out`).
    fn wait_ended(&self, outcome: &str, started: Instant) {
        self.metrics.claim_waits.with_label_values(&[outcome]).inc();
        self.metrics
            .claim_wait_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    fn count(&self, result: &str) {
        self.metrics
            .shared_lookups
            .with_label_values(&[result])
            .inc();
    }

    /// One FIND round trip: the stored bytes, or whether the claim was taken.
    async fn find_once(&self, value_key: &str, lock_key: &str, claim: &str) -> Result<Found, ()> {
        let Some(conn) = self.link.ready() else {
            return Err(());
        };
        let lock_ms = self.settings.lock_wait.as_millis().max(1) as u64;
        let reply = self
            .link
            .run(
                "shared_find",
                self.settings.timeout,
                conn,
                |mut c| async move {
                    self.find
                        .key(value_key)
                        .key(lock_key)
                        .arg(claim)
                        .arg(lock_ms)
                        .invoke_async::<redis::Value>(&mut c)
                        .await
                },
            )
            .await
            .map_err(|_| ())?;
        match reply {
            redis::Value::BulkString(bytes) => Ok(Found::Value(bytes)),
            redis::Value::Int(1) => Ok(Found::Claimed),
            redis::Value::Int(0) => Ok(Found::Busy),
            redis::Value::Int(2) => Ok(Found::Value(Vec::new())),
            other => {
                // Not what the script returns: never wait on an answer we cannot read.
                tracing::warn!(reply = ?std::mem::discriminant(&other), "cluster: an unexpected reply to a shared-cache lookup; asking the provider");
                Err(())
            }
        }
    }

    /// Removes these tokens' shared values (a purge by token).
    pub(crate) async fn remove_keys(&self, keys: &[TokenKey]) -> bool {
        if keys.is_empty() {
            return true;
        }
        let Some(conn) = self.link.connected().await else {
            return false;
        };
        let mut cmd = redis::cmd("DEL");
        for k in keys {
            cmd.arg(self.value_key(k));
        }
        self.link
            .run(
                "shared_purge",
                self.settings.timeout.max(PURGE_TIMEOUT),
                conn,
                |mut c| async move { cmd.query_async::<i64>(&mut c).await },
            )
            .await
            .is_ok()
    }

    /// Removes the shared values of every token of a subject or session id.
    pub(crate) async fn remove_name(&self, name: &NameHash) -> bool {
        let Some(conn) = self.link.connected().await else {
            return false;
        };
        let set = self.name_key(name);
        let prefix = format!("{}:v:", self.settings.key_prefix);
        self.link
            .run(
                "shared_purge",
                self.settings.timeout.max(PURGE_TIMEOUT),
                conn,
                |mut c| async move {
                    self.purge_name
                        .key(&set)
                        .arg(&prefix)
                        .invoke_async::<i64>(&mut c)
                        .await
                },
            )
            .await
            .is_ok()
    }

    /// Removes every shared value (purges were lost: the safe answer).
    pub(crate) async fn remove_all(&self) -> bool {
        let Some(conn) = self.link.connected().await else {
            return false;
        };
        let pattern = format!("{}:*", self.settings.key_prefix);
        let mut cursor: u64 = 0;
        loop {
            let page = self
                .link
                .run("shared_purge", PURGE_TIMEOUT, conn.clone(), |mut c| {
                    let pattern = pattern.clone();
                    async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async::<(u64, Vec<String>)>(&mut c)
                            .await
                    }
                })
                .await;
            let Ok((next, keys)) = page else {
                return false;
            };
            if !keys.is_empty() {
                let done = self
                    .link
                    .run(
                        "shared_purge",
                        PURGE_TIMEOUT,
                        conn.clone(),
                        |mut c| async move {
                            redis::cmd("UNLINK")
                                .arg(&keys)
                                .query_async::<i64>(&mut c)
                                .await
                        },
                    )
                    .await;
                if done.is_err() {
                    return false;
                }
            }
            if next == 0 {
                return true;
            }
            cursor = next;
        }
    }
}

/// The largest shared value (FIND's limit).
const MAX_VALUE_BYTES: usize = 65_536;

/// Purges are not on the request path: they may wait longer than a lookup.
const PURGE_TIMEOUT: Duration = Duration::from_millis(500);

enum Found {
    Value(Vec<u8>),
    Claimed,
    Busy,
}

#[async_trait]
impl SharedTier for SharedIdentities {
    async fn find(
        &self,
        query: &SharedQuery<'_>,
        newer_than: Option<SystemTime>,
        trusted: &(dyn for<'i> Fn(&'i Identity, SystemTime) -> bool + Sync),
    ) -> SharedFind {
        let value_key = self.value_key(&query.key);
        let lock_key = self.lock_key(&query.key);
        let claim = self.origin.as_str();
        let started = Instant::now();
        let mut waited = false;
        let mut pause = Duration::from_millis(2);
        loop {
            let found = match self.find_once(&value_key, &lock_key, claim).await {
                Ok(f) => f,
                Err(()) => {
                    self.count("unavailable");
                    return SharedFind::Nothing { claimed: false };
                }
            };
            match found {
                Found::Value(bytes) => {
                    match self
                        .sealer
                        .open(query.provider, query.token, &value_key, &bytes)
                    {
                        Some(Opened::Valid {
                            identity,
                            fetched_at,
                            epoch,
                        }) => {
                            if newer_than.is_some_and(|t| fetched_at <= t) {
                                // Not newer than what this replica has: refresh from the
                                // provider (no claim: refreshes are spread by jitter).
                                self.count("older");
                                return SharedFind::Nothing { claimed: false };
                            }
                            let current = self.epoch();
                            let same_stream =
                                current.is_some() && epoch.as_deref() == current.as_deref();
                            if !same_stream || !trusted(&identity, fetched_at) {
                                // Sealed before a purge that reached it, or before the
                                // stream was lost (written back to Redis since, or left
                                // over), or this replica does not know the stream yet:
                                // never served; the provider decides.
                                tracing::info!(token_key = %query.key.short(), "cluster: a shared identity sealed before a purge that reached it; asking the provider");
                                self.count("purged");
                                return SharedFind::Nothing { claimed: false };
                            }
                            self.count("hit");
                            if waited {
                                self.wait_ended("answered", started);
                            }
                            return SharedFind::Valid {
                                identity,
                                fetched_at,
                            };
                        }
                        Some(Opened::Invalid(reason)) => {
                            self.count("invalid");
                            if waited {
                                self.wait_ended("answered", started);
                            }
                            return SharedFind::Invalid(reason);
                        }
                        None => {
                            // Tampered with, or sealed under another secret: never used;
                            // the provider's answer replaces it.
                            tracing::warn!(token_key = %query.key.short(), "cluster: a shared identity does not open (tampered with, or another cluster secret); asking the provider");
                            self.count("unreadable");
                            return SharedFind::Nothing { claimed: false };
                        }
                    }
                }
                Found::Claimed => {
                    self.count("miss");
                    if waited {
                        // The holder released its claim without an answer (its provider
                        // call failed): this replica tries.
                        self.wait_ended("claimed", started);
                    }
                    return SharedFind::Nothing { claimed: true };
                }
                Found::Busy => {
                    waited = true;
                    if started.elapsed() + pause > self.settings.lock_wait {
                        self.count("miss");
                        self.wait_ended("timed_out", started);
                        return SharedFind::Nothing { claimed: false };
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    fn store(&self, query: &SharedQuery<'_>, answer: SharedAnswer<'_>, claimed: bool) {
        let value_key = self.value_key(&query.key);
        let (value, ttl, names) = match answer {
            SharedAnswer::Valid {
                identity,
                fetched_at,
                ttl,
                names,
            } if !ttl.is_zero() => (
                self.sealer.seal_identity(
                    query.provider,
                    query.token,
                    &value_key,
                    identity,
                    fetched_at,
                    self.epoch().as_deref(),
                ),
                ttl,
                names,
            ),
            SharedAnswer::Invalid { reason, ttl } if !ttl.is_zero() => (
                self.sealer.seal_invalid(
                    query.provider,
                    query.token,
                    &value_key,
                    reason,
                    SystemTime::now(),
                ),
                ttl,
                [None, None],
            ),
            SharedAnswer::Valid { .. } | SharedAnswer::Invalid { .. } | SharedAnswer::Failed => {
                (Vec::new(), Duration::ZERO, [None, None])
            }
        };
        // Larger than FIND sends back: not shared (another replica could not use it).
        let value = if value.len() > MAX_VALUE_BYTES {
            Vec::new()
        } else {
            value
        };
        if value.is_empty() && !claimed {
            return;
        }
        let claim = if claimed {
            self.origin.clone()
        } else {
            String::new()
        };
        let (Some(conn), Ok(handle)) = (self.link.ready(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let lock_key = self.lock_key(&query.key);
        let names: Vec<String> = if value.is_empty() {
            Vec::new()
        } else {
            names.iter().flatten().map(|n| self.name_key(n)).collect()
        };
        let member = query.key.hex();
        let prefix = format!("{}:v:", self.settings.key_prefix);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let link = self.link.clone();
        let script = self.store.clone();
        let timeout = self.settings.timeout;
        let metrics = self.metrics.clone();
        handle.spawn(async move {
            let written = link
                .run("shared_store", timeout, conn, |mut c| async move {
                    let mut inv = script.prepare_invoke();
                    inv.key(&value_key).key(&lock_key);
                    for n in &names {
                        inv.key(n);
                    }
                    inv.arg(value)
                        .arg(ttl_ms)
                        .arg(&member)
                        .arg(&claim)
                        .arg(&prefix);
                    inv.invoke_async::<i64>(&mut c).await
                })
                .await;
            let result = if written.is_ok() { "ok" } else { "error" };
            metrics.shared_writes.with_label_values(&[result]).inc();
        });
    }
}
