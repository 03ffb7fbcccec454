//! The direct path: the common request served without Pingora's proxy phase machinery.
//!
//! A request whose forwarding needs no framing or hop-by-hop decision — HTTP/1.1 in
//! origin form, no body (no `Content-Length`, no `Transfer-Encoding`), no `Upgrade`,
//! `Expect`, `TE`, `Trailer`, `Keep-Alive`, `Proxy-Connection` or `HTTP2-Settings`, and
//! `Connection` naming at most `keep-alive` / `close` — is served here: the same
//! [`Proxy::filter`] (canonical request, decision, denials, assertion, header hygiene),
//! then one exchange over a pooled upstream connection, the response streamed back. To an
//! HTTP/1.1 upstream the request is written by [`WireRequest`] — the client's parsed head
//! with the gateway's edits, in one buffer, built once even when a stale pooled connection
//! makes it go out again — rather than as a Pingora `RequestHeader` (a `HEAD`, whose
//! response Pingora's client frames by the request it wrote, and HTTP/2 upstreams still are).
//! For such a request Pingora's own upstream-request sanitizing would change nothing but
//! `Connection`, which is dropped here too.
//!
//! Every other request — bodies, WebSocket and other upgrades, `Expect: 100-continue`,
//! absolute-form targets, HTTP/1.0, HTTP/2 — goes to Pingora's full proxy
//! ([`pingora::proxy::HttpProxy`] with the same [`Proxy`] phases), which reads the request
//! again from the bytes the connection kept ([`Deadlines::replay_request`]). Nothing is
//! decided before that choice, so every request is decided, counted and logged once.
//!
//! Why: the proxy phases cost CPU per request that this gateway's common case does not
//! need (boxed futures per phase, task channels between the two directions, a second
//! header clone); measured in BENCHMARKS.md ("CPU per request").

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method, Version};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::connectors::http::Connector;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession as ClientSession;
use pingora::protocols::http::v1::client::HttpSession as H1Session;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::Peer;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::proxy::connection::Deadlines;
use crate::proxy::outgoing::WireRequest;
use crate::proxy::{Proxy, RequestCtx};

/// How often a request is sent again when a pooled upstream connection turns out to be
/// closed before it answered (each time on another connection).
const STALE_CONNECTION_RETRIES: usize = 2;

/// The gateway's HTTP application: the direct path, with Pingora's full proxy behind it.
pub struct Direct {
    gate: Proxy,
    full: Arc<HttpProxy<Proxy>>,
    upstreams: Connector,
    idle: Arc<IdlePool>,
    shutting_down: AtomicBool,
    shutdown: Notify,
    /// `direct_path: false`: every request goes to the full proxy.
    enabled: bool,
}

/// Idle HTTP/1.1 connections to upstreams, kept by the direct path itself.
///
/// Pingora's pool spawns a watcher task for every connection it takes back (a task, a
/// channel, a pool node and its queue: about ten allocations and two task wake-ups per
/// request on a keep-alive upstream) so that an idle connection the upstream closes is
/// noticed at once. Here a connection is checked when it is taken instead — the same
/// non-blocking test Pingora makes, which costs no system call unless the socket has
/// become readable (closed, or unexpected bytes) — and a sweep every few seconds drops
/// the ones that closed or outlived the upstream's `idle_timeout`, so none lingers.
/// The most recently used connection is taken first (it is the least likely to have
/// been closed by the upstream). Connections are kept per proxy thread, as nginx workers
/// keep theirs: with `work_stealing: false` each thread has its own runtime, and a
/// socket stays with the runtime that registered it. HTTP/2 upstream sessions stay in
/// Pingora's pool.
#[derive(Default)]
struct IdlePool {
    by_upstream: Mutex<HashMap<(u64, std::thread::ThreadId), VecDeque<IdleConnection>>>,
    sweeper: AtomicBool,
}

struct IdleConnection {
    stream: Stream,
    expires: Option<Instant>,
}

