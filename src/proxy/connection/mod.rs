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

mod deadlines;
mod memory;
#[cfg(test)]
mod tests;

pub(crate) use deadlines::Deadlines;
pub use memory::set_memory_give_back;
use memory::*;

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
    pub(crate) fn h2c(mut self, h2c: bool) -> Self {
        self.h2c = h2c;
        self
    }

    /// The same application and connection count, for a listener that speaks TLS.
    pub(crate) fn with_tls(&self, acceptor: Acceptor) -> Self {
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
            let Some(ours) = Deadlines::recover(stream) else {
                break;
            };
            conn = ours;
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
