//! Replicas that agree on revocations: every purge is applied locally and appended to a
//! Redis Stream that every replica reads from the last entry it saw.
//!
//! - **No lost purges.** A replica that was disconnected replays what it missed when it
//!   reconnects (it reads on from its last entry id). If entries it had not seen may have
//!   been trimmed away meanwhile (the last entry it saw is no longer in the stream), or
//!   the stream itself is gone (a Redis restarted without persistence), it cannot know
//!   what it missed and flushes its whole identity cache instead — the safe answer,
//!   counted.
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
//! Entry fields: `o` the publishing replica (its own entries are skipped), `t` the kind
//! (`keys`, `subject`, `session`, `flush`), `v` the hex value(s), `p` the provider filter.
//!
//! With `shared_cache` (on by default), replicas also share provider answers
//! ([`shared`]): a purge removes the shared values it concerns *before* its stream entry
//! is appended, so a replica that applies the entry cannot find the purged identity in
//! Redis again.

mod link;
mod seal;
mod shared;

pub use shared::{SharedCacheSettings, SharedIdentities};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock;
use crate::identity::cache::{IdentityCache, NameHash, NameKind, PurgeBy};
use crate::identity::token::TokenKey;
use crate::secret::Secret;
use crate::telemetry::metrics::ClusterMetrics;
use link::Link;

/// Purges kept while Redis is unreachable before they are replaced by one flush.
pub const PENDING_LIMIT: usize = 10_000;

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

/// The `cluster:` section, resolved.
#[derive(Clone)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://` (TLS), without a password.
    pub url: String,
    pub password: Option<Secret>,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for one command (a purge waits at most this for its publication).
    pub command_timeout: Duration,
    /// The secret every replica shares; keys token keys and purge names.
    pub key_secret: Secret,
    /// The stream's key.
    pub stream: String,
    /// The stream is trimmed (approximately) to this many entries.
    pub max_entries: u64,
    /// The shared identity cache; `None`: replicas share revocations only.
    pub shared_cache: Option<SharedCacheSettings>,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("url", &self.url)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("stream", &self.stream)
            .field("max_entries", &self.max_entries)
            .field("shared_cache", &self.shared_cache)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClusterSettings {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
            && self.password.as_ref().map(Secret::expose)
                == other.password.as_ref().map(Secret::expose)
            && self.connect_timeout == other.connect_timeout
            && self.command_timeout == other.command_timeout
            && self.key_secret.expose() == other.key_secret.expose()
            && self.stream == other.stream
            && self.max_entries == other.max_entries
            && self.shared_cache == other.shared_cache
    }
}

impl ClusterSettings {
    /// A 32-byte key for one use (`label`), derived from the shared secret.
    pub fn derive_key(&self, label: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key_secret.expose().as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(b"sessiongate cluster key: ");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// What a purge became for the other replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
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

/// One stream entry's content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Message {
    Keys(Vec<TokenKey>),
    Name(NameKind, NameHash, Option<String>),
    Flush,
}

impl Message {
    fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Message::Keys(keys) => vec![
                ("t", "keys".into()),
                (
                    "v",
                    keys.iter().map(TokenKey::hex).collect::<Vec<_>>().join(","),
                ),
            ],
            Message::Name(kind, hash, provider) => {
                let mut f = vec![
                    (
                        "t",
                        match kind {
                            NameKind::Subject => "subject",
                            NameKind::Session => "session",
                        }
                        .into(),
                    ),
                    ("v", hex::encode(hash.0)),
                ];
                if let Some(p) = provider {
                    f.push(("p", p.clone()));
                }
                f
            }
            Message::Flush => vec![("t", "flush".into())],
        }
    }

    fn parse(fields: &HashMap<String, String>) -> Option<Message> {
        let value = fields.get("v").map(String::as_str).unwrap_or("");
        let name = |kind| {
            let mut hash = [0u8; 16];
            hex::decode_to_slice(value, &mut hash).ok()?;
            Some(Message::Name(
                kind,
                NameHash(hash),
                fields.get("p").cloned(),
            ))
        };
        match fields.get("t")?.as_str() {
            "keys" => value
                .split(',')
                .map(TokenKey::from_hex)
                .collect::<Option<Vec<_>>>()
                .map(Message::Keys),
            "subject" => name(NameKind::Subject),
            "session" => name(NameKind::Session),
            "flush" => Some(Message::Flush),
            _ => None,
        }
    }
}

