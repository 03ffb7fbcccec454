//! The two ways to the upstream (src/proxy/direct.rs): requests without a body are served
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
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
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
