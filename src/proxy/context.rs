//! What one request carries through the phases ([`RequestCtx`]), and how an HTTP/2
//! request's body is watched for progress ([`BodyProgress`]).

use super::*;

/// Per-request state, carried from phase to phase: the decision itself, not copies of it.
pub struct RequestCtx {
    pub(super) started: Instant,
    pub(super) request_id: String,
    /// The configuration this request started under (kept across a reload).
    pub(super) snapshot: Option<Arc<Snapshot>>,
    /// The TCP peer.
    pub(super) peer: Option<IpAddr>,
    /// What [`decide`] found: route, client, provider, cache, identity (verdict taken out).
    pub(super) decision: Option<Decision>,
    /// The canonical path differs from the bytes the client sent: forward the canonical one.
    pub(super) rewrite_path: bool,
    pub(super) outcome: Outcome,
    pub(super) auth_time: Option<Duration>,
    /// Why the request has no canonical form (a 400), from the headers or the decision.
    pub(super) rejection: Option<crate::decision::canonical::Rejection>,
    /// The signed identity assertion for the upstream, on routes that have one.
    pub(super) assertion: Option<(WireName, HeaderValue)>,
    /// The client asked to switch protocols (`Upgrade`); only then may a 101 reach it.
    pub(super) upgrade_requested: bool,
    /// The request came over TLS (the `tls.listen` listener).
    pub(super) https: bool,
    /// The connection's verified client certificate (`tls.client_certificates`).
    pub(super) client_cert: Option<Arc<crate::tls::ClientCert>>,
    /// This request's slot at its upstream (`max_in_flight`), held until it ends.
    pub(super) upstream_slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// An Envoy ext_authz check (decision mode): a gRPC `Check` call, answered with a
    /// `CheckResponse`, or an HTTP check under `decision.envoy_http_prefix`.
    pub(super) envoy: Option<super::ext_authz::Flavour>,
    /// Decision mode, once the request is read as the one it describes: whether the front
    /// proxy asked with `HEAD` (then its answer has no body, whatever method the described
    /// request has). See [`super::front::framed_for_asker`].
    pub(super) asked_head: Option<bool>,
    /// `tracing:`: this request's trace (ids, sampled or not); `None` with traces off.
    pub(super) trace: Option<crate::telemetry::trace::RequestTrace>,
}

impl RequestCtx {
    pub(super) fn route(&self) -> Option<&Arc<Route>> {
        self.decision.as_ref()?.route.as_ref()
    }

    pub(super) fn identity(&self) -> Option<&Identity> {
        self.decision.as_ref()?.identity.as_ref()
    }

    /// The provider that judged the token (its config name).
    pub(super) fn provider(&self) -> Option<&str> {
        self.decision
            .as_ref()?
            .provider
            .as_deref()
            .map(|p| &**p.name())
    }

    /// The client address (the peer, or read through trusted proxies).
    pub(super) fn client(&self) -> Option<IpAddr> {
        self.decision.as_ref()?.client
    }

    pub(super) fn cache_status(&self) -> Option<CacheStatus> {
        self.decision.as_ref()?.cache.as_ref().map(|c| c.status)
    }

    /// Seconds since the provider confirmed a stale identity.
    pub(super) fn stale_age(&self) -> Option<u64> {
        self.decision.as_ref()?.stale_age().map(|a| a.as_secs())
    }

    /// On a report-mode route: the first reason the request would have been denied.
    pub(super) fn would_deny(&self) -> Option<&'static str> {
        self.decision
            .as_ref()?
            .would_deny
            .first()
            .map(Denial::reason)
    }

    /// The rate-limit policy the request was over, refused or reported.
    pub(super) fn rate_limit(&self) -> Option<&str> {
        let d = self.decision.as_ref()?;
        d.limits
            .iter()
            .find(|l| l.over())
            .map(|l| &*l.policy.spec.name)
    }

    /// The path forwarded upstream when it differs from what the client sent.
    pub(super) fn rewritten_path(&self) -> Option<&str> {
        if !self.rewrite_path {
            return None;
        }
        self.decision.as_ref()?.path.as_deref()
    }
}

/// How an HTTP/2 request's body is coming in. Pingora reads HTTP/2 request bodies with no
/// timeout (HTTP/1's read timeout does not apply to them), so a stream that never sends
/// its body would hold its upstream connection for ever; the direct path watches this
/// and resets a stream whose body makes no progress for `body_idle_timeout`
/// ([`BodyProgress::stalled`]).
#[derive(Debug)]
pub(crate) struct BodyProgress {
    pub(super) started: tokio::time::Instant,
    /// Milliseconds from `started` to the last body progress; `u64::MAX`: not watching
    /// (no body expected yet, or done).
    pub(super) last: std::sync::atomic::AtomicU64,
    /// The body is complete or the upstream answered: never watched again.
    pub(super) finished: std::sync::atomic::AtomicBool,
}

tokio::task_local! {
    /// The current HTTP/2 stream's body progress (set by the direct path around the full
    /// proxy; the proxy steps update it).
    pub(crate) static HTTP2_BODY: Arc<BodyProgress>;
}

impl Default for BodyProgress {
    fn default() -> Self {
        BodyProgress {
            started: tokio::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(u64::MAX),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl BodyProgress {
    pub(super) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A body is expected (or came in): watch from now.
    pub(super) fn progressed(&self) {
        if !self.finished.load(std::sync::atomic::Ordering::Relaxed) {
            self.last
                .store(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The body is complete, or the upstream answered: nothing more to watch.
    pub(super) fn done(&self) {
        self.finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.last
            .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves once the body has made no progress for `limit` (never while not watched).
    pub(crate) async fn stalled(&self, limit: Duration) {
        let limit_ms = limit.as_millis() as u64;
        loop {
            let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
            let wait = if last == u64::MAX {
                // Not watching: look again later (cheap; one timer per stream).
                limit
            } else {
                let idle = self.now_ms().saturating_sub(last);
                if idle >= limit_ms {
                    return;
                }
                Duration::from_millis(limit_ms - idle)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTP/2 body watch: quiet while nothing is expected or the body is complete;
    /// fires `limit` after the last progress, not after the first.
    #[tokio::test(start_paused = true)]
    async fn a_request_body_stalls_only_after_its_last_progress() {
        let p = BodyProgress::default();
        let limit = Duration::from_secs(5);
        // Not watching: never fires.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), p.stalled(limit))
                .await
                .is_err()
        );
        p.progressed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        p.progressed();
        let started = tokio::time::Instant::now();
        p.stalled(limit).await;
        let took = started.elapsed();
        assert!(
            took >= limit && took < limit + Duration::from_millis(10),
            "{took:?}"
        );
        // Once the upstream answered (or the body ended), body progress no longer arms
        // it: a gRPC stream sends messages at its own pace.
        p.done();
        p.progressed();
        assert!(
            tokio::time::timeout(Duration::from_secs(60), p.stalled(limit))
                .await
                .is_err()
        );
    }
}