/// The replica's side of the shared revocation stream.
pub struct Cluster {
    settings: ClusterSettings,
    client: redis::Client,
    /// This process's id in the stream (its own entries are not applied twice).
    origin: String,
    cache: IdentityCache,
    metrics: ClusterMetrics,
    /// Commands other than the blocking stream read (publishing, the shared cache).
    link: Arc<Link>,
    shared: Option<Arc<SharedIdentities>>,
    /// Serializes publications (stream order is purge order).
    publishing: tokio::sync::Mutex<()>,
    pending: Mutex<VecDeque<Message>>,
    overflowed: AtomicBool,
    /// When this process started (Unix ms): a first connection replays from here.
    started_ms: u64,
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
        Ok((
            Cluster {
                settings,
                client,
                origin,
                cache: cache.clone(),
                metrics,
                link,
                shared,
                publishing: tokio::sync::Mutex::new(()),
                pending: Mutex::new(VecDeque::new()),
                overflowed: AtomicBool::new(false),
                started_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            },
            cache,
        ))
    }

    /// One line for `/readyz`: whether the stream is being read, and what waits.
    pub fn status_line(&self) -> String {
        format!(
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
    pub async fn publish(&self, by: &PurgeBy, provider: Option<&str>) -> FanOut {
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
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.settings.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.settings.max_entries)
            .arg("*")
            .arg("o")
            .arg(&self.origin);
        for (k, v) in message.fields() {
            cmd.arg(k).arg(v);
        }
        let sent = self
            .link
            .run(
                "publish",
                self.settings.command_timeout,
                conn,
                |mut c| async move { cmd.query_async::<String>(&mut c).await },
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
        let mut last: Option<String> = None;
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
                match self.catch_up(&mut conn, last.as_deref()).await {
                    Ok(start) => {
                        self.metrics.redis_up.set(1);
                        backoff = Duration::from_millis(100);
                        tracing::info!(stream = %self.settings.stream, "cluster: reading the revocation stream");
                        last = Some(start);
                        self.read(&mut conn, &mut last, &mut stop).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster: checking the revocation stream failed");
                        self.metrics
                            .redis_errors
                            .with_label_values(&["check"])
                            .inc();
                    }
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

    /// Where to read from after (re)connecting; flushes the cache when entries after
    /// `last` may be gone.
    async fn catch_up(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        last: Option<&str>,
    ) -> Result<String, String> {
        let info = tokio::time::timeout(
            self.settings.command_timeout,
            redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&self.settings.stream)
                .query_async::<HashMap<String, redis::Value>>(conn),
        )
        .await
        .map_err(|_| "XINFO STREAM timed out".to_string())?;
        let info = match info {
            Ok(info) => Some(info),
            Err(e) if e.to_string().contains("no such key") => None,
            Err(e) => return Err(e.to_string()),
        };
        let text = |v: Option<&redis::Value>| -> Option<String> {
            v.and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        };
        let generated = info
            .as_ref()
            .and_then(|i| text(i.get("last-generated-id")))
            .unwrap_or_else(|| "0-0".into());
        let number = |k: &str| -> Option<u64> {
            info.as_ref()?
                .get(k)
                .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
        };
        // Nothing was ever trimmed (Redis 7 counts every entry added).
        let never_trimmed = number("entries-added").is_some_and(|a| Some(a) == number("length"));
        let (resume, missed) = match last {
            None => {
                self.cache.sync().await;
                if self.cache.entry_count() == 0 {
                    // First connection with nothing cached: nothing older than now matters.
                    return Ok(generated);
                }
                let Some(info) = &info else {
                    // No stream: nothing was ever published.
                    return Ok("0-0".into());
                };
                // Identities were cached before the stream could be read (Redis was
                // unreachable at start): replay the purges made since this process
                // started (less a margin for clock skew with Redis), or flush if they
                // are gone.
                let from = format!("{}-0", self.started_ms.saturating_sub(CLOCK_MARGIN_MS));
                let first = text(info.get("recorded-first-entry-id")).or_else(|| {
                    text(info.get("first-entry").and_then(|e| match e {
                        redis::Value::Array(parts) => parts.first(),
                        _ => None,
                    }))
                });
                let gone = !never_trimmed && first.is_none_or(|f| id_after(&f, &from));
                (from, gone.then_some("trimmed"))
            }
            Some(last) => {
                let missed = if info.is_none() || id_after(last, &generated) {
                    // The stream is gone (a Redis restarted empty) or restarted below
                    // where this replica was: what was in it is unknown.
                    Some("stream_lost")
                } else if never_trimmed {
                    None
                } else if last == "0-0" || !self.still_there(conn, last).await? {
                    // Trimming removes the oldest entries first: while the last entry this
                    // replica saw is still there, so is everything after it. Once it is
                    // gone, entries it never saw may be gone too.
                    Some("trimmed")
                } else {
                    None
                };
                (last.to_string(), missed)
            }
        };
        if let Some(reason) = missed {
            let n = self.cache.flush().await;
            self.metrics.flushes.with_label_values(&[reason]).inc();
            tracing::warn!(
                reason,
                flushed = n,
                "cluster: revocations may have been missed; identity cache flushed"
            );
            return Ok(generated);
        }
        Ok(resume)
    }

    /// Whether the entry `id` is still in the stream.
    async fn still_there(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        id: &str,
    ) -> Result<bool, String> {
        let found = tokio::time::timeout(
            self.settings.command_timeout,
            redis::cmd("XRANGE")
                .arg(&self.settings.stream)
                .arg(id)
                .arg(id)
                .query_async::<Vec<redis::Value>>(conn),
        )
        .await
        .map_err(|_| "XRANGE timed out".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(!found.is_empty())
    }

    async fn read(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        last: &mut Option<String>,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            self.publish_pending().await;
            let from = last.clone().unwrap_or_else(|| "0-0".into());
            let mut cmd = redis::cmd("XREAD");
            let read = cmd
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.settings.stream)
                .arg(&from)
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
            let keys = reply.map(|r| r.keys).unwrap_or_default();
            let read: usize = keys.iter().map(|k| k.ids.len()).sum();
            if read == 0 {
                // Nothing new within the block time: caught up.
                self.metrics.lag.set(0.0);
            }
            for key in keys {
                for entry in key.ids {
                    self.apply(&entry).await;
                    *last = Some(entry.id);
                }
            }
            let behind = match last.as_deref() {
                Some(id) if read == READ_COUNT => self.entries_after(conn, id).await,
                // A partial batch is the stream's end.
                _ => 0,
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

    async fn apply(&self, entry: &redis::streams::StreamId) {
        let fields: HashMap<String, String> = entry
            .map
            .iter()
            .filter_map(|(k, v)| {
                redis::from_redis_value_ref::<String>(v)
                    .ok()
                    .map(|v| (k.clone(), v))
            })
            .collect();
        if fields.get("o") == Some(&self.origin) {
            return;
        }
        let Some(message) = Message::parse(&fields) else {
            tracing::warn!(id = %entry.id, "cluster: a revocation-stream entry this version cannot read; skipped");
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
                self.cache.flush().await;
                self.metrics.flushes.with_label_values(&["remote"]).inc();
            }
        }
        self.metrics.applied.inc();
        if let Some(ms) = entry
            .id
            .split('-')
            .next()
            .and_then(|ms| ms.parse::<u128>().ok())
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            self.metrics.lag.set(now.saturating_sub(ms) as f64 / 1000.0);
        }
    }
}

/// Stream ids `ms-seq`, compared as numbers: true when `a` comes after `b`.
fn id_after(a: &str, b: &str) -> bool {
    parse_id(a) > parse_id(b)
}

fn parse_id(id: &str) -> (u64, u64) {
    let mut parts = id.splitn(2, '-');
    let ms = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let seq = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (ms, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reveal_no_names() {
        let key = TokenKey::from_hex("00112233445566778899aabbccddeeff").unwrap();
        for m in [
            Message::Keys(vec![key, key]),
            Message::Name(NameKind::Subject, NameHash([7; 16]), Some("bitgo".into())),
            Message::Name(NameKind::Session, NameHash([9; 16]), None),
            Message::Flush,
        ] {
            let fields: HashMap<String, String> = m
                .fields()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(Message::parse(&fields), Some(m));
        }
        let junk: HashMap<String, String> = [
            ("t".to_string(), "keys".to_string()),
            ("v".into(), "zz".into()),
        ]
        .into();
        assert_eq!(Message::parse(&junk), None);
    }

    #[test]
    fn stream_ids_compare_as_numbers() {
        assert!(id_after("10-0", "9-5"));
        assert!(id_after("10-2", "10-1"));
        assert!(!id_after("10-1", "10-1"));
        assert!(!id_after("9-9", "10-0"));
    }
}
