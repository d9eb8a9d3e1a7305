//! The connection layer, over raw sockets: protocol-level refusals are SPEC JSON, every
//! phase of a request has a deadline, and caps below the open-file limit keep health
//! answering through a slow-body attack from many addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{spawn_app_with, spawn_app_with_nofile, TestApp};

/// Longest any single raw exchange may take before the test calls it hung. Generous:
/// the machine may be loaded; the deadlines under test are far shorter.
const HANG: Duration = Duration::from_secs(60);

/// A response read off a raw socket up to the server's close.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
    /// From the end of sending to the close.
    elapsed: Duration,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// SPEC: every response carries a request id and the security headers.
    fn assert_spec_error(&self, status: u16, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {self:?}");
        assert!(self.headers.contains_key("x-request-id"), "{what}");
        assert_eq!(self.headers["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(self.headers["x-frame-options"], "DENY", "{what}");
        assert_eq!(
            self.headers["referrer-policy"], "strict-origin-when-cross-origin",
            "{what}"
        );
        assert!(
            self.headers["content-security-policy"]
                .contains("frame-src https://platform.twitter.com"),
            "{what}"
        );
        assert!(
            self.headers["content-type"].starts_with("application/json"),
            "{what}"
        );
        let body = self.json();
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{what}: {body}"
        );
        body
    }
}

fn socket_addr(app: &TestApp) -> SocketAddr {
    app.address
        .trim_start_matches("http://")
        .parse()
        .expect("server address")
}

/// Parses the first response of `bytes`.
fn parse(bytes: &[u8], elapsed: Duration) -> Raw {
    let text = String::from_utf8_lossy(bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
        elapsed,
    }
}

/// Reads until the server closes (or `HANG` passes, which fails the test).
async fn read_to_close(stream: &mut TcpStream, sent: Instant) -> Raw {
    let mut out = Vec::new();
    let read = tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server never closed the connection");
    parse(&out, sent.elapsed())
}

/// Sends `bytes` on a fresh connection and reads the answer up to the close.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    read_to_close(&mut stream, Instant::now()).await
}

