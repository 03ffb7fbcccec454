//! Issue #13, row by row: the request the gateway authorizes is the request the upstream
//! receives. Each test names the row of the issue's table it pins down; each failed on
//! the code before the canonical-request change. Raw HTTP is used wherever a client
//! library would tidy the request up.

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A provider whose tokens name their scopes: `Bearer t-reader`, `t-writer`, `t-admin`.
async fn provider() -> Fake {
    Fake::start(|req| {
        let token = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer t-"))
            .unwrap_or("");
        let scopes = match token {
            "reader" => json!(["read"]),
            "writer" => json!(["read", "write"]),
            "admin" => json!(["read", "write", "user_manage"]),
            _ => return Reply::json(401, json!({})),
        };
        Reply::json(200, json!({"sub": token, "scopes": scopes}))
    })
    .await
}

const ROUTES: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
{extra}
providers:
  idp:
    kind: http
    url: "{provider}/session"
    response: { subject: /sub, scopes: /scopes }
upstreams: { app: "{upstream}" }
routes:
  - { path_prefix: /public, auth: none, upstream: echo }
  - { path_prefix: /admin, provider: idp, upstream: echo, require_scopes: { all_of: [user_manage] } }
  - name: wallets
    path_prefix: /wallets
    provider: idp
    upstream: echo
    require_scopes: { all_of: [read] }
    method_scopes: [ { methods: [POST, PUT, PATCH, DELETE], all_of: [write] } ]
  - { name: vhost-admin, host: admin.internal, path_prefix: /, provider: idp, upstream: echo, require_scopes: { all_of: [user_manage] } }
  - { name: objects, path_prefix: /objects, provider: idp, upstream: echo, allow_encoded_slashes: true }
  - { name: root, path_prefix: /, provider: idp, upstream: app }
"#;

async fn gateway(extra: &str) -> (Fake, Fake, sessiongate::GatewayHandle) {
    let p = provider().await;
    let up = Fake::upstream().await;
    let g = start_gateway(
        ROUTES,
        &[
            ("provider", p.url()),
            ("upstream", up.url()),
            ("extra", extra.to_string()),
        ],
    );
    (p, up, g)
}

