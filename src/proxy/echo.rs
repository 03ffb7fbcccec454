//! The built-in `echo` upstream: answers with the request a real upstream would have
//! received (method, target, headers after the gateway's changes), as JSON. It is how a
//! user checks what their backend will see: `upstream: echo` on any route.

use std::collections::BTreeMap;

use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;

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