#[actix_web::test]
async fn protocol_level_refusals_are_spec_json_and_close_the_connection() {
    let app = spawn_app_with(&[("REQUEST_TIMEOUT_SECONDS", "2")]).await;
    let addr = socket_addr(&app);

    let mut many = String::from("GET /api/health HTTP/1.1\r\nHost: a\r\nX-Request-Id: hdrs-1\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let raw = exchange(addr, many.as_bytes()).await;
    let body = raw.assert_spec_error(431, "100 headers");
    assert_eq!(body["error"], "headers_too_large");
    assert_eq!(
        raw.headers["x-request-id"], "hdrs-1",
        "the client's id is echoed"
    );

    let raw = exchange(
        addr,
        b"GET /api/health HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n",
    )
    .await;
    raw.assert_spec_error(400, "NUL in a header");

    let long = format!(
        "GET /api/feed?q={} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let raw = exchange(addr, long.as_bytes()).await;
    assert_eq!(
        raw.assert_spec_error(414, "100 KB URL")["error"],
        "uri_too_long"
    );

    for (what, bytes) in [
        ("no Host", b"GET / HTTP/1.1\r\n\r\n".as_slice()),
        ("two Content-Lengths", b"POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"),
        ("Content-Length and chunked", b"POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("bad chunk", b"POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
    ] {
        exchange(addr, bytes).await.assert_spec_error(400, what);
    }

    // Slow headers: the head deadline (here 2 s) answers 408 in JSON.
    let raw = exchange(addr, b"GET /api/health HTTP/1.1\r\nHost: a\r\n").await;
    assert_eq!(
        raw.assert_spec_error(408, "slow headers")["error"],
        "request_timeout"
    );
    assert!(
        raw.elapsed >= Duration::from_millis(1900),
        "{:?}",
        raw.elapsed
    );

    // The server is fine, and the refusals were counted and logged like any answer.
    let (status, _) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    let logs = app.logs();
    assert!(
        logs.contains("\"status\":431") && logs.contains("\"request_id\":\"hdrs-1\""),
        "{logs}"
    );
}

#[actix_web::test]
async fn a_request_body_that_stops_or_dribbles_is_cut_off_at_the_deadline_with_a_408() {
    let deadline = Duration::from_secs(2);
    let app = spawn_app_with(&[("REQUEST_TIMEOUT_SECONDS", "2")]).await;
    let addr = socket_addr(&app);
    let cases: [(&str, &[u8], bool); 3] = [
        (
            "Content-Length 100, 4 bytes sent",
            b"POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te",
            false,
        ),
        (
            "chunked, stopped inside a chunk",
            b"POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"te",
            false,
        ),
        (
            "Content-Length 100000, one byte every 200 ms",
            b"POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"texts\": [",
            true,
        ),
    ];
    for (what, head, dribble) in cases {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head).await.unwrap();
        let sent = Instant::now();
        let raw = if dribble {
            let (mut rd, mut wr) = stream.into_split();
            // Dribble until the server closes: progress must not extend the deadline.
            let dribbler = tokio::spawn(async move {
                while wr.write_all(b" ").await.is_ok() && sent.elapsed() < HANG {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            let mut out = Vec::new();
            let read = tokio::time::timeout(HANG, rd.read_to_end(&mut out)).await;
            dribbler.abort();
            assert!(read.is_ok(), "{what}: never closed");
            parse(&out, sent.elapsed())
        } else {
            read_to_close(&mut stream, sent).await
        };
        assert_eq!(raw.assert_spec_error(408, what)["error"], "request_timeout");
        assert!(
            raw.elapsed >= deadline - Duration::from_millis(100),
            "{what}: {:?}",
            raw.elapsed
        );
        assert_eq!(raw.headers["connection"], "close", "{what}");
    }
    let (status, _) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn a_complete_request_that_arrives_slowly_but_in_time_is_served() {
    let app = spawn_app_with(&[("REQUEST_TIMEOUT_SECONDS", "30")]).await;
    let addr = socket_addr(&app);
    let body = br#"{"texts": ["I love this"]}"#;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes())
        .await
        .unwrap();
    for piece in body.chunks(9) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream.write_all(piece).await.unwrap();
    }
    let raw = read_to_close(&mut stream, Instant::now()).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(raw.json()["results"][0]["sentiment"], "Positive");
}

/// A connection that proves it was admitted (one answered request), then holds its slot
/// with a body that does not come (for the server's whole request deadline).
async fn hold_slot(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "not admitted: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    s
}

#[actix_web::test]
async fn an_address_over_its_connection_cap_gets_a_json_429_and_the_slot_back_later() {
    let app = spawn_app_with(&[
        ("MAX_CONNECTIONS_PER_IP", "3"),
        ("REQUEST_TIMEOUT_SECONDS", "120"),
    ])
    .await;
    let addr = socket_addr(&app);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(hold_slot(addr).await);
    }
    let raw = exchange(addr, b"GET /livez HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(
        raw.assert_spec_error(429, "fourth connection")["error"],
        "too_many_connections"
    );
    assert_eq!(raw.headers["retry-after"], "1");
    drop(held.pop());
    // The slot is freed when the server sees the close: poll until it does.
    let deadline = Instant::now() + HANG;
    loop {
        let raw = exchange(
            addr,
            b"GET /livez HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        if raw.status == 200 {
            break;
        }
        assert_eq!(raw.status, 429);
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn at_the_global_cap_only_health_probes_are_served_then_connections_are_refused() {
    // 20 slots, the last 1 (20/16) kept for health probes.
    let app = spawn_app_with(&[
        ("MAX_CONNECTIONS", "20"),
        ("MAX_CONNECTIONS_PER_IP", "100"),
        ("REQUEST_TIMEOUT_SECONDS", "120"),
    ])
    .await;
    let addr = socket_addr(&app);
    let mut held = Vec::new();
    for _ in 0..19 {
        held.push(hold_slot(addr).await);
    }
    // The last slot: anything but a health probe is refused...
    let raw = exchange(addr, b"GET /api/feed HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(
        raw.assert_spec_error(503, "feed on a health-only slot")["error"],
        "server_busy"
    );
    // ...a health probe is answered, and its connection closed after the answer. (The
    // slot the refused one held is free once the server has seen it close, which may be
    // a moment after the client saw the close: until then this is refused at accept.)
    let deadline = Instant::now() + HANG;
    let raw = loop {
        let raw = exchange(addr, b"GET /api/health HTTP/1.1\r\nHost: a\r\n\r\n").await;
        if raw.status != 503 {
            break raw;
        }
        assert!(
            Instant::now() < deadline,
            "the health-only slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(raw.headers["connection"], "close");
    assert_eq!(raw.json()["status"], "ok");
    // With the last slot held as well, a new connection is refused outright. A health-only
    // slot is held for at most 2 s (its head deadline), so hold it afresh each try.
    let deadline = Instant::now() + HANG;
    loop {
        let mut last = TcpStream::connect(addr).await.unwrap();
        last.write_all(b"GET /livez HTTP/1.1\r\nHost: a\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let raw = exchange(addr, b"GET /livez HTTP/1.1\r\nHost: a\r\n\r\n").await;
        if raw.status == 503 {
            assert_eq!(
                raw.assert_spec_error(503, "over the cap")["error"],
                "server_busy"
            );
            assert_eq!(raw.headers["retry-after"], "1");
            break;
        }
        assert_eq!(raw.status, 200, "{raw:?}");
        assert!(Instant::now() < deadline, "never refused");
    }
    drop(held);
}

/// Opens a connection from `source` (a loopback alias) and starts a slow body on it.
async fn slow_body_from(source: IpAddr, addr: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(source, 0)).ok()?;
    let mut stream = socket.connect(addr).await.ok()?;
    stream
        .write_all(b"POST /api/sentiment/batch HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te")
        .await
        .ok()?;
    Some(stream)
}

#[actix_web::test]
async fn health_answers_throughout_a_1100_connection_slow_body_attack_under_1024_open_files() {
    const ADDRESSES: u8 = 20;
    const PER_ADDRESS: usize = 55;
    // The test itself holds 1,100 sockets.
    let own = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if own < 1_500 {
        eprintln!("SKIP connections attack test: this process may open only {own} files");
        return;
    }
    let app = spawn_app_with_nofile(&[("REQUEST_TIMEOUT_SECONDS", "10")], 1024).await;
    let addr = socket_addr(&app);
    let logs = app.logs();
    assert!(logs.contains("\"open_file_limit\":1024"), "{logs}");

    // 1,100 slow bodies from 127.0.0.2 ..= 127.0.0.21, opened as fast as the machine allows.
    let attack = tokio::spawn(async move {
        let mut streams = Vec::new();
        for i in 0..ADDRESSES {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i));
            for _ in 0..PER_ADDRESS {
                if let Some(s) = slow_body_from(source, addr).await {
                    streams.push(s);
                }
            }
        }
        streams
    });
    // Health probes from 127.0.0.1 the whole time, each on a new connection: every one
    // must be answered.
    let prober = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut probes = 0;
    let mut attack = Some(attack);
    let mut streams = Vec::new();
    // At least 8 s and 20 probes, and until the attack is fully open: a loaded machine
    // makes each probe slower, never the test shorter (each probe must still answer).
    while started.elapsed() < Duration::from_secs(8) || attack.is_some() || probes < 20 {
        let res = tokio::time::timeout(HANG, prober.get(app.url("/api/health")).send())
            .await
            .unwrap_or_else(|_| panic!("health probe {probes} hung"))
            .unwrap_or_else(|e| panic!("health probe {probes} failed: {e}"));
        assert_eq!(res.status(), 200, "health probe {probes}");
        probes += 1;
        if attack.as_ref().is_some_and(|a| a.is_finished()) {
            streams = attack.take().unwrap().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        streams.len(),
        ADDRESSES as usize * PER_ADDRESS,
        "every attack connection opened"
    );

    // Every attack connection ends with a JSON answer: 429 (over its address's cap) at
    // once, or 408 at the deadline. None is left hanging, none is dropped unanswered.
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let answers = futures_util::future::join_all(
        streams
            .into_iter()
            .map(|mut s| async move { read_to_close(&mut s, Instant::now()).await }),
    )
    .await;
    for raw in answers {
        raw.assert_spec_error(raw.status, "attack connection");
        *statuses.entry(raw.status).or_default() += 1;
    }
    eprintln!("attack: {probes} health probes answered; attack connections answered {statuses:?}");
    assert!(
        statuses.keys().all(|s| *s == 408 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "{statuses:?}");
    let (status, _) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    assert!(
        !app.logs().contains("Too many open files"),
        "the server ran out of files"
    );
}

#[actix_web::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_keep_alive_time() {
    let app = spawn_app_with(&[]).await;
    let mut stream = TcpStream::connect(socket_addr(&app)).await.unwrap();
    let raw = read_to_close(&mut stream, Instant::now()).await;
    // Nothing was asked, so nothing is answered: the connection is just closed.
    assert_eq!(raw.status, 0, "{raw:?}");
    assert!(
        raw.elapsed >= Duration::from_millis(4900),
        "{:?}",
        raw.elapsed
    );
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_deadline() {
    let app = spawn_app_with(&[("REQUEST_TIMEOUT_SECONDS", "2")]).await;
    // 60 posts of 19 KB: one answer of GET /api/posts is over a megabyte.
    for _ in 0..60 {
        app.create_post(
            &serde_json::json!({"leaderId": 1, "platform": "news", "content": "x".repeat(19_000)}),
        )
        .await;
    }
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(socket_addr(&app)).await.unwrap();
    let one = "GET /api/posts?limit=500 HTTP/1.1\r\nHost: a\r\n\r\n";
    stream.write_all(one.repeat(16).as_bytes()).await.unwrap();
    // Wait until the server gives up on the stalled writes (its log says so)...
    let deadline = Instant::now() + HANG;
    while !app.logs().contains("client stopped reading") {
        assert!(Instant::now() < deadline, "the server kept waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...then what reaches the client is cut short: far less than 16 answers, and a close.
    let mut received = Vec::new();
    let read = tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 65536];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "never closed");
    let answers = received
        .windows(12)
        .filter(|w| w == b"HTTP/1.1 200")
        .count();
    assert!(answers < 16, "all {answers} answers arrived");
    let (status, _) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
}
