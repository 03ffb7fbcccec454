//! Unit tests of the connection limits and the stream wrapper.

use super::deadlines::*;
use super::*;

/// A kept-alive connection waiting for its next request while the previous response
/// is still being streamed is not idle: each write pushes the idle deadline back.
fn limits(idle_secs: u64, header_secs: u64) -> crate::proxy::shared::ConnectionLimits {
    crate::proxy::shared::ConnectionLimits {
        idle_timeout: Duration::from_secs(idle_secs),
        header_timeout: Duration::from_secs(header_secs),
        ..Default::default()
    }
}

/// After a `101`, the connection is a tunnel: closed when idle both ways for
/// `tunnel_idle_timeout` (bytes either way keep it), and at `tunnel_max_duration`
/// however busy.
#[tokio::test(start_paused = true)]
async fn tunnels_close_when_idle_or_too_old() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // (max duration, who talks: "" nobody / "client" / "server", expected close, when)
    for (max, busy, want, after) in [
        (None, "", "tunnel_idle_timeout", 10),
        // One message 1 s in, then silence: closed 10 s after it, not 10 s after the
        // idle clock was first armed plus another 10 (CI caught that: 8 s for 4 s).
        (None, "once", "tunnel_idle_timeout", 11),
        (None, "client", "", 0),
        (None, "server", "", 0),
        (Some(25), "client", "tunnel_max_duration", 25),
    ] {
        let (client, server) = tokio::io::duplex(1 << 16);
        let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = closed.clone();
        let limits = crate::proxy::shared::ConnectionLimits {
            tunnel_idle_timeout: Duration::from_secs(10),
            tunnel_max_duration: max.map(Duration::from_secs),
            ..Default::default()
        };
        let stream = Deadlines::new(
            Box::new(server),
            &limits,
            Box::new(move |reason| seen.lock().unwrap().push(reason)),
        );
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (mut client_rd, mut client_wr) = tokio::io::split(client);
        client_wr
            .write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = rd.read(&mut buf).await.unwrap();
        assert!(n > 0);
        wr.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => return None,
                    Ok(_) => continue,
                    Err(e) => return Some((e.to_string(), Instant::now())),
                }
            }
        });
        if busy == "once" {
            tokio::time::sleep(Duration::from_secs(1)).await;
            wr.write_all(b"hello").await.unwrap();
            let _ = client_rd.read(&mut buf).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        } else if !busy.is_empty() {
            // A message every 4 s one way only, for 40 s.
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                if busy == "client" {
                    client_wr.write_all(b"ping").await.unwrap();
                } else {
                    wr.write_all(b"pong").await.unwrap();
                    let _ = client_rd.read(&mut buf).await;
                }
                if reader.is_finished() {
                    break;
                }
            }
        } else {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        if want.is_empty() {
            assert!(
                !reader.is_finished(),
                "a tunnel busy from the {busy} was closed"
            );
            assert!(closed.lock().unwrap().is_empty());
            continue;
        }
        let (err, at) = reader.await.unwrap().expect("closed by a limit");
        assert_eq!(err, want);
        let took = at - started;
        assert!(
            took >= Duration::from_secs(after) && took < Duration::from_secs(after + 2),
            "{want}: {took:?}"
        );
        assert_eq!(*closed.lock().unwrap(), vec![want]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_still_being_written_is_not_idleness() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, server) = tokio::io::duplex(1 << 16);
    let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = closed.clone();
    let stream = Deadlines::new(
        Box::new(server),
        &limits(1, 1),
        Box::new(move |reason| seen.lock().unwrap().push(reason)),
    );
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (_client_rd, mut client_wr) = tokio::io::split(client);
    client_wr
        .write_all(b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(rd.read(&mut buf).await.unwrap() > 0);
    wr.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let started = Instant::now();
        let result = rd.read(&mut [0u8; 16]).await;
        (result.is_err(), started.elapsed())
    });
    // Five chunks, 600 ms apart: 3 s of streaming with a 1 s idle timeout.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        wr.write_all(b"1\r\na\r\n").await.unwrap();
    }
    let (timed_out, waited) = reader.await.unwrap();
    assert!(timed_out);
    assert!(
        waited >= Duration::from_secs(3) && waited <= Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert_eq!(*closed.lock().unwrap(), ["idle_timeout"]);
}

