//! Responses the gateway writes itself: denials (401/400/403), failures (503/502) and
//! routing errors (404). Each has a small JSON body `{error, error_description,
//! request_id}`, `Cache-Control: no-store`, and for bearer-token problems an RFC 6750
//! `WWW-Authenticate` challenge. Nothing from the token is ever echoed.
//!
//! A gRPC request (`content-type: application/grpc`, `application/grpc+proto`, …) gets
//! the answer a gRPC client understands instead: HTTP 200, `content-type:
//! application/grpc`, `grpc-status` and `grpc-message` in one header block ending the
//! stream ("Trailers-Only"), the code chosen by [`grpc_status`]. (gRPC-Web,
//! `application/grpc-web*`, is answered in HTTP: its clients read HTTP statuses.)

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;

/// The realm in `WWW-Authenticate` challenges.
pub(crate) const REALM: &str = "sessiongate";

/// Seconds a client is asked to wait after a 503.
pub(crate) const RETRY_AFTER_SECS: u32 = 1;

/// A response the gateway writes instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    /// Machine-readable code (`invalid_token`, `provider_unavailable`, …).
    pub(crate) error: &'static str,
    /// Human-readable explanation; never contains the token.
    pub(crate) description: String,
    /// RFC 6750 error code for a `WWW-Authenticate: Bearer` challenge, if any (`""`: a
    /// challenge with no error code, for a request without credentials).
    pub(crate) challenge: Option<&'static str>,
    /// Sends `Retry-After`.
    pub(crate) retry_after: bool,
    /// The `scope` parameter of an `insufficient_scope` challenge.
    pub(crate) scope: Option<String>,
    /// The `Allow` header of a 405: the methods the route takes.
    pub(crate) allow: Option<String>,
    /// The `rules:` entry that denied (named in the JSON body as `rule`).
    pub(crate) rule: Option<std::sync::Arc<str>>,
    /// A rate limit's answer: the policy (named in the JSON body as `policy`), the
    /// seconds of `Retry-After` and the RateLimit fields.
    pub(crate) rate_limit: Option<Box<RateLimitAnswer>>,
}

/// What a 429 of a `rate_limits:` policy carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimitAnswer {
    pub(crate) policy: std::sync::Arc<str>,
    pub(crate) retry_after: u64,
    /// `RateLimit-Policy` and `RateLimit` values.
    pub(crate) fields: (String, String),
}

impl Refusal {
    /// 401 (or 400 for `invalid_request`) with a Bearer challenge.
    pub(crate) fn bearer(rfc6750_code: &'static str, description: impl Into<String>) -> Self {
        Refusal {
            status: if rfc6750_code == "invalid_request" {
                400
            } else {
                401
            },
            error: rfc6750_code,
            description: description.into(),
            challenge: Some(rfc6750_code),
            retry_after: false,
            scope: None,
            allow: None,
            rule: None,
            rate_limit: None,
        }
    }

    /// 401 for a request that sent no credentials at all (no token, or another scheme than
    /// Bearer): a challenge with no error code (RFC 6750 §3.1: the client may simply not
    /// have known that authentication is needed); `missing_token` in the JSON body.
    pub(crate) fn no_credentials(description: impl Into<String>) -> Self {
        Refusal {
            error: "missing_token",
            challenge: Some(""),
            ..Refusal::bearer("invalid_token", description)
        }
    }

    /// 403 `insufficient_scope` (RFC 6750 §3.1), naming the scopes the route requires.
    pub(crate) fn insufficient_scope(required: &[String]) -> Self {
        Refusal {
            status: 403,
            error: "insufficient_scope",
            description: "the token lacks the scopes this request requires".into(),
            challenge: Some("insufficient_scope"),
            retry_after: false,
            scope: Some(required.join(" ")),
            allow: None,
            rule: None,
            rate_limit: None,
        }
    }

    /// A `rules:` entry denied: its status (403, or 404 where the route says so), the
    /// rule's name and its message — never a value the expression read. A 404 does not
    /// name the rule (it does not say that the resource exists).
    pub(crate) fn rule(name: &std::sync::Arc<str>, message: Option<&str>, status: u16) -> Self {
        let hidden = status == 404;
        Refusal {
            status,
            error: if hidden { "not_found" } else { "rule_denied" },
            description: match message {
                Some(m) => m.to_string(),
                None if hidden => "no such resource".into(),
                None => format!("denied by rule `{name}`"),
            },
            challenge: None,
            retry_after: false,
            scope: None,
            allow: None,
            rule: (!hidden).then(|| name.clone()),
            rate_limit: None,
        }
    }

    /// 403 `csrf`: a cookie-authenticated unsafe request from another site.
    pub(crate) fn cross_site(description: &'static str) -> Self {
        Refusal {
            status: 403,
            error: "csrf",
            description: description.into(),
            challenge: None,
            retry_after: false,
            scope: None,
            allow: None,
            rule: None,
            rate_limit: None,
        }
    }

