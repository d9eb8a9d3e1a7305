//! Posts CRUD and the paginated list.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{id_of, spawn_app};

#[actix_web::test]
async fn create_read_update_delete_a_post() {
    let app = spawn_app().await;
    let created = app
        .create_post(&json!({"leaderId": 2, "platform": "facebook", "content": "What a wonderful day", "timestamp": "2025-03-01T10:00:00Z", "metrics": {"likes": 3}}))
        .await;
    let id = id_of(&created["id"]);
    assert_eq!(created["sentiment"], "Positive");
    assert_eq!(created["platform"], "Facebook");
    assert_eq!(created["metrics"], json!({"likes": 3, "revision": 0}));
    assert_eq!(created["verificationStatus"], "Needs Review");
    let (status, got) = app.get_json(&format!("/api/posts/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["content"], "What a wonderful day");

    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/posts/{id}"),
            &json!({"content": "A terrible, awful day", "verificationStatus": "Approved"}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["sentiment"], "Negative");
    assert_eq!(updated["verificationStatus"], "Verified");
    assert_eq!(updated["timestamp"], "2025-03-01T10:00:00.000Z");
    assert_eq!(updated["metrics"], json!({"likes": 3, "revision": 1}));

    let res = app.admin_delete(&format!("/api/posts/{id}")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.get(&format!("/api/posts/{id}")).await.status(), 404);
    let (_, feed) = app.get_json("/api/feed").await;
    assert_eq!(feed["total"], 0);
}

#[actix_web::test]
async fn moving_a_post_in_time_moves_it_in_the_feed() {
    let app = spawn_app().await;
    let a = app.create_post(&json!({"leaderId": 1, "platform": "news", "content": "a", "timestamp": "2025-01-01T00:00:00Z"})).await;
    app.create_post(&json!({"leaderId": 1, "platform": "news", "content": "b", "timestamp": "2025-02-01T00:00:00Z"})).await;
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/posts/{}", id_of(&a["id"])),
            &json!({"timestamp": "2025-03-01T00:00:00Z"}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let (_, feed) = app.get_json("/api/feed").await;
    assert_eq!(feed["posts"][0]["content"], "a");
    assert_eq!(feed["total"], 2);
}

#[actix_web::test]
async fn paginated_posts_follow_the_cursor() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_post(&json!({"leaderId": 4, "platform": "news", "content": format!("p{i}"), "timestamp": format!("2025-01-0{}T00:00:00Z", i + 1)})).await;
    }
    app.create_post(&json!({"leaderId": 5, "platform": "news", "content": "other leader"}))
        .await;
    let (_, first) = app
        .get_json("/api/posts/paginated?leaderId=4&limit=2")
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["items"][0]["content"], "p4");
    assert_eq!(first["hasMore"], true);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = app
        .get_json(&format!(
            "/api/posts/paginated?leaderId=4&limit=2&before={cursor}"
        ))
        .await;
    assert_eq!(second["items"][0]["content"], "p2");
    let (_, all) = app.get_json("/api/posts?leaderId=4").await;
    assert_eq!(all.as_array().unwrap().len(), 5);
    assert!(all.as_array().unwrap().iter().all(|p| p["leaderId"] == "4"));
}

#[actix_web::test]
async fn duplicate_external_ids_conflict() {
    let app = spawn_app().await;
    app.create_post(
        &json!({"leaderId": 1, "platform": "x", "content": "first", "platformPostId": "42"}),
    )
    .await;
    let res = app.admin_post("/api/posts", &json!({"leaderId": 2, "platform": "twitter", "content": "again", "platformPostId": "42"})).await;
    assert_eq!(res.status(), 409);
    // The same external id on another platform is a different post.
    let res = app.admin_post("/api/posts", &json!({"leaderId": 2, "platform": "facebook", "content": "fb", "platformPostId": "42"})).await;
    assert_eq!(res.status(), 201);
}

