//! The admin API on the admin listener. Every endpoint needs
//! `Authorization: Bearer <admin token>` (`admin.token` / `admin.token_file`); without a
//! configured token the API is disabled (403). Bodies are JSON, at most 64 KiB.
//!
//! - `POST /admin/purge` — `{"token": "..."}`, `{"subject": "..."}` or
//!   `{"session_id": "..."}`, optionally `"provider": "<name>"`: removes every matching
//!   cached identity at once (a logout or revocation takes effect before the TTL) and
//!   answers `{"removed": n, "by", "fan_out"}`. A token is hashed as the proxy hashes
//!   it, never stored or echoed. With `cluster:`, the purge also goes to every other
//!   replica through the revocation stream: `fan_out` is `published`, or `pending` when
//!   Redis is unreachable (applied here, published once it is back); `none` without a
//!   cluster.
//! - `POST /admin/explain` — `{"method", "path", "host"?, "client_ip"?, "token"?,
//!   "headers"?, "mode"?}`: runs the proxy's own decision for that request without
//!   forwarding it (`mode: decision`: as the decision listener judges a front proxy's
//!   question about it)
//!   and answers the trace (route, client address, token provider, cache state before
//!   and after, whether the provider was called, the identity, scopes required and
//!   present, IP checks, outcome). A miss calls the provider and caches the answer, as
//!   the request would.
//! - `POST /admin/reload` — reads the config file again (like SIGHUP) and answers what
//!   changed, or the error (the old configuration keeps serving).
//! - `POST /admin/rate_limits/reset` — `{"policy": "<name>", "key": "<value>"}`: forgets
//!   one key's counters in one rate-limit policy (every tier), so it starts again with a
//!   full burst. The value is what the policy counts by (a subject, a header's value, a
//!   token — hashed as the proxy hashes it, never stored or echoed); answers
//!   `{"reset": true, "policy"}`. This replica only: counters are per process.

// The admin API is a cold path: its helpers return the ready error response as `Err`.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use super::explain::{AskedRequest, Trace};
use super::AdminApp;
use crate::decision::refused::Refused;
use crate::decision::{decide, Decider, DecisionInput, Verdict};
use crate::identity::cache::PurgeBy;
use crate::identity::provider::static_tokens::token_digest;
use crate::identity::token::extract_bearer;
use crate::proxy::front;

const MAX_BODY: usize = 64 * 1024;

fn json_reply(status: StatusCode, body: Value) -> Response<Vec<u8>> {
    let bytes = format!("{body:#}\n").into_bytes();
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", bytes.len())
        .header("cache-control", "no-store");
    if status == StatusCode::UNAUTHORIZED {
        resp = resp.header("www-authenticate", "Bearer realm=\"sessiongate-admin\"");
    }
    resp.body(bytes)
        .expect("static header names and values are valid")
}

fn error(status: StatusCode, code: &str, description: impl Into<String>) -> Response<Vec<u8>> {
    json_reply(
        status,
        json!({"error": code, "error_description": description.into()}),
    )
}

