//! The built-in `echo` upstream: answers with the request a real upstream would have
//! received (method, target, headers after the gateway's changes), as JSON. It is how a
//! user checks what their backend will see: `upstream: echo` on any route.

use std::collections::BTreeMap;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;

use super::{headers, Proxy, RequestCtx};

/// Most request-body bytes the echo upstream reads before giving up on the connection.
const MAX_DRAIN: usize = 1 << 20;

/// Reads and discards the request body so the connection can be reused; returns its size.
/// A body over 1 MiB is not read further and the connection is closed after the answer.
pub(crate) async fn drain_body(session: &mut ServerSession) -> Result<usize> {
    let mut total = 0;
    while let Some(chunk) = session.read_request_body().await? {
        total += chunk.len();
        if total > MAX_DRAIN {
            session.set_keepalive(None);
            break;
        }
    }
    Ok(total)
}

/// The JSON answer for the request `forwarded` (already prepared as for an upstream).
pub(crate) fn render(forwarded: &RequestHeader, body_bytes: usize) -> Vec<u8> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in forwarded.headers.iter() {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let target = forwarded
        .uri
        .path_and_query()
        .map_or("/".to_string(), |pq| pq.as_str().to_string());
    let answer = serde_json::json!({
        "method": forwarded.method.as_str(),
        "uri": target,
        "version": format!("{:?}", forwarded.version),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    // `{:#}` is serde_json's pretty printer through `Display`, which cannot fail.
    format!("{answer:#}\n").into_bytes()
}

impl Proxy {
    /// The built-in echo upstream: answers with the request an upstream would receive.
    pub(super) async fn answer_echo(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let mut forwarded = session.req_header().clone();
        self.prepare_upstream_request(&mut forwarded, ctx)?;
        let body_bytes = drain_body(session).await?;
        let body = Bytes::from(render(&forwarded, body_bytes));
        let mut resp = ResponseHeader::build(200, Some(4))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
        session.write_response_header(Box::new(resp)).await?;
        session.write_response_body(body, true).await?;
        Ok(true)
    }
}