    /// 503: the identity provider could not answer; the request was not forwarded.
    pub(crate) fn provider_unavailable() -> Self {
        Refusal {
            status: 503,
            error: "provider_unavailable",
            description:
                "the identity provider could not be reached; the request was not forwarded".into(),
            challenge: None,
            retry_after: true,
            scope: None,
            allow: None,
            rule: None,
            rate_limit: None,
        }
    }

    /// 429 with `Retry-After` (a client over its cache-miss rate).
    pub(crate) fn too_many_requests(description: impl Into<String>) -> Self {
        Refusal {
            status: 429,
            error: "too_many_requests",
            description: description.into(),
            challenge: None,
            retry_after: true,
            scope: None,
            allow: None,
            rule: None,
            rate_limit: None,
        }
    }

    /// 429 `rate_limited`: a `rate_limits:` policy; names the policy, never the key.
    pub(crate) fn rate_limited(
        policy: &std::sync::Arc<str>,
        retry_after: u64,
        fields: (String, String),
    ) -> Self {
        Refusal {
            retry_after: true,
            rate_limit: Some(Box::new(RateLimitAnswer {
                policy: policy.clone(),
                retry_after,
                fields,
            })),
            ..Refusal::plain(
                429,
                "rate_limited",
                format!("over the rate limit `{policy}`; retry after {retry_after} s"),
            )
        }
    }

    /// 405 `method_not_allowed`, with `Allow` naming the methods the route takes.
    pub(crate) fn method_not_allowed(allowed: &[http::Method]) -> Self {
        let allow = allowed
            .iter()
            .map(http::Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Refusal {
            allow: Some(allow),
            rule: None,
            ..Refusal::plain(
                405,
                "method_not_allowed",
                "this route does not take this method (see the Allow header)",
            )
        }
    }

    /// Any other status with a plain error code.
    pub(crate) fn plain(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Refusal {
            status,
            error,
            description: description.into(),
            challenge: None,
            retry_after: false,
            scope: None,
            allow: None,
            rule: None,
            rate_limit: None,
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self, request_id: &str) -> Bytes {
        let mut body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
            "request_id": request_id,
        });
        if let Some(rule) = &self.rule {
            body["rule"] = serde_json::Value::from(&**rule);
        }
        if let Some(limit) = &self.rate_limit {
            body["policy"] = serde_json::Value::from(&*limit.policy);
        }
        Bytes::from(body.to_string())
    }

    /// The response header, for `body_len` bytes of JSON.
    pub(crate) fn header(&self, request_id: &str, body_len: usize) -> Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(self.status, Some(8))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body_len.to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("x-request-id", request_id)?;
        if let Some(allow) = &self.allow {
            resp.insert_header("allow", allow.as_str())?;
        }
        if self.challenge == Some("") {
            resp.insert_header("www-authenticate", format!("Bearer realm=\"{REALM}\""))?;
        } else if let Some(code) = self.challenge {
            // The description is ours (fixed ASCII text), so quoting it is safe.
            let mut value = format!(
                "Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{}\"",
                self.description.replace(['"', '\\'], "'")
            );
            if let Some(scope) = &self.scope {
                // Scopes are checked at config time: no quotes, backslashes or controls.
                value.push_str(&format!(", scope=\"{scope}\""));
            }
            resp.insert_header("www-authenticate", value)?;
        }
        self.limit_headers(&mut resp)?;
        Ok(resp)
    }

    /// `Retry-After` (a rate limit's wait, or [`RETRY_AFTER_SECS`]) and a rate limit's
    /// RateLimit fields.
    fn limit_headers(&self, resp: &mut ResponseHeader) -> Result<()> {
        match &self.rate_limit {
            Some(l) => {
                resp.insert_header("retry-after", l.retry_after.to_string())?;
                resp.insert_header("ratelimit-policy", l.fields.0.as_str())?;
                resp.insert_header("ratelimit", l.fields.1.as_str())?;
            }
            None if self.retry_after => {
                resp.insert_header("retry-after", RETRY_AFTER_SECS.to_string())?;
            }
            None => {}
        }
        Ok(())
    }

    /// The gRPC form of the refusal: a Trailers-Only response.
    pub(crate) fn grpc_header(&self, request_id: &str) -> Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(200, Some(6))?;
        resp.insert_header("content-type", "application/grpc")?;
        resp.insert_header("grpc-status", grpc_status(self).to_string())?;
        resp.insert_header("grpc-message", grpc_message(&self.description))?;
        resp.insert_header("x-request-id", request_id)?;
        self.limit_headers(&mut resp)?;
        Ok(resp)
    }

    /// Writes the response. With `keep_alive` the connection stays open for the next
    /// request (the caller checked that the request body is absent or small enough to be
    /// drained); otherwise it is closed afterwards. With `grpc_form` a gRPC request gets
    /// the gRPC form (HTTP 200 with `grpc-status`); never in decision mode, where the
    /// HTTP status *is* the answer and a 200 would let the request through.
    pub(crate) async fn send(
        &self,
        downstream: &mut ServerSession,
        request_id: &str,
        keep_alive: bool,
        grpc_form: bool,
    ) -> Result<()> {
        if grpc_form && is_grpc(downstream.req_header()) && downstream.response_written().is_none()
        {
            let header = Box::new(self.grpc_header(request_id)?);
            return match downstream {
                // One HEADERS frame with END_STREAM: gRPC's Trailers-Only.
                ServerSession::H2(h2) => h2.write_response_header(header, true),
                other => {
                    let mut header = header;
                    header.insert_header("content-length", "0")?;
                    if !keep_alive {
                        other.set_keepalive(None);
                    }
                    other.write_response_header(header).await?;
                    other.write_response_body(Bytes::new(), true).await?;
                    other.finish_body().await
                }
            };
        }
        let body = self.body(request_id);
        let header = self.header(request_id, body.len())?;
        if !keep_alive {
            return downstream.write_error_response(header, body).await;
        }
        if downstream.response_written().is_some() {
            return Ok(());
        }
        downstream.write_response_header(Box::new(header)).await?;
        downstream.write_response_body(body, true).await?;
        downstream.finish_body().await
    }
}

