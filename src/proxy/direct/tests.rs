//! Unit tests of the direct path: which requests it takes, its upstream pool.

use super::*;

async fn session_for(raw: &[u8]) -> ServerSession {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    tokio::io::AsyncWriteExt::write_all(&mut client, raw)
        .await
        .unwrap();
    // Keep the client end open while the request is read.
    std::mem::forget(client);
    let mut session = ServerSession::new_http1(Box::new(server));
    assert!(session.read_request().await.unwrap());
    session
}

/// The direct path takes only requests whose forwarding needs no framing decision;
/// everything else goes to the full proxy.
#[tokio::test]
async fn only_requests_without_framing_decisions_are_direct() {
    let direct: &[&[u8]] = &[
        b"GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n",
        b"HEAD /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        b"DELETE /a HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, close\r\n\r\n",
    ];
    let full: &[&[u8]] = &[
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nKeep-Alive: timeout=5\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\n\r\n",
        b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nHTTP2-Settings: AAA\r\n\r\n",
    ];
    for raw in direct {
        let s = session_for(raw).await;
        assert!(eligible(&s), "{}", String::from_utf8_lossy(raw));
    }
    for raw in full {
        let s = session_for(raw).await;
        assert!(!eligible(&s), "{}", String::from_utf8_lossy(raw));
    }
}

/// The upstream request is the client's, header for header (spelling, order and
/// repeated names kept), less `Connection`; its maps have room for the gateway's headers.
#[tokio::test]
async fn the_upstream_request_keeps_the_clients_headers() {
    let raw = b"GET /a/%2F?q=1&q=2 HTTP/1.1\r\nHost: x\r\nX-Custom: 1\r\n\
        Connection: keep-alive\r\nAccept: a\r\nx-custom: 2\r\nUser-Agent: t\r\n\r\n";
    let session = session_for(raw).await;
    let client = session.req_header();
    let req = upstream_request(client).unwrap();
    assert_eq!(req.method, Method::GET);
    assert_eq!(req.version, Version::HTTP_11);
    assert_eq!(req.raw_path(), b"/a/%2F?q=1&q=2");
    let wire = |r: &pingora::http::RequestHeader| {
        let mut buf = bytes::BytesMut::new();
        r.header_to_h1_wire(&mut buf);
        String::from_utf8(buf.to_vec()).unwrap()
    };
    // In the client's order (a clone less `Connection` would move the last header into
    // its place: `HeaderMap::remove` swaps).
    assert_eq!(
        wire(&req),
        "Host: x\r\nX-Custom: 1\r\nx-custom: 2\r\nAccept: a\r\nUser-Agent: t\r\n"
    );
}

/// The direct path's idle pool hands out live connections only, newest first, and its
/// sweep closes the ones the upstream closed.
#[tokio::test]
async fn idle_connections_are_checked_when_taken_and_swept() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pool = Arc::new(IdlePool::default());
    let mut servers = Vec::new();
    for _ in 0..3 {
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        servers.push(listener.accept().await.unwrap().0);
        pool.put(
            7,
            Box::new(pingora::protocols::l4::stream::Stream::from(client)),
            None,
        );
    }
    // The newest is taken first; closing the upstream side of the next one makes it
    // unusable, and the oldest is still good.
    let newest = pool.take(7).unwrap();
    drop(newest);
    drop(servers.remove(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        pool.take(7).is_some(),
        "the closed one is skipped, the oldest taken"
    );
    assert!(pool.take(7).is_none());
    assert!(pool.take(8).is_none());

    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server = listener.accept().await.unwrap().0;
    pool.put(
        7,
        Box::new(pingora::protocols::l4::stream::Stream::from(client)),
        None,
    );
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    pool.sweep();
    assert!(pool.by_upstream.lock().unwrap().is_empty());

    // Expired connections are not handed out.
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _server = listener.accept().await.unwrap().0;
    pool.put(
        7,
        Box::new(pingora::protocols::l4::stream::Stream::from(client)),
        Some(Duration::from_millis(10)),
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(pool.take(7).is_none());
}

/// The client's response head is the upstream's, byte for byte on the wire.
#[test]
fn the_client_response_is_the_upstreams() {
    let mut up = ResponseHeader::build(299, None).unwrap();
    up.set_reason_phrase(Some("Fine Really")).unwrap();
    up.set_version(Version::HTTP_10);
    for (k, v) in [
        ("Content-Type", "text/plain"),
        ("X-App", "1"),
        ("set-cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("ETAG", "\"x\""),
    ] {
        up.append_header(k.to_string(), v).unwrap();
    }
    let got = client_response(&up).unwrap();
    assert_eq!(got.status, 299);
    assert_eq!(got.version, Version::HTTP_10);
    assert_eq!(got.get_reason_phrase(), Some("Fine Really"));
    let wire = |r: &ResponseHeader| {
        let mut buf = bytes::BytesMut::new();
        r.header_to_h1_wire(&mut buf);
        buf.to_vec()
    };
    assert_eq!(wire(&got), wire(&up));
    let plain = ResponseHeader::build_no_case(204, None).unwrap();
    let got = client_response(&plain).unwrap();
    assert!(!got.has_case());
    assert_eq!(got.get_reason_phrase(), Some("No Content"));
}

#[test]
fn a_body_running_to_close_goes_on_chunked() {
    let mut resp = ResponseHeader::build(200, None).unwrap();
    resp.set_version(Version::HTTP_10);
    close_delimited_to_chunked(&mut resp, false, false);
    assert_eq!(resp.headers.get("transfer-encoding").unwrap(), "chunked");
    assert_eq!(resp.version, Version::HTTP_11);
    for (status, head, end) in [(204, false, false), (200, true, false), (200, false, true)] {
        let mut resp = ResponseHeader::build(status, None).unwrap();
        close_delimited_to_chunked(&mut resp, head, end);
        assert!(resp.headers.get("transfer-encoding").is_none());
    }
}
