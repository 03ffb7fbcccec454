//! [`Deadlines`], the stream wrapper under every client connection: the opening,
//! header and idle deadlines, the h2c peek, the kept request head for a hand-over, and
//! the HTTP/2 frame headers it follows to tell an idle close.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(crate) struct Deadlines {
    pub(super) inner: Stream,
    pub(super) phase: Phase,
    pub(super) idle_timeout: Duration,
    pub(super) header_timeout: Duration,
    /// When the current phase's deadline passes; computed when first needed.
    pub(super) deadline: Option<Instant>,
    /// The timer, created and set only when a read has to wait under a deadline.
    pub(super) sleep: Option<Pin<Box<Sleep>>>,
    /// Writes so far, and at the moment the idle deadline was set: a response still being
    /// written is not idleness.
    pub(super) writes: u64,
    pub(super) writes_at_deadline: u64,
    pub(super) blank_line: BlankLine,
    pub(super) on_close: Box<dyn Fn(&'static str) + Send + Sync>,
    /// The reads of the current request head, byte for byte (see the module docs).
    pub(super) head: Vec<u8>,
    /// Bytes to serve again before reading the socket, and how many were served.
    pub(super) replay: Option<(Vec<u8>, usize)>,
    /// Bytes [`Deadlines::await_request`] read, served before `replay` (or handed to an
    /// HTTP/1 session whole: [`Deadlines::take_first_bytes`]).
    pub(super) first: Option<bytes::BytesMut>,
    /// The current head outgrew [`HEAD_LIMIT`] or its response began: not kept.
    pub(super) head_lost: bool,
    /// HTTP/2 (ALPN `h2`, or the h2c preface): frames, not HTTP/1 heads. Its opening
    /// (preface and the client's SETTINGS) has the header deadline; once open, Pingora
    /// closes it when idle with no stream open (`h2_idle_timeout`).
    pub(super) http2: bool,
    /// A plain connection may still turn out to be h2c: every byte read so far is the
    /// start of the HTTP/2 preface (only with `h2c: true`).
    pub(super) maybe_h2c: bool,
    /// Bytes of the HTTP/2 client preface read so far (the opening's first part).
    pub(super) h2_preface: usize,
    /// The client's frames after the preface: the first complete one (SETTINGS) ends the
    /// opening; a GOAWAY from the client is noted.
    pub(super) h2_in: FrameHeaders,
    /// The frames the gateway writes on an HTTP/2 connection, followed to see a GOAWAY.
    pub(super) h2_out: FrameHeaders,
    /// The client ended the connection (a read gave EOF) or it broke (an I/O error).
    pub(super) ended_by_peer: bool,
    pub(super) tunnel_idle: Duration,
    pub(super) tunnel_max: Option<Duration>,
    /// When the tunnel opened (a `101` went out), for `tunnel_max`.
    pub(super) tunnel_opened: Option<Instant>,
    /// The tunnel's last write to the client (activity that keeps it open).
    pub(super) tunnel_last_write: Option<Instant>,
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The request-head memory an idle kept-alive connection keeps for its next request.
pub(super) const KEPT_HEAD_BYTES: usize = 1024;

/// The most request-head bytes kept for a hand-over: Pingora's own header limit (1 MiB)
/// plus one read.
pub(super) const HEAD_LIMIT: usize = (1 << 20) + 64 * 1024;

impl std::fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlines")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

impl Deadlines {
    /// The connection's own stream back from Pingora, which keeps every stream as a
    /// `Box<dyn IO>` (an HTTP/1 session's `into_inner`, a kept-alive `ReusedHttpStream`).
    ///
    /// The one place the type is recovered at run time: Pingora 0.9 has no typed way —
    /// its sessions are not generic over the stream, and reading a request already parsed
    /// (`HttpProxy::process_request`) is private. Every stream the connection loop gives
    /// Pingora is a `Deadlines` (it wraps each one before the first read), so `None` means
    /// a Pingora change; callers close the connection and log it rather than guess.
    pub(crate) fn recover(stream: Stream) -> Option<Box<Deadlines>> {
        let recovered = stream.into_any().downcast::<Deadlines>().ok();
        if recovered.is_none() {
            tracing::error!("a client connection's stream is not the gateway's own; closing it");
        }
        recovered
    }

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
    pub(crate) fn h2c(mut self, h2c: bool) -> Self {
        self.maybe_h2c = h2c && !self.http2 && self.phase == Phase::Fresh;
        self
    }

    /// Makes the next reads return the current request's head again (the bytes read from
    /// its first byte to the end of its headers), then continue with the socket. False
    /// when those bytes were not all kept (a head larger than Pingora accepts, or a
    /// response already begun): the connection cannot be handed over.
    pub(crate) fn replay_request(&mut self) -> bool {
        if self.head_lost || self.head.is_empty() {
            return false;
        }
        let head = std::mem::take(&mut self.head);
        self.replay = Some((head, 0));
        true
    }

    /// Forgets the kept request head (its memory too, when it was large).
    pub(super) fn drop_head(&mut self) {
        if self.head.capacity() > 16 * 1024 {
            // A rare large head does not stay allocated for the connection's life.
            self.head = Vec::new();
        }
        self.head.clear();
    }

    /// Follows the request through the bytes just read.
    pub(super) fn saw_read(&mut self, data: &[u8]) {
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

    pub(super) fn saw_write(&mut self, data: &[u8]) {
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
    pub(super) fn timed_out(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
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
    pub(super) fn tunnel_timed_out(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
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

pub(super) const SCRATCH_BYTES: usize = 4096;

impl Deadlines {
    /// A read from the connection itself (not the bytes kept to be read again), under the
    /// deadline of the phase it is in.
    pub(super) fn poll_socket(
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
    pub(crate) async fn await_request(&mut self) -> bool {
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
    pub(crate) fn rest(&mut self) {
        if self.head.capacity() > KEPT_HEAD_BYTES {
            self.head = Vec::new();
        }
    }

    /// The bytes [`Deadlines::await_request`] read, for an HTTP/1 session to parse first
    /// (Pingora's `pipelined_prefix`: no second copy, and the buffer is the one Pingora
    /// would have read the head into).
    pub(crate) fn take_first_bytes(&mut self) -> Option<bytes::BytesMut> {
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
pub(super) struct FrameHeaders {
    /// Bytes of the current frame header seen (0..9).
    pub(super) got: usize,
    pub(super) header: [u8; 9],
    /// Payload bytes of the current frame still to come.
    pub(super) skip: usize,
    pub(super) complete: u32,
    pub(super) goaway: bool,
}

impl FrameHeaders {
    pub(super) fn feed(&mut self, mut data: &[u8]) {
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
pub(super) struct BlankLine {
    /// The last (up to three) bytes of earlier pieces.
    pub(super) tail: [u8; 3],
    pub(super) tail_len: usize,
}

impl BlankLine {
    /// True once an empty line has ended the head in the pieces fed so far: `\r\n\r\n`,
    /// `\n\n`, or the mixed `\n\r\n` (a line ended by a bare LF, then CRLF), all of which
    /// Pingora's parser (httparse) accepts.
    pub(super) fn feed(&mut self, data: &[u8]) -> bool {
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