#[test]
fn the_over_limit_answer_is_well_framed() {
    let r = over_limit_response();
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, body.len());
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error"], "too_many_connections");
}

/// The kept head is what a hand-over replays: the request's reads, body bytes that came
/// with the headers included; nothing once a response began; nothing beyond the limit.
#[tokio::test]
async fn the_request_head_is_kept_for_a_hand_over_and_only_then() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(4 << 20);
    let mut stream = Deadlines::new(Box::new(server), &limits(5, 5), Box::new(|_| {}));
    let request = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    client.write_all(&request[..10]).await.unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = stream.read(&mut buf).await.unwrap();
    client.write_all(&request[10..]).await.unwrap();
    let m = stream.read(&mut buf[n..]).await.unwrap();
    assert_eq!(&buf[..n + m], &request[..]);
    assert!(stream.replay_request());
    let mut again = vec![0u8; request.len()];
    stream.read_exact(&mut again).await.unwrap();
    assert_eq!(
        &again[..],
        &request[..],
        "the replay is the request, byte for byte"
    );
    // Nothing is replayed twice, and after the response nothing is kept.
    assert!(!stream.replay_request());
    stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    assert!(!stream.replay_request());

    // The next request is kept afresh; one larger than Pingora accepts is not.
    let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(HEAD_LIMIT));
    client.write_all(big.as_bytes()).await.unwrap();
    let mut read = 0;
    while read < big.len() {
        read += stream.read(&mut buf).await.unwrap();
    }
    assert!(!stream.replay_request());
    assert!(
        stream.head.capacity() <= 16 * 1024,
        "{}",
        stream.head.capacity()
    );
}

