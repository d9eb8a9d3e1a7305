//! Acknowledged writes survive SIGKILL; SIGTERM shuts down cleanly.

use serde_json::json;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn acknowledged_writes_survive_sigkill() {
    let mut app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let post = app.create_post(&json!({"leaderId": (i % 11) + 1, "platform": "x", "content": format!("durable {i}"), "platformPostId": format!("{}", 5000 + i)})).await;
        ids.push(post["id"].as_u64().unwrap());
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
        .map(|p| p["id"].as_u64().unwrap())
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
    assert!(!ids.contains(&post["id"].as_u64().unwrap()));
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
async fn sigterm_lets_in_flight_requests_finish() {
    let mut app = spawn_app().await;
    let big: Vec<String> = (0..100)
        .map(|_| "wonderful terrible ".repeat(500))
        .collect();
    let client = app.client.clone();
    let url = app.url("/api/sentiment/batch");
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        let (client, url, body) = (client.clone(), url.clone(), json!({"texts": big.clone()}));
        in_flight.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    // Wait until the server has the requests (its request counter moves), then stop it.
    crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        "requests to arrive",
        || async {
            let (_, m) = app.get_json("/api/metrics").await;
            (m["requests"]["total"].as_u64().unwrap_or(0) >= 1).then_some(())
        },
    )
    .await;
    let status = tokio::task::spawn_blocking(move || {
        let s = app.terminate();
        (s, app)
    })
    .await
    .unwrap();
    assert!(status.0.success());
    for handle in in_flight {
        // Each request either finished with 200 or was never accepted; none was cut off.
        match handle.await.unwrap() {
            Ok(code) => assert_eq!(code, 200),
            Err(e) => assert!(e.is_connect(), "request cut off mid-flight: {e}"),
        }
    }
}
