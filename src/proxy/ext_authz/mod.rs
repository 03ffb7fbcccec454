//! Decision mode for Envoy: the gRPC `envoy.service.auth.v3.Authorization/Check` call
//! (Envoy's `ext_authz` filter, Istio's `CUSTOM` action, Envoy Gateway's
//! `SecurityPolicy.extAuth`), served on `decision.listen` over HTTP/2 (h2c or TLS); and
//! Envoy's HTTP flavour, the original request under `decision.envoy_http_prefix`, answered
//! as forward-auth is, with `x-envoy-auth-headers-to-remove` (see [`to_remove`]).
//!
//! The `CheckRequest` is rewritten into the request it describes — method, `:path`,
//! `:authority`, the headers Envoy lists, and `X-Forwarded-For` set to Envoy's source
//! address — and judged by the proxy's own steps, as the forward-auth front door does
//! (`front.rs`). The answer is always a `CheckResponse` with gRPC status 0:
//!
//! - allowed: `status.code` 0 and an `ok_response` whose `headers` overwrite the identity
//!   headers and whose `headers_to_remove` drop every identity header the identity lacks,
//!   every client-sent header under the identity prefix, and the credential when the
//!   route does not forward it — what the proxy listener's upstream would receive;
//! - refused: the proxy's refusal in a `denied_response` (status, `WWW-Authenticate`,
//!   `Retry-After`, RateLimit fields, the JSON body) and `status.code` its gRPC code.
//!
//! Envoy forwards the path it sent, not one the answer could name: a path whose canonical
//! form differs is refused (400), so Envoy's own normalisation (`normalize_path`,
//! `merge_slashes`, `path_with_escaped_slashes_action`) must be on (docs/decision-mode.md).

pub(crate) mod wire;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;

use super::{Proxy, RequestCtx, Snapshot};
use crate::decision::canonical::{hex_value, Rejection};
use crate::decision::respond::{grpc_status, is_grpc, Refusal};
use crate::identity::token::TokenSource;
use crate::tls::ClientCert;
use std::sync::Arc;

/// The gRPC method Envoy calls.
pub(crate) const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The header of an HTTP check's "yes" naming the request headers Envoy removes.
pub(crate) const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// Which of Envoy's two ways of asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// `grpc_service`: a `Check` call.
    Grpc,
    /// `http_service`: the original request, its path under `path_prefix`.
    Http,
}

/// The largest `CheckRequest` read (Envoy's request headers, and the body when
/// `with_request_body` is set; the body itself is not judged).
const MAX_CHECK_BYTES: usize = 1024 * 1024;

fn refuse(why: impl Into<String>) -> Rejection {
    Rejection::OriginalRequest(why.into())
}

/// An Envoy `Check` call: HTTP/2, `POST` to [`CHECK_PATH`], gRPC content.
pub(crate) fn is_check(session: &ServerSession) -> bool {
    let req = session.req_header();
    session.as_http2().is_some()
        && req.method == Method::POST
        && req.uri.path() == CHECK_PATH
        && is_grpc(req)
}

/// An Envoy HTTP check: a request whose target is `prefix` followed by the original
/// request's path (Envoy's `http_service.path_prefix` + `:path`).
pub(crate) fn is_http_check(req: &RequestHeader, prefix: &str) -> bool {
    req.raw_path()
        .strip_prefix(prefix.as_bytes())
        .is_some_and(|rest| rest.starts_with(b"/"))
}

/// Rewrites an HTTP check into the request it is: Envoy sends the original method,
/// `:authority` and the headers its `allowed_headers` let through; only the prefix goes.
pub(crate) fn http_check(req: &mut RequestHeader, prefix: &str) -> Result<(), Rejection> {
    let target = req.raw_path()[prefix.len()..].to_vec();
    req.set_raw_path(&target)
        .map_err(|_| refuse("Envoy's path is not a request target"))
}

/// Envoy forwards the path it sent: a path sessiongate would have rewritten is refused.
pub(crate) fn not_normalised() -> Rejection {
    refuse(
        "the path is not in canonical form and Envoy forwards it as sent: turn on Envoy's normalize_path and merge_slashes (docs/decision-mode.md)",
    )
}