/// The HTTP/2 opening is complete with the preface and the whole first frame, in
/// any split of the bytes, and not a byte before; frames after it are followed too
/// (a GOAWAY is noticed).
#[test]
fn the_http2_opening_ends_with_the_clients_settings_in_any_split() {
    let settings = [0u8, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
    let goaway = [0u8, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let opening = [H2_PREFACE, &settings[..], &goaway[..]].concat();
    let settings_end = H2_PREFACE.len() + settings.len();
    for size in 1..=opening.len() {
        let (_client, server) = tokio::io::duplex(64);
        let mut d = Deadlines::new(Box::new(server), &limits(60, 10), Box::new(|_| {}));
        d.http2 = true;
        let mut fed = 0;
        for piece in opening.chunks(size) {
            d.saw_read(piece);
            fed += piece.len();
            assert_eq!(
                d.phase == Phase::Tunnel,
                fed >= settings_end,
                "pieces of {size}, {fed} bytes"
            );
            assert_eq!(d.h2_in.goaway, fed >= settings_end + 9, "pieces of {size}");
        }
    }
    // A SETTINGS frame with an empty payload ends with its header.
    let mut f = FrameHeaders::default();
    f.feed(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(f.complete, 1);
}

/// Stalled openings are closed at the header deadline counted from the connection's
/// start — a byte now and then does not earn more time — and the h2c peek reads
/// through that deadline.
#[tokio::test(start_paused = true)]
async fn openings_are_bounded_by_the_header_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (h2c, first, second) in [
        (false, &b""[..], &b""[..]),
        (false, b"GET / HTTP/1.1\r\n", b"Host: a\r\n"),
        (true, b"", b""),
        (true, b"P", b"RI * HTTP/2.0\r\n"),
        (true, H2_PREFACE, &[0, 0, 6]),
    ] {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let closed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = closed.clone();
        let mut stream = Deadlines::new(
            Box::new(server),
            &limits(60, 10),
            Box::new(move |reason| seen.lock().unwrap().push(reason)),
        )
        .h2c(h2c);
        let started = Instant::now();
        let reader = tokio::spawn(async move {
            if h2c {
                let mut peek = [0u8; 24];
                stream.try_peek(&mut peek).await?;
            }
            let mut buf = [0u8; 256];
            loop {
                if stream.read(&mut buf).await? == 0 {
                    return Ok::<_, std::io::Error>(());
                }
            }
        });
        client.write_all(first).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        client.write_all(second).await.unwrap();
        let result = reader.await.unwrap();
        let err = result.expect_err("closed by the deadline");
        assert_eq!(err.to_string(), "header_timeout", "{first:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(10) && took < Duration::from_secs(11),
            "{first:?}: {took:?}"
        );
        assert_eq!(*closed.lock().unwrap(), ["header_timeout"]);
    }
}

/// The h2c peek gives the preface when it is there, stops at the first byte that
/// cannot be it, and the next reads see every byte from the start.
#[tokio::test]
async fn the_h2c_peek_stops_early_and_rewinds() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for (sent, is_h2) in [
        (&b"GET / HTTP/1.0\r\n\r\n"[..], false),
        (b"PRI * HTTP/1.1\r\n\r\n", false),
        (
            &[H2_PREFACE, &[0, 0, 0, 4, 0, 0, 0, 0, 0]].concat()[..],
            true,
        ),
    ] {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut stream =
            Deadlines::new(Box::new(server), &limits(60, 10), Box::new(|_| {})).h2c(true);
        client.write_all(sent).await.unwrap();
        let mut peek = [0u8; 24];
        assert!(stream.try_peek(&mut peek).await.unwrap());
        assert_eq!(peek == H2_PREFACE, is_h2, "{sent:?}");
        assert_eq!(stream.http2, is_h2);
        let mut again = vec![0u8; sent.len()];
        stream.read_exact(&mut again).await.unwrap();
        assert_eq!(again, sent);
        if !is_h2 {
            assert_eq!(stream.phase, Phase::Request, "{sent:?}");
            assert!(stream.replay_request(), "the head is kept for a hand-over");
        }
    }
}

#[test]
fn finds_the_blank_line_in_any_split() {
    let request = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
    for size in 1..=request.len() {
        let mut b = BlankLine::default();
        let mut found_at = None;
        for (i, piece) in request.chunks(size).enumerate() {
            if b.feed(piece) {
                found_at = Some(i);
                break;
            }
        }
        assert_eq!(
            found_at,
            Some((request.len() - 1) / size),
            "pieces of {size}"
        );
    }
    let mut b = BlankLine::default();
    assert!(!b.feed(b"GET / HTTP/1.1\r\nHost: a\r\n"));
    assert!(!b.feed(b"X: 1\r\n"));
    assert!(b.feed(b"\r\n"));
    let mut lf = BlankLine::default();
    assert!(!lf.feed(b"GET / HTTP/1.0\n"));
    assert!(lf.feed(b"\n"));
    // Mixed endings, which httparse also accepts: a bare-LF line, then CRLF.
    for split in 1..4 {
        let request = b"GET / HTTP/1.1\nHost: a\n\r\nbody";
        let mut mixed = BlankLine::default();
        let (a, b) = request.split_at(request.len() - 4 - split);
        assert!(!mixed.feed(a), "split {split}");
        assert!(mixed.feed(b), "split {split}");
    }
}

/// What Pingora hands back is recovered as the connection's own stream, its kept request
/// head intact, through a real HTTP/1 session; anything else is refused, not guessed at.
#[tokio::test]
async fn the_stream_comes_back_from_pingora_with_its_request_head() {
    use pingora::protocols::http::ServerSession;
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let stream = Deadlines::new(Box::new(server), &limits(5, 5), Box::new(|_| {}));
    let mut session = ServerSession::new_http1(Box::new(stream));
    let request = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    client.write_all(request).await.unwrap();
    assert!(session.read_request().await.unwrap());
    let ServerSession::H1(h1) = session else {
        unreachable!("an HTTP/1 session")
    };
    let mut back = Deadlines::recover(h1.into_inner()).expect("the connection's own stream");
    assert!(back.replay_request(), "its request head was kept");

    let (_other, foreign) = tokio::io::duplex(64);
    assert!(Deadlines::recover(Box::new(foreign)).is_none());
}