#[actix_web::test]
async fn invalid_posts_are_400_and_store_nothing() {
    let app = spawn_app().await;
    let cases = [
        json!({"leaderId": 1, "platform": "myspace", "content": "x"}),
        json!({"leaderId": 1, "platform": "x", "content": ""}),
        json!({"leaderId": 1, "platform": "x", "content": "x", "timestamp": "yesterday"}),
        json!({"leaderId": 1, "platform": "x", "content": "x", "metrics": [1, 2]}),
        json!({"leaderId": "", "platform": "x", "content": "x"}),
        json!({"leaderId": -1, "platform": "x", "content": "x"}),
        json!({"leaderId": 1.5, "platform": "x", "content": "x"}),
        json!({"platform": "x", "content": "x"}),
        json!({"leaderId": 1, "platform": "x", "content": "x", "verificationStatus": "maybe"}),
    ];
    for body in cases {
        let res = app.admin_post("/api/posts", &body).await;
        assert_eq!(res.status(), 400, "{body}");
    }
    // A leader that does not exist, by number, by string, or by an id never imported.
    for leader in [json!(999), json!("999"), json!("one")] {
        let res = app
            .admin_post(
                "/api/posts",
                &json!({"leaderId": leader, "platform": "x", "content": "x"}),
            )
            .await;
        assert_eq!(res.status(), 404, "{leader}");
    }
    let (_, feed) = app.get_json("/api/feed").await;
    assert_eq!(feed["total"], 0);
}

/// Sends a raw JSON body as admin (serde_json would refuse to build these values).
async fn admin_raw(
    app: &crate::helpers::TestApp,
    method: Method,
    path: &str,
    body: String,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(app.admin_token())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request")
}

#[actix_web::test]
async fn metrics_that_cannot_be_served_as_strict_json_are_refused_before_anything_is_stored() {
    let app = spawn_app().await;
    let deep = format!("{}1{}", "{\"a\":".repeat(127), "}".repeat(127));
    for (what, metrics) in [
        ("1e400", r#"{"likes": 1e400}"#.to_string()),
        (
            "-1e400 in an array",
            r#"{"counts": [1, -1e400]}"#.to_string(),
        ),
        ("127 levels", deep.clone()),
        ("lone surrogate", r#"{"a": "\ud800"}"#.to_string()),
        ("not an object", "[1, 2]".to_string()),
    ] {
        let body = format!(
            r#"{{"leaderId": 1, "platform": "news", "content": "c", "platformPostId": "p-1", "metrics": {metrics}}}"#
        );
        let res = admin_raw(&app, Method::POST, "/api/posts", body).await;
        assert_eq!(res.status(), 400, "{what}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"], "invalid_post", "{what}: {err}");
    }
    // Nothing was stored: the feed is empty and the same platformPostId is still free.
    let (_, feed) = app.get_json("/api/feed").await;
    assert_eq!(feed["total"], 0);
    let created = app
        .create_post(&json!({"leaderId": 1, "platform": "news", "content": "c", "platformPostId": "p-1", "metrics": {"likes": 1e300}}))
        .await;
    let id = id_of(&created["id"]);

    // PUT is held to the same rule, and a refused PUT changes nothing.
    let res = admin_raw(
        &app,
        Method::PUT,
        &format!("/api/posts/{id}"),
        format!(r#"{{"content": "changed", "metrics": {deep}}}"#),
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = admin_raw(
        &app,
        Method::PUT,
        &format!("/api/posts/{id}"),
        r#"{"metrics": {"likes": 1e400}}"#.to_string(),
    )
    .await;
    assert_eq!(res.status(), 400);
    // Every page that shows the post still parses as strict JSON and shows it unchanged.
    for path in [
        format!("/api/posts/{id}"),
        "/api/feed".to_string(),
        "/api/posts".to_string(),
        "/api/dashboard".to_string(),
    ] {
        let res = app.get(&path).await;
        assert_eq!(res.status(), 200, "{path}");
        let text = res.text().await.unwrap();
        let _: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(text.contains("\"content\":\"c\""), "{path}: {text}");
        assert!(!text.contains("changed"), "{path}");
    }
}