/// The request headers a "yes" asks Envoy to remove: the identity headers the identity
/// lacks, every other header the client sent under the identity prefix, and the
/// credential when the route does not forward it (lower case, each once).
pub(crate) fn to_remove(
    ctx: &RequestCtx,
    snap: &Snapshot,
    sent: &http::HeaderMap,
    granted: &http::HeaderMap,
) -> Vec<String> {
    let mut remove: Vec<String> = Vec::new();
    let mut drop = |name: &str| {
        if !remove.iter().any(|r| r == name) {
            remove.push(name.to_string());
        }
    };
    for name in snap.identity_headers.fixed() {
        if !granted.contains_key(name.name()) {
            drop(name.name().as_str());
        }
    }
    for name in sent.keys() {
        if snap.identity_headers.has_prefix(name.as_str().as_bytes()) && !granted.contains_key(name)
        {
            drop(name.as_str());
        }
    }
    if let Some(route) = ctx.route().filter(|r| !r.spec.forward_authorization) {
        drop("authorization");
        for source in &route.spec.credentials.sources {
            if let TokenSource::Header(name) = source {
                drop(&name.to_ascii_lowercase());
            }
        }
    }
    remove
}

/// Reads the call's one gRPC message.
async fn read_message(session: &mut ServerSession) -> Result<Bytes, Rejection> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|_| refuse("the CheckRequest could not be read"))?
    {
        if body.len() + chunk.len() > MAX_CHECK_BYTES + 5 {
            return Err(refuse(format!(
                "the CheckRequest is larger than {MAX_CHECK_BYTES} bytes (with_request_body: lower max_request_bytes)"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    // A gRPC message: compressed flag (1 byte), length (4 bytes, big-endian), message.
    if body.len() < 5 {
        return Err(refuse("the Check call carries no gRPC message"));
    }
    if body[0] != 0 {
        return Err(refuse(
            "the CheckRequest is compressed: sessiongate reads uncompressed messages only",
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err(refuse(
            "the Check call carries other than one whole gRPC message",
        ));
    }
    Ok(body.freeze().slice(5..))
}

/// The value a field gives, or the pseudo-header's; both present must agree.
fn agreed(what: &str, field: &str, pseudo: Option<&[u8]>) -> Result<Vec<u8>, Rejection> {
    match (field.is_empty(), pseudo) {
        (false, Some(p)) if p != field.as_bytes() => Err(refuse(format!(
            "Envoy's {what} and its pseudo-header describe different requests"
        ))),
        (false, _) => Ok(field.as_bytes().to_vec()),
        (true, Some(p)) if !p.is_empty() => Ok(p.to_vec()),
        (true, _) => Err(refuse(format!("Envoy did not say the request's {what}"))),
    }
}

/// The request a `CheckRequest` describes, as the proxy listener would have read it.
pub(crate) fn described_request(d: wire::Described) -> Result<RequestHeader, Rejection> {
    let pseudo = |name: &str| {
        d.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    };
    let method = agreed("method", &d.method, pseudo(":method"))?;
    let path = agreed("path", &d.path, pseudo(":path"))?;
    let host = agreed("host", &d.host, pseudo(":authority"))?;
    if !path.starts_with(b"/") {
        return Err(refuse("Envoy's path is not a path (it must start with /)"));
    }
    let Some(source) = d.source else {
        // Without it the client would be Envoy itself, for IP restrictions and rules.
        return Err(refuse(
            "Envoy did not send the client's address (attributes.source.address)",
        ));
    };
    let method =
        Method::from_bytes(&method).map_err(|_| refuse("Envoy's method is not an HTTP method"))?;
    let mut req = RequestHeader::build(method, &path, Some(d.headers.len() + 2))
        .map_err(|_| refuse("Envoy's path is not a request target"))?;
    req.insert_header(http::header::HOST, host)
        .map_err(|_| refuse("Envoy's host is not a header value"))?;
    for (name, value) in d.headers {
        if name.starts_with(':') {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| refuse(format!("Envoy sent a header named {name:?}")))?;
        if name == http::header::HOST || name == X_FORWARDED_FOR {
            // The host is `:authority`; the client is the source address.
            continue;
        }
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| refuse(format!("Envoy's {name} is not a header value")))?;
        req.append_header(name, value)
            .map_err(|_| refuse("a header Envoy sent could not be kept"))?;
    }
    // Envoy is the peer (checked against `trusted_proxies`); its source address is the
    // client, read the way the proxy listener reads a trusted proxy's.
    req.insert_header(X_FORWARDED_FOR, source.to_string())
        .map_err(|_| refuse("the source address is not a header value"))?;
    Ok(req)
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Reads the Check call and rewrites the session's request into the described one;
/// answers the client's certificate as Envoy verified it, when Envoy says.
pub(crate) async fn read_check(
    session: &mut ServerSession,
) -> Result<Option<Arc<ClientCert>>, Rejection> {
    let message = read_message(session).await?;
    let mut described = wire::check_request(&message)
        .map_err(|e| refuse(format!("the CheckRequest is malformed: {e}")))?;
    let cert = client_certificate(described.principal.take(), described.certificate.take())?;
    *session.req_header_mut() = described_request(described)?;
    Ok(cert.map(Arc::new))
}

/// The client certificate Envoy verified: read from the certificate itself when Envoy
/// sends it (`include_peer_certificate`), else its identity alone (`source.principal`:
/// Istio's mTLS peer identity). Envoy is a trusted proxy (checked before), so its word on
/// the certificate is believed as the TLS listener's own verification would be; what
/// cannot be read is refused, not ignored.
fn client_certificate(
    principal: Option<String>,
    certificate: Option<String>,
) -> Result<Option<ClientCert>, Rejection> {
    if let Some(encoded) = certificate {
        let pem = percent_decoded(&encoded)
            .ok_or_else(|| refuse("Envoy's source certificate is not URL-encoded PEM"))?;
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|_| refuse("Envoy's source certificate is not a PEM certificate"))?;
        let cert = crate::tls::client_cert(&block.contents)
            .ok_or_else(|| refuse("Envoy's source certificate names no identity"))?;
        return Ok(Some(cert));
    }
    match principal {
        Some(id) if id.len() <= 1024 && id.bytes().all(|b| (0x21..0x7f).contains(&b)) => {
            Ok(Some(ClientCert {
                id,
                subject: String::new(),
            }))
        }
        Some(_) => Err(refuse(
            "Envoy's source principal is not a certificate id (printable ASCII)",
        )),
        None => Ok(None),
    }
}

/// `%XX` escapes decoded (Envoy's URL encoding of the PEM); `None` for a broken escape.
fn percent_decoded(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(hex_value(bytes.get(i + 1..i + 3)?)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Writes a `CheckResponse`: HTTP 200, the message, `grpc-status: 0`.
async fn write_check_response(session: &mut ServerSession, message: Vec<u8>) -> Result<()> {
    let ServerSession::H2(h2) = session else {
        return Error::e_explain(ErrorType::InternalError, "a Check call not on HTTP/2");
    };
    let mut resp = ResponseHeader::build(200, Some(2))?;
    resp.insert_header("content-type", "application/grpc")?;
    h2.write_response_header(Box::new(resp), false)?;
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.extend_from_slice(&message);
    h2.write_body(frame.freeze(), false).await?;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    h2.write_trailers(trailers)
}

/// The proxy's refusal as a `CheckResponse`'s `denied_response`.
pub(crate) async fn deny(
    session: &mut ServerSession,
    refusal: &Refusal,
    request_id: &str,
) -> Result<()> {
    let body = refusal.body(request_id);
    let header = refusal.header(request_id, body.len())?;
    let mut w = wire::Writer::default();
    wire::rpc_status(&mut w, grpc_status(refusal), &refusal.description);
    // denied_response (2): status (1: HttpStatus{code 1}), headers (2), body (3).
    w.message(2, |d| {
        d.message(1, |s| s.uint(1, u64::from(refusal.status)));
        for (name, value) in header.headers.iter() {
            // Envoy frames the body itself.
            if name != http::header::CONTENT_LENGTH {
                wire::header_option(d, 2, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        d.bytes(3, &body);
    });
    write_check_response(session, w.buf).await
}

impl Proxy {
    /// The "yes" of a Check call: `ok_response` with the identity headers to set and the
    /// headers to remove (see the module documentation).
    pub(super) async fn envoy_allow(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        snap: &Snapshot,
    ) -> Result<bool> {
        let granted = self.granted(ctx, snap)?;
        let remove = to_remove(ctx, snap, &session.req_header().headers, &granted.headers);
        let mut w = wire::Writer::default();
        wire::rpc_status(&mut w, 0, "");
        // ok_response (3): headers (2), headers_to_remove (5).
        w.message(3, |ok| {
            for (name, value) in granted.headers.iter() {
                wire::header_option(ok, 2, name.as_str().as_bytes(), value.as_bytes());
            }
            for name in &remove {
                ok.bytes(5, name.as_bytes());
            }
        });
        write_check_response(session, w.buf).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::wire::Described;
    use super::*;

    fn envoy(headers: &[(&str, &str)]) -> Described {
        Described {
            method: "GET".into(),
            path: "/items/1?x=1".into(),
            host: "api.example.com".into(),
            scheme: "https".into(),
            protocol: "HTTP/1.1".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            source: Some("203.0.113.9".parse().unwrap()),
            principal: None,
            certificate: None,
        }
    }

    #[test]
    fn the_described_request_is_the_one_judged() {
        let req = described_request(envoy(&[
            (":path", "/items/1?x=1"),
            (":authority", "api.example.com"),
            ("authorization", "Bearer t"),
            ("x-forwarded-for", "10.1.2.3"),
            ("host", "evil.example"),
        ]))
        .unwrap();
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.raw_path(), b"/items/1?x=1");
        assert_eq!(req.headers["host"], "api.example.com");
        assert_eq!(req.headers["authorization"], "Bearer t");
        // The client is Envoy's source address, whatever the client put in X-Forwarded-For.
        let xff: Vec<_> = req.headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, ["203.0.113.9"]);
        assert!(!req.headers.keys().any(|n| n.as_str().starts_with(':')));
    }

    #[test]
    fn nothing_is_guessed_and_nothing_may_disagree() {
        let why = |d: Described| described_request(d).unwrap_err().to_string();
        assert!(why(envoy(&[(":path", "/admin")])).contains("different requests"));
        assert!(why(envoy(&[(":method", "DELETE")])).contains("different requests"));
        assert!(why(Described {
            source: None,
            ..envoy(&[])
        })
        .contains("client's address"));
        assert!(why(Described {
            method: String::new(),
            ..envoy(&[])
        })
        .contains("method"));
        assert!(why(Described {
            path: "items".into(),
            ..envoy(&[])
        })
        .contains("start with /"));
        assert!(why(envoy(&[("bad name", "v")])).contains("header named"));
        assert!(why(envoy(&[("x-a", "line\nbreak")])).contains("not a header value"));
        // The pseudo-header stands in for an empty field.
        let req = described_request(Described {
            method: String::new(),
            ..envoy(&[(":method", "POST")])
        })
        .unwrap();
        assert_eq!(req.method, Method::POST);
    }

    #[test]
    fn the_client_certificate_is_envoy_s_verified_one() {
        // The certificate itself, URL-encoded PEM as Envoy sends it.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://cluster.local/ns/web/sa/frontend"
                .try_into()
                .unwrap(),
        )];
        let pem = params.self_signed(&key).unwrap().pem();
        let encoded: String = pem
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let cert = client_certificate(Some("ignored".into()), Some(encoded))
            .unwrap()
            .unwrap();
        assert_eq!(cert.id, "spiffe://cluster.local/ns/web/sa/frontend");
        // The principal alone (Istio's mTLS peer identity).
        let cert = client_certificate(Some("spiffe://cluster.local/ns/a/sa/b".into()), None)
            .unwrap()
            .unwrap();
        assert_eq!(cert.id, "spiffe://cluster.local/ns/a/sa/b");
        assert!(client_certificate(None, None).unwrap().is_none());
        // What cannot be read is refused, not ignored.
        for (principal, certificate) in [
            (Some("a b"), None),
            (None, Some("%ZZ")),
            (None, Some("not%20a%20certificate")),
        ] {
            assert!(
                client_certificate(principal.map(String::from), certificate.map(String::from))
                    .is_err(),
                "{principal:?} {certificate:?}"
            );
        }
    }
}
