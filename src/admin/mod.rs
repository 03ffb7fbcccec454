//! The admin listener: `/healthz` (the process is alive), `/readyz` (config loaded and the
//! proxy listener accepts connections), `/metrics` (Prometheus text format),
//! `/.well-known/jwks.json`, and the admin API (`POST /admin/purge`, `/admin/explain`,
//! `/admin/reload`, see the `api` module), which requires the admin bearer token.
//! Keep the listener on a private address (localhost or the pod network): the read-only
//! endpoints are not authenticated.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::proxy::shared::GatewayState;

mod api;
pub(crate) mod explain;

/// What an admin listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminRole {
    /// Probes, metrics and JWKS, and the admin API (no `admin.listen` configured).
    All,
    /// Probes, metrics and JWKS only (`admin_listen` when `admin.listen` is set).
    Observe,
    /// The admin API only (`admin.listen`).
    Api,
}

/// What the admin listeners work with.
pub(crate) struct AdminContext {
    pub(crate) state: Arc<GatewayState>,
    /// The replicas' link (`cluster:`): purge fan-out and `/readyz`'s Redis line.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `POST /admin/reload` asks the assembly, which reloads one request at a time.
    pub(crate) reloads: crate::reload::Reloads,
}

/// The admin HTTP application.
pub(crate) struct AdminApp {
    state: Arc<GatewayState>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    reloads: crate::reload::Reloads,
    /// Where `/readyz` checks that the proxy listener accepts connections.
    proxy_addr: SocketAddr,
    role: AdminRole,
}

impl AdminApp {
    /// `proxy_listen` is the proxy's listen address; a wildcard address is checked on
    /// loopback.
    pub fn new(context: AdminContext, proxy_listen: SocketAddr, role: AdminRole) -> Self {
        let mut proxy_addr = proxy_listen;
        if proxy_addr.ip().is_unspecified() {
            proxy_addr.set_ip(match proxy_addr {
                SocketAddr::V4(_) => [127, 0, 0, 1].into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        AdminApp {
            state: context.state,
            cluster: context.cluster,
            reloads: context.reloads,
            proxy_addr,
            role,
        }
    }

    pub(crate) fn state(&self) -> &GatewayState {
        &self.state
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.as_ref()
    }

    pub(crate) fn reloads(&self) -> &crate::reload::Reloads {
        &self.reloads
    }

    async fn proxy_accepts(&self) -> bool {
        let connect = tokio::net::TcpStream::connect(self.proxy_addr);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), connect).await,
            Ok(Ok(_))
        )
    }

    async fn metrics(&self) -> Vec<u8> {
        self.state.cache.sync().await;
        let m = &self.state.metrics;
        m.cache_entries
            .with_label_values(&["positive"])
            .set(self.state.cache.entry_count() as i64);
        m.cache_entries
            .with_label_values(&["negative"])
            .set(self.state.cache.negative_entry_count() as i64);
        for p in self.state.limiters.policies() {
            m.rate_limit_keys
                .with_label_values(&[&*p.spec.name])
                .set(p.tracked_keys());
        }
        m.render()
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .expect("static header names and values are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let head = req.method == Method::HEAD;
        let path = req.uri.path().to_string();
        let api = path.starts_with("/admin/");
        let served = match self.role {
            AdminRole::All => true,
            AdminRole::Observe => !api,
            AdminRole::Api => api,
        };
        if !served {
            return reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec());
        }
        if api {
            return self.admin_api(session, &path).await;
        }
        if req.method != Method::GET && !head {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"use GET\n".to_vec(),
            );
        }
        let mut resp = match path.as_str() {
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                if self.proxy_accepts().await {
                    // Redis never makes the gateway unready (requests do not need it):
                    // its state is reported, not judged.
                    let mut body = b"ready\n".to_vec();
                    if let Some(cluster) = &self.cluster {
                        body.extend_from_slice(cluster.status_line().as_bytes());
                    }
                    reply(StatusCode::OK, "text/plain", body)
                } else {
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        b"proxy listener not accepting connections\n".to_vec(),
                    )
                }
            }
            "/.well-known/jwks.json" => reply(
                StatusCode::OK,
                "application/jwk-set+json",
                self.state.snapshot().jwks.clone(),
            ),
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics().await,
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        };
        if head {
            resp.body_mut().clear();
        }
        resp
    }
}

/// A minimal HTTP/1.1 GET of a plain-HTTP `url` (`http://host:port/path`), succeeding on a
/// 200: the container health check, so images need no curl.
pub fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "answered {:?}",
            status_line.lines().next().unwrap_or("")
        ))
    }
}

/// One call to the admin API (`sessiongate admin …`, for `kubectl exec`): `method path`
/// with the JSON `body` and the admin token, over plain HTTP on the loopback or pod
/// address the API listens on. Returns the status and the body.
pub fn call(
    addr: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    // An unspecified listen address (0.0.0.0, ::) is reached on the loopback.
    let target = if addr.ip().is_unspecified() {
        let local: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        std::net::SocketAddr::new(local, addr.port())
    } else {
        addr
    };
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("cannot reach the admin API at {target}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {target}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading the admin API's answer: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                head.lines().next().unwrap_or("")
            )
        })?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// A chunked body, joined.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
