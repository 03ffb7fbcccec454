//! Replicas that agree on revocations: every purge is applied locally and appended to a
//! Redis Stream that every replica reads from the last entry it saw.
//!
//! - **No lost purges, and no silent gap.** The stream carries its continuity: an
//!   *epoch* (a random id, kept in the hash `<stream>:epoch` with the stream's entry
//!   counter `n`) and, in every entry, the epoch `e` and a number `n` one above the
//!   previous entry's. Whenever the stream or its epoch key is missing (a Redis restarted
//!   empty, a key deleted or evicted), the next replica to touch it — reading or
//!   publishing, atomically in one script — starts a new epoch. On every read, not only
//!   on reconnect, a replica checks that the epoch is the one it knows and that entry
//!   numbers follow on from the last one it saw, with none missing up to the counter; a
//!   new epoch or a counter that went back (`stream_lost`), or a number skipped (entries
//!   trimmed or deleted before it read them: `trimmed`), means it cannot know what it
//!   missed, so it flushes its whole identity cache — the safe answer, counted. After an
//!   empty restart each replica therefore flushes exactly once, in whatever order they
//!   reconnect. A replica that was disconnected but lost nothing replays what it missed.
//! - **Redis is never a new way to fail.** Requests never wait for Redis. A purge made
//!   while Redis is unreachable is applied locally, answered "pending", kept in order and
//!   published once Redis is back; if more than [`PENDING_LIMIT`] pile up, they are
//!   replaced by one "flush" entry. Every command has a timeout; reconnects back off.
//! - **Nothing revealing a token goes into the stream.** A purge by token carries the
//!   token's keys (128-bit keyed hashes); a purge by subject or session id carries the
//!   name's keyed hash ([`NameHash`]). The keys are the cluster's shared secret
//!   (`cluster.key_secret_file`), so every replica derives the same ones and nobody
//!   without the secret can tie an entry to a token, user or session.
//!
//! Entry fields: `o` the publishing replica (its own entries are skipped), `e` the epoch,
//! `n` the entry's number in it, `t` the kind (`keys`, `subject`, `session`, `flush`, or
//! `epoch` for the entry that starts one), `v` the hex value(s), `p` the provider filter.
//!
//! With `shared_cache` (on by default), replicas also share provider answers
//! ([`identities`]): a purge removes the shared values it concerns *before* its stream entry
//! is appended, so a replica that applies the entry cannot find the purged identity in
//! Redis again.

mod identities;
mod limits;
mod link;
mod seal;
mod settings;
mod stream;

use stream::*;

pub(crate) use identities::{SharedCacheSettings, SharedIdentities};
pub(crate) use limits::{RateLimitSettings, SharedLimits};
pub(crate) use settings::ClusterSettings;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock;
use crate::identity::cache::{IdentityCache, Mark, NameHash, NameKind, PurgeBy, PURGE_SKEW};
use crate::identity::token::TokenKey;
use crate::telemetry::metrics::ClusterMetrics;
use link::Link;

/// Purges kept while Redis is unreachable before they are replaced by one flush.
pub(crate) const PENDING_LIMIT: usize = 10_000;

/// How far before its own start a replica that cached identities before it could reach
/// Redis replays the stream (clock skew between it and Redis).
const CLOCK_MARGIN_MS: u64 = 5_000;

/// Longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long one blocking stream read waits for new entries.
const READ_BLOCK: Duration = Duration::from_millis(1000);

/// Entries read at once.
const READ_COUNT: usize = 100;

/// Behind the stream's end by more than this many entries is reported as this many.
const LAG_COUNT_LIMIT: usize = 1000;

/// What a purge became for the other replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FanOut {
    /// Appended to the stream.
    Published,
    /// Redis was unreachable: kept, published once it is back.
    Pending,
}

impl FanOut {
    pub fn as_str(self) -> &'static str {
        match self {
            FanOut::Published => "published",
            FanOut::Pending => "pending",
        }
    }
}

