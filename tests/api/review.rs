//! The review queue and reviewer attribution.

use serde_json::{json, Value};

use crate::helpers::{id_of, spawn_app};

#[actix_web::test]
async fn a_reviewer_rejects_with_notes_and_is_recorded() {
    let app = spawn_app().await;
    let post = app.create_post(&json!({"leaderId": 1, "platform": "news", "content": "check me", "requiresReview": true})).await;
    assert_eq!(post["verificationStatus"], "Needs Review");
    let item_id = id_of(&post["reviewItem"]["id"]);

    let res = app.get_auth("/api/review", &app.reviewer_token()).await;
    let queue: Value = res.json().await.unwrap();
    assert_eq!(queue.as_array().unwrap().len(), 1);
    assert_eq!(queue[0]["post"]["content"], "check me");
    assert_eq!(queue[0]["state"], "pending");

    let res = app
        .send_json(
            reqwest::Method::POST,
            &format!("/api/review/{item_id}/reject"),
            &json!({"notes": "not accurate"}),
            Some(&app.reviewer_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let item: Value = res.json().await.unwrap();
    assert_eq!(item["state"], "rejected");
    assert_eq!(item["notes"], "not accurate");
    assert_eq!(item["reviewedBy"], "test-reviewer");
    assert!(item["reviewedAt"].is_string());
    assert_eq!(item["post"]["verificationStatus"], "Rejected");

    let res = app
        .get_auth("/api/review?state=pending", &app.reviewer_token())
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!([]),
        "no longer pending"
    );
    let res = app
        .get_auth("/api/review?state=rejected", &app.admin_token())
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap().as_array().unwrap().len(),
        1
    );
}

#[actix_web::test]
async fn an_admin_approves_without_a_body() {
    let app = spawn_app().await;
    let post = app
        .create_post(
            &json!({"leaderId": 1, "platform": "news", "content": "ok", "requiresReview": true}),
        )
        .await;
    let item_id = id_of(&post["reviewItem"]["id"]);
    let res = app
        .client
        .post(app.url(&format!("/api/review/{item_id}/approve")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let item: Value = res.json().await.unwrap();
    assert_eq!(item["state"], "approved");
    assert_eq!(item["reviewedBy"], "test-admin");
    let (_, got) = app
        .get_json(&format!("/api/posts/{}", id_of(&post["id"])))
        .await;
    assert_eq!(got["verificationStatus"], "Verified");
}

#[actix_web::test]
async fn review_errors_are_clear() {
    let app = spawn_app().await;
    let token = app.reviewer_token();
    let res = app
        .send_json(
            reqwest::Method::POST,
            "/api/review/999/approve",
            &json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .client
        .post(app.url("/api/review/1/approve"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(res.status() == 400 || res.status() == 404);
    let res = app.get_auth("/api/review?state=bogus", &token).await;
    assert_eq!(res.status(), 400);
    assert_eq!(app.get("/api/review").await.status(), 401);
}
