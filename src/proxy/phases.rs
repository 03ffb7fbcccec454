//! Pingora's `ProxyHttp` phases for the full proxy: each delegates to the steps both
//! ways of serving a request share (`Proxy` in `mod.rs`).

use super::*;

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        self.new_request()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.filter(session.as_downstream_mut(), ctx).await
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // HTTP/2 only (the task-local is set for HTTP/2 streams): the body moves.
        let _ = HTTP2_BODY.try_with(|p| {
            if end_of_stream {
                p.done()
            } else {
                p.progressed()
            }
        });
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        self.peer(ctx).map(Box::new)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.prepare_upstream_request(upstream_request, ctx)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The upstream answered: an HTTP/2 stream is now an exchange (gRPC streams send
        // messages both ways at their own pace), no longer a body awaited.
        let _ = HTTP2_BODY.try_with(|p| p.done());
        self.prepare_response(upstream_response, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        FailToProxy {
            error_code: self.fail(session.as_downstream_mut(), e, ctx).await,
            can_reuse_downstream: false,
        }
    }

    /// Used by Pingora in its own error logs: method and path only, never the query string
    /// (which may carry secrets) or headers.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!(
            "{} {} request_id={}",
            req.method,
            ctx.rewritten_path().unwrap_or(req.uri.path()),
            ctx.request_id
        )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        self.log_request(session.as_downstream(), e, ctx);
    }
}
