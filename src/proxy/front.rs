//! Decision mode's front door: a front proxy (nginx `auth_request`, ingress-nginx
//! `auth-url`, Traefik `forwardAuth`, Caddy `forward_auth`) asks whether a request may
//! go on, describing it in headers. The description is believed only from a peer in
//! `trusted_proxies` (checked by the caller), and only when it is complete and says one
//! thing: the request asking is rewritten into the request it describes, and the decision
//! that follows is the proxy's own, step for step.
//!
//! | what | read from (all that are present must agree) |
//! |---|---|
//! | method | `X-Original-Method` (nginx), `X-Forwarded-Method` (Traefik, Caddy) |
//! | target | `X-Original-URI` (nginx `$request_uri`), `X-Forwarded-Uri` (Traefik, Caddy), the path of `X-Original-URL` (ingress-nginx) |
//! | host | `X-Forwarded-Host`, the authority of `X-Original-URL` |
//!
//! The client address is read as in proxy mode: `X-Forwarded-For` through
//! `trusted_proxies`. Nothing is guessed: a missing method, target or host, a header sent
//! twice, or two headers that disagree refuse the request (400), since a default (`GET`,
//! the asking request's own `Host`) could judge another request than the one the front
//! proxy forwards.

use http::header::HOST;
use http::{HeaderName, Method, Uri};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;

use super::{ext_authz, headers, Proxy, RequestCtx, Snapshot};
use crate::decision::canonical::Rejection;
use crate::decision::refused::Refused;

/// Which requests a proxy listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrontDoor {
    /// Requests to forward (the proxy listener).
    Proxy,
    /// Front proxies asking for decisions (`decision.listen`): answered 200 with the
    /// identity headers, or refused as the proxy would refuse, never forwarded.
    Decision,
}

const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The headers describing the original request, removed once read.
const DESCRIPTION: [HeaderName; 6] = [
    ORIGINAL_METHOD,
    FORWARDED_METHOD,
    ORIGINAL_URI,
    FORWARDED_URI,
    ORIGINAL_URL,
    FORWARDED_HOST,
];

fn refuse(why: String) -> Rejection {
    Rejection::OriginalRequest(why)
}

/// The one value of `name`, if sent (twice is refused).
fn one<'a>(req: &'a RequestHeader, name: &HeaderName) -> Result<Option<&'a [u8]>, Rejection> {
    let mut values = req.headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(refuse(format!("the front proxy sent {name} twice")));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// The value every present source gives; refused when two differ or none is present.
