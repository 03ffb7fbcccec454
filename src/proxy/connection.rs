//! Limits on downstream connections, enforced below Pingora's HTTP layer. Every
//! connection has a deadline in every state, whatever protocol it turns out to be:
//!
//! - **max connections**: past `connections.max_connections` open connections, a new one
//!   is answered `503` and closed before any request is read;
//! - **opening** (`connections.header_timeout`, counted `header_timeout`): from accept
//!   (on TLS: from the end of the handshake, which has the same deadline of its own) until
//!   the first request head is complete — or, for HTTP/2, the preface and the client's
//!   SETTINGS frame. Silence, one byte, part of a head, part of the preface: all end at the
//!   same deadline, and trickling bytes does not move it, so a flood of stalled openings
//!   holds a connection slot for at most one deadline;
//! - **header deadline** for every later request: from its first byte to the end of its
//!   headers at most `connections.header_timeout` (Pingora only bounds each single read,
//!   so headers trickled a line at a time were never cut off);
//! - **idle**: a kept-alive HTTP/1 connection that sends nothing after a response is
//!   closed after `connections.idle_timeout` (Pingora's own keep-alive wait is
//!   unbounded); an open HTTP/2 connection with no stream is closed by Pingora's HTTP/2
//!   server after the same time (`h2_idle_timeout`); while a request body arrives,
//!   pauses are bounded by `connections.body_idle_timeout` (the session read timeout the
//!   proxy sets).
//!
//! With `h2c: true`, Pingora peeks at a plain connection's first 24 bytes for the HTTP/2
//! preface. The peek is answered here ([`Peek`] for [`Deadlines`]): through the same
//! deadline, and stopping at the first byte that cannot be the preface (the socket's own
//! peek waits, with no deadline, for all 24 bytes — a short HTTP/1.0 request would wait
//! too).
//!
//! The header deadline needs to know where headers end: the stream wrapper looks for the
//! blank line (`\r\n\r\n` or `\n\n`) in what it reads, and treats the first write after it
//! as the start of the response. A `101 Switching Protocols` turns the connection into a
//! tunnel (WebSocket) with no deadline. Timers are armed lazily, only when a read has to
//! wait: a request whose headers arrive in one read, on a kept-alive connection, costs no
//! timer at all. A response still being written pushes the idle deadline back.
//!
//! On the TLS listener the handshake is made here too (not by Pingora's listener, which
//! allows 60 s uncounted): inside the connection count, within `header_timeout`, counted
//! by outcome. An HTTP/2 connection (ALPN `h2`, or the h2c preface as its first bytes)
//! carries frames, not HTTP/1 heads: only its opening (preface and SETTINGS, followed by
//! their lengths) has a deadline here.
//!
//! The wrapper also keeps the bytes of the request head it read last (the reads from the
//! request's first byte to the end of its headers, so any body bytes that came with
//! them too), so the direct path can hand a request it does not serve to Pingora's full
//! proxy, which reads it again from [`Deadlines::replay_request`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::proxy::shared::GatewayState;

/// The proxy application with connection limits around it.
pub struct Limited<A> {
    inner: Arc<A>,
    state: Arc<GatewayState>,
    open: Arc<AtomicUsize>,
    /// The TLS listener's acceptor: the handshake is made here, under the connection
    /// limit and the header deadline (Pingora's own listener TLS allows 60 s uncounted).
    tls: Option<Arc<Acceptor>>,
    /// The plain listener also takes HTTP/2 with prior knowledge (`h2c: true`).
    h2c: bool,
}

impl<A> Limited<A> {
    pub fn new(inner: A, state: Arc<GatewayState>) -> Self {
        Limited {
            inner: Arc::new(inner),
            state,
            open: Arc::new(AtomicUsize::new(0)),
            tls: None,
            h2c: false,
        }
    }

    /// Plain connections may open with the HTTP/2 preface (`h2c: true`): the wait for it
    /// is bounded like any opening (see [`Deadlines`]).
    pub fn h2c(mut self, h2c: bool) -> Self {
        self.h2c = h2c;
        self
    }

    /// The same application and connection count, for a listener that speaks TLS.
    pub fn with_tls(&self, acceptor: Acceptor) -> Self {
        Limited {
            inner: self.inner.clone(),
            state: self.state.clone(),
            open: self.open.clone(),
            tls: Some(Arc::new(acceptor)),
            // On TLS, ALPN says whether a connection is HTTP/2.
            h2c: false,
        }
    }
}

/// Counts a connection as open while it lives.
struct OpenGuard {
    open: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.gauge.dec();
        give_back_soon();
    }
}

/// One worker thread's closes, for [`give_back_soon`].
#[derive(Default)]
struct Closes {
    /// The last close, in milliseconds since [`CLOCK_START`].
    last_ms: std::sync::atomic::AtomicU64,
    /// A give-back task is waiting.
    pending: std::sync::atomic::AtomicBool,
}

thread_local! {
    static CLOSES: Arc<Closes> = Arc::default();
}

static CLOCK_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// How long after the last connection close its thread's allocator is asked to give freed
/// memory back: past mimalloc's purge delay (1 s), so the pages are due.
const GIVE_BACK_AFTER: Duration = Duration::from_millis(1500);

