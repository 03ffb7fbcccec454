//! Issue #17, TLS and HTTP/2: the TLS listener (certificates by SNI, TLS 1.2 and 1.3,
//! rotation without restart, the handshake under the connection limits), HTTP/2 by ALPN
//! and with prior knowledge, and the canonical-request rules holding alike for HTTP/1.1
//! and HTTP/2 (the same hostile requests sent over both).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "tls-test-token-0123456789abcdef";

const CONFIG: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
h2c: true
tls:
  listen: {tls}
  certificates:
    - { chain: "{dir}/api.crt", key: "{dir}/api.key" }
    - { chain: "{dir}/svc.crt", key: "{dir}/svc.key" }
  watch: 1s
connections: { header_timeout: 1s }
providers:
  s:
    kind: static
    tokens:
      - { token_sha256: {sha}, identity: { subject: alice, scopes: [read] } }
upstreams: { app: "{upstream}" }
routes:
  - { path_prefix: /public, auth: none, upstream: echo }
  - { path_prefix: /admin, provider: s, upstream: echo, require_scopes: { all_of: [user_manage] } }
  - { name: vhost-admin, host: admin.internal, path_prefix: /, provider: s, upstream: echo, require_scopes: { all_of: [user_manage] } }
  - { name: echo, path_prefix: /echo, provider: s, upstream: echo }
  - { name: app, path_prefix: /app, provider: s, upstream: app }
"#;

struct Setup {
    pki: Pki,
    dir: std::path::PathBuf,
    tls: SocketAddr,
    up: Fake,
    g: sessiongate::GatewayHandle,
    /// The DER of the `api.test` leaf being served.
    api_leaf: Vec<u8>,
}

async fn setup() -> Setup {
    setup_with(CONFIG).await
}

async fn setup_with(config: &str) -> Setup {
    let pki = Pki::new();
    let dir = temp_dir("tls");
    let (chain, key, api_leaf) = pki.leaf(&["api.test"]);
    std::fs::write(dir.join("api.crt"), chain).unwrap();
    std::fs::write(dir.join("api.key"), key).unwrap();
    let (chain, key, _) = pki.leaf(&["*.svc.test"]);
    std::fs::write(dir.join("svc.crt"), chain).unwrap();
    std::fs::write(dir.join("svc.key"), key).unwrap();
    let up = Fake::upstream().await;
    let tls: SocketAddr = free_address().parse().unwrap();
    let g = start_gateway(
        config,
        &[
            ("tls", tls.to_string()),
            ("dir", dir.display().to_string()),
            ("sha", hex::encode(Sha256::digest(TOKEN.as_bytes()))),
            ("upstream", up.url()),
        ],
    );
    // Readiness probes the plain listener; the TLS one starts beside it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(tls).await.is_err() {
        assert!(Instant::now() < deadline, "the TLS listener did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Setup {
        pki,
        dir,
        tls,
        up,
        g,
        api_leaf,
    }
}

/// A client trusting only the test CA, reaching the TLS listener under any `*.test` name,
/// opening a new connection for every request.
fn https_client(
    s: &Setup,
    configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(s.pki.ca_pem.as_bytes()).unwrap();
    let builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .pool_max_idle_per_host(0)
        .resolve("api.test", s.tls)
        .resolve("orders.svc.test", s.tls)
        .resolve("a.b.svc.test", s.tls)
        .timeout(Duration::from_secs(10));
    configure(builder).build().unwrap()
}

fn url(s: &Setup, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", s.tls.port())
}