fn agreed<'a>(
    what: &str,
    sources: &[(&str, Option<&'a [u8]>)],
    compare: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<&'a [u8], Rejection> {
    let mut found: Option<(&str, &'a [u8])> = None;
    for (name, value) in sources {
        let Some(value) = value else { continue };
        match found {
            Some((first, v)) if !compare(v, value) => {
                return Err(refuse(format!(
                    "the front proxy's {first} and {name} describe different requests"
                )))
            }
            Some(_) => {}
            None => found = Some((name, value)),
        }
    }
    found.map(|(_, v)| v).ok_or_else(|| {
        let names: Vec<&str> = sources.iter().map(|(n, _)| *n).collect();
        refuse(format!(
            "the front proxy did not say the request's {what}: send {}",
            names.join(" or ")
        ))
    })
}

/// A header the proxy listener would remove before the upstream (an override header such
/// as `X-HTTP-Method-Override`, or an `_` spelling of a header the gateway owns): behind a
/// front proxy it reaches the backend, which may obey it, so the request is refused.
pub(crate) fn unremovable(name: &HeaderName) -> Rejection {
    refuse(format!(
        "the request carries {name}, which a backend may obey and which the front proxy forwards: refused (requests.keep_override_headers lists those your backends need)"
    ))
}

/// An identity header spelled with `_` (`X_Auth_Subject`): the proxy listener strips it,
/// but a front proxy forwards it under a name its copies of the answer do not replace, and
/// a CGI- or WSGI-style backend reads it as the real one. Refused.
pub(crate) fn no_disguised_identity(
    headers: &http::HeaderMap,
    identity: &super::headers::IdentityHeaders,
) -> Result<(), Rejection> {
    match headers
        .keys()
        .find(|n| n.as_str().contains('_') && identity.has_prefix(n.as_str().as_bytes()))
    {
        Some(name) => Err(unremovable(name)),
        None => Ok(()),
    }
}

/// Decision mode's header rule: the front proxy forwards the client's headers itself, so
/// what the proxy listener would remove (override headers, `_` spellings of the gateway's
/// and the identity's headers) cannot be removed, and the request is refused instead.
pub(crate) fn no_header_a_backend_may_obey(
    headers: &http::HeaderMap,
    snap: &Snapshot,
) -> Result<(), Rejection> {
    no_disguised_identity(headers, &snap.identity_headers)?;
    match crate::decision::canonical::unwanted_headers(headers, &snap.hygiene)?.first() {
        Some(name) => Err(unremovable(name)),
        None => Ok(()),
    }
}

/// Rewrites `req`, a front proxy's request for a decision, into the request it describes
/// (method, target and `Host`), removing the describing headers.
pub(crate) fn original_request(req: &mut RequestHeader) -> Result<(), Rejection> {
    let url = match one(req, &ORIGINAL_URL)? {
        Some(v) => {
            let uri = Uri::try_from(v).map_err(|_| {
                refuse("the front proxy's X-Original-URL is not an absolute URL".into())
            })?;
            if uri.scheme().is_none() || uri.authority().is_none() {
                return Err(refuse(
                    "the front proxy's X-Original-URL is not an absolute URL".into(),
                ));
            }
            Some(uri)
        }
        None => None,
    };
    let url_target = url
        .as_ref()
        .and_then(|u| u.path_and_query())
        .map(|pq| pq.as_str().as_bytes());
    let url_host = url
        .as_ref()
        .and_then(|u| u.authority())
        .map(|a| a.as_str().as_bytes());
    let method = agreed(
        "method",
        &[
            ("X-Original-Method", one(req, &ORIGINAL_METHOD)?),
            ("X-Forwarded-Method", one(req, &FORWARDED_METHOD)?),
        ],
        |a, b| a == b,
    )?;
    let target = agreed(
        "target",
        &[
            ("X-Original-URI", one(req, &ORIGINAL_URI)?),
            ("X-Forwarded-Uri", one(req, &FORWARDED_URI)?),
            ("X-Original-URL", url_target),
        ],
        |a, b| a == b,
    )?;
    let host = agreed(
        "host",
        &[
            ("X-Forwarded-Host", one(req, &FORWARDED_HOST)?),
            ("X-Original-URL", url_host),
        ],
        |a, b| a.eq_ignore_ascii_case(b),
    )?;
    if host.contains(&b',') {
        return Err(refuse(
            "the front proxy's X-Forwarded-Host is a list: the host of the request is ambiguous"
                .into(),
        ));
    }
    if !target.starts_with(b"/") {
        return Err(refuse(
            "the front proxy's target is not a path (it must start with /)".into(),
        ));
    }
    let method = Method::from_bytes(method)
        .map_err(|_| refuse("the front proxy's method is not an HTTP method".into()))?;
    let (target, host) = (target.to_vec(), host.to_vec());
    req.set_method(method);
    req.set_raw_path(&target)
        .map_err(|_| refuse("the front proxy's target is not a request target".into()))?;
    req.insert_header(HOST, host)
        .map_err(|_| refuse("the front proxy's host is not a header value".into()))?;
    for name in &DESCRIPTION {
        if req.headers.contains_key(name) {
            req.remove_header(name);
        }
    }
    Ok(())
}

impl Proxy {
    /// Decision mode's first step: only a front proxy may say which request is judged;
    /// its description (headers, or Envoy's `CheckRequest`) becomes the request.
    /// `Ok(true)`: refused, answered.
    pub(super) async fn read_description(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        snap: &Snapshot,
    ) -> Result<bool> {
        if !ctx.peer.is_some_and(|p| snap.trusted_proxies.contains(p)) {
            return self
                .refuse(session, ctx, Refused::UntrustedFrontProxy)
                .await;
        }
        // From here the request may be rewritten into another: its answer is framed for
        // this one.
        ctx.asked_head = Some(session.req_header().method == Method::HEAD);
        let envoy_http = self
            .envoy_http_prefix
            .as_deref()
            .filter(|p| ext_authz::is_http_check(session.req_header(), p));
        let described = if ext_authz::is_check(session) {
            ctx.envoy = Some(ext_authz::Flavour::Grpc);
            ext_authz::read_check(session)
                .await
                .map(|cert| ctx.client_cert = cert)
        } else if let Some(prefix) = envoy_http {
            ctx.envoy = Some(ext_authz::Flavour::Http);
            ext_authz::http_check(session.req_header_mut(), prefix)
        } else {
            original_request(session.req_header_mut())
        };
        if let Err(rejection) = described {
            return self.reject(session, ctx, rejection).await;
        }
        if ctx.envoy.is_some() {
            // Envoy's request id (its `x-request-id`), when it sent one.
            ctx.request_id = headers::request_id(session.req_header());
        }
        Ok(false)
    }

    /// The headers a decision's "yes" grants: the identity headers, the stale age, the
    /// client certificate id and the identity assertion, as the upstream would get them.
    pub(super) fn granted(&self, ctx: &RequestCtx, snap: &Snapshot) -> Result<RequestHeader> {
        let mut granted = RequestHeader::build(http::Method::GET, b"/", Some(8))?;
        self.add_identity(&mut granted, ctx, snap)?;
        Ok(granted)
    }

    /// Decision mode's "yes": 200 with the identity headers (every one the upstream would
    /// get from the gateway, those it lacks empty, and nothing the client sent), the
    /// request id, and the target as the decision read it (`X-Sessiongate-Canonical-Uri`),
    /// for the front proxy to copy onto the request it forwards.
    pub(super) async fn answer_decision(
        &self,
        session: &mut ServerSession,
        ctx: &mut RequestCtx,
        snap: &Snapshot,
    ) -> Result<bool> {
        if ctx.envoy.is_some() && ctx.rewrite_path {
            let rejection = ext_authz::not_normalised();
            return Box::pin(self.reject(session, ctx, rejection)).await;
        }
        if ctx.envoy == Some(ext_authz::Flavour::Grpc) {
            return self.envoy_allow(session, ctx, snap).await;
        }
        let mut granted = self.granted(ctx, snap)?;
        // Envoy's HTTP check: what Envoy is to remove from the request it forwards.
        let remove = (ctx.envoy == Some(ext_authz::Flavour::Http)).then(|| {
            let sent = &session.req_header().headers;
            ext_authz::to_remove(ctx, snap, sent, &granted.headers).join(", ")
        });
        // Every identity header the identity lacks is sent empty: a front proxy that
        // copies a header only when the answer has it would otherwise let a client's own
        // copy through to the upstream.
        for name in snap.identity_headers.fixed() {
            if !granted.headers.contains_key(name.name()) {
                granted.insert_header(name.wire().clone(), "")?;
            }
        }
        let mut resp = ResponseHeader::build(200, Some(granted.headers.len() + 4))?;
        for (name, value) in granted.headers.iter() {
            resp.append_header(name.clone(), value.clone())?;
        }
        let req = session.req_header();
        let path = ctx
            .rewritten_path()
            .map_or_else(|| req.uri.path().as_bytes(), str::as_bytes);
        let mut target = path.to_vec();
        if let Some(q) = req.uri.query() {
            target.push(b'?');
            target.extend_from_slice(q.as_bytes());
        }
        resp.insert_header(headers::CANONICAL_URI, target)?;
        if let Some(remove) = remove.filter(|r| !r.is_empty()) {
            resp.insert_header(ext_authz::HEADERS_TO_REMOVE, remove)?;
        }
        resp.insert_header(headers::REQUEST_ID, ctx.request_id.as_str())?;
        resp.insert_header("cache-control", "no-store")?;
        resp.insert_header("content-length", "0")?;
        if !session.is_body_empty() && session.drain_request_body().await.is_err() {
            session.set_keepalive(None);
        }
        let described = framed_for_asker(self.front, session, ctx);
        let written = session.write_response_header(Box::new(resp)).await;
        unframe(session, described);
        written?;
        session.finish_body().await?;
        Ok(true)
    }
}

/// Decision mode writes its answer to the front proxy's own request, not to the one it
/// describes: Pingora leaves out the body of an answer to a `HEAD`, reading the method of
/// the (rewritten) request. A proxy asking with `GET` about a `HEAD` (Caddy, Traefik)
/// would otherwise wait for a body its `Content-Length` announces; one asking with `HEAD`
/// about a `GET` would get a body it does not expect, desynchronising the connection.
/// Sets the method the answer is framed for; returns the described method to put back
/// (for the access log), when it changed.
pub(crate) fn framed_for_asker(
    front: FrontDoor,
    session: &mut ServerSession,
    ctx: &RequestCtx,
) -> Option<Method> {
    let asked_head = match ctx.asked_head {
        Some(head)
            if front == FrontDoor::Decision && ctx.envoy != Some(ext_authz::Flavour::Grpc) =>
        {
            head
        }
        // Not rewritten (yet), or answered in a CheckResponse.
        _ => return None,
    };
    let req = session.req_header_mut();
    if (req.method == Method::HEAD) == asked_head {
        return None;
    }
    let described = req.method.clone();
    req.set_method(if asked_head {
        Method::HEAD
    } else {
        Method::GET
    });
    Some(described)
}

/// Puts back the described method [`framed_for_asker`] replaced.
pub(crate) fn unframe(session: &mut ServerSession, described: Option<Method>) {
    if let Some(method) = described {
        session.req_header_mut().set_method(method);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/auth", None).unwrap();
        req.insert_header("host", "sessiongate:9000").unwrap();
        for (n, v) in headers {
            req.append_header(n.to_string(), *v).unwrap();
        }
        req
    }

    fn described(headers: &[(&str, &str)]) -> Result<(String, String, String), String> {
        let mut req = asking(headers);
        original_request(&mut req).map_err(|e| e.to_string())?;
        for name in &DESCRIPTION {
            assert!(!req.headers.contains_key(name), "{name} left in");
        }
        Ok((
            req.method.to_string(),
            String::from_utf8_lossy(req.raw_path()).into_owned(),
            req.headers["host"].to_str().unwrap().to_string(),
        ))
    }

    #[test]
    fn each_front_proxy_s_description_reads_as_the_same_request() {
        let want = Ok((
            "POST".to_string(),
            "/api/v1/items?x=1".to_string(),
            "api.example.com".to_string(),
        ));
        // nginx auth_request, with the headers the docs set.
        assert_eq!(
            described(&[
                ("x-original-method", "POST"),
                ("x-original-uri", "/api/v1/items?x=1"),
                ("x-forwarded-host", "api.example.com"),
            ]),
            want
        );
        // Traefik forwardAuth and Caddy forward_auth.
        assert_eq!(
            described(&[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/api/v1/items?x=1"),
                ("x-forwarded-host", "api.example.com"),
                ("x-forwarded-proto", "https"),
            ]),
            want
        );
        // ingress-nginx auth-url.
        assert_eq!(
            described(&[
                ("x-original-method", "POST"),
                ("x-original-url", "https://api.example.com/api/v1/items?x=1"),
            ]),
            want
        );
    }

    #[test]
    fn nothing_is_guessed_and_nothing_may_disagree() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("x-forwarded-uri", "/a"), ("x-forwarded-host", "h")],
                "method",
            ),
            (
                &[("x-forwarded-method", "GET"), ("x-forwarded-host", "h")],
                "target",
            ),
            (
                &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a")],
                "host",
            ),
            (
                &[
                    ("x-original-method", "GET"),
                    ("x-forwarded-method", "DELETE"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "h"),
                ],
                "different requests",
            ),
            (
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-original-uri", "/a"),
                    ("x-forwarded-uri", "/admin"),
                    ("x-forwarded-host", "h"),
                ],
                "different requests",
            ),
            (
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-original-url", "https://other.example.com/a"),
                    ("x-forwarded-host", "h"),
                ],
                "different requests",
            ),
            (
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "h"),
                ],
                "twice",
            ),
            (
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "h, evil"),
                ],
                "list",
            ),
            (
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "http://h/a"),
                    ("x-forwarded-host", "h"),
                ],
                "start with /",
            ),
            (
                &[
                    ("x-forwarded-method", "G T"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "h"),
                ],
                "not an HTTP method",
            ),
            (
                &[("x-original-method", "GET"), ("x-original-url", "/a")],
                "absolute URL",
            ),
        ];
        for (headers, want) in cases {
            match described(headers) {
                Err(e) => assert!(e.contains(want), "{headers:?}: {e}"),
                Ok(r) => panic!("{headers:?} was read as {r:?}"),
            }
        }
        // Hosts compare without case; the method as sent (the decision refuses `get`).
        assert_eq!(
            described(&[
                ("x-forwarded-method", "get"),
                ("x-original-url", "http://API.example.com/a"),
                ("x-forwarded-host", "api.example.com"),
            ])
            .map(|r| r.0),
            Ok("get".to_string())
        );
    }
}
