//! The two ways to the upstream (src/proxy/direct/): requests without a body are served
//! by the direct path, the rest handed to Pingora's full proxy, which reads them again
//! from the bytes the connection kept. Both on one client connection, in any order.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const CONFIG: &str = r#"
listen: {listen}
admin_listen: {admin}
shutdown_grace_period: 0s
providers:
  idp:
    kind: static
    tokens:
      - { token_sha256: 4622c3a61455880a81938076fe30475741e1ca5a4fa65daea8e0369e1ae520df, identity: { subject: alice, scopes: [read] } }
upstreams:
  app: {upstream}
routes:
  - { path_prefix: /open, auth: none, upstream: app }
  - { path_prefix: /, provider: idp, upstream: app }
"#;

/// sha256 `4622c3a6…` above.
const TOKEN: &str = "direct-test-token-0123456789";

fn gateway_for(upstream: &str) -> sessiongate::GatewayHandle {
    start_gateway(CONFIG, &[("upstream", upstream.to_string())])
}

/// Reads one response (headers, then a `content-length` or chunked body) from `stream`:
/// (status, head, body).
async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let mut body = buf[head_end..].to_vec();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
    };
    if let Some(len) = header("content-length") {
        let len: usize = len.trim().parse().unwrap();
        while body.len() < len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            body.extend_from_slice(&chunk[..n]);
        }
    } else if header("transfer-encoding").is_some() {
        while !body.ends_with(b"0\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            body.extend_from_slice(&chunk[..n]);
        }
    }
    (status, head, body)
}

/// Reads from `s` until an empty line ends a request head; `None` when the peer closes
/// first. For the raw upstreams below.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// GET (direct), POST with its body in the same packet as its headers (handed over: the
/// full proxy must read headers *and* those body bytes again), chunked POST, GET with a
/// token, HEAD — one client connection, each answered in order, each reaching the
/// upstream once with its body intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_mixes_direct_and_handed_over_requests() {
    let upstream = Fake::start(|seen| {
        Reply::raw(
            200,
            "text/plain",
            format!(
                "{} {} {}",
                seen.method,
                seen.uri,
                String::from_utf8_lossy(&seen.body)
            ),
        )
    })
    .await;
    let g = gateway_for(&upstream.url());
    let addr: SocketAddr = g.proxy_addr;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let steps: Vec<(String, u16, &str)> = vec![
        ("GET /open/a HTTP/1.1\r\nHost: x\r\n\r\n".into(), 200, "GET /open/a "),
        (
            "POST /open/b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".into(),
            200,
            "POST /open/b hello",
        ),
        (
            "POST /open/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .into(),
            200,
            "POST /open/c abc",
        ),
        (
            format!("GET /api/d HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
            200,
            "GET /api/d ",
        ),
        ("GET /api/e HTTP/1.1\r\nHost: x\r\n\r\n".into(), 401, ""),
        ("GET /open/f HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n".into(), 200, "GET /open/f "),
    ];
    for (request, status, body) in &steps {
        stream.write_all(request.as_bytes()).await.unwrap();
        let (got, head, got_body) = read_response(&mut stream).await;
        assert_eq!(got, *status, "{request:?} → {head}");
        assert!(head.contains("x-request-id: "), "{head}");
        if *status == 200 {
            assert_eq!(String::from_utf8_lossy(&got_body), *body, "{request:?}");
        }
    }
    // HEAD goes direct and gets no body; the connection still serves a GET after it.
    stream
        .write_all(
            b"HEAD /open/g HTTP/1.1\r\nHost: x\r\n\r\nGET /open/h HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    let methods: Vec<String> = upstream.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(
        methods[..5],
        ["GET", "POST", "POST", "GET", "GET"],
        "{methods:?}"
    );
    assert!(methods.contains(&"HEAD".to_string()), "{methods:?}");
    // The identity reached the upstream on the direct path.
    let d = upstream
        .seen()
        .into_iter()
        .find(|s| s.uri == "/api/d")
        .unwrap();
    assert_eq!(d.header("x-auth-subject"), Some("alice"));
    drop(g);
}