/// Memory freed by closed connections goes back to the system. mimalloc returns a free
/// page once it has been unused for its purge delay, but only when the thread that owns
/// it allocates or frees again — and a worker whose burst of connections has ended may do
/// neither for hours, keeping its high-water mark. So a close makes sure one task per
/// thread waits until [`GIVE_BACK_AFTER`] past the thread's last close and then collects
/// the thread's heap: under steady traffic that task just keeps waiting (no work per
/// close but two atomic stores); after a burst, the memory is back about 1.5 s after the
/// last close (BENCHMARKS.md, "Memory per connection"). With `work_stealing: true` the
/// task may run on another thread, which then collects its own heap instead.
fn give_back_soon() {
    let Some(&give_back) = GIVE_BACK.get() else {
        return;
    };
    let start = *CLOCK_START.get_or_init(Instant::now);
    let closes = CLOSES.with(Arc::clone);
    let now_ms = start.elapsed().as_millis() as u64;
    closes.last_ms.store(now_ms, Ordering::Relaxed);
    if closes.pending.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        closes.pending.store(false, Ordering::Release);
        return;
    };
    runtime.spawn(async move {
        loop {
            let last = Duration::from_millis(closes.last_ms.load(Ordering::Relaxed));
            let due = start + last + GIVE_BACK_AFTER;
            if Instant::now() >= due {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        closes.pending.store(false, Ordering::Release);
        give_back();
    });
}

/// How the process's allocator gives the calling thread's free memory back (set by the
/// binary, which chooses the allocator: `mi_collect` for mimalloc).
static GIVE_BACK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets how the calling thread's freed memory is given back to the system after
/// connections close (see [`give_back_soon`]); without it, nothing is done.
pub fn set_memory_give_back(give_back: fn()) {
    let _ = GIVE_BACK.set(give_back);
}

const OVER_LIMIT_BODY: &str = r#"{"error":"too_many_connections","error_description":"the gateway is at its connection limit"}"#;

/// The whole 503 answer to a connection past the limit (no request is read).
fn over_limit_response() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{OVER_LIMIT_BODY}",
        OVER_LIMIT_BODY.len()
    )
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Limited<A> {
    /// The connection goes on in a task of its own: Pingora's accept task (≈ 9 KiB, its
    /// size set by a TLS handshake this listener never makes there) ends here, and what
    /// stays is only what the connection needs while it waits (see [`Limited::serve`]).
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        tokio::spawn(self.clone().serve(stream, shutdown.clone()));
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Limited<A> {
    /// One connection, from accept to close. Its memory while it waits is kept small
    /// (BENCHMARKS.md, "Memory per connection"): the TLS handshake's state lives on the
    /// heap only during the handshake; an HTTP/1 connection waits for each request's first
    /// bytes here, holding no parser, session or buffer (the bytes are read into a
    /// per-thread scratch buffer and handed on), and a session exists only while a
    /// request is served. HTTP/2 connections go to Pingora's HTTP/2 server.
    async fn serve(self: Arc<Self>, mut stream: Stream, mut shutdown: ShutdownWatch) {
        let limits = self.state.snapshot().connections;
        let metrics = &self.state.metrics;
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        metrics.downstream_connections.inc();
        let _guard = OpenGuard {
            open: self.open.clone(),
            gauge: metrics.downstream_connections.clone(),
        };
        if before >= limits.max_connections {
            metrics
                .connections_closed
                .with_label_values(&["over_limit"])
                .inc();
            if self.tls.is_none() {
                // (No handshake is spent on a TLS connection that will not be served.)
                let response = over_limit_response();
                let write = stream.write_all(response.as_bytes());
                let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.flush()).await;
            }
            return;
        }
        // A verified client certificate stays findable while the connection is open.
        let mut registration = None;
        if let Some(acceptor) = &self.tls {
            // On the heap: the handshake's state is large and needed only until it ends.
            let Some(tls) = Box::pin(self.handshake(acceptor, stream, &limits)).await else {
                return;
            };
            registration = tls
                .get_ssl()
                .and_then(|s| s.peer_certificate_der())
                .and_then(|der| self.state.client_certs.register(der));
            stream = tls;
        }
        let closed = metrics.connections_closed.clone();
        let mut conn = Box::new(
            Deadlines::new(
                stream,
                &limits,
                Box::new(move |reason| closed.with_label_values(&[reason]).inc()),
            )
            .h2c(self.h2c),
        );
        let mut persistent: Option<HttpPersistentSettings> = None;
        loop {
            if !conn.http2 {
                let ready = tokio::select! {
                    ready = conn.await_request() => ready,
                    _ = shutdown.changed() => false,
                };
                if !ready {
                    break;
                }
            }
            if conn.http2 {
                // Pingora's HTTP/2 server (the h2c preface is read again through `Peek`).
                self.inner.process_new(conn, &shutdown).await;
                break;
            }
            // One HTTP/1 request, as Pingora's HTTP server app would serve it.
            let first = conn.take_first_bytes();
            let mut session = ServerSession::new_http1(conn);
            if let Some(first) = first {
                session.set_pipelined_prefix(first);
            }
            match persistent.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    session.set_keepalive((!*shutdown.borrow()).then_some(60));
                    session.set_keepalive_reuses_remaining(
                        self.inner
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            let Some(reused) = self.inner.process_new_http(session, &shutdown).await else {
                break;
            };
            let (stream, settings) = reused.consume();
            persistent = settings;
            conn = match stream.into_any().downcast::<Deadlines>() {
                Ok(conn) => conn,
                // Not ours back (never happens): close rather than guess.
                Err(_) => break,
            };
            if *shutdown.borrow() {
                break;
            }
            conn.rest();
        }
        drop(registration);
    }

    /// The TLS handshake, under the connection's header deadline, counted by outcome.
    async fn handshake(
        &self,
        acceptor: &Acceptor,
        stream: Stream,
        limits: &crate::proxy::shared::ConnectionLimits,
    ) -> Option<Stream> {
        // The listener is plain TCP: its streams are Pingora's L4 streams.
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            tracing::error!("TLS listener: a connection that is not TCP; closing it");
            return None;
        };
        let handshake = acceptor.tls_handshake(*l4);
        let (outcome, tls) = match tokio::time::timeout(limits.header_timeout, handshake).await {
            Ok(Ok(tls)) => ("ok", Some(tls)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                (handshake_failure(&e), None)
            }
            Err(_) => ("timeout", None),
        };
        self.state
            .metrics
            .tls_handshakes
            .with_label_values(&[outcome])
            .inc();
        tls.map(|tls| Box::new(tls) as Stream)
    }
}

