//! The cluster's connection for commands (everything but the blocking stream read): one
//! multiplexed connection, a timeout on every command, and a breaker, so a slow or dead
//! Redis costs a request nothing once noticed.
//!
//! - A request never waits for a connection: while there is none, [`Link::ready`]
//!   answers `None` and starts one in the background.
//! - After [`BREAKER_FAILURES`] failures in a row the breaker opens: Redis is not asked
//!   for a while (1 s, doubling up to 30 s while it keeps failing); the first success
//!   closes it.

use crate::telemetry::trace;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::clock;
use crate::telemetry::metrics::ClusterMetrics;

/// Failures in a row that open the breaker.
pub(crate) const BREAKER_FAILURES: u32 = 3;
const FIRST_OPEN: Duration = Duration::from_secs(1);
const LONGEST_OPEN: Duration = Duration::from_secs(30);

pub(crate) struct Link {
    client: redis::Client,
    connect_timeout: Duration,
    /// The client's own response timeout (commands get their own, shorter ones).
    response_timeout: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    connecting: AtomicBool,
    breaker: Mutex<LinkBreaker>,
    metrics: ClusterMetrics,
}

#[derive(Default)]
struct LinkBreaker {
    failures: u32,
    open_until: Option<Instant>,
    open_for: Duration,
}

/// A command that failed or timed out (counted under its operation's name).
#[derive(Debug)]
pub(crate) struct Failed;

impl Link {
    pub fn new(
        client: redis::Client,
        connect_timeout: Duration,
        response_timeout: Duration,
        metrics: ClusterMetrics,
    ) -> Self {
        Link {
            client,
            connect_timeout,
            response_timeout,
            conn: Mutex::new(None),
            connecting: AtomicBool::new(false),
            breaker: Mutex::new(LinkBreaker::default()),
            metrics,
        }
    }

    /// A connection for the request path, or `None` at once (breaker open, or not
    /// connected: a connection is then started in the background).
    pub(crate) fn ready(self: &Arc<Self>) -> Option<MultiplexedConnection> {
        if self.open() {
            return None;
        }
        if let Some(c) = clock::lock(&self.conn).as_ref() {
            return Some(c.clone());
        }
        if !self.connecting.swap(true, Ordering::AcqRel) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let link = self.clone();
                handle.spawn(async move {
                    let _ = link.connect().await;
                    link.connecting.store(false, Ordering::Release);
                });
            } else {
                self.connecting.store(false, Ordering::Release);
            }
        }
        None
    }

    /// A connection, connecting now if needed (waits at most `connect_timeout`); for
    /// callers that may wait (publishing a purge, start-up), never for requests.
    pub(crate) async fn connected(&self) -> Option<MultiplexedConnection> {
        if self.open() {
            return None;
        }
        if let Some(c) = clock::lock(&self.conn).as_ref() {
            return Some(c.clone());
        }
        self.connect().await
    }

    async fn connect(&self) -> Option<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let result = tokio::time::timeout(
            self.connect_timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        match result {
            Ok(Ok(c)) => {
                *clock::lock(&self.conn) = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster: cannot connect to Redis");
                self.failed("connect");
                None
            }
            Err(_) => {
                tracing::warn!("cluster: connecting to Redis timed out");
                self.failed("connect");
                None
            }
        }
    }

    /// Runs one command (or script, or pipeline) on `conn` within `timeout`; a failure
    /// is counted under `op`, drops the connection and feeds the breaker.
    pub async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        conn: MultiplexedConnection,
        f: F,
    ) -> Result<T, Failed>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        // A request's shared-cache lookup or rate-limit count: a child span of its trace.
        let mut span = trace::child(format!("redis {op}"), trace::SpanKind::Client);
        if let Some(s) = &mut span {
            s.attr("db.system.name", "redis");
            s.attr("db.operation.name", op);
        }
        let result = tokio::time::timeout(timeout, f(conn)).await;
        if let (Some(s), Err(_) | Ok(Err(_))) = (&mut span, &result) {
            s.fail(if result.is_err() {
                "timeout"
            } else {
                "redis error"
            });
        }
        drop(span);
        match result {
            Ok(Ok(v)) => {
                self.succeeded();
                Ok(v)
            }
            Ok(Err(e)) => {
                tracing::warn!(op, error = %e, "cluster: a Redis command failed");
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    // Broken: the next user makes a new connection.
                    *clock::lock(&self.conn) = None;
                }
                self.failed(op);
                Err(Failed)
            }
            Err(_) => {
                // Slow, not necessarily broken: the breaker decides when to stop asking.
                tracing::warn!(op, ?timeout, "cluster: a Redis command timed out");
                self.failed(op);
                Err(Failed)
            }
        }
    }

    /// Redis answered on another connection (the stream reader reconnected): stop
    /// waiting out the breaker, so pending purges go out at once.
    pub(crate) fn recovered(&self) {
        self.succeeded();
    }

    fn open(&self) -> bool {
        let b = clock::lock(&self.breaker);
        b.open_until.is_some_and(|until| Instant::now() < until)
    }

    fn succeeded(&self) {
        let mut b = clock::lock(&self.breaker);
        if b.failures > 0 || b.open_until.is_some() {
            *b = LinkBreaker::default();
            self.metrics.breaker_open.set(0);
        }
    }

    fn failed(&self, op: &'static str) {
        self.metrics.redis_errors.with_label_values(&[op]).inc();
        let mut b = clock::lock(&self.breaker);
        b.failures += 1;
        if b.failures >= BREAKER_FAILURES {
            b.open_for = if b.open_for.is_zero() {
                FIRST_OPEN
            } else {
                (b.open_for * 2).min(LONGEST_OPEN)
            };
            b.open_until = Some(Instant::now() + b.open_for);
            // Half-open after that: the next failure opens it again, for longer.
            b.failures = BREAKER_FAILURES - 1;
            self.metrics.breaker_open.set(1);
            tracing::warn!(open_for = ?b.open_for, "cluster: Redis keeps failing; not asking it for a while");
        }
    }
}