/// The replica's side of the shared revocation stream.
pub(crate) struct Cluster {
    settings: ClusterSettings,
    client: redis::Client,
    /// This process's id in the stream (its own entries are not applied twice).
    origin: String,
    cache: IdentityCache,
    metrics: ClusterMetrics,
    /// Commands other than the blocking stream read (publishing, the shared cache).
    link: Arc<Link>,
    shared: Option<Arc<SharedIdentities>>,
    /// The cluster's rate-limit counters, when limits are cluster-wide.
    limits: Option<Arc<SharedLimits>>,
    /// Serializes publications (stream order is purge order).
    publishing: tokio::sync::Mutex<()>,
    pending: Mutex<VecDeque<Message>>,
    overflowed: AtomicBool,
    /// When this process started (Unix ms): a first connection replays from here.
    started_ms: u64,
    /// `<stream>:epoch`: the stream's epoch and entry counter.
    epoch_key: String,
    check: redis::Script,
    publish: redis::Script,
}

impl Cluster {
    /// Checks the settings and builds the client (no connection is made here: start-up
    /// never waits for Redis). Returns `cache` asking the shared cache on a miss, when
    /// there is one: use that one (the cache must not have been cloned before).
    pub fn new(
        settings: ClusterSettings,
        cache: IdentityCache,
        metrics: ClusterMetrics,
    ) -> Result<(Self, IdentityCache), String> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())
            .map_err(|e| format!("not a Redis URL: {e}"))?;
        if let Some(p) = &settings.password {
            let redis = info.redis_settings().clone().set_password(p.expose());
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        metrics.enabled.set(1);
        let origin = hex::encode(rand::random::<[u8; 8]>());
        let link = Arc::new(Link::new(
            client.clone(),
            settings.connect_timeout,
            // The client's own limit must outlast every command's (purges may take 500 ms).
            settings.command_timeout.max(Duration::from_secs(1)),
            metrics.clone(),
        ));
        let shared = settings.shared_cache.clone().map(|s| {
            Arc::new(SharedIdentities::new(
                link.clone(),
                s,
                &settings.derive_key("identity values"),
                origin.clone(),
                metrics.clone(),
            ))
        });
        let cache = match &shared {
            Some(tier) => cache.with_shared(tier.clone()),
            None => cache,
        };
        let limits = settings.rate_limits.clone().map(|s| {
            Arc::new(SharedLimits::new(
                link.clone(),
                s,
                origin.clone(),
                metrics.clone(),
            ))
        });
        Ok((
            Cluster {
                client,
                origin,
                cache: cache.clone(),
                metrics,
                link,
                shared,
                limits,
                publishing: tokio::sync::Mutex::new(()),
                pending: Mutex::new(VecDeque::new()),
                overflowed: AtomicBool::new(false),
                started_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                epoch_key: format!("{}:epoch", settings.stream),
                check: redis::Script::new(&format!("{ENSURE_EPOCH}{CHECK}")),
                publish: redis::Script::new(&format!("{ENSURE_EPOCH}{PUBLISH}")),
                settings,
            },
            cache,
        ))
    }

    /// The cluster's rate-limit counters, when limits are cluster-wide.
    pub(crate) fn limits(&self) -> Option<&Arc<SharedLimits>> {
        self.limits.as_ref()
    }

    /// Lines for `/readyz`: whether the stream is being read, what waits, and where rate
    /// limits are counted.
    pub(crate) fn status_line(&self) -> String {
        let limits = self
            .limits
            .as_ref()
            .map(|l| l.status_line())
            .unwrap_or_default();
        limits
            + &format!(
                "cluster: redis {}, purges pending {}, shared cache {}\n",
                if self.metrics.redis_up.get() == 1 {
                    "up"
                } else {
                    "down (revocations from other replicas resume on reconnect)"
                },
                self.metrics.pending.get(),
                match (&self.shared, self.metrics.breaker_open.get()) {
                    (None, _) => "off",
                    (Some(_), 0) => "on",
                    (Some(_), _) => "paused (Redis failing; local cache and provider serve)",
                }
            )
    }

    /// Sends a purge just applied locally to the other replicas: published if Redis
    /// answers within `command_timeout`, else kept to be published later.
    pub(crate) async fn publish(&self, by: &PurgeBy, provider: Option<&str>) -> FanOut {
        let message = match by {
            PurgeBy::Keys(keys) if keys.is_empty() => return FanOut::Published,
            PurgeBy::Keys(keys) => Message::Keys(keys.clone()),
            PurgeBy::Subject(s) => Message::Name(
                NameKind::Subject,
                self.cache.name_hash(NameKind::Subject, s),
                provider.map(str::to_string),
            ),
            PurgeBy::SessionId(s) => Message::Name(
                NameKind::Session,
                self.cache.name_hash(NameKind::Session, s),
                provider.map(str::to_string),
            ),
            PurgeBy::Name(kind, hash) => Message::Name(*kind, *hash, provider.map(str::to_string)),
        };
        // Earlier purges go first: only publish directly when none is waiting.
        if clock::lock(&self.pending).is_empty() && self.append(&message).await {
            return FanOut::Published;
        }
        self.keep(message);
        FanOut::Pending
    }

    fn keep(&self, message: Message) {
        let mut pending = clock::lock(&self.pending);
        if pending.len() >= PENDING_LIMIT {
            pending.clear();
            self.overflowed.store(true, Ordering::Release);
        } else {
            pending.push_back(message);
        }
        self.metrics.pending.set(pending.len() as i64);
    }

    /// Removes what the purge concerns from the shared cache, then appends it to the
    /// stream (XADD), each within `command_timeout`; false on any failure.
    async fn append(&self, message: &Message) -> bool {
        let _order = self.publishing.lock().await;
        if let Some(shared) = &self.shared {
            let removed = match message {
                Message::Keys(keys) => shared.remove_keys(keys).await,
                Message::Name(_, hash, _) => shared.remove_name(hash).await,
                Message::Flush => shared.remove_all().await,
            };
            if !removed {
                return false;
            }
        }
        let Some(conn) = self.link.connected().await else {
            return false;
        };
        let mut invocation = self.publish.prepare_invoke();
        invocation
            .key(&self.settings.stream)
            .key(&self.epoch_key)
            .arg(new_epoch())
            .arg(&self.origin)
            .arg(self.settings.max_entries);
        for (k, v) in message.fields() {
            invocation.arg(k).arg(v);
        }
        let sent = self
            .link
            .run(
                "publish",
                self.settings.command_timeout,
                conn,
                |mut c| async move {
                    invocation
                        .invoke_async::<(String, u64, String)>(&mut c)
                        .await
                },
            )
            .await;
        if sent.is_ok() {
            self.metrics.published.inc();
        }
        sent.is_ok()
    }

    /// Publishes what waited, in order; stops at the first failure.
    async fn publish_pending(&self) {
        if self.overflowed.load(Ordering::Acquire) {
            if !self.append(&Message::Flush).await {
                return;
            }
            self.overflowed.store(false, Ordering::Release);
        }
        loop {
            let Some(next) = clock::lock(&self.pending).front().cloned() else {
                return;
            };
            if !self.append(&next).await {
                return;
            }
            let mut pending = clock::lock(&self.pending);
            pending.pop_front();
            self.metrics.pending.set(pending.len() as i64);
        }
    }

    async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, ()> {
        // The client's own response timeout must outlast a blocking read; each command
        // gets its own, shorter, timeout here.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(READ_BLOCK + self.settings.command_timeout));
        match tokio::time::timeout(
            self.settings.connect_timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                tracing::warn!(url = %self.settings.url, error = %e, "cluster: cannot connect to Redis");
                self.metrics
                    .redis_errors
                    .with_label_values(&["connect"])
                    .inc();
                Err(())
            }
            Err(_) => {
                tracing::warn!(url = %self.settings.url, "cluster: connecting to Redis timed out");
                self.metrics
                    .redis_errors
                    .with_label_values(&["connect"])
                    .inc();
                Err(())
            }
        }
    }

    /// Reads the stream until `stop` fires: applies other replicas' purges, publishes
    /// pending ones, reconnects with backoff, flushes when it may have missed entries.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut position: Option<Position> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if *stop.borrow() {
                return;
            }
            if let Ok(mut conn) = self.connect().await {
                // Redis is back: the command connection too, so the shared cache and the
                // pending purges need not wait out the breaker.
                self.link.recovered();
                let _ = self.link.connected().await;
                // A failed check keeps the position: the next connection resumes there.
                match self.catch_up(&mut conn, position.clone()).await {
                    Ok(start) => {
                        self.track_epoch(&start);
                        self.metrics.redis_up.set(1);
                        backoff = Duration::from_millis(100);
                        tracing::info!(stream = %self.settings.stream, "cluster: reading the revocation stream");
                        let mut at = start;
                        self.read(&mut conn, &mut at, &mut stop).await;
                        position = Some(at);
                    }
                    Err(e) => self.check_failed(&e),
                }
            }
            self.metrics.redis_up.set(0);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Shares identities under the epoch this replica now reads, and takes only those.
    fn track_epoch(&self, at: &Position) {
        if let Some(shared) = &self.shared {
            shared.set_epoch(&at.epoch);
        }
    }

    /// The stream's epoch, entry counter and last id, at one instant; starts a new epoch
    /// when the stream or its epoch key is missing.
    async fn check(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<Continuity, String> {
        let (epoch, counter, last_id) = tokio::time::timeout(
            self.settings.command_timeout,
            self.check
                .key(&self.settings.stream)
                .key(&self.epoch_key)
                .arg(new_epoch())
                .arg(&self.origin)
                .invoke_async::<(String, u64, String)>(conn),
        )
        .await
        .map_err(|_| "the stream check timed out".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(Continuity {
            epoch,
            counter,
            last_id,
        })
    }

    fn check_failed(&self, error: &str) {
        tracing::warn!(error = %error, "cluster: checking the revocation stream failed");
        self.metrics
            .redis_errors
            .with_label_values(&["check"])
            .inc();
    }

    /// Flushes the identity cache because purges may have been missed, counted.
    async fn flush_missed(&self, reason: &'static str) {
        // A new epoch needs no floor: values sealed under the old one are told apart by
        // the epoch sealed in them. A gap does: its purges are unknown.
        let n = self.cache.flush(reason != "stream_lost").await;
        self.metrics.flushes.with_label_values(&[reason]).inc();
        tracing::warn!(
            reason,
            flushed = n,
            "cluster: revocations may have been missed; identity cache flushed"
        );
    }

    /// Where to read from after (re)connecting; flushes the cache when entries after
    /// the last one read may be gone.
    async fn catch_up(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        last: Option<Position>,
    ) -> Result<Position, String> {
        let now = self.check(conn).await?;
        match last {
            None => {
                if self.shared.is_some() {
                    self.seed(conn, &now).await?;
                }
                self.cache.sync().await;
                if self.cache.entry_count() == 0 {
                    // First connection with nothing cached: nothing older than now matters.
                    return Ok(Position::at_end(&now));
                }
                // Identities were cached before the stream could be read (Redis was
                // unreachable at start): replay the purges made since this process
                // started (less a margin for clock skew with Redis), or flush if they
                // are gone.
                let from = format!("{}-0", self.started_ms.saturating_sub(CLOCK_MARGIN_MS));
                if self.trimmed_after(conn, &from).await? {
                    self.flush_missed("trimmed").await;
                    return Ok(Position::at_end(&now));
                }
                Ok(Position {
                    id: from,
                    epoch: now.epoch,
                    n: None,
                    added: now.counter,
                })
            }
            Some(mut at) => {
                if let Some(reason) = at.checked(&now) {
                    self.flush_missed(reason).await;
                    return Ok(Position::at_end(&now));
                }
                // Entries after `at` are read next; any that are gone show as a number
                // skipped, or as fewer entries than the counter.
                Ok(at)
            }
        }
    }

    /// A first connection: tells the cache the purges of the stream's last `cache.ttl`
    /// (and the floor its gaps, flushes and epoch start imply), so that a shared value
    /// sealed before one of them is never served — whoever wrote it back to Redis. Until
    /// this succeeds the cache trusts no shared value.
    async fn seed(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        now: &Continuity,
    ) -> Result<(), String> {
        let window = self.cache.settings().ttl + 2 * PURGE_SKEW;
        let from = SystemTime::now()
            .checked_sub(window)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        let mut entries = Vec::new();
        let mut start = format!("{from}-0");
        loop {
            let page = self
                .command(
                    redis::cmd("XRANGE")
                        .arg(&self.settings.stream)
                        .arg(&start)
                        .arg("+")
                        .arg("COUNT")
                        .arg(SEED_PAGE),
                    conn,
                )
                .await?;
            let page: redis::streams::StreamRangeReply =
                redis::from_redis_value(page).map_err(|e| e.to_string())?;
            let full = page.ids.len() == SEED_PAGE;
            for entry in page.ids {
                start = format!("({}", entry.id);
                entries.push((entry.id.clone(), fields_of(&entry)));
            }
            if !full {
                break;
            }
        }
        // The entry just before the window: the first one in it must follow on from it.
        let before_end = entries
            .first()
            .map_or_else(|| "+".to_string(), |(id, _)| format!("({id}"));
        let before: redis::streams::StreamRangeReply = redis::from_redis_value(
            self.command(
                redis::cmd("XREVRANGE")
                    .arg(&self.settings.stream)
                    .arg(&before_end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
                conn,
            )
            .await?,
        )
        .map_err(|e| e.to_string())?;
        let before = before
            .ids
            .first()
            .and_then(|e| fields_of(e).get("n").and_then(|n| n.parse().ok()));
        let (marks, floor) = recent_purges(before, &entries, now);
        let kept = self.cache.seed_purges(marks, floor);
        tracing::info!(
            entries = entries.len(),
            marks = kept,
            floor = floor.is_some(),
            "cluster: recent purges read from the revocation stream; shared identities sealed before them are not served"
        );
        Ok(())
    }

    /// One command with the command timeout.
    async fn command(
        &self,
        cmd: &redis::Cmd,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> Result<redis::Value, String> {
        tokio::time::timeout(self.settings.command_timeout, cmd.query_async(conn))
            .await
            .map_err(|_| "a revocation-stream command timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Whether entries after `from` may have been trimmed: the oldest one left is after
    /// it and some were removed (Redis 7 counts every entry added).
    async fn trimmed_after(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        from: &str,
    ) -> Result<bool, String> {
        let info = tokio::time::timeout(
            self.settings.command_timeout,
            redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&self.settings.stream)
                .query_async::<HashMap<String, redis::Value>>(conn),
        )
        .await
        .map_err(|_| "XINFO STREAM timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let text = |v: Option<&redis::Value>| -> Option<String> {
            v.and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        };
        let number = |k: &str| -> Option<u64> {
            info.get(k)
                .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
        };
        let never_trimmed = number("entries-added").is_some_and(|a| Some(a) == number("length"));
        let first = text(info.get("recorded-first-entry-id")).or_else(|| {
            text(info.get("first-entry").and_then(|e| match e {
                redis::Value::Array(parts) => parts.first(),
                _ => None,
            }))
        });
        Ok(!never_trimmed && first.is_none_or(|f| id_after(&f, from)))
    }

    async fn read(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        at: &mut Position,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            self.publish_pending().await;
            let mut cmd = redis::cmd("XREAD");
            let read = cmd
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.settings.stream)
                .arg(&at.id)
                .query_async::<Option<redis::streams::StreamReadReply>>(conn);
            let reply = tokio::select! {
                r = tokio::time::timeout(READ_BLOCK + self.settings.command_timeout, read) => r,
                _ = stop.changed() => return,
            };
            let reply = match reply {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cluster: reading the revocation stream failed");
                    self.metrics.redis_errors.with_label_values(&["read"]).inc();
                    return;
                }
                Err(_) => {
                    tracing::warn!("cluster: reading the revocation stream timed out");
                    self.metrics.redis_errors.with_label_values(&["read"]).inc();
                    return;
                }
            };
            let entries: Vec<_> = reply
                .map(|r| r.keys)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|k| k.ids)
                .map(|entry| (entry.id.clone(), fields_of(&entry)))
                .collect();
            if entries.is_empty() {
                // Nothing new within the block time: caught up.
                self.metrics.lag.set(0.0);
            }
            let numbers: Vec<_> = entries
                .iter()
                .map(|(_, f)| {
                    (
                        f.get("e").map(String::as_str),
                        f.get("n").and_then(|n| n.parse().ok()),
                    )
                })
                .collect();
            let missed = at.read(&numbers);
            for (id, fields) in &entries {
                self.apply(id, fields).await;
            }
            if let Some((id, _)) = entries.last() {
                at.id = id.clone();
            }
            if let Some(reason) = missed {
                self.flush_missed(reason).await;
            }
            // Checked after every read: a stream re-created, or entries removed that this
            // replica had not read yet, is noticed within one read.
            match self.check(conn).await {
                Ok(now) => {
                    if let Some(reason) = at.checked(&now) {
                        self.flush_missed(reason).await;
                        *at = Position::at_end(&now);
                        self.track_epoch(at);
                    }
                }
                Err(e) => {
                    self.check_failed(&e);
                    return;
                }
            }
            let behind = if entries.len() == READ_COUNT {
                self.entries_after(conn, &at.id).await
            } else {
                // A partial batch is the stream's end.
                0
            };
            self.metrics.lag_entries.set(behind as i64);
        }
    }

    /// How many entries follow `id` (at most [`LAG_COUNT_LIMIT`]); asked only while this
    /// replica reads full batches, i.e. is behind.
    async fn entries_after(&self, conn: &mut redis::aio::MultiplexedConnection, id: &str) -> usize {
        let after = tokio::time::timeout(
            self.settings.command_timeout,
            redis::cmd("XRANGE")
                .arg(&self.settings.stream)
                .arg(format!("({id}"))
                .arg("+")
                .arg("COUNT")
                .arg(LAG_COUNT_LIMIT)
                .query_async::<Vec<redis::Value>>(conn),
        )
        .await;
        match after {
            Ok(Ok(entries)) => entries.len(),
            // Unknown: keep reporting a full batch's worth (the replica is behind).
            _ => READ_COUNT,
        }
    }

    async fn apply(&self, id: &str, fields: &HashMap<String, String>) {
        if fields.get("o") == Some(&self.origin) || fields.get("t").is_some_and(|t| t == "epoch") {
            return;
        }
        let Some(message) = Message::parse(fields) else {
            tracing::warn!(id = %id, "cluster: a revocation-stream entry this version cannot read; skipped");
            return;
        };
        match &message {
            Message::Keys(keys) => {
                self.cache.purge(&PurgeBy::Keys(keys.clone()), None).await;
            }
            Message::Name(kind, hash, provider) => {
                self.cache
                    .purge(&PurgeBy::Name(*kind, *hash), provider.as_deref())
                    .await;
            }
            Message::Flush => {
                self.cache.flush(true).await;
                self.metrics.flushes.with_label_values(&["remote"]).inc();
            }
        }
        self.metrics.applied.inc();
        if let Some(ms) = id.split('-').next().and_then(|ms| ms.parse::<u128>().ok()) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            self.metrics.lag.set(now.saturating_sub(ms) as f64 / 1000.0);
        }
    }
}