/// A gRPC request: `application/grpc` alone or with a `+format` / parameters; not
/// gRPC-Web.
pub(crate) fn is_grpc(req: &pingora::http::RequestHeader) -> bool {
    let Some(ct) = req.headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    const GRPC: &[u8] = b"application/grpc";
    ct.len() >= GRPC.len()
        && ct[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(ct.get(GRPC.len()), None | Some(b'+') | Some(b';'))
}

/// The gRPC status code for a refusal (gRPC's own codes, not its HTTP mapping):
/// 16 UNAUTHENTICATED for a missing, malformed or refused token; 7 PERMISSION_DENIED for
/// a policy denial; 14 UNAVAILABLE when the provider or the upstream cannot answer;
/// 8 RESOURCE_EXHAUSTED for a limit; 3 INVALID_ARGUMENT for a request with no canonical
/// form; 12 UNIMPLEMENTED for no route; 4 DEADLINE_EXCEEDED for an upstream timeout.
pub(crate) fn grpc_status(r: &Refusal) -> u8 {
    match r.status {
        401 => 16,
        400 if r.challenge.is_some() => 16,
        400 => 3,
        403 => 7,
        404 | 405 => 12,
        408 | 504 => 4,
        413 | 429 | 431 => 8,
        502 | 503 => 14,
        _ => 13,
    }
}

/// `grpc-message`: percent-encoded as gRPC requires (bytes outside printable ASCII, and
/// `%`).
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_are_recognised_and_answered_with_grpc_codes() {
        let req = |ct: &str| {
            let mut r = pingora::http::RequestHeader::build("POST", b"/pkg.Svc/M", None).unwrap();
            r.insert_header("content-type", ct).unwrap();
            r
        };
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC;x=1",
        ] {
            assert!(is_grpc(&req(ct)), "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/json",
            "application/grpcx",
        ] {
            assert!(!is_grpc(&req(ct)), "{ct}");
        }
        assert_eq!(grpc_status(&Refusal::bearer("invalid_token", "x")), 16);
        assert_eq!(grpc_status(&Refusal::bearer("invalid_request", "x")), 16);
        assert_eq!(grpc_status(&Refusal::plain(400, "invalid_path", "x")), 3);
        assert_eq!(grpc_status(&Refusal::insufficient_scope(&["a".into()])), 7);
        assert_eq!(grpc_status(&Refusal::provider_unavailable()), 14);
        assert_eq!(grpc_status(&Refusal::too_many_requests("x")), 8);
        assert_eq!(grpc_status(&Refusal::plain(404, "no_route", "x")), 12);
        assert_eq!(
            grpc_status(&Refusal::plain(504, "upstream_timeout", "x")),
            4
        );
        let h = Refusal::insufficient_scope(&["a".into()])
            .grpc_header("rid")
            .unwrap();
        assert_eq!(h.status.as_u16(), 200);
        assert_eq!(h.headers.get("grpc-status").unwrap(), "7");
        assert_eq!(h.headers.get("content-type").unwrap(), "application/grpc");
        assert_eq!(grpc_message("50% done\n é"), "50%25 done%0A %C3%A9");
    }

    #[test]
    fn bearer_challenge_and_body() {
        let r = Refusal::bearer("invalid_token", "the token is not valid");
        assert_eq!(r.status, 401);
        let h = r.header("rid-1", 10).unwrap();
        assert_eq!(
            h.headers.get("www-authenticate").unwrap(),
            "Bearer realm=\"sessiongate\", error=\"invalid_token\", error_description=\"the token is not valid\""
        );
        assert_eq!(h.headers.get("cache-control").unwrap(), "no-store");
        let body: serde_json::Value = serde_json::from_slice(&r.body("rid-1")).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["request_id"], "rid-1");
        assert_eq!(Refusal::bearer("invalid_request", "x").status, 400);
    }

    #[test]
    fn unavailable_has_retry_after() {
        let r = Refusal::provider_unavailable();
        let h = r.header("r", 1).unwrap();
        assert_eq!(h.status.as_u16(), 503);
        assert_eq!(h.headers.get("retry-after").unwrap(), "1");
        assert!(h.headers.get("www-authenticate").is_none());
    }
}