/// `closed`: the client hung up before finishing the handshake (a TCP health check does,
/// sending nothing); `failed`: anything else (not TLS, no shared version or cipher, an
/// alert from the client).
fn handshake_failure(e: &pingora::Error) -> &'static str {
    // Pingora keeps the I/O error only as text ("... tls handshake eof"); the integration
    // test `tls::handshakes_are_bounded_by_the_header_deadline_and_counted` pins it.
    let text = e.to_string();
    if text.contains("handshake eof") || text.contains("reset by peer") {
        "closed"
    } else {
        "failed"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Opening: no complete first request head (or HTTP/2 opening) yet; the deadline set
    /// when the connection opened.
    Fresh,
    /// Receiving request headers (header deadline).
    Headers,
    /// Headers done: body, waiting for the upstream, writing the response.
    Request,
    /// A response is being or was written; the next bytes read start a new request.
    Responded,
    /// After `101 Switching Protocols`: bytes are not HTTP any more.
    Tunnel,
}

/// A downstream stream that enforces the idle and header deadlines (see the module docs).
pub struct Deadlines {
    inner: Stream,
    phase: Phase,
    idle_timeout: Duration,
    header_timeout: Duration,
    /// When the current phase's deadline passes; computed when first needed.
    deadline: Option<Instant>,
    /// The timer, created and set only when a read has to wait under a deadline.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Writes so far, and at the moment the idle deadline was set: a response still being
    /// written is not idleness.
    writes: u64,
    writes_at_deadline: u64,
    blank_line: BlankLine,
    on_close: Box<dyn Fn(&'static str) + Send + Sync>,
    /// The reads of the current request head, byte for byte (see the module docs).
    head: Vec<u8>,
    /// Bytes to serve again before reading the socket, and how many were served.
    replay: Option<(Vec<u8>, usize)>,
    /// Bytes [`Deadlines::await_request`] read, served before `replay` (or handed to an
    /// HTTP/1 session whole: [`Deadlines::take_first_bytes`]).
    first: Option<bytes::BytesMut>,
    /// The current head outgrew [`HEAD_LIMIT`] or its response began: not kept.
    head_lost: bool,
    /// HTTP/2 (ALPN `h2`, or the h2c preface): frames, not HTTP/1 heads. Its opening
    /// (preface and the client's SETTINGS) has the header deadline; once open, Pingora
    /// closes it when idle with no stream open (`h2_idle_timeout`).
    http2: bool,
    /// A plain connection may still turn out to be h2c: every byte read so far is the
    /// start of the HTTP/2 preface (only with `h2c: true`).
    maybe_h2c: bool,
    /// Bytes of the HTTP/2 client preface read so far (the opening's first part).
    h2_preface: usize,
    /// The client's frames after the preface: the first complete one (SETTINGS) ends the
    /// opening; a GOAWAY from the client is noted.
    h2_in: FrameHeaders,
    /// The frames the gateway writes on an HTTP/2 connection, followed to see a GOAWAY.
    h2_out: FrameHeaders,
    /// The client ended the connection (a read gave EOF) or it broke (an I/O error).
    ended_by_peer: bool,
    tunnel_idle: Duration,
    tunnel_max: Option<Duration>,
    /// When the tunnel opened (a `101` went out), for `tunnel_max`.
    tunnel_opened: Option<Instant>,
    /// The tunnel's last write to the client (activity that keeps it open).
    tunnel_last_write: Option<Instant>,
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The request-head memory an idle kept-alive connection keeps for its next request.
const KEPT_HEAD_BYTES: usize = 1024;

/// The most request-head bytes kept for a hand-over: Pingora's own header limit (1 MiB)
/// plus one read.
const HEAD_LIMIT: usize = (1 << 20) + 64 * 1024;

impl std::fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlines")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl Deadlines {
    pub fn new(
        inner: Stream,
        limits: &crate::proxy::shared::ConnectionLimits,
        on_close: Box<dyn Fn(&'static str) + Send + Sync>,
    ) -> Self {
        let (idle_timeout, header_timeout) = (limits.idle_timeout, limits.header_timeout);
        let http2 = inner.selected_alpn_proto() == Some(ALPN::H2);
        Deadlines {
            http2,
            maybe_h2c: false,
            h2_preface: 0,
            h2_in: FrameHeaders::default(),
            h2_out: FrameHeaders::default(),
            ended_by_peer: false,
            tunnel_idle: limits.tunnel_idle_timeout,
            tunnel_max: limits.tunnel_max_duration,
            tunnel_opened: None,
            tunnel_last_write: None,
            inner,
            phase: Phase::Fresh,
            idle_timeout,
            header_timeout,
            // Until the first request head (or the HTTP/2 opening) is complete.
            deadline: Some(Instant::now() + header_timeout),
            sleep: None,
            writes: 0,
            writes_at_deadline: 0,
            blank_line: BlankLine::default(),
            on_close,
            head: Vec::new(),
            replay: None,
            first: None,
            head_lost: false,
        }
    }

    /// A plain connection whose first bytes may be the HTTP/2 preface (`h2c: true`).
    pub fn h2c(mut self, h2c: bool) -> Self {
        self.maybe_h2c = h2c && !self.http2 && self.phase == Phase::Fresh;
        self
    }

    /// Makes the next reads return the current request's head again (the bytes read from
    /// its first byte to the end of its headers), then continue with the socket. False
    /// when those bytes were not all kept (a head larger than Pingora accepts, or a
    /// response already begun): the connection cannot be handed over.
    pub fn replay_request(&mut self) -> bool {
        if self.head_lost || self.head.is_empty() {
            return false;
        }
        let head = std::mem::take(&mut self.head);
        self.replay = Some((head, 0));
        true
    }

    /// Forgets the kept request head (its memory too, when it was large).
    fn drop_head(&mut self) {
        if self.head.capacity() > 16 * 1024 {
            // A rare large head does not stay allocated for the connection's life.
            self.head = Vec::new();
        }
        self.head.clear();
    }

    /// Follows the request through the bytes just read.
    fn saw_read(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.http2 {
            let n = (H2_PREFACE.len() - self.h2_preface).min(data.len());
            self.h2_preface += n;
            self.h2_in.feed(&data[n..]);
            if self.phase != Phase::Tunnel && self.h2_in.complete > 0 {
                // Preface and the first frame (SETTINGS) in: an HTTP/2 connection, bounded
                // by Pingora's idle timeout from here.
                self.phase = Phase::Tunnel;
                self.deadline = None;
            }
            return;
        }
        if self.maybe_h2c {
            // Every byte so far (kept in `head`) is the start of the preface.
            let seen = self.head.len();
            let n = (H2_PREFACE.len() - seen).min(data.len());
            if data[..n] == H2_PREFACE[seen..seen + n] {
                if seen + n < H2_PREFACE.len() {
                    self.head.extend_from_slice(data);
                    return;
                }
                // h2c: the opening goes on with the client's SETTINGS, same deadline.
                self.maybe_h2c = false;
                self.http2 = true;
                self.drop_head();
                self.h2_preface = H2_PREFACE.len();
                return self.saw_read(&data[n..]);
            }
            // Not the preface: an HTTP/1 request from its first byte, still under the
            // deadline the connection opened with.
            self.maybe_h2c = false;
            self.phase = Phase::Headers;
            self.blank_line = BlankLine::default();
            let mut head = std::mem::take(&mut self.head);
            head.extend_from_slice(data);
            if self.blank_line.feed(&head) {
                self.phase = Phase::Request;
                self.deadline = None;
            }
            self.head = head;
            return;
        }
        if self.phase == Phase::Tunnel {
            // The client sent something: the tunnel is not idle.
            self.deadline = None;
            return;
        }
        if self.phase == Phase::Fresh {
            // The first request: its headers keep the deadline the connection opened with
            // (a silent start does not earn a fresh header deadline).
            self.phase = Phase::Headers;
            self.blank_line = BlankLine::default();
        } else if self.phase == Phase::Responded {
            self.phase = Phase::Headers;
            self.blank_line = BlankLine::default();
            self.deadline = None;
            self.drop_head();
            self.head_lost = false;
        }
        if self.phase == Phase::Headers {
            if self.head.len() + data.len() > HEAD_LIMIT {
                // Pingora refuses such a head itself; nothing to hand over.
                self.drop_head();
                self.head_lost = true;
            } else if !self.head_lost {
                self.head.extend_from_slice(data);
            }
            if self.blank_line.feed(data) {
                self.phase = Phase::Request;
                self.deadline = None;
            } else if self.deadline.is_none() {
                // Headers in more than one read: from now on they have a deadline.
                self.deadline = Some(Instant::now() + self.header_timeout);
            }
        }
    }

    fn saw_write(&mut self, data: &[u8]) {
        if self.http2 {
            self.h2_out.feed(data);
            return;
        }
        if data.is_empty() {
            return;
        }
        if !self.head.is_empty() {
            // A response has begun: the request is no longer handed over, its head not
            // needed (an idle connection does not keep it).
            self.drop_head();
            self.head_lost = true;
        }
        match self.phase {
            Phase::Request | Phase::Headers | Phase::Fresh => {
                // `HTTP/1.1 101 ` starts a tunnel; other 1xx are interim responses.
                if data.len() >= 12 && data.starts_with(b"HTTP/1.") && &data[8..12] == b" 101" {
                    self.phase = Phase::Tunnel;
                    self.tunnel_opened = Some(Instant::now());
                    self.deadline = None;
                } else if !(data.len() >= 10 && data.starts_with(b"HTTP/1.") && data[9] == b'1') {
                    self.phase = Phase::Responded;
                    self.deadline = None;
                }
            }
            Phase::Responded => self.writes += 1,
            Phase::Tunnel => self.tunnel_last_write = Some(Instant::now()),
        }
    }

    /// Called when a read has to wait: arms the timer for the phase's deadline and tells
    /// whether it has passed.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        let (reason, limit) = match self.phase {
            // Opening (nothing, part of a request head, part of the HTTP/2 preface or
            // SETTINGS): the deadline set when the connection opened.
            Phase::Fresh | Phase::Headers => ("header_timeout", self.header_timeout),
            Phase::Responded => ("idle_timeout", self.idle_timeout),
            // HTTP/2 frames run in Phase::Tunnel too; Pingora bounds that connection.
            Phase::Tunnel if self.http2 => return None,
            Phase::Tunnel => return self.tunnel_timed_out(cx),
            Phase::Request => return None,
        };
        loop {
            let deadline = match self.deadline {
                Some(d) => d,
                None => {
                    let d = Instant::now() + limit;
                    self.deadline = Some(d);
                    self.writes_at_deadline = self.writes;
                    d
                }
            };
            let sleep = match &mut self.sleep {
                Some(s) => {
                    if s.deadline() != deadline {
                        s.as_mut().reset(deadline);
                    }
                    s
                }
                None => self
                    .sleep
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return None;
            }
            if self.phase == Phase::Responded && self.writes != self.writes_at_deadline {
                // The response was still being written: idle only from now.
                self.deadline = None;
                continue;
            }
            return Some(reason);
        }
    }
}