/// The leaf certificate the listener serves for `sni`, from a full handshake (a fresh
/// client config: no session to resume, which would skip the certificate), verified
/// against the test CA.
async fn served_leaf(s: &Setup, sni: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(s.pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(s.tls).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_http1_and_http2_with_sni_and_both_versions() {
    let s = setup().await;
    let bearer = format!("Bearer {TOKEN}");

    // HTTP/1.1 and HTTP/2 (ALPN) on the TLS listener, identity headers and the scheme
    // reaching the upstream.
    for (client, version) in [
        (
            https_client(&s, |b| b.http1_only()),
            reqwest::Version::HTTP_11,
        ),
        (https_client(&s, |b| b), reqwest::Version::HTTP_2),
    ] {
        let resp = client
            .get(url(&s, "api.test", "/app/orders?x=1"))
            .header("authorization", &bearer)
            .header("x-auth-subject", "mallory")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), version);
        assert_eq!(resp.text().await.unwrap(), "upstream ok");
        let seen = s.up.last();
        assert_eq!(seen.uri, "/app/orders?x=1");
        assert_eq!(seen.header("x-auth-subject"), Some("alice"), "{version:?}");
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        assert_eq!(
            seen.header("host"),
            Some(format!("api.test:{}", s.tls.port()).as_str())
        );

        // Denials are the same over both: 401 with the RFC 6750 challenge, nothing sent on.
        let calls = s.up.calls();
        let resp = client
            .get(url(&s, "api.test", "/app/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_eq!(s.up.calls(), calls);
    }

    // SNI: the wildcard certificate for a name it covers (the client verifies the name,
    // so a wrong certificate fails the request); the default one for a name none covers.
    let client = https_client(&s, |b| b);
    let resp = client
        .get(url(&s, "orders.svc.test", "/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_ne!(served_leaf(&s, "orders.svc.test").await, s.api_leaf);
    assert_eq!(served_leaf(&s, "api.test").await, s.api_leaf);
    let err = client
        .get(url(&s, "a.b.svc.test", "/public/x"))
        .send()
        .await
        .expect_err("a wildcard covers one label: the default certificate does not name it");
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );

    // TLS 1.2 and TLS 1.3 each on their own.
    for (min, max) in [
        (
            reqwest::tls::Version::TLS_1_2,
            reqwest::tls::Version::TLS_1_2,
        ),
        (
            reqwest::tls::Version::TLS_1_3,
            reqwest::tls::Version::TLS_1_3,
        ),
    ] {
        let client = https_client(&s, |b| b.min_tls_version(min).max_tls_version(max));
        let resp = client
            .get(url(&s, "api.test", "/public/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{min:?}");
    }

    // The plain listener keeps serving HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    for client in [
        client_builder().build().unwrap(),
        client_builder().http2_prior_knowledge().build().unwrap(),
    ] {
        let resp = client
            .get(at(&s.g, "/app/plain"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(s.up.last().header("x-forwarded-proto"), Some("http"));
    }
    let ok = metric(&s.g, "sessiongate_tls_handshakes_total{outcome=\"ok\"}").await;
    assert!(ok >= 7.0, "{ok}");
    let expiry = metric(
        &s.g,
        "sessiongate_tls_certificate_expiry_timestamp_seconds{certificate=\"1\"}",
    )
    .await;
    assert!(expiry > 1.7e9, "{expiry}");
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
}

/// Waits until `check` holds, polling.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_restart_and_a_broken_pair_keeps_the_old_one() {
    let s = setup().await;
    let client = https_client(&s, |b| b.http1_only());
    let get = || client.get(url(&s, "api.test", "/public/x")).send();
    assert_eq!(served_leaf(&s, "api.test").await, s.api_leaf);

    // Both files rewritten one after the other: the periodic check waits until they stay
    // the same, so the pair is loaded once and the moment between the writes is not
    // reported (the rejected count stays at zero).
    let (chain, key, new_leaf) = s.pki.leaf(&["api.test"]);
    std::fs::write(s.dir.join("api.key"), &key).unwrap();
    std::fs::write(s.dir.join("api.crt"), &chain).unwrap();
    eventually("the new certificate is served", async || {
        served_leaf(&s, "api.test").await == new_leaf
    })
    .await;
    assert_eq!(get().await.unwrap().status(), 200);
    let loaded = "sessiongate_tls_certificate_reloads_total{result=\"loaded\"}";
    let rejected = "sessiongate_tls_certificate_reloads_total{result=\"rejected\"}";
    assert_eq!(metric(&s.g, loaded).await, 1.0);
    let rejected_before = metric(&s.g, rejected).await;
    assert_eq!(rejected_before, 0.0);

    // A certificate whose key is another one's: refused, counted, the last good one stays.
    let (other_chain, _, _) = s.pki.leaf(&["api.test"]);
    std::fs::write(s.dir.join("api.crt"), other_chain).unwrap();
    eventually("the broken pair is rejected", async || {
        metric(&s.g, rejected).await > rejected_before
    })
    .await;
    for _ in 0..3 {
        assert_eq!(served_leaf(&s, "api.test").await, new_leaf);
        assert_eq!(get().await.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        metric(&s.g, rejected).await,
        rejected_before + 1.0,
        "the same broken content is reported once"
    );

    // Fixed by the next rotation.
    let (chain3, key3, leaf3) = s.pki.leaf(&["api.test"]);
    std::fs::write(s.dir.join("api.key"), key3).unwrap();
    std::fs::write(s.dir.join("api.crt"), chain3).unwrap();
    eventually("the third certificate is served", async || {
        served_leaf(&s, "api.test").await == leaf3
    })
    .await;
    assert_eq!(metric(&s.g, loaded).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_bounded_by_the_header_deadline_and_counted() {
    let s = setup().await;
    // A TCP health check connects and hangs up: counted as `closed`, not `failed`.
    drop(tokio::net::TcpStream::connect(s.tls).await.unwrap());
    eventually("the probe is counted", async || {
        metric(&s.g, "sessiongate_tls_handshakes_total{outcome=\"closed\"}").await >= 2.0
    })
    .await;
    assert_eq!(
        metric(&s.g, "sessiongate_tls_handshakes_total{outcome=\"failed\"}").await,
        0.0
    );
    // Silence after connecting: closed at `header_timeout` (1s), not Pingora's 60 s.
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(s.tls).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        metric(
            &s.g,
            "sessiongate_tls_handshakes_total{outcome=\"timeout\"}"
        )
        .await,
        1.0
    );

    // Plain HTTP on the TLS port: no answer in clear, the connection closed, counted.
    let mut stream = tokio::net::TcpStream::connect(s.tls).await.unwrap();
    stream
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).contains("HTTP/1.1 200"));
    eventually("the failed handshake is counted", async || {
        metric(&s.g, "sessiongate_tls_handshakes_total{outcome=\"failed\"}").await == 1.0
    })
    .await;
    assert_eq!(s.up.calls(), 0);
}

// === The same hostile requests over HTTP/1.1 and HTTP/2 ===

/// One request: method, path, authority (HTTP/1.1 `Host`), extra headers.
struct Case {
    method: &'static str,
    path: &'static str,
    authority: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

const fn case(method: &'static str, path: &'static str) -> Case {
    Case {
        method,
        path,
        authority: "x.test",
        headers: &[],
    }
}

/// The issue #13 table's hostile rows that HTTP/2 can carry (HTTP/2 has no request
/// line to split, no chunked framing and no obs-fold), and a control for each.
fn cases() -> Vec<Case> {
    let mut out = vec![
        case("GET", "/public/..%2Fadmin/users"),
        case("GET", "/public/%2e%2e%2Fadmin/users"),
        case("GET", "/public/..%5Cadmin/users"),
        case("GET", "/public/..%252Fadmin/users"),
        case("GET", "/public/%c0%ae%c0%ae/admin/users"),
        case("GET", "/public/../admin/users"),
        case("GET", "/public/%2e%2e/admin/users"),
        case("GET", "/public/..;/admin/users"),
        case("GET", "/public;/../admin"),
        case("GET", "/admin%2Fusers"),
        case("GET", "//admin/users"),
        case("GET", "/public/./x"),
        case("GET", "/public/a%41b"),
        case("get", "/echo/x"),
        case("Post", "/echo/x"),
        case("GET", "/echo/x"),
    ];
    for authority in [
        "admin.internal",
        "ADMIN.Internal",
        "admin.internal.",
        "admin.internal:443",
        "admin.internal:0443",
        "admin.internal:99999",
        "admin..internal",
        "[::1]",
    ] {
        out.push(Case {
            method: "GET",
            path: "/public/x",
            authority,
            headers: &[],
        });
    }
    for headers in [
        &[("x-original-url", "/admin/users")][..],
        &[("x-http-method-override", "DELETE")],
        &[("x-rewrite-url", "/admin")],
        &[("content_length", "5")],
        &[("transfer_encoding", "chunked")],
        &[("x-auth-subject", "mallory")],
        &[("x-forwarded-for", "10.0.0.1")],
        &[("authorization", "Bearer wrong")],
    ] {
        out.push(Case {
            method: "GET",
            path: "/echo/y",
            authority: "x.test",
            headers,
        });
    }
    out
}

/// What a client sees of a response: status, the `error` code, and for an echo the
/// method, target and headers the upstream would receive (minus the request id).
#[derive(Debug, PartialEq)]
struct Seen2 {
    status: u16,
    error: Value,
    upstream: Value,
}

fn reading(status: u16, body: &[u8]) -> Seen2 {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut upstream = json.clone();
    if let Some(h) = upstream.get_mut("headers").and_then(Value::as_object_mut) {
        h.remove("x-request-id");
        // The HTTP/1.1 requests carry `Connection: close` (hop-by-hop, never forwarded).
        h.remove("connection");
    }
    Seen2 {
        status,
        error: json.get("error").cloned().unwrap_or(Value::Null),
        upstream: if json.get("method").is_some() {
            upstream
        } else {
            Value::Null
        },
    }
}

async fn over_http1(addr: SocketAddr, c: &Case) -> Seen2 {
    let mut req = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n",
        c.method, c.path, c.authority
    );
    for (k, v) in c.headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let raw = raw_http(addr, &req).await;
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw.find("\r\n\r\n").map_or("", |i| &raw[i + 4..]);
    reading(status, body.as_bytes())
}

async fn over_http2(addr: SocketAddr, c: &Case) -> Seen2 {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::builder()
        .method(http::Method::from_bytes(c.method.as_bytes()).unwrap())
        .uri(format!("http://{}{}", c.authority, c.path))
        .header("authorization", format!("Bearer {TOKEN}"));
    for (k, v) in c.headers {
        req = req.header(*k, *v);
    }
    // A header list HTTP/2 itself refuses (none of the cases) would fail here.
    let Ok((resp, _)) = client.send_request(req.body(()).unwrap(), true) else {
        return reading(0, b"");
    };
    let resp = match resp.await {
        Ok(r) => r,
        // A stream reset: the HTTP/2 form of a refusal without an answer.
        Err(_) => return reading(0, b""),
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    reading(status, &bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_the_same_answer_over_http1_and_http2() {
    let s = setup().await;
    let mut differences = Vec::new();
    let mut refused = 0;
    for c in cases() {
        let one = over_http1(s.g.proxy_addr, &c).await;
        let two = over_http2(s.g.proxy_addr, &c).await;
        if one.status == 400 {
            refused += 1;
        }
        let mut two_as_one = two;
        // The echo reports the HTTP version the upstream request would carry.
        if let Some(v) = two_as_one.upstream.get_mut("version") {
            *v = Value::String("HTTP/1.1".into());
        }
        if one != two_as_one {
            differences.push(format!(
                "{} {} (authority {}, {:?}):\n  HTTP/1.1 {one:?}\n  HTTP/2   {two_as_one:?}",
                c.method, c.path, c.authority, c.headers
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));

    // HTTP/2 only: a `Host` beside `:authority` must name the same host (RFC 9113 §8.3.1);
    // one that differs would let routing and the upstream read different hosts.
    let mut conflicting = case("GET", "/public/x");
    conflicting.headers = &[("host", "admin.internal")];
    let seen = over_http2(s.g.proxy_addr, &conflicting).await;
    assert!(seen.status == 400 || seen.status == 0, "{seen:?}");
    conflicting.headers = &[("host", "x.test")];
    assert_eq!(over_http2(s.g.proxy_addr, &conflicting).await.status, 200);
    // The table is hostile: most of it is refused (over both protocols alike).
    assert!(refused >= 12, "{refused}");
    assert_eq!(s.up.calls(), 0, "no case reaches the app upstream");
}

/// A TLS connection to the listener offering only `h2` by ALPN.
async fn tls_h2(s: &Setup) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(s.pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(s.tls).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// Three requests 1.3 s apart on one HTTP/2 connection (the test config's
/// header_timeout is 1s): the connection wrapper must not read HTTP/2 frames as an
/// HTTP/1.1 head that never ends.
async fn three_requests_apart<T>(io: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(connection);
    for i in 0..3 {
        let mut ready = client.clone().ready().await.unwrap();
        let req = http::Request::get("https://api.test/public/x")
            .body(())
            .unwrap();
        let (resp, _) = ready.send_request(req, true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200, "request {i}");
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    assert!(!conn.is_finished(), "the HTTP/2 connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_outlives_the_header_deadline_between_requests() {
    let s = setup().await;
    let h2c = tokio::net::TcpStream::connect(s.g.proxy_addr)
        .await
        .unwrap();
    tokio::join!(
        three_requests_apart(h2c),
        three_requests_apart(tls_h2(&s).await)
    );
    assert_eq!(
        metric(
            &s.g,
            "sessiongate_connections_closed_total{reason=\"header_timeout\"}"
        )
        .await,
        0.0
    );
}

/// How long until the peer closes `stream` (a read gives 0 or fails); panics past `limit`.
async fn closed_after<T: tokio::io::AsyncRead + Unpin>(mut stream: T, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
}

/// The HTTP/2 client preface, and an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Every way a connection can open and stall — nothing, one byte, part of an HTTP/1 head,
/// part of the HTTP/2 preface, the preface without SETTINGS — over plain HTTP/1.1, h2c
/// and TLS with ALPN h2: closed at the header deadline (1s here) and counted, and a
/// listener full of them turns legitimate clients away for at most that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opening_is_closed_at_the_header_deadline_and_counted() {
    let s = setup().await;
    let preface_and_part: Vec<u8> = [PREFACE, &SETTINGS[..5]].concat();
    let stalls: Vec<(&'static str, Vec<u8>)> = vec![
        ("silent", vec![]),
        ("one byte", b"P".to_vec()),
        (
            "part of a head",
            b"GET /public/x HTTP/1.1\r\nHost: a\r\n".to_vec(),
        ),
        ("part of the preface", PREFACE[..16].to_vec()),
        ("preface without SETTINGS", PREFACE.to_vec()),
        ("preface and part of SETTINGS", preface_and_part),
    ];
    let mut waits = Vec::new();
    for (what, bytes) in &stalls {
        let what = *what;
        let mut plain = tokio::net::TcpStream::connect(s.g.proxy_addr)
            .await
            .unwrap();
        plain.write_all(bytes).await.unwrap();
        waits.push(tokio::spawn(async move {
            (
                format!("plain, {what}"),
                closed_after(plain, Duration::from_secs(4)).await,
            )
        }));
        if what == "part of a head" {
            // Not HTTP/2: the HTTP/2 server refuses it at once.
            continue;
        }
        let mut tls = tls_h2(&s).await;
        tls.write_all(bytes).await.unwrap();
        tls.flush().await.unwrap();
        waits.push(tokio::spawn(async move {
            (
                format!("TLS h2, {what}"),
                closed_after(tls, Duration::from_secs(4)).await,
            )
        }));
    }
    let n = waits.len() as f64;
    for wait in waits {
        let (what, took) = wait.await.unwrap();
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(2),
            "{what}: closed after {took:?}"
        );
    }
    let closed = "sessiongate_connections_closed_total{reason=\"header_timeout\"}";
    assert_eq!(metric(&s.g, closed).await, n);

    // With the opening complete, an HTTP/2 connection is no longer on the header
    // deadline (the idle timeout, 60 s by default here, applies).
    let mut open = tokio::net::TcpStream::connect(s.g.proxy_addr)
        .await
        .unwrap();
    open.write_all(&[PREFACE, SETTINGS].concat()).await.unwrap();
    let read = tokio::time::timeout(Duration::from_millis(2500), async {
        let mut buf = [0u8; 256];
        loop {
            match open.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(read.is_err(), "an open HTTP/2 connection was closed");
    assert_eq!(metric(&s.g, closed).await, n);

    // A short HTTP/1.0 request on an h2c listener is answered at once: the preface check
    // stops reading as soon as the bytes cannot be the preface.
    let started = Instant::now();
    let answer = raw_http(s.g.proxy_addr, "GET /public/x HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
}

/// `max_connections: 4` and four stalled h2c openings: a legitimate client is turned away
/// (503 `too_many_connections`) only until the stalled ones reach their deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_openings_lock_clients_out_for_at_most_one_deadline() {
    let s = setup_with(&CONFIG.replace(
        "connections: { header_timeout: 1s }",
        "connections: { header_timeout: 5s, max_connections: 4 }",
    ))
    .await;
    // The setup's own requests may still hold a connection for an instant: the slots are
    // all free before the stalled openings take them.
    eventually("the setup's connections are closed", async || {
        metric(&s.g, "sessiongate_downstream_connections").await == 0.0
    })
    .await;
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut c = tokio::net::TcpStream::connect(s.g.proxy_addr)
            .await
            .unwrap();
        c.write_all(&PREFACE[..16]).await.unwrap();
        stalled.push(c);
    }
    // The gateway takes connections in no fixed order (one task each): once all four
    // are counted open, a new client is refused...
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = metric(&s.g, "sessiongate_downstream_connections").await;
        if open >= 4.0 {
            break;
        }
        let closed = metric(
            &s.g,
            "sessiongate_connections_closed_total{reason=\"over_limit\"}",
        )
        .await;
        assert!(
            Instant::now() < deadline,
            "the four stalled openings were never counted open: {open} open, {closed} over the limit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let close = "GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    if started.elapsed() < Duration::from_secs(4) {
        let refused = raw_http(s.g.proxy_addr, close).await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("too_many_connections"), "{refused}");
    }
    // ... and served again once they reach their deadline (5 s), plus slack for a
    // loaded machine — never later.
    loop {
        let answer = raw_http(s.g.proxy_addr, close).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(6500),
            "still locked out after {:?}: {answer}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(4500),
        "served after {:?}, before the stalled openings' deadline",
        started.elapsed()
    );
    drop(stalled);
}

/// Sends `req` (no body) on an HTTP/2 client connection; the response status.
async fn h2_status(client: &h2::client::SendRequest<bytes::Bytes>, req: http::Request<()>) -> u16 {
    let (resp, _) = client
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(req, true)
        .unwrap();
    resp.await.unwrap().status().as_u16()
}

/// HTTP/2 details an HTTP/1.1 upstream and an operator see: cookies a client split over
/// several `cookie` fields (RFC 9113 §8.2.3, what browsers do) arrive as one `Cookie`
/// header; an HTTP/2 connection closed for idleness is counted like an HTTP/1.1 one,
/// and one the client ends itself is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cookies_arrive_joined_and_idle_closes_are_counted() {
    let s = setup_with(&CONFIG.replace(
        "connections: { header_timeout: 1s }",
        "connections: { header_timeout: 1s, idle_timeout: 1s }",
    ))
    .await;
    let idle = "sessiongate_connections_closed_total{reason=\"idle_timeout\"}";
    let plain = tokio::net::TcpStream::connect(s.g.proxy_addr)
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(plain).await.unwrap();
    let plain_conn = tokio::spawn(connection);
    let req = http::Request::get("http://api.test/app/cookies")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("cookie", "a=1")
        .header("cookie", "b=2; c=3")
        .header("cookie", "d=4")
        .body(())
        .unwrap();
    assert_eq!(h2_status(&client, req).await, 200);
    assert_eq!(s.up.last().all("cookie"), ["a=1; b=2; c=3; d=4"]);

    // Both connections left open with no stream: closed after idle_timeout (1s), counted.
    let (tls_client, tls_connection) = h2::client::handshake(tls_h2(&s).await).await.unwrap();
    let tls_conn = tokio::spawn(tls_connection);
    let req = http::Request::get("https://api.test/public/x")
        .body(())
        .unwrap();
    assert_eq!(h2_status(&tls_client, req).await, 200);
    let started = Instant::now();
    for conn in [plain_conn, tls_conn] {
        let closed = tokio::time::timeout(Duration::from_secs(4), conn).await;
        assert!(
            closed.is_ok(),
            "an idle HTTP/2 connection still open after 4 s"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    eventually("both idle closes are counted", async || {
        metric(&s.g, idle).await == 2.0
    })
    .await;
    drop((client, tls_client));

    // A client that leaves by itself (GOAWAY, then close) is not an idle close.
    let plain = tokio::net::TcpStream::connect(s.g.proxy_addr)
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(plain).await.unwrap();
    let conn = tokio::spawn(connection);
    let req = http::Request::get("http://api.test/public/x")
        .body(())
        .unwrap();
    assert_eq!(h2_status(&client, req).await, 200);
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(metric(&s.g, idle).await, 2.0);
}

// === HTTP/2 upstreams (`h2c://`, `protocol: http2`) ===

/// An HTTP/2-only (prior knowledge) upstream: answers `upstream h2 <method> <path>` with a
/// `grpc-status: 0` trailer, and records what it received (version, `:authority`,
/// headers).
async fn h2_upstream() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut headers: Vec<(String, String)> = parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            headers.push((":version".into(), format!("{:?}", parts.version)));
                            headers.push((
                                ":authority".into(),
                                parts
                                    .uri
                                    .authority()
                                    .map(|a| a.to_string())
                                    .unwrap_or_default(),
                            ));
                            let text = format!("upstream h2 {} {}", parts.method, parts.uri.path());
                            record.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                uri: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers,
                                body: body.to_vec(),
                            });
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            let body = Frames(
                                [
                                    hyper::body::Frame::data(bytes::Bytes::from(text)),
                                    hyper::body::Frame::trailers(trailers),
                                ]
                                .into(),
                            );
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                        }
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    (addr, seen)
}

/// A response body of fixed frames (data, then trailers).
struct Frames(std::collections::VecDeque<hyper::body::Frame<bytes::Bytes>>);

impl hyper::body::Body for Frames {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

const H2_UPSTREAM: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
h2c: true
providers:
  s:
    kind: static
    tokens:
      - { token_sha256: {sha}, identity: { subject: alice, scopes: [read] } }
upstreams:
  grpc: "h2c://{h2}"
  grpc-long: { url: "http://{h2}", protocol: http2 }
routes:
  - { name: svc, path_prefix: /svc, provider: s, upstream: grpc }
  - { name: long, path_prefix: /long, provider: s, upstream: grpc-long }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstreams_get_every_kind_of_request_with_identity_and_trailers() {
    let (h2, seen) = h2_upstream().await;
    let g = start_gateway(
        H2_UPSTREAM,
        &[
            ("sha", hex::encode(Sha256::digest(TOKEN.as_bytes()))),
            ("h2", h2.to_string()),
        ],
    );
    let bearer = format!("Bearer {TOKEN}");
    let last = || {
        seen.lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request upstream")
    };

    // HTTP/1.1 without a body (the direct path) and with one (Pingora's proxy), on both
    // spellings of an HTTP/2 upstream.
    let client = client_builder().build().unwrap();
    for (prefix, method, body) in [
        ("/svc", "GET", ""),
        ("/long", "GET", ""),
        ("/svc", "POST", "hello"),
    ] {
        let resp = client
            .request(method.parse().unwrap(), at(&g, &format!("{prefix}/a?q=1")))
            .header("authorization", &bearer)
            .header("x-auth-subject", "mallory")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method} {prefix}");
        assert_eq!(
            resp.text().await.unwrap(),
            format!("upstream h2 {method} {prefix}/a")
        );
        let up = last();
        assert_eq!(up.header(":version"), Some("HTTP/2.0"));
        assert_eq!(
            up.header(":authority"),
            Some(g.proxy_addr.to_string().as_str())
        );
        assert_eq!(up.uri, format!("{prefix}/a?q=1"));
        assert_eq!(up.header("x-auth-subject"), Some("alice"));
        assert_eq!(
            up.header("host"),
            None,
            "HTTP/2 carries the host as :authority"
        );
        assert_eq!(up.body, body.as_bytes());
    }

    // HTTP/2 end to end: the upstream's trailers reach the client.
    let tcp = tokio::net::TcpStream::connect(g.proxy_addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::post("http://api.test/svc/Echo")
        .header("authorization", &bearer)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from_static(b"\0\0\0\0\0"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes, b"upstream h2 POST /svc/Echo");
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    let up = last();
    assert_eq!(up.header("te"), Some("trailers"));
    assert_eq!(up.header(":authority"), Some("api.test"));
    assert_eq!(up.header("x-auth-subject"), Some("alice"));

    // A gRPC call refused by the gateway: HTTP 200, grpc-status 16, one header block that
    // ends the stream (Trailers-Only), nothing sent upstream.
    let calls = seen.lock().unwrap().len();
    let req = http::Request::post("http://api.test/svc/Echo")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut client = client.ready().await.unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "16");
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert!(
        resp.body().is_end_stream(),
        "Trailers-Only: the header block ends the stream"
    );
    assert_eq!(seen.lock().unwrap().len(), calls);
}

// === `https://` upstreams: ca_file, server_name, verify_hostname, client certificate ===

const TLS_UPSTREAMS: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
upstreams:
  system-store: "https://localhost:{port}"
  private-ca: { url: "https://localhost:{port}", ca_file: "{dir}/ca.pem" }
  wrong-name: { url: "https://127.0.0.1:{port}", ca_file: "{dir}/ca.pem", server_name: other.test }
  name-unchecked: { url: "https://127.0.0.1:{port}", ca_file: "{dir}/ca.pem", server_name: other.test, verify_hostname: false }
  mtls-without: { url: "https://localhost:{mtls}", ca_file: "{dir}/ca.pem" }
  mtls: { url: "https://localhost:{mtls}", ca_file: "{dir}/ca.pem", client_certificate: { chain: "{dir}/client.crt", key: "{dir}/client.key" } }
routes:
  - { path_prefix: /system-store, auth: none, upstream: system-store }
  - { path_prefix: /private-ca, auth: none, upstream: private-ca }
  - { path_prefix: /wrong-name, auth: none, upstream: wrong-name }
  - { path_prefix: /name-unchecked, auth: none, upstream: name-unchecked }
  - { path_prefix: /mtls-without, auth: none, upstream: mtls-without }
  - { path_prefix: /mtls, auth: none, upstream: mtls }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_with_their_own_ca_name_and_client_certificate() {
    let pki = Pki::new();
    let dir = temp_dir("upstream-tls");
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let server_config = |client_auth: bool| {
        let (chain, key, _) = pki.leaf(&["localhost"]);
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(certs, key).unwrap();
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
    };
    let plain = Fake::start_tls(
        |_| Reply::raw(200, "text/plain", "tls upstream"),
        server_config(false),
    )
    .await;
    let mtls = Fake::start_tls(
        |_| Reply::raw(200, "text/plain", "mtls upstream"),
        server_config(true),
    )
    .await;
    let (chain, key, _) = pki.leaf(&["sessiongate.client"]);
    std::fs::write(dir.join("client.crt"), chain).unwrap();
    std::fs::write(dir.join("client.key"), key).unwrap();
    let g = start_gateway(
        TLS_UPSTREAMS,
        &[
            ("port", plain.addr.port().to_string()),
            ("mtls", mtls.addr.port().to_string()),
            ("dir", dir.display().to_string()),
        ],
    );
    let client = client_builder().build().unwrap();
    for (path, status, body) in [
        ("/private-ca/x", 200, "tls upstream"),
        ("/name-unchecked/x", 200, "tls upstream"),
        ("/mtls/x", 200, "mtls upstream"),
        // The system store does not know the test CA; the name is checked; the upstream
        // wants a client certificate.
        ("/system-store/x", 502, ""),
        ("/wrong-name/x", 502, ""),
        ("/mtls-without/x", 502, ""),
    ] {
        let resp = client.get(at(&g, path)).send().await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        if status == 200 {
            assert_eq!(resp.text().await.unwrap(), body, "{path}");
        }
    }
    assert_eq!(
        mtls.calls(),
        1,
        "only the request with the client certificate got through"
    );
}

// === Client certificates (mTLS) on the TLS listener ===

const MTLS: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
tls:
  listen: {tls}
  certificates: [{ chain: "{dir}/api.crt", key: "{dir}/api.key" }]
  client_certificates: { ca_file: "{dir}/clients-ca.pem", required: false }
providers:
  mesh:
    kind: client_certificate
    clients:
      - { id: "spiffe://test/ns/billing/sa/api", scopes: [orders] }
      - { id: "spiffe://test/ns/ro/sa/reader", scopes: [] }
  s:
    kind: static
    tokens:
      - { token_sha256: {sha}, identity: { subject: alice, scopes: [read] } }
routes:
  - { path_prefix: /public, auth: none, upstream: echo }
  - { path_prefix: /pay, provider: s, upstream: echo, require_client_certificate: ["spiffe://test/ns/billing/sa/api"] }
  - { path_prefix: /any-cert, provider: s, upstream: echo, require_client_certificate: ["*"] }
  - name: orders
    path_prefix: /orders
    provider: mesh
    token_sources: [client_certificate]
    upstream: echo
    require_scopes: { all_of: [orders] }
"#;

/// A client certificate for `uri` (a SPIFFE id) signed by `pki`: (chain PEM, key PEM).
fn client_cert(pki: &Pki, uri: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "workload");
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// One HTTP/1.1 request over TLS to `addr`, presenting `cert` if given; the status and
/// the JSON body (`Null` when the handshake or the request failed).
async fn mtls_get(
    addr: SocketAddr,
    server_ca: &str,
    cert: Option<&(String, String)>,
    path: &str,
) -> (u16, Value) {
    mtls_request(addr, server_ca, cert, path, false).await
}

/// [`mtls_get`], over HTTP/2 when `h2`.
async fn mtls_request(
    addr: SocketAddr,
    server_ca: &str,
    cert: Option<&(String, String)>,
    path: &str,
    h2: bool,
) -> (u16, Value) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(server_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
                .map(Result::unwrap)
                .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let mut config = config;
    if h2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
    let Ok(mut tls) = connector.connect(name, tcp).await else {
        return (0, Value::Null);
    };
    if h2 {
        let (client, connection) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get(format!("https://api.test{path}"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        return (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        );
    }
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    if tls.write_all(req.as_bytes()).await.is_err() {
        return (0, Value::Null);
    }
    let mut out = Vec::new();
    // TLS 1.3: a refused client certificate shows as an alert on the first read.
    if tls.read_to_end(&mut out).await.is_err() && out.is_empty() {
        return (0, Value::Null);
    }
    let text = String::from_utf8_lossy(&out);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.find("\r\n\r\n").map_or("", |i| &text[i + 4..]);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_identify_workloads_on_routes_that_read_them() {
    let pki = Pki::new();
    let clients = Pki::new();
    let stranger = Pki::new();
    let dir = temp_dir("mtls");
    let (chain, key, _) = pki.leaf(&["api.test"]);
    std::fs::write(dir.join("api.crt"), chain).unwrap();
    std::fs::write(dir.join("api.key"), key).unwrap();
    std::fs::write(dir.join("clients-ca.pem"), &clients.ca_pem).unwrap();
    let tls: SocketAddr = free_address().parse().unwrap();
    let g = start_gateway(
        MTLS,
        &[
            ("tls", tls.to_string()),
            ("dir", dir.display().to_string()),
            ("sha", hex::encode(Sha256::digest(TOKEN.as_bytes()))),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(tls).await.is_err() {
        assert!(Instant::now() < deadline, "the TLS listener did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let billing = client_cert(&clients, "spiffe://test/ns/billing/sa/api");
    let reader = client_cert(&clients, "spiffe://test/ns/ro/sa/reader");
    let unlisted = client_cert(&clients, "spiffe://test/ns/other/sa/x");
    let forged = client_cert(&stranger, "spiffe://test/ns/billing/sa/api");

    let (status, body) = mtls_get(tls, &pki.ca_pem, Some(&billing), "/orders/1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["headers"]["x-auth-subject"],
        "spiffe://test/ns/billing/sa/api"
    );
    assert_eq!(body["headers"]["x-auth-scopes"], "orders");
    // HTTP/2 connections find their certificate too.
    let (status, body) = mtls_request(tls, &pki.ca_pem, Some(&billing), "/orders/2", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["headers"]["x-auth-subject"],
        "spiffe://test/ns/billing/sa/api"
    );
    assert_eq!(
        mtls_request(tls, &pki.ca_pem, None, "/orders/2", true)
            .await
            .0,
        401
    );

    // Listed without the scope, not listed, no certificate: refused; optional mode lets
    // the connection through for routes that do not read a certificate.
    assert_eq!(
        mtls_get(tls, &pki.ca_pem, Some(&reader), "/orders/1")
            .await
            .0,
        403
    );
    assert_eq!(
        mtls_get(tls, &pki.ca_pem, Some(&unlisted), "/orders/1")
            .await
            .0,
        401
    );
    let (status, body) = mtls_get(tls, &pki.ca_pem, None, "/orders/1").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "client_certificate_required");
    assert_eq!(mtls_get(tls, &pki.ca_pem, None, "/public/x").await.0, 200);
    // A certificate from another CA, for the same id: the handshake fails.
    assert_eq!(
        mtls_get(tls, &pki.ca_pem, Some(&forged), "/public/x")
            .await
            .0,
        0
    );
    // A token route that also needs a certificate (one id, or any verified one).
    let (status, body) = mtls_get(tls, &pki.ca_pem, Some(&billing), "/pay/1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["headers"]["x-auth-subject"], "alice",
        "the token's identity"
    );
    assert_eq!(
        body["headers"]["x-auth-client-certificate"], "spiffe://test/ns/billing/sa/api",
        "and the workload that presented it"
    );
    let (status, body) = mtls_get(tls, &pki.ca_pem, Some(&reader), "/pay/1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("client_certificate_not_allowed"))
    );
    let (status, body) = mtls_get(tls, &pki.ca_pem, None, "/pay/1").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("client_certificate_required"))
    );
    assert_eq!(
        mtls_get(tls, &pki.ca_pem, Some(&unlisted), "/any-cert/1")
            .await
            .0,
        200
    );
    assert_eq!(mtls_get(tls, &pki.ca_pem, None, "/any-cert/1").await.0, 401);
    // The plain listener has no client certificate at all.
    let r = raw_http(
        g.proxy_addr,
        "GET /orders/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
}

/// Every TLS file (listener pairs, the client-certificate CA, an upstream's CA and client
/// certificate) is read and parsed once, when the configuration is checked: the gateway
/// is built and serves from what was read, even with the files gone by then.
#[tokio::test]
async fn tls_files_are_read_once_when_the_configuration_is_checked() {
    let pki = Pki::new();
    let dir = temp_dir("tls-read-once");
    let (chain, key, _) = pki.leaf(&["localhost"]);
    let (client_chain, client_key, _) = pki.leaf(&["client.test"]);
    for (name, text) in [
        ("ca.pem", &pki.ca_pem),
        ("server.crt", &chain),
        ("server.key", &key),
        ("client.crt", &client_chain),
        ("client.key", &client_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let yaml = r#"
listen: "127.0.0.1:{listen}"
admin_listen: "127.0.0.1:{admin}"
shutdown_grace_period: 0s
tls:
  listen: "127.0.0.1:{tls}"
  watch: 0s
  certificates: [{ chain: server.crt, key: server.key }]
  client_certificates: { ca_file: ca.pem, required: false }
upstreams:
  private: { url: "https://localhost:1", ca_file: ca.pem, client_certificate: { chain: client.crt, key: client.key } }
routes:
  - { path_prefix: /, auth: none, upstream: echo }
  - { path_prefix: /private, auth: none, upstream: private }
"#
    .replace("{listen}", &free_port().to_string())
    .replace("{admin}", &free_port().to_string())
    .replace("{tls}", &free_port().to_string());
    let settings = sessiongate::config::from_str(&yaml, &dir).expect("valid config");
    std::fs::remove_dir_all(&dir).unwrap();
    let gateway = sessiongate::Gateway::new(settings).expect("built from what was read");
    let handle = gateway.spawn();
    assert!(handle.wait_ready(Duration::from_secs(10)));
    let tls = handle_tls_addr(&yaml);
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let client = client_builder()
        .add_root_certificate(ca)
        .resolve("localhost", tls)
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{}/hello", tls.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the listener serves the certificate read at check"
    );
}

fn handle_tls_addr(yaml: &str) -> SocketAddr {
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("listen:") && l.starts_with("  "))
        .unwrap();
    line.split('"').nth(1).unwrap().parse().unwrap()
}