/// Constant-time comparison of the presented token with the configured one (through
/// their digests, so lengths leak nothing either).
fn token_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (token_digest(presented), token_digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        format!("admin request bodies are limited to {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.to_vec()),
            Err(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the request body could not be read",
                ))
            }
        }
    }
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Response<Vec<u8>>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object",
        )),
        // serde_json's message names a position, never the input text.
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// A string field, or an error naming the field.
fn string_field<'a>(
    map: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, Response<Vec<u8>>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{key}` must be a string"),
        )),
    }
}

fn unknown_fields(
    map: &serde_json::Map<String, Value>,
    known: &[&str],
) -> Result<(), Response<Vec<u8>>> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("unknown field `{k}` (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

impl AdminApp {
    /// Dispatches `/admin/*` after checking the method and the admin token.
    pub(crate) async fn admin_api(
        &self,
        session: &mut ServerSession,
        path: &str,
    ) -> Response<Vec<u8>> {
        let snap = self.state().snapshot();
        let Some(expected) = &snap.admin_token else {
            return error(
                StatusCode::FORBIDDEN,
                "admin_api_disabled",
                "the admin API is disabled: set admin.token or admin.token_file",
            );
        };
        let req = session.req_header();
        let presented = extract_bearer(
            req.headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes()),
            None,
            4096,
        );
        match presented {
            Ok(t) if token_matches(t, expected.expose()) => {}
            _ => {
                tracing::warn!(path, "admin API request without a valid admin token");
                return error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "a valid admin bearer token is required",
                );
            }
        }
        if req.method != Method::POST {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use POST",
            );
        }
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        match path {
            "/admin/purge" => self.purge(&body).await.unwrap_or_else(|e| e),
            "/admin/explain" => self.explain(&body).await.unwrap_or_else(|e| e),
            "/admin/reload" => self.reload().await,
            "/admin/rate_limits/reset" => self.reset_limit(&body).await.unwrap_or_else(|e| e),
            _ => error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such admin endpoint (purge, explain, reload, rate_limits/reset)",
            ),
        }
    }

    async fn reset_limit(&self, body: &[u8]) -> Result<Response<Vec<u8>>, Response<Vec<u8>>> {
        let map = parse_object(body)?;
        unknown_fields(&map, &["policy", "key"])?;
        let (Some(policy), Some(value)) =
            (string_field(&map, "policy")?, string_field(&map, "key")?)
        else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give `policy` (a rate_limits name) and `key` (the value it counts by)",
            ));
        };
        let state = self.state();
        let Some(live) = state
            .limiters
            .policies()
            .into_iter()
            .find(|p| &*p.spec.name == policy)
        else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no rate limit named `{policy}` is in force"),
            ));
        };
        let kind = &live.spec.key;
        // A token is counted under its keyed hash, one per provider that could judge it.
        let values: Vec<String> = match kind {
            crate::limits::LimitKey::Token => state
                .snapshot()
                .providers
                .iter()
                .map(|e| state.hasher.key(&e.id, value).hex())
                .collect(),
            _ => vec![value.to_string()],
        };
        let mut everywhere = true;
        for v in &values {
            let key = state.limiters.key(kind, v.as_bytes());
            everywhere &= state.limiters.reset(policy, key).await != Some(false);
        }
        if !everywhere {
            tracing::warn!(policy, key_kind = %kind.describe(), "admin rate limit reset on this replica only: the cluster's counters in Redis could not be reached");
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster_unavailable",
                "reset on this replica; the cluster's counters in Redis could not be reached: try again",
            ));
        }
        tracing::info!(policy, key_kind = %kind.describe(), "admin rate limit reset");
        Ok(json_reply(
            StatusCode::OK,
            json!({"reset": true, "policy": policy}),
        ))
    }

    async fn purge(&self, body: &[u8]) -> Result<Response<Vec<u8>>, Response<Vec<u8>>> {
        let map = parse_object(body)?;
        unknown_fields(&map, &["token", "subject", "session_id", "provider"])?;
        let token = string_field(&map, "token")?;
        let subject = string_field(&map, "subject")?;
        let session_id = string_field(&map, "session_id")?;
        let provider = string_field(&map, "provider")?;
        let snap = self.state().snapshot();
        if let Some(p) = provider {
            if !snap.providers.iter().any(|e| &**e.name() == p) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("no provider named `{p}`"),
                ));
            }
        }
        let (by, label) = match (token, subject, session_id) {
            (Some(t), None, None) if !t.is_empty() => {
                let keys = snap
                    .providers
                    .iter()
                    .filter(|e| provider.is_none_or(|p| &**e.name() == p))
                    .map(|e| self.state().hasher.key(&e.id, t))
                    .collect();
                (PurgeBy::Keys(keys), "token")
            }
            (None, Some(s), None) if !s.is_empty() => (PurgeBy::Subject(s.to_string()), "subject"),
            (None, None, Some(s)) if !s.is_empty() => {
                (PurgeBy::SessionId(s.to_string()), "session_id")
            }
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "give exactly one non-empty `token`, `subject` or `session_id`",
                ))
            }
        };
        let filter = if matches!(by, PurgeBy::Keys(_)) {
            None
        } else {
            provider
        };
        let removed = self.state().cache.purge(&by, filter).await;
        // The other replicas: through the cluster's stream, when there is one.
        let fan_out = match self.cluster() {
            Some(cluster) => cluster.publish(&by, filter).await.as_str(),
            None => "none",
        };
        self.state()
            .metrics
            .cache_purged
            .with_label_values(&[label])
            .inc_by(removed as u64);
        tracing::info!(by = label, provider, removed, fan_out, "admin purge");
        Ok(json_reply(
            StatusCode::OK,
            json!({"removed": removed, "by": label, "fan_out": fan_out}),
        ))
    }

    async fn reload(&self) -> Response<Vec<u8>> {
        match self.reloads().request().await {
            Ok(report) => json_reply(
                StatusCode::OK,
                json!({
                    "applied": true,
                    "routes": report.routes,
                    "providers_changed": report.providers_changed,
                    "needs_restart": report.needs_restart,
                }),
            ),
            Err(e) => json_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"applied": false, "error": e.to_string()}),
            ),
        }
    }

    async fn explain(&self, body: &[u8]) -> Result<Response<Vec<u8>>, Response<Vec<u8>>> {
        let map = parse_object(body)?;
        unknown_fields(
            &map,
            &[
                "method",
                "path",
                "host",
                "client_ip",
                "token",
                "headers",
                "mode",
            ],
        )?;
        let bad = |m: String| error(StatusCode::BAD_REQUEST, "bad_request", m);
        let method = string_field(&map, "method")?.unwrap_or("GET");
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| bad("`method` is not an HTTP method".into()))?;
        let target = string_field(&map, "path")?.ok_or_else(|| bad("`path` is required".into()))?;
        if !target.starts_with('/') {
            return Err(bad("`path` must start with /".into()));
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let host = string_field(&map, "host")?;
        let peer: Option<IpAddr> = match string_field(&map, "client_ip")? {
            Some(ip) => Some(
                ip.parse()
                    .map_err(|_| bad("`client_ip` is not an IP address".into()))?,
            ),
            None => None,
        };
        let mut headers = HeaderMap::new();
        match map.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for (name, value) in h {
                    let (Ok(name), Some(Ok(value))) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        value.as_str().map(HeaderValue::from_str),
                    ) else {
                        return Err(bad(format!(
                            "header `{name}` is not a valid header with a string value"
                        )));
                    };
                    headers.append(name, value);
                }
            }
            Some(_) => return Err(bad("`headers` must be an object of strings".into())),
        }
        if let Some(token) = string_field(&map, "token")? {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| bad("`token` contains characters a header cannot carry".into()))?;
            headers.append(http::header::AUTHORIZATION, value);
        }
        // `decision`: judged as decision.listen judges a front proxy's question (routes
        // without an upstream exist, headers a backend may obey are refused).
        let mode = string_field(&map, "mode")?.unwrap_or("proxy");
        let deciding = match mode {
            "proxy" => false,
            "decision" => true,
            _ => return Err(bad("`mode` is `proxy` or `decision`".into())),
        };
        let state = self.state();
        let snap = state.snapshot();
        let mut d = decide(
            // Explaining a request shows the rate limits it would be counted by, without
            // spending its quota.
            Decider {
                count_limits: false,
                deciding,
                ..state.decider(&snap)
            },
            &DecisionInput {
                method: &method,
                host: host.map(str::as_bytes),
                path,
                query,
                peer,
                headers: &headers,
                // explain judges what a request would carry in headers; no connection.
                client_cert: None,
            },
        )
        .await;
        if deciding {
            if let Err(rejection) = front::no_header_a_backend_may_obey(&headers, &snap) {
                d.rejection = Some(rejection.clone());
                d.verdict = Verdict::Refuse(Refused::Unreadable(rejection));
            }
        }

        let asked = AskedRequest {
            method: method.as_str(),
            path,
            host,
            client_ip: peer.map(|p| p.to_string()),
            mode,
        };
        let trace = serde_json::to_value(Trace::of(&d, asked, &method))
            .unwrap_or_else(|e| json!({"error": format!("cannot serialize the trace: {e}")}));
        Ok(json_reply(StatusCode::OK, trace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_comparison() {
        assert!(token_matches("0123456789abcdef", "0123456789abcdef"));
        assert!(!token_matches("0123456789abcdeF", "0123456789abcdef"));
        assert!(!token_matches("", "0123456789abcdef"));
    }
}