impl Deadlines {
    /// A tunnel's limits: idle both ways for `tunnel_idle`, open for `tunnel_max`.
    fn tunnel_timed_out(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        let opened = *self.tunnel_opened.get_or_insert_with(Instant::now);
        let end = self.tunnel_max.map(|max| opened + max);
        loop {
            let idle_end = match self.deadline {
                Some(d) => d,
                None => {
                    let d = Instant::now() + self.tunnel_idle;
                    self.deadline = Some(d);
                    d
                }
            };
            let (wake, reason) = match end {
                Some(end) if end <= idle_end => (end, "tunnel_max_duration"),
                _ => (idle_end, "tunnel_idle_timeout"),
            };
            let sleep = match &mut self.sleep {
                Some(s) => {
                    if s.deadline() != wake {
                        s.as_mut().reset(wake);
                    }
                    s
                }
                None => self.sleep.insert(Box::pin(tokio::time::sleep_until(wake))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return None;
            }
            if reason == "tunnel_idle_timeout" {
                // Bytes went to the client meanwhile: idle from the last of them.
                if let Some(last) = self.tunnel_last_write {
                    if last + self.tunnel_idle > idle_end {
                        self.deadline = Some(last + self.tunnel_idle);
                        continue;
                    }
                }
            }
            return Some(reason);
        }
    }
}

impl AsyncRead for Deadlines {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(first) = &mut self.first {
            // Read by `await_request`, not taken by an HTTP/1 session (HTTP/2, a peek).
            let n = first.len().min(buf.remaining());
            buf.put_slice(&first.split_to(n));
            if first.is_empty() {
                self.first = None;
            }
            return Poll::Ready(Ok(()));
        }
        if let Some((bytes, served)) = &mut self.replay {
            let n = (bytes.len() - *served).min(buf.remaining());
            buf.put_slice(&bytes[*served..*served + n]);
            *served += n;
            if *served == bytes.len() {
                self.replay = None;
            }
            return Poll::Ready(Ok(()));
        }
        self.poll_socket(cx, buf)
    }
}

