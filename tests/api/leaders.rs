//! Leaders CRUD and the seed list.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{id_of, spawn_app, spawn_app_with};

#[actix_web::test]
async fn seed_leaders_load_once_and_survive_restart_without_duplicates() {
    let app = spawn_app().await;
    let (_, leaders) = app.get_json("/api/leaders").await;
    assert_eq!(leaders.as_array().unwrap().len(), 11);
    assert_eq!(leaders[0]["name"], "Vishnu Deo Sai");
    assert_eq!(leaders[0]["handles"]["x"], "vishnudeosai1");
    assert_eq!(leaders[0]["trackingTopics"][0], "tribal welfare");
    let app = app.restart().await;
    let (_, leaders) = app.get_json("/api/leaders").await;
    assert_eq!(leaders.as_array().unwrap().len(), 11);
}

#[actix_web::test]
async fn deleting_every_seed_leader_does_not_bring_them_back_on_restart() {
    let app = spawn_app().await;
    for id in 1..=11 {
        let res = app.admin_delete(&format!("/api/leaders/{id}")).await;
        assert_eq!(res.status(), 200);
    }
    let app = app.restart().await;
    let (_, leaders) = app.get_json("/api/leaders").await;
    assert_eq!(leaders, json!([]));
}

#[actix_web::test]
async fn seed_leaders_false_skips_the_seed() {
    let app = spawn_app_with(&[("SEED_LEADERS", "false")]).await;
    let (_, leaders) = app.get_json("/api/leaders").await;
    assert_eq!(leaders, json!([]));
}

#[actix_web::test]
async fn leader_crud_round_trip() {
    let app = spawn_app_with(&[("SEED_LEADERS", "false")]).await;
    let res = app
        .admin_post("/api/leaders", &json!({"name": "Ada", "handles": {"x": "@ada", "facebook": "ada.fb"}, "trackingTopics": ["math"], "avatarUrl": "https://pbs.twimg.com/a.jpg"}))
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = id_of(&created["id"]);
    assert_eq!(created["handles"]["x"], "ada");
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));

    let (status, got) = app.get_json(&format!("/api/leaders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got, created);

    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/leaders/{id}"),
            &json!({"name": "Ada L."}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["name"], "Ada L.");
    assert_eq!(
        updated["handles"]["x"], "ada",
        "absent fields keep their values"
    );
    assert_eq!(updated["createdAt"], created["createdAt"]);

    let res = app.admin_delete(&format!("/api/leaders/{id}")).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"success": true}));
    assert_eq!(app.get(&format!("/api/leaders/{id}")).await.status(), 404);
}

#[actix_web::test]
async fn invalid_leaders_are_refused_with_400() {
    let app = spawn_app().await;
    for body in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "A", "handles": {"x": "has space"}}),
        json!({"name": "A", "avatarUrl": "javascript:alert(1)"}),
        json!({"name": 5}),
    ] {
        let res = app.admin_post("/api/leaders", &body).await;
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert!(err["error"].is_string() && err["message"].is_string());
    }
}

#[actix_web::test]
async fn deleting_a_leader_removes_its_posts_reviews_and_dedup_keys() {
    let app = spawn_app().await;
    let keep = app
        .create_post(
            &json!({"leaderId": 2, "platform": "x", "content": "stays", "platformPostId": "900"}),
        )
        .await;
    app.create_post(&json!({"leaderId": 1, "platform": "x", "content": "goes", "platformPostId": "100", "requiresReview": true})).await;
    app.create_post(&json!({"leaderId": 1, "platform": "news", "content": "goes too"}))
        .await;
    let res = app.admin_delete("/api/leaders/1").await;
    assert_eq!(res.status(), 200);

    let (_, feed) = app.get_json("/api/feed").await;
    assert_eq!(feed["total"], 1);
    assert_eq!(feed["posts"][0]["id"], keep["id"]);
    let res = app
        .get_auth("/api/review?state=all", &app.reviewer_token())
        .await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!([]));
    let (_, health) = app.get_json("/api/health").await;
    assert_eq!(health["checks"]["database"]["stats"]["reviewItems"], 0);
    assert_eq!(health["checks"]["database"]["stats"]["posts"], 1);

    // The dedup key went with the post: the same X id can be stored again for another leader.
    let res = app
        .admin_post(
            "/api/posts",
            &json!({"leaderId": 3, "platform": "x", "content": "again", "platformPostId": "100"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    // ... while a live one still conflicts.
    let res = app
        .admin_post(
            "/api/posts",
            &json!({"leaderId": 3, "platform": "x", "content": "dup", "platformPostId": "900"}),
        )
        .await;
    assert_eq!(res.status(), 409);
}