/// Status code of a raw response.
fn status(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The JSON body of a raw response.
fn body(resp: &str) -> Value {
    let start = resp.find("\r\n\r\n").map_or(resp.len(), |i| i + 4);
    serde_json::from_str(&resp[start..]).unwrap_or(Value::Null)
}

async fn send(g: &sessiongate::GatewayHandle, request: &str) -> String {
    raw_http(g.proxy_addr, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row1_dot_segment_through_an_encoded_slash_is_refused() {
    let (_p, up, g) = gateway("").await;
    for path in [
        "/public/..%2Fadmin/users",
        "/public/..%2fadmin/users",
        "/public/%2e%2e%2Fadmin/users",
        "/public/..%5Cadmin/users",
        "/public/..%252Fadmin/users",
        "/public/%252e%252e/admin/users",
        "/public/%c0%ae%c0%ae/admin/users",
    ] {
        let r = send(
            &g,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status(&r), 400, "{path}: {r}");
        assert_eq!(body(&r)["error"], "invalid_path", "{path}");
    }
    assert_eq!(up.calls(), 0);
    assert_eq!(
        metric(
            &g,
            "sessiongate_requests_rejected_total{reason=\"ambiguous_segment\"}"
        )
        .await,
        4.0
    );
    assert_eq!(
        metric(
            &g,
            "sessiongate_requests_rejected_total{reason=\"double_encoding\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row2_encoded_slashes_are_refused_unless_the_route_allows_them() {
    let (_p, up, g) = gateway("").await;
    for path in ["/admin%2Fusers", "/admin%2fusers", "/wallets%5Cw1"] {
        let r = send(
            &g,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status(&r), 400, "{path}: {r}");
        assert_eq!(body(&r)["error"], "invalid_path");
    }
    assert_eq!(up.calls(), 0);
    // The opt-out route takes object keys with slashes, forwarded as sent...
    let r = send(
        &g,
        "GET /objects/photos%2F2024%2Fa.jpg HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(body(&r)["uri"], "/objects/photos%2F2024%2Fa.jpg");
    // ...but routes on the decoded path, so it cannot reach another route with them.
    let r = send(
        &g,
        "GET /objects%2F..%2Fadmin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 400, "{r}");
    let r = send(
        &g,
        "GET /admin/%2Fx HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        status(&r),
        400,
        "the admin route does not allow encoded slashes: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row3_method_case_cannot_sidestep_method_scopes() {
    let (_p, _up, g) = gateway("").await;
    for method in ["post", "Post", "delete", "pUT"] {
        let r = send(
            &g,
            &format!(
                "{method} /wallets/w1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status(&r), 400, "{method}: {r}");
        assert_eq!(body(&r)["error"], "invalid_method");
    }
    let r = send(
        &g,
        "POST /wallets/w1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 403, "{r}");
    let r = send(
        &g,
        "POST /wallets/w1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-writer\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(body(&r)["method"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row4_host_forms_route_as_the_backend_reads_them() {
    let (_p, up, g) = gateway("").await;
    // Spellings of admin.internal reach the host's route (which needs user_manage)...
    for host in [
        "admin.internal.",
        "ADMIN.Internal",
        "admin.internal:8080",
        "admin.internal.:80",
    ] {
        let r = send(
            &g,
            &format!(
                "GET /x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer t-reader\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status(&r), 403, "{host}: {r}");
        let r = send(
            &g,
            &format!(
                "GET /x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer t-admin\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status(&r), 200, "{host}: {r}");
        // ...and the upstream gets the canonical host: what routing saw.
        let forwarded = body(&r)["headers"]["host"].as_str().unwrap().to_string();
        assert!(
            forwarded == "admin.internal" || forwarded.starts_with("admin.internal:"),
            "{host} forwarded as {forwarded}"
        );
    }
    // Hosts with no single reading are refused.
    for host in [
        "admin.internal:abc",
        "admin.internal:99999",
        "admin..internal",
        "",
    ] {
        let r = send(
            &g,
            &format!(
                "GET /x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer t-admin\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status(&r), 400, "{host:?}: {r}");
        assert_eq!(body(&r)["error"], "invalid_host", "{host:?}: {r}");
    }
    // (Pingora's own parser refuses some forms before the gateway sees them.)
    let r = send(
        &g,
        "GET /x HTTP/1.1\r\nHost: user@admin.internal\r\nAuthorization: Bearer t-admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 400, "userinfo in Host: {r}");
    let r = send(
        &g,
        "GET /x HTTP/1.1\r\nAuthorization: Bearer t-admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 400, "HTTP/1.1 without Host: {r}");
    let r = send(
        &g,
        "GET /x HTTP/1.1\r\nHost: a\r\nHost: admin.internal\r\nAuthorization: Bearer t-admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 400, "two Host headers: {r}");
    assert_eq!(up.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row7_ipv4_mapped_deny_rules_match_ipv4_clients() {
    let p = provider().await;
    let up = Fake::upstream().await;
    let port = free_port();
    let config = r#"
listen: "[::]:{port}"
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  idp: { kind: http, url: "{provider}/session", response: { subject: /sub, scopes: /scopes } }
upstreams: { app: "{upstream}" }
routes:
  - { path_prefix: /, provider: idp, upstream: echo, deny_cidrs: ["::ffff:127.0.0.0/104"] }
"#;
    let _gateway = start_gateway(
        config,
        &[
            ("provider", p.url()),
            ("upstream", up.url()),
            ("port", port.to_string()),
        ],
    );
    // Through the dual-stack listener an IPv4 client is `::ffff:127.0.0.1` to the socket.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = raw_http(
        addr,
        "GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 403, "{r}");
    assert_eq!(body(&r)["error"], "ip_not_allowed");
    // A mapped block that also covers plain IPv6 space is refused when the config loads.
    let text = render_config(
        &config
            .replace("[::]:{port}", "{listen}")
            .replace("::ffff:127.0.0.0/104", "::ffff:0.0.0.0/64"),
        "127.0.0.1:1",
        "127.0.0.1:2",
        &[("provider", p.url()), ("upstream", up.url())],
    );
    let err = sessiongate::config::from_str(&text, std::path::Path::new(".")).unwrap_err();
    assert_eq!(err.path, "routes[0].deny_cidrs[0]");
    assert!(err.message.contains("IPv4-mapped"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row9_override_and_underscore_headers_never_reach_the_upstream() {
    let (_p, _up, g) = gateway("").await;
    let r = send(
        &g,
        "GET /wallets/w1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\n\
         X-Original-URL: /admin/users\r\nX-Rewrite-URL: /admin/users\r\n\
         X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n\
         X-Forwarded-Prefix: /admin\r\nX_Forwarded_For: 10.9.9.9\r\nX_Real_IP: 10.9.9.9\r\n\
         X_Auth_Scopes: user_manage\r\nX-Custom_Thing: kept\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    let headers = body(&r)["headers"].as_object().unwrap().clone();
    for gone in [
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-forwarded-prefix",
        "x_forwarded_for",
        "x_real_ip",
        "x_auth_scopes",
    ] {
        assert!(!headers.contains_key(gone), "{gone} reached the upstream");
    }
    assert_eq!(headers["x-custom_thing"], "kept");
    assert_eq!(headers["x-auth-scopes"], "read");
    // Framing headers in underscore spelling, Content-Length lists: refused.
    for (extra, what) in [
        ("Transfer_Encoding: chunked\r\n", "underscore framing"),
        ("Content_Length: 5\r\n", "underscore framing"),
        ("Content-Length: 0, 0\r\n", "length list"),
    ] {
        let r = send(
            &g,
            &format!("GET /public/x HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status(&r), 400, "{what}: {r}");
        assert_eq!(body(&r)["error"], "invalid_header", "{what}");
    }
    // A backend that needs one override header can keep it.
    let (_p2, _up2, kept) =
        gateway("requests: { keep_override_headers: [X-Forwarded-Prefix] }").await;
    let r = send(
        &kept,
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Forwarded-Prefix: /api\r\nX-Original-URL: /admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    let headers = body(&r)["headers"].as_object().unwrap().clone();
    assert_eq!(headers["x-forwarded-prefix"], "/api");
    assert!(!headers.contains_key("x-original-url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_cannot_move_the_route_boundary() {
    let (_p, up, g) = gateway("").await;
    // Tomcat/Spring route `/admin;x=1/users` as `/admin/users`.
    let r = send(
        &g,
        "GET /admin;x=1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 400, "{r}");
    assert_eq!(
        metric(
            &g,
            "sessiongate_requests_rejected_total{reason=\"path_parameter\"}"
        )
        .await,
        1.0
    );
    // A parameter inside one route's space is harmless and kept.
    let r = send(
        &g,
        "GET /wallets/w1;v=2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(body(&r)["uri"], "/wallets/w1;v=2");
    assert_eq!(up.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_paths_are_a_gateway_wide_switch() {
    let (_p, up, g) = gateway("").await;
    // Case-sensitive by default: /ADMIN is the root route's.
    let r = get_bearer(&g, "/ADMIN/users", "t-reader").await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.calls(), 1);
    let (_p2, up2, folded) = gateway("requests: { case_insensitive_paths: true }").await;
    let r = get_bearer(&folded, "/ADMIN/users", "t-reader").await;
    assert_eq!(r.status(), 403, "folded: /ADMIN is the admin route");
    let r = get_bearer(&folded, "/Admin/users", "t-admin").await;
    assert_eq!(r.status(), 200);
    assert_eq!(up2.calls(), 0);
}

/// Reads one response (headers and a Content-Length body) from a kept-alive connection.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row11_denials_keep_the_connection_when_the_body_allows() {
    let (_p, _up, g) = gateway("").await;
    let mut s = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    s.write_all(b"GET /wallets/w1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut s).await;
    assert_eq!(status(&first), 401, "{first}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    // A small body is drained; the same connection then serves the retry.
    s.write_all(b"POST /wallets/w1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let second = read_response(&mut s).await;
    assert_eq!(status(&second), 401, "{second}");
    s.write_all(b"GET /wallets/w1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\n\r\n")
        .await
        .unwrap();
    let third = read_response(&mut s).await;
    assert_eq!(status(&third), 200, "{second} then {third}");

    // A large announced body is not read just to be thrown away: the connection closes.
    let mut big = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    big.write_all(b"POST /wallets/w1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut big).await;
    assert_eq!(status(&r), 401);
    assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
    // Unsafe framing (no canonical reading) also closes.
    let r = send(&g, "GET /x HTTP/1.1\r\nHost: a:b\r\n\r\n").await;
    assert_eq!(status(&r), 400);
    assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
}

const LIMITS: &str = "connections: { header_timeout: 1s, idle_timeout: 1s, body_idle_timeout: 1s, max_connections: 3 }";

/// Waits until the server closes `stream` (a read returns 0 or fails) and returns how long
/// it took, failing after `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row8_slow_headers_and_idle_connections_are_closed() {
    let (_p, up, g) = gateway(LIMITS).await;
    // Headers trickled a line every 300 ms: each read is quick, the whole is not.
    let mut slow = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        slow.write_all(b"GET /public/x HTTP/1.1\r\n").await.unwrap();
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let waited = closed_within(&mut slow, Duration::from_secs(3)).await + started.elapsed();
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    assert_eq!(
        metric(
            &g,
            "sessiongate_connections_closed_total{reason=\"header_timeout\"}"
        )
        .await,
        1.0
    );
    // A connection that never sends a byte: its opening is on the header deadline.
    let mut idle = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    let took = closed_within(&mut idle, Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert_eq!(
        metric(
            &g,
            "sessiongate_connections_closed_total{reason=\"header_timeout\"}"
        )
        .await,
        2.0
    );
    // A kept-alive connection idle after its request.
    let mut kept = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    kept.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status(&read_response(&mut kept).await), 200);
    let took = closed_within(&mut kept, Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert_eq!(
        metric(
            &g,
            "sessiongate_connections_closed_total{reason=\"idle_timeout\"}"
        )
        .await,
        1.0
    );
    // A body that stalls.
    let mut stall = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    stall
        .write_all(
            b"POST /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-reader\r\nContent-Length: 10\r\n\r\nab",
        )
        .await
        .unwrap();
    closed_within(&mut stall, Duration::from_secs(5)).await;
    assert_eq!(
        metric(
            &g,
            "sessiongate_connections_closed_total{reason=\"body_timeout\"}"
        )
        .await,
        1.0
    );
    drop(up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_get_503() {
    let (_p, _up, g) = gateway(LIMITS).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
        s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(status(&read_response(&mut s).await), 200);
        held.push(s);
    }
    let r = send(&g, "GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&r), 503, "{r}");
    assert_eq!(body(&r)["error"], "too_many_connections", "{r}");
    assert_eq!(
        metric(
            &g,
            "sessiongate_connections_closed_total{reason=\"over_limit\"}"
        )
        .await,
        1.0
    );
    assert_eq!(metric(&g, "sessiongate_downstream_connections").await, 3.0);
    drop(held);
    // Freed slots are usable again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = send(
        &g,
        "GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_its_own_loopback_listener() {
    let p = provider().await;
    let up = Fake::upstream().await;
    let api = free_address();
    let config = format!(
        "{ROUTES}\nadmin: {{ listen: \"{api}\", token: \"${{SG_TEST_CANONICAL_ADMIN}}\" }}\n"
    );
    std::env::set_var("SG_TEST_CANONICAL_ADMIN", "a-long-enough-admin-token");
    let g = start_gateway(
        &config,
        &[
            ("provider", p.url()),
            ("upstream", up.url()),
            ("extra", String::new()),
        ],
    );
    let c = client();
    let purge = |base: String| {
        c.post(format!("{base}/admin/purge"))
            .bearer_auth("a-long-enough-admin-token")
            .json(&json!({"subject": "nobody"}))
            .send()
    };
    // Not on the observability listener...
    let r = purge(format!("http://{}", g.admin_addr)).await.unwrap();
    assert_eq!(r.status(), 404);
    // ...only on its own.
    let r = purge(format!("http://{api}")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("http://{api}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        c.get(admin(&g, "/metrics")).send().await.unwrap().status(),
        200
    );
}

/// A Prefactor-shaped provider: `GET /api/v1/session/<id>` with the gateway's key; the one
/// known session is `sess-013xrzp12g3nqk8n`; anything else is a bare 404 (a framework's
/// "no such path"), which carries no Prefactor error code.
async fn prefactor() -> Fake {
    Fake::start(|req| {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/prefactor/session.json"
        );
        match req.uri.as_str() {
            "/api/v1/session/sess-013xrzp12g3nqk8n" => {
                let mut doc: Value =
                    serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
                doc["summary"]["id"] = json!("sess-013xrzp12g3nqk8n");
                Reply::json(200, doc)
            }
            _ => Reply::raw(404, "text/html", "<h1>Not Found</h1>"),
        }
    })
    .await
}

const PREFACTOR: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  pf:
    kind: prefactor
    url: "{provider}/api/v1/session/{token}"
    credential: { bearer: "${SG_TEST_CANONICAL_PF_KEY}" }
    protection: { failures: 3, open_for: 60s }
cache: { negative_ttl: 1s }
routes:
  - { path_prefix: /hidden, provider: pf, upstream: echo, forward_authorization: false }
  - { path_prefix: /, provider: pf, upstream: echo }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row5_tokens_in_a_url_path_cannot_climb_or_open_the_breaker() {
    std::env::set_var("SG_TEST_CANONICAL_PF_KEY", "gateway-api-key-0123");
    let p = prefactor().await;
    let g = start_gateway(
        PREFACTOR,
        &[("provider", p.url()), ("upstream", String::new())],
    );
    // Dot-segment tokens never become a provider call.
    for token in [".", ".."] {
        let r = get_bearer(&g, "/x", token).await;
        assert_eq!(r.status(), 401, "{token}");
    }
    assert_eq!(p.calls(), 0, "no call for dot-segment tokens");
    // Encoded dots stay one literal segment.
    assert_eq!(get_bearer(&g, "/x", "%2e%2e").await.status(), 401);
    assert_eq!(p.last().uri, "/api/v1/session/%252e%252e");
    // Unknown sessions answered with a bare 404 are invalid tokens, not provider failures:
    // many of them (more than `failures: 3`) leave the breaker closed for everyone else.
    for i in 0..8 {
        assert_eq!(
            get_bearer(&g, "/x", &format!("unknown-{i}")).await.status(),
            401
        );
    }
    assert_eq!(
        metric(&g, "sessiongate_provider_circuit_state{provider=\"pf\"}").await,
        0.0
    );
    let r = get_bearer(&g, "/x", "sess-013xrzp12g3nqk8n").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row6_a_session_id_that_is_the_token_is_not_forwarded_raw() {
    std::env::set_var("SG_TEST_CANONICAL_PF_KEY", "gateway-api-key-0123");
    let p = prefactor().await;
    let g = start_gateway(
        PREFACTOR,
        &[("provider", p.url()), ("upstream", String::new())],
    );
    let token = "sess-013xrzp12g3nqk8n";
    // Authorization forwarded: the upstream has the token anyway; the id stays as is.
    let r: Value = get_bearer(&g, "/x", token).await.json().await.unwrap();
    assert_eq!(r["headers"]["x-auth-session-id"], token);
    // Authorization withheld: the id is a keyed hash, and the token is nowhere.
    let r: Value = get_bearer(&g, "/hidden/x", token)
        .await
        .json()
        .await
        .unwrap();
    let sid = r["headers"]["x-auth-session-id"].as_str().unwrap();
    assert_eq!(sid.len(), 32, "{sid}");
    assert!(sid.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(r["headers"].get("authorization").is_none());
    assert!(
        !r.to_string().contains(token),
        "token reached the upstream: {r}"
    );
    // Stable for the process, so a backend can still correlate requests of one session.
    let again: Value = get_bearer(&g, "/hidden/y", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["headers"]["x-auth-session-id"], sid);
}