thread_local! {
    /// Where a waiting connection's next bytes are first read ([`Deadlines::await_request`]):
    /// one buffer per thread, not one per connection. As large as the first read Pingora
    /// makes of a request head, so a head costs no more reads than before.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

const SCRATCH_BYTES: usize = 4096;

impl Deadlines {
    /// A read from the connection itself (not the bytes kept to be read again), under the
    /// deadline of the phase it is in.
    fn poll_socket(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n == 0 && buf.remaining() > 0 {
                    self.ended_by_peer = true;
                }
                self.saw_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.ended_by_peer = true;
                Poll::Ready(Err(e))
            }
            Poll::Pending => match self.timed_out(cx) {
                Some(reason) => {
                    (self.on_close)(reason);
                    self.phase = Phase::Request; // count once
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        reason,
                    )))
                }
                None => Poll::Pending,
            },
        }
    }

    /// Waits for the next request's first bytes — on a connection that may be h2c, until
    /// they tell the HTTP/2 preface from an HTTP/1 request — under the phase's deadline,
    /// without holding a buffer while it waits: the bytes are read into the thread's
    /// scratch buffer and kept to be read again. False when the connection ended (closed
    /// by the client, broken, or past its deadline).
    pub async fn await_request(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            loop {
                if (self.first.is_some() || self.replay.is_some()) && !self.maybe_h2c {
                    return Poll::Ready(true);
                }
                let read = SCRATCH.with(|scratch| {
                    let mut scratch = scratch.borrow_mut();
                    let mut buf = ReadBuf::new(&mut scratch[..]);
                    match self.poll_socket(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            let data = buf.filled();
                            self.first
                                .get_or_insert_with(|| {
                                    bytes::BytesMut::with_capacity(data.len().max(SCRATCH_BYTES))
                                })
                                .extend_from_slice(data);
                            Poll::Ready(true)
                        }
                        Poll::Ready(_) => Poll::Ready(false),
                        Poll::Pending => Poll::Pending,
                    }
                });
                match read {
                    // More bytes of what may be the preface: read on.
                    Poll::Ready(true) if self.maybe_h2c => continue,
                    other => return other,
                }
            }
        })
        .await
    }

    /// Between two requests of a kept-alive connection: the last head is not needed; an
    /// ordinary one's memory is kept for the next (no allocation per request), a large
    /// one's is not (an idle connection holds at most [`KEPT_HEAD_BYTES`]).
    pub fn rest(&mut self) {
        if self.head.capacity() > KEPT_HEAD_BYTES {
            self.head = Vec::new();
        }
    }

    /// The bytes [`Deadlines::await_request`] read, for an HTTP/1 session to parse first
    /// (Pingora's `pipelined_prefix`: no second copy, and the buffer is the one Pingora
    /// would have read the head into).
    pub fn take_first_bytes(&mut self) -> Option<bytes::BytesMut> {
        self.first.take()
    }
}

