//! Acknowledged writes survive SIGKILL; SIGTERM shuts down cleanly.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{id_of, spawn_app};

#[actix_web::test]
async fn acknowledged_writes_survive_sigkill() {
    let mut app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let post = app.create_post(&json!({"leaderId": (i % 11) + 1, "platform": "x", "content": format!("durable {i}"), "platformPostId": format!("{}", 5000 + i)})).await;
        ids.push(id_of(&post["id"]));
    }
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": "Written Just Before The Crash"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    // No shutdown, no flush: the process is gone at once.
    app.kill9();
    let app = app.restart().await;
    let (_, feed) = app.get_json("/api/feed?page_size=100").await;
    assert_eq!(feed["total"], 40);
    let got: Vec<u64> = feed["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| id_of(&p["id"]))
        .collect();
    for id in &ids {
        assert!(got.contains(id), "post {id} was lost");
    }
    let (_, leaders) = app.get_json("/api/leaders").await;
    assert!(leaders
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["name"] == "Written Just Before The Crash"));
    // Dedup keys survived too.
    let res = app
        .admin_post(
            "/api/posts",
            &json!({"leaderId": 1, "platform": "x", "content": "dup", "platformPostId": "5000"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    // New ids do not collide with the old ones.
    let post = app
        .create_post(&json!({"leaderId": 1, "platform": "news", "content": "after restart"}))
        .await;
    assert!(!ids.contains(&id_of(&post["id"])));
}

#[actix_web::test]
async fn sigterm_exits_zero_and_keeps_everything() {
    let mut app = spawn_app().await;
    app.create_post(&json!({"leaderId": 1, "platform": "news", "content": "before sigterm"}))
        .await;
    let status = app.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(app.logs().contains("store flushed"), "{}", app.logs());
    let app = app.restart().await;
    let (_, feed) = app.get_json("/api/feed").await;
    assert_eq!(feed["posts"][0]["content"], "before sigterm");
}

#[actix_web::test]
async fn a_clean_shutdown_of_an_empty_store_leaves_a_snapshot_the_next_start_uses() {
    let mut app = crate::helpers::spawn_app_with(&[("SEED_LEADERS", "false")]).await;
    assert!(app.terminate().success());
    let app = app.restart().await;
    let logs = app.logs();
    assert!(
        logs.contains("feed index loaded from its snapshot and journal"),
        "{logs}"
    );
    assert!(!logs.contains("unusable"), "{logs}");
    let (_, health) = app.get_json("/api/health").await;
    assert_eq!(health["checks"]["database"]["stats"]["posts"], 0);
}

/// Sends the head of a sentiment request on a connection of its own, announcing a body
/// of `len` bytes with `Expect: 100-continue`, and waits for the server's
/// `100 Continue`: proof that the server accepted the connection and is working on the
/// request (a connection the kernel merely queued, or a pooled one, proves nothing).
async fn start_request(addr: &str, len: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/sentiment/batch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        read_more(&mut stream, &mut got, "100 Continue").await;
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 100"), "{text}");
    stream
}

/// Sends the body and reads the whole answer; returns its status and body.
async fn finish_request(mut stream: tokio::net::TcpStream, body: &[u8]) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    stream.write_all(body).await.expect("send body");
    let mut answer = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("content-length");
            if rest.len() >= len {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("status");
                return (status, rest[..len].to_string());
            }
        }
        read_more(&mut stream, &mut answer, "the answer").await;
    }
}

/// Reads what the server sent next onto `got`, within 30 s; fails if it closed first
/// (the request was cut off mid-flight).
async fn read_more(stream: &mut tokio::net::TcpStream, got: &mut Vec<u8>, waiting_for: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no {waiting_for} within 30 s"))
        .expect("read");
    assert!(
        n > 0,
        "request cut off mid-flight: closed before {waiting_for}; got {:?}",
        String::from_utf8_lossy(got)
    );
    got.extend_from_slice(&buf[..n]);
}

/// How long the slow clients of the SIGTERM test hold their bodies back after the server
/// stopped accepting: a deliberate delay, well inside the 30 s grace.
const SLOW_CLIENT: Duration = Duration::from_millis(2500);

#[actix_web::test]
async fn sigterm_lets_in_flight_requests_finish() {
    in_flight_requests_finish_after("TERM").await;
}

#[actix_web::test]
async fn ctrl_c_lets_in_flight_requests_finish_too() {
    in_flight_requests_finish_after("INT").await;
}

#[actix_web::test]
async fn a_sigterm_right_after_start_up_is_a_clean_stop() {
    // The first stdout line says the server listens; a signal from then on is handled.
    for _ in 0..3 {
        let mut app = spawn_app().await;
        let status = tokio::task::spawn_blocking(move || app.terminate())
            .await
            .unwrap();
        assert!(status.success(), "exit status {status}");
    }
}

/// Eight requests in flight when `signal` arrives all finish; the server exits 0.
async fn in_flight_requests_finish_after(signal: &str) {
    let mut app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let texts: Vec<String> = (0..50)
        .map(|i| format!("a wonderful, terrible day number {i}"))
        .collect();
    let body = serde_json::to_vec(&json!({ "texts": texts })).unwrap();
    // Eight requests in flight: each accepted and started on, none with its body sent.
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        in_flight.push(start_request(&addr, body.len()).await);
    }
    app.send_signal(signal);
    // The server stops accepting: new connections are refused.
    crate::helpers::eventually(
        Duration::from_secs(20),
        "new connections refused after the signal",
        || async {
            tokio::net::TcpStream::connect(&addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    // Slow clients: the bodies come only now, seconds after the signal (longer than actix
    // polls a stopping worker), and every request is still answered.
    tokio::time::sleep(SLOW_CLIENT).await;
    let answers =
        futures_util::future::join_all(in_flight.into_iter().map(|s| finish_request(s, &body)))
            .await;
    for (status, text) in answers {
        assert_eq!(status, 200, "{text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(parsed["results"].as_array().map(Vec::len), Some(50));
    }
    let status = tokio::task::spawn_blocking(move || app.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
}