/// An upstream that answers the first request on each connection and, on the second,
/// reads it and closes without answering — what a keep-alive timeout on the upstream's
/// side looks like from the gateway when the two race. The gateway's pooled connection
/// fails after the request was sent; a GET is sent again on a fresh connection, so the
/// client sees 200 every time, and a POST is not (it answers 502: the upstream may have
/// acted on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_is_retried_for_a_get() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a, d) = (answered.clone(), dropped.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (a, d) = (a.clone(), d.clone());
            tokio::spawn(async move {
                for nth in 0.. {
                    let Some(_head) = read_head(&mut s).await else {
                        return;
                    };
                    if nth == 1 {
                        d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return; // closes without an answer
                    }
                    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let g = gateway_for(&format!("http://{up_addr}"));
    let c = client();
    for i in 0..6 {
        let resp = c.get(at(&g, &format!("/open/{i}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 6);
    assert!(
        dropped.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the upstream never closed a reused connection: the test tested nothing"
    );
    // A body-less POST goes direct too, but is not idempotent: not sent twice.
    let before = answered.load(std::sync::atomic::Ordering::SeqCst);
    let mut statuses = Vec::new();
    for i in 0..2 {
        let resp = c.post(at(&g, &format!("/open/p{i}"))).send().await.unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(answered.load(std::sync::atomic::Ordering::SeqCst) - before < 2);
    drop(g);
}

/// An upstream that closes a keep-alive connection while it is idle (its own idle
/// timeout): the gateway notices before it sends the next request on it, so even a
/// request that cannot be retried (a POST) gets through; and idle connections are reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_upstream_closed_is_never_used() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let acc = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let first = acc.fetch_add(1, SeqCst) == 0;
            tokio::spawn(async move {
                while read_head(&mut s).await.is_some() {
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                    if first {
                        // The first connection is closed 50 ms after its first answer.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
            });
        }
    });
    let g = gateway_for(&format!("http://{up_addr}"));
    let c = client();
    let resp = c.get(at(&g, "/open/a")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..3 {
        let resp = c.post(at(&g, &format!("/open/p{i}"))).send().await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "POST {i} after the upstream closed an idle connection"
        );
    }
    for i in 0..5 {
        let resp = c.get(at(&g, &format!("/open/g{i}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        accepted.load(SeqCst),
        2,
        "one new connection after the closed one, then reuse"
    );
    drop(g);
}

/// What an upstream answers, by path, for [`both_paths_pass_on_every_response_alike`];
/// `true` when it closes the connection after answering.
fn canned(path: &str) -> Option<(&'static [u8], bool)> {
    Some(match path {
        "/open/length" => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: a\r\n\r\nhello", false),
        "/open/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            false,
        ),
        "/open/trailers" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 1\r\n\r\n",
            false,
        ),
        "/open/until-close" => (b"HTTP/1.1 200 OK\r\nX-App: a\r\n\r\nbody until close", true),
        "/open/http10" => (b"HTTP/1.0 200 OK\r\n\r\nold server", true),
        "/open/connection-close" => (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            true,
        ),
        "/open/hop-by-hop" => (
            b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        "/open/both-framings" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            false,
        ),
        "/open/two-lengths" => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            false,
        ),
        "/open/no-content" => (b"HTTP/1.1 204 No Content\r\nX-App: a\r\n\r\n", false),
        "/open/not-modified" => (b"HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\n\r\n", false),
        "/open/early-hints" => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        "/open/switching" => (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            false,
        ),
        "/open/cookies" => (
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Auth-Subject: forged\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        "/open/garbage" => (b"NOT HTTP AT ALL\r\n\r\n", true),
        "/open/silent" => (b"", true),
        "/open/short" => (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true),
        "/open/next" => (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext", false),
        _ => return None,
    })
}

/// Everything a client can observe of one exchange: the bytes of the answer (without
/// `date` and `x-request-id`, which differ per request) and of the answer to a second
/// request on the same connection (empty when the gateway closed it).
async fn observe(addr: SocketAddr, request: &str) -> (String, String) {
    async fn read_burst(stream: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        // The first byte may take a while; after it, 300 ms of silence ends the answer.
        let mut wait = Duration::from_secs(5);
        while let Ok(Ok(n)) = tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            wait = Duration::from_millis(300);
        }
        out
    }
    // Chunk boundaries are the sender's choice: a chunked body is compared decoded.
    fn dechunk(body: &str) -> String {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                return format!("{out}<not chunked: {rest:?}>");
            };
            if n == 0 {
                return format!("{out}<end>{after}");
            }
            if after.len() < n + 2 {
                return format!("{out}<short chunk: {after:?}>");
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        format!("{out}<unterminated: {rest:?}>")
    }
    fn normalize(raw: Vec<u8>) -> String {
        let text = String::from_utf8_lossy(&raw).to_string();
        // Interim (1xx) heads come first: the final head is the first one that is not 1xx.
        let mut at = 0;
        while text[at..].starts_with("HTTP/1.1 1") {
            match text[at..].find("\r\n\r\n") {
                Some(i) => at += i + 4,
                None => break,
            }
        }
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let (head, body) = match text[at..].find("\r\n\r\n") {
            Some(i) => (&text[..at + i], &text[at + i + 4..]),
            None => (head, body),
        };
        let head: Vec<&str> = head
            .split("\r\n")
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                !l.starts_with("date:") && !l.starts_with("x-request-id:")
            })
            .collect();
        let chunked = head
            .iter()
            .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        // A refusal's JSON names its request id.
        let body = match body.find("\"request_id\":\"") {
            Some(i) => format!("{}<id>", &body[..i]),
            None => body,
        };
        format!("{}\r\n\r\n{body}", head.join("\r\n"))
    }
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let first = normalize(read_burst(&mut stream).await);
    let next = match stream
        .write_all(b"GET /open/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
    {
        Ok(()) => normalize(read_burst(&mut stream).await),
        Err(_) => String::new(),
    };
    (first, next)
}

/// The direct path and Pingora's full proxy give a client the same bytes for every kind
/// of upstream answer — lengths, chunks and trailers, bodies that run to close, HTTP/1.0,
/// hop-by-hop headers, conflicting framing, 1xx, an unasked-for 101, forged identity
/// headers, garbage, silence, truncation — and keep or close the connection alike. The
/// same request is sent once as it is (direct) and once with `Content-Length: 0` (which
/// sends it to the full proxy and changes nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_pass_on_every_response_alike() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                loop {
                    let Some(head) = read_head(&mut s).await else {
                        return;
                    };
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let Some((answer, close)) = canned(&path) else {
                        return;
                    };
                    if s.write_all(answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    let g = gateway_for(&format!("http://{up_addr}"));
    let paths = [
        "/open/length",
        "/open/chunked",
        "/open/trailers",
        "/open/until-close",
        "/open/http10",
        "/open/connection-close",
        "/open/hop-by-hop",
        "/open/both-framings",
        "/open/two-lengths",
        "/open/no-content",
        "/open/not-modified",
        "/open/early-hints",
        "/open/switching",
        "/open/cookies",
        "/open/garbage",
        "/open/silent",
        "/open/short",
    ];
    let mut differences = Vec::new();
    for method in ["GET", "HEAD"] {
        for path in paths {
            let direct = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            let full = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
            let (a, b) = tokio::join!(observe(g.proxy_addr, &direct), observe(g.proxy_addr, &full));
            if a != b {
                differences.push(format!("{method} {path}\n  direct: {a:?}\n  full:   {b:?}"));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // And what both give, where it matters: no 101 to a client that asked for no upgrade,
    // no answer from a half-sent body, no response smuggled with two lengths.
    for path in ["/open/switching", "/open/two-lengths", "/open/garbage"] {
        let (first, _) = observe(
            g.proxy_addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        assert!(first.starts_with("HTTP/1.1 502 "), "{path}: {first:?}");
    }
    let (hop, _) = observe(
        g.proxy_addr,
        "GET /open/hop-by-hop HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    // Hop-by-hop headers of the upstream's connection stop at the gateway (RFC 9110 §7.6.1).
    let hop = hop.to_ascii_lowercase();
    assert!(hop.starts_with("http/1.1 200 "), "{hop:?}");
    assert!(
        !hop.contains("x-internal") && !hop.contains("keep-alive: "),
        "{hop:?}"
    );
    drop(g);
}

/// A WebSocket handshake goes to the full proxy and becomes a tunnel: the upstream's 101
/// reaches the client (with the identity checked first on an authenticated route), then
/// bytes flow both ways unchanged. Without a token, no 101: a 401 and no upstream call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_becomes_a_tunnel_after_the_check() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                let mut chunk = [0u8; 2048];
                seen.lock().unwrap().push(head.to_ascii_lowercase());
                let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
                if s.write_all(answer).await.is_err() {
                    return;
                }
                // Echo every byte back, upper-cased, until the client goes.
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let up: Vec<u8> = chunk[..n].to_ascii_uppercase();
                            if s.write_all(&up).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    let g = gateway_for(&format!("http://{up_addr}"));
    let handshake = |auth: &str| {
        format!(
            "GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        )
    };

    let mut stream = TcpStream::connect(g.proxy_addr).await.unwrap();
    stream
        .write_all(handshake(&format!("Authorization: Bearer {TOKEN}\r\n")).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("handshake answer in time")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in ["hello", "second frame"] {
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        while got.len() < message.len() {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .expect("echo in time")
                .unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, message.to_ascii_uppercase().as_bytes());
    }
    {
        let heads = heads.lock().unwrap();
        assert_eq!(heads.len(), 1);
        assert!(heads[0].contains("upgrade: websocket"), "{}", heads[0]);
        assert!(heads[0].contains("x-auth-subject: alice"), "{}", heads[0]);
    }

    let mut stream = TcpStream::connect(g.proxy_addr).await.unwrap();
    stream.write_all(handshake("").as_bytes()).await.unwrap();
    let (status, head, _) = read_response(&mut stream).await;
    assert_eq!(status, 401, "{head}");
    assert_eq!(
        heads.lock().unwrap().len(),
        1,
        "an unauthenticated upgrade reached the upstream"
    );
    drop(g);
}

/// Sixteen clients at once, each on its own kept-alive connection: direct GETs, POSTs
/// with a body (handed over), GETs with a token; every answer a 200.
async fn mixed_load(base: &str) {
    let mut tasks = Vec::new();
    for conn in 0..16 {
        let base = base.to_string();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for i in 0..10 {
                let request = match i % 3 {
                    0 => c.get(format!("{base}/open/{conn}/{i}")),
                    1 => c.post(format!("{base}/open/{conn}/{i}")).body("x"),
                    _ => c.get(format!("{base}/api/{conn}/{i}")).bearer_auth(TOKEN),
                };
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                let body = r.text().await.unwrap();
                assert_eq!(status, 200, "{conn}/{i}: {body}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let unauthenticated = client().get(format!("{base}/api/x")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

fn config_with(runtime: &str) -> String {
    CONFIG.replace(
        "shutdown_grace_period: 0s",
        &format!("shutdown_grace_period: 0s\n{runtime}"),
    )
}

/// Two proxy threads on one shared work-stealing runtime (`work_stealing: true`): a
/// pooled upstream connection may be taken by either thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_threads_with_work_stealing_serve_mixed_load() {
    let upstream = Fake::start(|seen| Reply::raw(200, "text/plain", seen.uri.clone())).await;
    let g = start_gateway(
        &config_with("threads: 2\nwork_stealing: true"),
        &[("upstream", upstream.url())],
    );
    mixed_load(&at(&g, "")).await;
    assert_eq!(upstream.calls(), 16 * 10);
    drop(g);
}

/// One runtime per thread (`work_stealing: false`), run as the real binary: Pingora keeps
/// those runtimes' handles in thread-locals that outlive a stopped server, so a process
/// that starts servers one after another (this test binary) must not mix them in. One
/// thread (the recommended sidecar setting) and two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_per_thread_serve_mixed_load_in_the_binary() {
    let upstream = Fake::start(|seen| Reply::raw(200, "text/plain", seen.uri.clone())).await;
    for threads in [1, 2] {
        let dir = temp_dir(&format!("runtime-{threads}"));
        let (listen, admin) = (free_address(), free_address());
        let text = render_config(
            &config_with(&format!("threads: {threads}\nwork_stealing: false")),
            &listen,
            &admin,
            &[("upstream", upstream.url())],
        );
        let text = format!(
            "{text}\npid_file: {0}/pid\nupgrade_sock: {0}/sock\n",
            dir.display()
        );
        std::fs::write(dir.join("gw.yaml"), text).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sessiongate"))
            .arg("--config")
            .arg(dir.join("gw.yaml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let c = client();
        wait_for_readyz(&c, &admin.to_string()).await;
        mixed_load(&format!("http://{listen}")).await;
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(upstream.calls(), 2 * 16 * 10);
}

/// `direct_path: false` sends every request through Pingora's full proxy: the same
/// answers (identity headers included), and the direct path serves none of them. The
/// default serves bodiless requests on the direct path (counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_path_can_be_turned_off() {
    let upstream = Fake::start(|seen| {
        let subject = seen
            .header("x-auth-subject")
            .unwrap_or_default()
            .to_string();
        Reply::raw(200, "text/plain", format!("{} {subject}", seen.uri))
    })
    .await;
    for (direct_path, served_directly) in [("true", true), ("false", false)] {
        let config = format!("{CONFIG}direct_path: {direct_path}\n");
        let g = start_gateway(&config, &[("upstream", upstream.url())]);
        let c = client();
        for path in ["/open/a", "/private/b"] {
            let resp = c
                .get(format!("http://{}{path}", g.proxy_addr))
                .header("authorization", format!("Bearer {TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{direct_path} {path}");
            let body = resp.text().await.unwrap();
            let subject = if path == "/open/a" { "" } else { "alice" };
            assert_eq!(
                body,
                format!("{path} {subject}"),
                "direct_path: {direct_path}"
            );
        }
        let counted = metric(&g, "sessiongate_direct_path_requests_total").await;
        assert_eq!(
            counted > 0.0,
            served_directly,
            "direct_path: {direct_path}: {counted}"
        );
    }
}