impl AsyncWrite for Deadlines {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        match &result {
            Poll::Ready(Ok(n)) => {
                let n = *n;
                self.saw_write(&buf[..n]);
            }
            Poll::Ready(Err(_)) => self.ended_by_peer = true,
            Poll::Pending => {}
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        match &result {
            Poll::Ready(Ok(n)) if self.http2 => {
                // HTTP/2 frames may span the slices: every byte written is seen.
                let mut left = *n;
                for b in bufs {
                    let take = left.min(b.len());
                    self.saw_write(&b[..take]);
                    left -= take;
                    if left == 0 {
                        break;
                    }
                }
            }
            Poll::Ready(Ok(n)) => {
                if let Some(first) = bufs.first() {
                    let n = (*n).min(first.len());
                    self.saw_write(&first[..n]);
                }
            }
            Poll::Ready(Err(_)) => self.ended_by_peer = true,
            Poll::Pending => {}
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Deadlines {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for Deadlines {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Deadlines {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Deadlines {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Deadlines {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Deadlines {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// Pingora peeks at a plain connection's first bytes for the h2c preface (`h2c: true`).
/// The peek reads through the deadlines like any read (the socket's own peek waits
/// forever for all 24 bytes), stops as soon as the bytes cannot be the preface (a short
/// HTTP/1 request is not held up waiting for 24 bytes), and the bytes are read again
/// from the start by the next reads.
#[async_trait]
impl Peek for Deadlines {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        use tokio::io::AsyncReadExt;
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
            if !H2_PREFACE.starts_with(&buf[..filled]) {
                break;
            }
        }
        let mut again = buf[..filled].to_vec();
        // What the peek did not reach follows, in order.
        if let Some(first) = self.first.take() {
            again.extend_from_slice(&first);
        }
        if let Some((rest, served)) = self.replay.take() {
            again.extend_from_slice(&rest[served..]);
        }
        self.replay = Some((again, 0));
        // What was not read stays as the caller left it (zeros): not the preface.
        Ok(true)
    }
}

/// An open HTTP/2 connection is closed by Pingora when it has had no stream for
/// `idle_timeout` — by dropping it, with no GOAWAY and no word to us. Every other way an
/// open HTTP/2 connection ends shows here: the client hung up or the socket broke (EOF or
/// an I/O error), either side sent a GOAWAY (a protocol error, a graceful shutdown, a
/// client leaving). So a connection dropped open, with neither, was closed for idleness:
/// counted as such.
impl Drop for Deadlines {
    fn drop(&mut self) {
        if self.http2
            && self.phase == Phase::Tunnel
            && !self.ended_by_peer
            && !self.h2_out.goaway
            && !self.h2_in.goaway
        {
            (self.on_close)("idle_timeout");
        }
    }
}

/// Follows the frame headers in one direction of an HTTP/2 connection (after the
/// client's preface): how many frames are complete, and whether one was a GOAWAY (type
/// 7). Only the 9-byte headers are read; payloads are skipped by their length. Whether
/// the frames are valid is the HTTP/2 server's to judge.
#[derive(Debug, Default, Clone, Copy)]
struct FrameHeaders {
    /// Bytes of the current frame header seen (0..9).
    got: usize,
    header: [u8; 9],
    /// Payload bytes of the current frame still to come.
    skip: usize,
    complete: u32,
    goaway: bool,
}

impl FrameHeaders {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if self.skip == 0 {
                    self.complete = self.complete.saturating_add(1);
                }
                continue;
            }
            let n = (9 - self.got).min(data.len());
            self.header[self.got..self.got + n].copy_from_slice(&data[..n]);
            self.got += n;
            data = &data[n..];
            if self.got == 9 {
                let h = self.header;
                self.skip = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                self.goaway |= h[3] == 7;
                self.got = 0;
                if self.skip == 0 {
                    self.complete = self.complete.saturating_add(1);
                }
            }
        }
    }
}

/// Finds the blank line that ends a header block in bytes read piece by piece.
#[derive(Debug, Default, Clone, Copy)]
struct BlankLine {
    /// The last (up to three) bytes of earlier pieces.
    tail: [u8; 3],
    tail_len: usize,
}

impl BlankLine {
    /// True once an empty line has ended the head in the pieces fed so far: `\r\n\r\n`,
    /// `\n\n`, or the mixed `\n\r\n` (a line ended by a bare LF, then CRLF), all of which
    /// Pingora's parser (httparse) accepts.
    fn feed(&mut self, data: &[u8]) -> bool {
        let ends =
            |b: &[u8]| b.windows(2).any(|w| w == b"\n\n") || b.windows(3).any(|w| w == b"\n\r\n");
        let head = data.len().min(3);
        let mut seam = [0u8; 6];
        seam[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        seam[self.tail_len..self.tail_len + head].copy_from_slice(&data[..head]);
        if ends(&seam[..self.tail_len + head]) || ends(data) {
            return true;
        }
        let joined = self.tail_len + data.len();
        let keep = joined.min(3);
        let mut next = [0u8; 3];
        for (i, slot) in next[..keep].iter_mut().enumerate() {
            let at = joined - keep + i;
            *slot = if at < self.tail_len {
                self.tail[at]
            } else {
                data[at - self.tail_len]
            };
        }
        self.tail = next;
        self.tail_len = keep;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept-alive connection waiting for its next request while the previous response
    /// is still being streamed is not idle: each write pushes the idle deadline back.
    fn limits(idle_secs: u64, header_secs: u64) -> crate::proxy::shared::ConnectionLimits {
        crate::proxy::shared::ConnectionLimits {
            idle_timeout: Duration::from_secs(idle_secs),
            header_timeout: Duration::from_secs(header_secs),
            ..Default::default()
        }
    }

    /// After a `101`, the connection is a tunnel: closed when idle both ways for
    /// `tunnel_idle_timeout` (bytes either way keep it), and at `tunnel_max_duration`
    /// however busy.
    #[tokio::test(start_paused = true)]
    async fn tunnels_close_when_idle_or_too_old() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // (max duration, who talks: "" nobody / "client" / "server", expected close, when)
        for (max, busy, want, after) in [
            (None, "", "tunnel_idle_timeout", 10),
            // One message 1 s in, then silence: closed 10 s after it, not 10 s after the
            // idle clock was first armed plus another 10 (CI caught that: 8 s for 4 s).
            (None, "once", "tunnel_idle_timeout", 11),
            (None, "client", "", 0),
            (None, "server", "", 0),
            (Some(25), "client", "tunnel_max_duration", 25),
        ] {
            let (client, server) = tokio::io::duplex(1 << 16);
            let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
            let seen = closed.clone();
            let limits = crate::proxy::shared::ConnectionLimits {
                tunnel_idle_timeout: Duration::from_secs(10),
                tunnel_max_duration: max.map(Duration::from_secs),
                ..Default::default()
            };
            let stream = Deadlines::new(
                Box::new(server),
                &limits,
                Box::new(move |reason| seen.lock().unwrap().push(reason)),
            );
            let (mut rd, mut wr) = tokio::io::split(stream);
            let (mut client_rd, mut client_wr) = tokio::io::split(client);
            client_wr
                .write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0);
            wr.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
                .await
                .unwrap();
            let started = Instant::now();
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) => return None,
                        Ok(_) => continue,
                        Err(e) => return Some((e.to_string(), Instant::now())),
                    }
                }
            });
            if busy == "once" {
                tokio::time::sleep(Duration::from_secs(1)).await;
                wr.write_all(b"hello").await.unwrap();
                let _ = client_rd.read(&mut buf).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            } else if !busy.is_empty() {
                // A message every 4 s one way only, for 40 s.
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    if busy == "client" {
                        client_wr.write_all(b"ping").await.unwrap();
                    } else {
                        wr.write_all(b"pong").await.unwrap();
                        let _ = client_rd.read(&mut buf).await;
                    }
                    if reader.is_finished() {
                        break;
                    }
                }
            } else {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            if want.is_empty() {
                assert!(
                    !reader.is_finished(),
                    "a tunnel busy from the {busy} was closed"
                );
                assert!(closed.lock().unwrap().is_empty());
                continue;
            }
            let (err, at) = reader.await.unwrap().expect("closed by a limit");
            assert_eq!(err, want);
            let took = at - started;
            assert!(
                took >= Duration::from_secs(after) && took < Duration::from_secs(after + 2),
                "{want}: {took:?}"
            );
            assert_eq!(*closed.lock().unwrap(), vec![want]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_still_being_written_is_not_idleness() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1 << 16);
        let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = closed.clone();
        let stream = Deadlines::new(
            Box::new(server),
            &limits(1, 1),
            Box::new(move |reason| seen.lock().unwrap().push(reason)),
        );
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (_client_rd, mut client_wr) = tokio::io::split(client);
        client_wr
            .write_all(b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        assert!(rd.read(&mut buf).await.unwrap() > 0);
        wr.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let started = Instant::now();
            let result = rd.read(&mut [0u8; 16]).await;
            (result.is_err(), started.elapsed())
        });
        // Five chunks, 600 ms apart: 3 s of streaming with a 1 s idle timeout.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            wr.write_all(b"1\r\na\r\n").await.unwrap();
        }
        let (timed_out, waited) = reader.await.unwrap();
        assert!(timed_out);
        assert!(
            waited >= Duration::from_secs(3) && waited <= Duration::from_secs(5),
            "closed after {waited:?}"
        );
        assert_eq!(*closed.lock().unwrap(), ["idle_timeout"]);
    }

    #[test]
    fn the_over_limit_answer_is_well_framed() {
        let r = over_limit_response();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "too_many_connections");
    }

    /// The kept head is what a hand-over replays: the request's reads, body bytes that came
    /// with the headers included; nothing once a response began; nothing beyond the limit.
    #[tokio::test]
    async fn the_request_head_is_kept_for_a_hand_over_and_only_then() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(4 << 20);
        let mut stream = Deadlines::new(Box::new(server), &limits(5, 5), Box::new(|_| {}));
        let request = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        client.write_all(&request[..10]).await.unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let n = stream.read(&mut buf).await.unwrap();
        client.write_all(&request[10..]).await.unwrap();
        let m = stream.read(&mut buf[n..]).await.unwrap();
        assert_eq!(&buf[..n + m], &request[..]);
        assert!(stream.replay_request());
        let mut again = vec![0u8; request.len()];
        stream.read_exact(&mut again).await.unwrap();
        assert_eq!(
            &again[..],
            &request[..],
            "the replay is the request, byte for byte"
        );
        // Nothing is replayed twice, and after the response nothing is kept.
        assert!(!stream.replay_request());
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert!(!stream.replay_request());

        // The next request is kept afresh; one larger than Pingora accepts is not.
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(HEAD_LIMIT));
        client.write_all(big.as_bytes()).await.unwrap();
        let mut read = 0;
        while read < big.len() {
            read += stream.read(&mut buf).await.unwrap();
        }
        assert!(!stream.replay_request());
        assert!(
            stream.head.capacity() <= 16 * 1024,
            "{}",
            stream.head.capacity()
        );
    }

    /// The HTTP/2 opening is complete with the preface and the whole first frame, in
    /// any split of the bytes, and not a byte before; frames after it are followed too
    /// (a GOAWAY is noticed).
    #[test]
    fn the_http2_opening_ends_with_the_clients_settings_in_any_split() {
        let settings = [0u8, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        let goaway = [0u8, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let opening = [H2_PREFACE, &settings[..], &goaway[..]].concat();
        let settings_end = H2_PREFACE.len() + settings.len();
        for size in 1..=opening.len() {
            let (_client, server) = tokio::io::duplex(64);
            let mut d = Deadlines::new(Box::new(server), &limits(60, 10), Box::new(|_| {}));
            d.http2 = true;
            let mut fed = 0;
            for piece in opening.chunks(size) {
                d.saw_read(piece);
                fed += piece.len();
                assert_eq!(
                    d.phase == Phase::Tunnel,
                    fed >= settings_end,
                    "pieces of {size}, {fed} bytes"
                );
                assert_eq!(d.h2_in.goaway, fed >= settings_end + 9, "pieces of {size}");
            }
        }
        // A SETTINGS frame with an empty payload ends with its header.
        let mut f = FrameHeaders::default();
        f.feed(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(f.complete, 1);
    }

    /// Stalled openings are closed at the header deadline counted from the connection's
    /// start — a byte now and then does not earn more time — and the h2c peek reads
    /// through that deadline.
    #[tokio::test(start_paused = true)]
    async fn openings_are_bounded_by_the_header_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for (h2c, first, second) in [
            (false, &b""[..], &b""[..]),
            (false, b"GET / HTTP/1.1\r\n", b"Host: a\r\n"),
            (true, b"", b""),
            (true, b"P", b"RI * HTTP/2.0\r\n"),
            (true, H2_PREFACE, &[0, 0, 6]),
        ] {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
            let seen = closed.clone();
            let mut stream = Deadlines::new(
                Box::new(server),
                &limits(60, 10),
                Box::new(move |reason| seen.lock().unwrap().push(reason)),
            )
            .h2c(h2c);
            let started = Instant::now();
            let reader = tokio::spawn(async move {
                if h2c {
                    let mut peek = [0u8; 24];
                    stream.try_peek(&mut peek).await?;
                }
                let mut buf = [0u8; 256];
                loop {
                    if stream.read(&mut buf).await? == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                }
            });
            client.write_all(first).await.unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(second).await.unwrap();
            let result = reader.await.unwrap();
            let err = result.expect_err("closed by the deadline");
            assert_eq!(err.to_string(), "header_timeout", "{first:?}");
            let took = started.elapsed();
            assert!(
                took >= Duration::from_secs(10) && took < Duration::from_secs(11),
                "{first:?}: {took:?}"
            );
            assert_eq!(*closed.lock().unwrap(), ["header_timeout"]);
        }
    }

    /// The h2c peek gives the preface when it is there, stops at the first byte that
    /// cannot be it, and the next reads see every byte from the start.
    #[tokio::test]
    async fn the_h2c_peek_stops_early_and_rewinds() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for (sent, is_h2) in [
            (&b"GET / HTTP/1.0\r\n\r\n"[..], false),
            (b"PRI * HTTP/1.1\r\n\r\n", false),
            (
                &[H2_PREFACE, &[0, 0, 0, 4, 0, 0, 0, 0, 0]].concat()[..],
                true,
            ),
        ] {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let mut stream =
                Deadlines::new(Box::new(server), &limits(60, 10), Box::new(|_| {})).h2c(true);
            client.write_all(sent).await.unwrap();
            let mut peek = [0u8; 24];
            assert!(stream.try_peek(&mut peek).await.unwrap());
            assert_eq!(peek == H2_PREFACE, is_h2, "{sent:?}");
            assert_eq!(stream.http2, is_h2);
            let mut again = vec![0u8; sent.len()];
            stream.read_exact(&mut again).await.unwrap();
            assert_eq!(again, sent);
            if !is_h2 {
                assert_eq!(stream.phase, Phase::Request, "{sent:?}");
                assert!(stream.replay_request(), "the head is kept for a hand-over");
            }
        }
    }

    #[test]
    fn finds_the_blank_line_in_any_split() {
        let request = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        for size in 1..=request.len() {
            let mut b = BlankLine::default();
            let mut found_at = None;
            for (i, piece) in request.chunks(size).enumerate() {
                if b.feed(piece) {
                    found_at = Some(i);
                    break;
                }
            }
            assert_eq!(
                found_at,
                Some((request.len() - 1) / size),
                "pieces of {size}"
            );
        }
        let mut b = BlankLine::default();
        assert!(!b.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!b.feed(b"X: 1\r\n"));
        assert!(b.feed(b"\r\n"));
        let mut lf = BlankLine::default();
        assert!(!lf.feed(b"GET / HTTP/1.0\n"));
        assert!(lf.feed(b"\n"));
        // Mixed endings, which httparse also accepts: a bare-LF line, then CRLF.
        for split in 1..4 {
            let request = b"GET / HTTP/1.1\nHost: a\n\r\nbody";
            let mut mixed = BlankLine::default();
            let (a, b) = request.split_at(request.len() - 4 - split);
            assert!(!mixed.feed(a), "split {split}");
            assert!(mixed.feed(b), "split {split}");
        }
    }
}