/// Idle connections kept per upstream (beyond it the oldest is closed).
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// How often idle connections are checked for closure and expiry.
const IDLE_SWEEP: Duration = Duration::from_secs(2);

impl IdleConnection {
    /// True when the connection can carry another request: not expired, not closed by the
    /// upstream and holding no unsolicited bytes (Pingora's `test_reusable_stream`).
    fn usable(&mut self, now: Instant) -> bool {
        use std::future::Future;
        use tokio::io::AsyncReadExt;
        if self.expires.is_some_and(|at| at <= now) {
            return false;
        }
        let mut byte = [0u8; 1];
        // Ready at once only when the socket has something to say: EOF, an error or bytes.
        // (Outside tokio's cooperative budget, which could otherwise answer "not yet".)
        let read = std::pin::pin!(tokio::task::unconstrained(self.stream.read(&mut byte)));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        read.poll(&mut cx).is_pending()
    }
}

impl IdlePool {
    fn take(&self, upstream: u64) -> Option<Stream> {
        let key = (upstream, std::thread::current().id());
        let now = Instant::now();
        let mut all = self.by_upstream.lock().unwrap_or_else(|e| e.into_inner());
        let idle = all.get_mut(&key)?;
        while let Some(mut conn) = idle.pop_back() {
            if conn.usable(now) {
                return Some(conn.stream);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, upstream: u64, stream: Stream, idle_timeout: Option<Duration>) {
        let key = (upstream, std::thread::current().id());
        let now = Instant::now();
        let conn = IdleConnection {
            stream,
            expires: idle_timeout.map(|t| now + t),
        };
        {
            let mut all = self.by_upstream.lock().unwrap_or_else(|e| e.into_inner());
            let idle = all.entry(key).or_default();
            if idle.len() >= MAX_IDLE_PER_UPSTREAM {
                idle.pop_front();
            }
            idle.push_back(conn);
        }
        if !self.sweeper.swap(true, Ordering::AcqRel) {
            let pool = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(IDLE_SWEEP).await;
                    let Some(pool) = pool.upgrade() else { return };
                    pool.sweep();
                }
            });
        }
    }

    /// Closes idle connections that expired, were closed by the upstream or hold bytes.
    fn sweep(&self) {
        let now = Instant::now();
        let mut all = self.by_upstream.lock().unwrap_or_else(|e| e.into_inner());
        for idle in all.values_mut() {
            idle.retain_mut(|conn| conn.usable(now));
        }
        all.retain(|_, idle| !idle.is_empty());
    }

    fn clear(&self) {
        self.by_upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Direct {
    /// An HTTP/2 stream: Pingora's full proxy, with a watch on the request body, which
    /// Pingora reads with no timeout. A body that makes no progress for
    /// `body_idle_timeout` before the upstream answers ends the stream (reset), counted
    /// as `body_timeout` like an HTTP/1 body, and releases the upstream connection it
    /// held. Once the upstream answered, the stream is not watched (gRPC streams).
    async fn serve_http2(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let limit = self.gate.state().snapshot().connections.body_idle_timeout;
        let progress = Arc::new(crate::proxy::BodyProgress::default());
        let proxied = crate::proxy::HTTP2_BODY.scope(
            progress.clone(),
            self.full.process_new_http(session, shutdown),
        );
        tokio::select! {
            done = proxied => done,
            _ = progress.stalled(limit) => {
                self.gate.state().metrics.connections_closed.with_label_values(&["body_timeout"]).inc();
                tracing::info!(timeout = ?limit, "an HTTP/2 request body made no progress; stream reset");
                None
            }
        }
    }

    pub fn new(gate: Proxy, full: HttpProxy<Proxy>, upstreams: Connector, enabled: bool) -> Self {
        Direct {
            enabled,
            gate,
            full: Arc::new(full),
            upstreams,
            idle: Arc::default(),
            shutting_down: AtomicBool::new(false),
            shutdown: Notify::new(),
        }
    }

    /// An upstream connection: an idle HTTP/1.1 connection of this path's own pool, else
    /// one from Pingora's connector (its pool, or a new connection); `true` when reused.
    async fn upstream_connection(&self, peer: &PooledPeer) -> Result<(Connection, bool)> {
        if let Some(stream) = self.idle.take(peer.reuse_hash()) {
            return Ok((Connection::H1(stream), true));
        }
        // Connecting (TCP, TLS, HTTP/2) is a future of several KiB: boxed, as it is rare,
        // so that the future of every request does not carry its size.
        let (session, reused) = Box::pin(self.upstreams.get_http_session(peer)).await?;
        Ok(match session {
            ClientSession::H1(h1) => (Connection::H1(h1.into_inner()), reused),
            other => (Connection::Session(Box::new(other)), reused),
        })
    }

    /// Keeps the upstream connection for the next request when it can be.
    async fn release(&self, upstream: ClientSession, peer: &PooledPeer) {
        match upstream {
            ClientSession::H1(mut h1) => {
                h1.respect_keepalive();
                if let Some(stream) = h1.reuse().await {
                    self.idle
                        .put(peer.reuse_hash(), stream, peer.idle_timeout());
                }
            }
            other => {
                Box::pin(
                    self.upstreams
                        .release_http_session(other, peer, peer.idle_timeout()),
                )
                .await
            }
        }
    }

    async fn await_shutdown(&self) {
        let notified = self.shutdown.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// Gives the request to the full proxy, which reads it again from the connection.
    async fn hand_over(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let settings = HttpPersistentSettings::for_session(&session);
        let ServerSession::H1(h1) = session else {
            return None;
        };
        let mut stream = Deadlines::recover(h1.into_inner())?;
        if !stream.replay_request() {
            tracing::warn!("direct path: a request head that was not kept; closing the connection");
            return None;
        }
        let mut session = ServerSession::new_http1(stream);
        settings.apply_to_session(&mut session);
        self.full.process_new_http(session, shutdown).await
    }

    /// Serves an eligible request; `Ok` once the response is complete.
    async fn serve(&self, session: &mut ServerSession, ctx: &mut RequestCtx) -> Result<()> {
        if self.gate.filter(session, ctx).await? {
            return Ok(());
        }
        let peer = PooledPeer(self.gate.peer(ctx)?);
        let method = &session.req_header().method;
        let idempotent = method.is_idempotent();
        // Pingora's HTTP/1 client reads a response as the answer to a `HEAD` only when it
        // wrote the request itself: a `HEAD` goes through its writer.
        let head = *method == Method::HEAD;
        let mut wire: Option<Vec<u8>> = None;
        let mut retries = 0;
        let mut upstream = loop {
            let (connection, reused) = self
                .upstream_connection(&peer)
                .await
                .map_err(|e| e.into_up())?;
            let result = match connection {
                Connection::H1(stream) if !head => {
                    let bytes = match &wire {
                        Some(bytes) => bytes,
                        None => {
                            let mut req = WireRequest::new(session.req_header());
                            self.gate.prepare_upstream_request(&mut req, ctx)?;
                            wire.insert(req.to_wire()?)
                        }
                    };
                    send_wire(stream, &peer, bytes).await
                }
                // A `HEAD`, or an HTTP/2 session: through Pingora's request writer.
                connection => {
                    let mut upstream = match connection {
                        Connection::H1(stream) => {
                            ClientSession::H1(H1Session::new_with_options(stream, &peer))
                        }
                        Connection::Session(upstream) => *upstream,
                    };
                    let mut req = upstream_request(session.req_header())?;
                    self.gate.prepare_upstream_request(&mut req, ctx)?;
                    if matches!(upstream, ClientSession::H2(_)) {
                        to_h2_request(&mut req, peer.tls())?;
                    }
                    exchange(&mut upstream, req).await.map(|()| upstream)
                }
            };
            match result {
                Ok(upstream) => break upstream,
                Err(mut e) => {
                    // Pingora's own rule: an error its codec marks retryable on a reused
                    // connection (closed by the upstream before it answered), idempotent
                    // methods only.
                    e.retry.decide_reuse(reused);
                    if !(e.retry() && idempotent && retries < STALE_CONNECTION_RETRIES) {
                        return Err(e.into_up());
                    }
                    retries += 1;
                }
            }
        };
        // Interim responses (103 Early Hints …) are passed on; the final one follows.
        let mut resp = loop {
            let Some(resp) = upstream.response_header() else {
                return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header")
                    .map_err(|e| e.into_up());
            };
            let resp = Box::new(client_response(resp)?);
            if !resp.status.is_informational() {
                break resp;
            }
            // A 101 is refused here (these requests never ask for an upgrade).
            let mut interim = resp;
            self.gate.prepare_response(&mut interim, ctx)?;
            session
                .write_response_header(interim)
                .await
                .map_err(|e| e.into_down())?;
            upstream
                .read_response_header()
                .await
                .map_err(|e| e.into_up())?;
        };
        if matches!(upstream, ClientSession::H2(_)) {
            // The client speaks HTTP/1.1 (Pingora's HTTP/1 writer refuses an HTTP/2 head).
            resp.set_version(Version::HTTP_11);
        }
        let end = upstream.response_done();
        close_delimited_to_chunked(&mut resp, session.req_header().method == Method::HEAD, end);
        self.gate.prepare_response(&mut resp, ctx)?;
        session
            .write_response_header(resp)
            .await
            .map_err(|e| e.into_down())?;
        while let Some(chunk) = upstream
            .read_response_body()
            .await
            .map_err(|e| e.into_up())?
        {
            session
                .write_response_body(chunk, false)
                .await
                .map_err(|e| e.into_down())?;
        }
        session
            .write_response_body(Bytes::new(), true)
            .await
            .map_err(|e| e.into_down())?;
        self.release(upstream, &peer).await;
        Ok(())
    }
}

/// The route's upstream for the connection pool. Pingora checks, each time it takes a
/// pooled connection, that the socket's peer address is still the upstream's — a
/// `getpeername` system call per request. The pool keys connections by the peer's hash and
/// each pooled stream owns its socket, so the address cannot change under it: this peer
/// skips the check. Everything else is the `HttpPeer`'s.
#[derive(Clone)]
struct PooledPeer(HttpPeer);

impl std::fmt::Display for PooledPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Peer for PooledPeer {
    fn address(&self) -> &pingora::protocols::l4::socket::SocketAddr {
        self.0.address()
    }
    fn tls(&self) -> bool {
        self.0.tls()
    }
    fn sni(&self) -> &str {
        self.0.sni()
    }
    fn reuse_hash(&self) -> u64 {
        self.0.reuse_hash()
    }
    fn get_peer_options(&self) -> Option<&pingora::upstreams::peer::PeerOptions> {
        self.0.get_peer_options()
    }
    fn get_mut_peer_options(&mut self) -> Option<&mut pingora::upstreams::peer::PeerOptions> {
        self.0.get_mut_peer_options()
    }
    fn get_proxy(&self) -> Option<&pingora::upstreams::peer::Proxy> {
        self.0.get_proxy()
    }
    fn matches_fd<V: std::os::fd::AsRawFd>(&self, fd: V) -> bool {
        // Through a CONNECT proxy (not configurable here) keep Pingora's check.
        self.0.get_proxy().is_none() || self.0.matches_fd(fd)
    }
    fn get_client_cert_key(&self) -> Option<&Arc<pingora::utils::tls::CertKey>> {
        self.0.get_client_cert_key()
    }
    fn get_tracer(&self) -> Option<pingora::upstreams::peer::Tracer> {
        self.0.get_tracer()
    }
}

/// An HTTP/1.1 request made ready for an HTTP/2 upstream (as Pingora's proxy does): the
/// `Host` becomes `:authority`, the scheme is the upstream's. The direct path's requests
/// carry no connection-specific header (see [`eligible`]; `Connection` was removed).
fn to_h2_request(req: &mut pingora::http::RequestHeader, tls: bool) -> Result<()> {
    req.set_version(Version::HTTP_2);
    let path_and_query = req
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let Some(host) = req.remove_header(&header::HOST) else {
        return Error::e_explain(ErrorType::InvalidHTTPHeader, "no Host for :authority");
    };
    let uri = http::uri::Authority::try_from(host.as_bytes())
        .ok()
        .and_then(|authority| {
            http::Uri::builder()
                .scheme(if tls { "https" } else { "http" })
                .authority(authority)
                .path_and_query(path_and_query)
                .build()
                .ok()
        });
    match uri {
        Some(uri) => {
            req.set_uri(uri);
            Ok(())
        }
        None => Error::e_explain(ErrorType::InvalidHTTPHeader, "a Host that is no :authority"),
    }
}

/// The headers the gateway may add to a request (identity, forwarding, request id,
/// assertion, with room for a few claims).
const ADDED_HEADERS: usize = 16;

/// The client's request as the upstream gets it before [`Proxy::prepare_upstream_request`]:
/// the same method, target and headers (spelling and order kept), less `Connection`, in
/// header maps sized for what the gateway adds. A clone of the client's header would keep
/// the client's (exact) capacity, and adding the gateway's headers would then grow and
/// re-hash both of Pingora's maps on every request.
pub(crate) fn upstream_request(
    client: &pingora::http::RequestHeader,
) -> Result<pingora::http::RequestHeader> {
    let target = client.raw_path();
    let in_uri = client
        .uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str().as_bytes() == target);
    let mut req = pingora::http::RequestHeader::build(
        client.method.clone(),
        // An origin-form target the URI holds as sent is not parsed again.
        if in_uri { b"/" } else { target },
        Some(client.headers.len() + ADDED_HEADERS),
    )?;
    if in_uri {
        req.set_uri(client.uri.clone());
    }
    req.set_version(client.version);
    if client.has_case() {
        for (name, value) in client.case_header_iter() {
            if !name.as_slice().eq_ignore_ascii_case(b"connection") {
                req.append_header(name.clone(), value.clone())?;
            }
        }
    } else {
        for (name, value) in client.headers.iter() {
            if name != header::CONNECTION {
                req.append_header(name.clone(), value.clone())?;
            }
        }
    }
    Ok(req)
}

/// Headers added to a response on its way to the client (`X-Request-Id`; Pingora's `Date`
/// and `Connection`, which usually replace the upstream's).
const ADDED_RESPONSE_HEADERS: usize = 4;

/// The upstream's response head as the client gets it before [`Proxy::prepare_response`]:
/// status, reason, version and headers (spelling and order kept) in maps with room for
/// what is added, rather than a clone whose maps would grow on the first insert.
fn client_response(upstream: &ResponseHeader) -> Result<ResponseHeader> {
    let size = Some(upstream.headers.len() + ADDED_RESPONSE_HEADERS);
    let mut resp = if upstream.has_case() {
        let mut resp = ResponseHeader::build(upstream.status, size)?;
        for (name, value) in upstream.case_header_iter() {
            resp.append_header(name.clone(), value.clone())?;
        }
        resp
    } else {
        let mut resp = ResponseHeader::build_no_case(upstream.status, size)?;
        for (name, value) in upstream.headers.iter() {
            resp.append_header(name.clone(), value.clone())?;
        }
        resp
    };
    resp.set_version(upstream.version);
    resp.set_reason_phrase(upstream.get_reason_phrase())?;
    Ok(resp)
}

/// An upstream connection for one request.
enum Connection {
    /// An HTTP/1.1 connection, the request not written yet.
    H1(Stream),
    /// A session of Pingora's connector that is not HTTP/1.1 (HTTP/2).
    Session(Box<ClientSession>),
}

/// Writes a request made by [`WireRequest`] and reads the first response header.
async fn send_wire(mut stream: Stream, peer: &PooledPeer, request: &[u8]) -> Result<ClientSession> {
    // As Pingora's HTTP/1 client writes a request header.
    stream
        .write_all(request)
        .await
        .or_err(ErrorType::WriteError, "while writing request headers")?;
    stream
        .flush()
        .await
        .or_err(ErrorType::WriteError, "flushing request header")?;
    let mut upstream = ClientSession::H1(H1Session::new_with_options(stream, peer));
    upstream.read_response_header().await?;
    Ok(upstream)
}

/// Sends the request header and reads the first response header.
async fn exchange(upstream: &mut ClientSession, req: pingora::http::RequestHeader) -> Result<()> {
    upstream.write_request_header(Box::new(req)).await?;
    upstream.finish_request_body().await?;
    upstream.read_response_header().await
}

/// A response whose body runs until the upstream closes is sent on as chunked, so the
/// client connection can be kept (as Pingora's proxy does).
fn close_delimited_to_chunked(resp: &mut ResponseHeader, head: bool, end: bool) {
    let no_body = head || matches!(resp.status.as_u16(), 204 | 304);
    if !no_body
        && !end
        && !resp.headers.contains_key(header::TRANSFER_ENCODING)
        && !resp.headers.contains_key(header::CONTENT_LENGTH)
    {
        resp.set_version(Version::HTTP_11);
        // A constant, valid value.
        let _ = resp.insert_header(header::TRANSFER_ENCODING, "chunked");
    }
}

/// True when the request can be forwarded as it is (see the module docs).
pub(crate) fn eligible(session: &ServerSession) -> bool {
    if session.as_http1().is_none() {
        return false;
    }
    let req = session.req_header();
    if req.version != Version::HTTP_11
        || req.method == Method::CONNECT
        // Pingora keeps only the path on `uri` for an absolute-form target
        // (`GET http://host/a`); the raw target tells the forms apart.
        || !req.raw_path().starts_with(b"/")
    {
        return false;
    }
    req.headers.iter().all(|(name, value)| match name.as_str() {
        "content-length" | "transfer-encoding" | "upgrade" | "expect" | "te" | "trailer"
        | "keep-alive" | "proxy-connection" | "http2-settings" => false,
        "connection" => value.as_bytes().split(|b| *b == b',').all(|token| {
            let token = token.trim_ascii();
            token.eq_ignore_ascii_case(b"keep-alive") || token.eq_ignore_ascii_case(b"close")
        }),
        _ => true,
    })
}

#[async_trait]
impl HttpServerApp for Direct {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if session.as_http1().is_none() {
            return self.serve_http2(session, shutdown).await;
        }
        if !self.enabled {
            return self.full.process_new_http(session, shutdown).await;
        }
        let read = tokio::select! {
            biased;
            read = session.read_request() => read,
            _ = self.await_shutdown() => return None,
        };
        match read {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                // As Pingora's proxy answers a request it cannot parse.
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                session.shutdown().await;
                return None;
            }
        }
        if !eligible(&session) {
            return self.hand_over(session, shutdown).await;
        }
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        let mut ctx = self.gate.new_request();
        self.gate.state().metrics.direct_path_requests.inc();
        let result = self.serve(&mut session, &mut ctx).await;
        if let Err(e) = &result {
            self.gate.fail(&mut session, e, &mut ctx).await;
        }
        self.gate
            .log_request(&session, result.as_ref().err().map(|e| &**e), &ctx);
        if result.is_err() {
            session.shutdown().await;
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(reusable)) => Some(ReusedHttpStream::from_reusable_stream(reusable, settings)),
            _ => None,
        }
    }

    async fn http_cleanup(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown.notify_waiters();
        self.idle.clear();
        self.full.http_cleanup().await;
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.full.server_options()
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.full.h2_options()
    }
}

#[cfg(test)]
mod tests;
