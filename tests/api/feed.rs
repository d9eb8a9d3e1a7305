//! The feed: page and cursor paging, filters, totals, post shape.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{id_of, spawn_app, TestApp};

/// Creates `n` posts spread over leaders 1..=3 and platforms, one minute apart.
async fn seed_posts(app: &TestApp, n: usize) {
    for i in 0..n {
        let platform = ["x", "news", "facebook"][i % 3];
        let mut body = json!({
            "leaderId": (i % 3) + 1,
            "platform": platform,
            "content": format!("post number {i}"),
            "timestamp": format!("2025-01-01T{:02}:{:02}:00Z", i / 60, i % 60),
        });
        if platform == "x" {
            body["platformPostId"] = json!(format!("{}", 1_000_000 + i));
        }
        app.create_post(&body).await;
    }
}

#[actix_web::test]
async fn feed_is_newest_first_with_totals_and_pages() {
    let app = spawn_app().await;
    seed_posts(&app, 25).await;
    let (status, page1) = app.get_json("/api/feed?page_size=10").await;
    assert_eq!(status, 200);
    assert_eq!(page1["total"], 25);
    assert_eq!(page1["page"], 1);
    assert_eq!(page1["page_size"], 10);
    assert_eq!(page1["has_next"], true);
    let posts = page1["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 10);
    assert_eq!(posts[0]["content"], "post number 24");
    let stamps: Vec<&str> = posts
        .iter()
        .map(|p| p["timestamp"].as_str().unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(stamps, sorted);

    let (_, page3) = app.get_json("/api/feed?page_size=10&page=3").await;
    assert_eq!(page3["posts"].as_array().unwrap().len(), 5);
    assert_eq!(page3["has_next"], false);
    assert_eq!(page3["next_cursor"], Value::Null);
    let (_, beyond) = app.get_json("/api/feed?page_size=10&page=9").await;
    assert_eq!(beyond["posts"], json!([]));
    assert_eq!(beyond["total"], 25);
}

#[actix_web::test]
async fn cursor_paging_visits_every_post_once() {
    let app = spawn_app().await;
    seed_posts(&app, 23).await;
    let mut seen = Vec::new();
    let mut url = "/api/feed?page_size=7".to_string();
    loop {
        let (status, page) = app.get_json(&url).await;
        assert_eq!(status, 200);
        for p in page["posts"].as_array().unwrap() {
            seen.push(id_of(&p["id"]));
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/api/feed?page_size=7&before={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 23);
}

#[actix_web::test]
async fn leader_and_source_filters_narrow_the_feed_and_its_total() {
    let app = spawn_app().await;
    seed_posts(&app, 30).await;
    let (_, x) = app.get_json("/api/feed?source=x").await;
    assert_eq!(x["total"], 10);
    assert!(x["posts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["platform"] == "X"));
    let (_, twitter) = app.get_json("/api/feed?source=twitter").await;
    assert_eq!(twitter["total"], 10);
    let (_, one) = app.get_json("/api/feed?leaders=2").await;
    assert_eq!(one["total"], 10);
    assert!(one["posts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["leaderId"] == "2"));
    let (_, two) = app.get_json("/api/feed?leaders=1,3&page_size=100").await;
    assert_eq!(two["total"], 20);
    assert_eq!(two["posts"].as_array().unwrap().len(), 20);
    // Leader 1 has only X posts in this seed (i % 3 == 0), so leader 1 + news is empty.
    let (_, none) = app.get_json("/api/feed?leaders=1&source=news").await;
    assert_eq!(none["total"], 0);
    let (_, combo) = app.get_json("/api/feed?leaders=1,2&source=x").await;
    assert_eq!(combo["total"], 10);
}

#[actix_web::test]
async fn x_posts_carry_permalink_and_author() {
    let app = spawn_app().await;
    app.create_post(
        &json!({"leaderId": 1, "platform": "x", "content": "hello", "platformPostId": "1799"}),
    )
    .await;
    let (_, feed) = app.get_json("/api/feed").await;
    let post = &feed["posts"][0];
    assert_eq!(post["permalink"], "https://x.com/vishnudeosai1/status/1799");
    assert_eq!(post["author"]["handle"], "vishnudeosai1");
    assert_eq!(post["author"]["name"], "Vishnu Deo Sai");
    assert_eq!(post["leaderName"], "Vishnu Deo Sai");
    for field in [
        "id",
        "leaderId",
        "leaderName",
        "platform",
        "content",
        "timestamp",
        "sentiment",
        "metrics",
        "platformPostId",
        "verificationStatus",
        "permalink",
        "author",
    ] {
        assert!(post.get(field).is_some(), "missing {field}");
    }
}

#[actix_web::test]
async fn kinds_filter_the_feed_and_every_post_says_its_kind() {
    let app = spawn_app().await;
    seed_posts(&app, 7).await;
    let (status, all) = app.get_json("/api/feed").await;
    assert_eq!(status, 200);
    assert_eq!(all["total"], 7);
    for post in all["posts"].as_array().unwrap() {
        assert_eq!(post["kind"], "post", "{post}");
        // A client's metrics, as given (none), with Amber's entries.
        let mut want = json!({"revision": 0});
        if post["platform"] == "X" {
            want["platformPostId"] = post["platformPostId"].clone();
            want["link"] = post["permalink"].clone();
        }
        assert_eq!(post["metrics"], want);
        assert_eq!(post["media"], json!([]));
        assert!(post["referencedPost"].is_null() && post["repostedBy"].is_null());
        assert!(post["conversationId"].is_null() && post["inReplyToUserId"].is_null());
    }
    let (_, posts) = app.get_json("/api/feed?kinds=post,quote").await;
    assert_eq!(posts["total"], 7);
    assert_eq!(posts["posts"], all["posts"]);
    let (status, none) = app.get_json("/api/feed?kinds=repost,reply").await;
    assert_eq!(status, 200);
    assert_eq!(
        (none["total"].clone(), none["posts"].clone()),
        (json!(0), json!([]))
    );
    let (_, some) = app
        .get_json("/api/feed?kinds=reply,post&leaders=1&source=x&page_size=2")
        .await;
    assert_eq!(
        (some["total"].clone(), some["has_next"].clone()),
        (json!(3), json!(true))
    );
}

#[actix_web::test]
async fn bad_feed_parameters_are_400_with_a_reason() {
    let app = spawn_app().await;
    for q in [
        "page=0",
        "page=-1",
        "page=abc",
        "page_size=0",
        "page_size=101",
        "source=myspace",
        "leaders=a,b",
        "before=garbage",
        "page=2&before=1-x",
        "leaders=1,,2",
        "leaders=",
        "source=",
        "source=X",
        "page= 2",
        "page=+2",
        "page_size=1e3",
        "kinds=",
        "kinds=tweet",
        "kinds=Post",
        "kinds=post,",
        "kinds=post,,quote",
        "kinds=post%20",
        "page=1&page=1",
        "page_size=5&leaders=1&page_size=5",
    ] {
        let (status, body) = app.get_json(&format!("/api/feed?{q}")).await;
        assert_eq!(status, 400, "{q}");
        assert!(
            body["error"].as_str().unwrap().starts_with("invalid_"),
            "{q}: {body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
}

#[actix_web::test]
async fn dashboard_has_leaders_and_newest_posts() {
    let app = spawn_app().await;
    seed_posts(&app, 3).await;
    let (status, body) = app.get_json("/api/dashboard").await;
    assert_eq!(status, 200);
    assert_eq!(body["leaders"].as_array().unwrap().len(), 11);
    assert_eq!(body["posts"].as_array().unwrap().len(), 3);
    assert_eq!(body["posts"][0]["content"], "post number 2");
}

#[actix_web::test]
async fn with_a_cursor_the_page_number_is_ignored() {
    let app = spawn_app().await;
    let (status, body) = app
        .get_json("/api/feed?page=3&before=9999999999999-1")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["page"], serde_json::Value::Null);
}

/// Every shape of page a reader may ask for, so every post has been served (and its
/// rendering kept) before the changes below.
const SHAPES: [&str; 5] = [
    "/api/feed?page_size=100",
    "/api/feed?page_size=5&page=2",
    "/api/feed?leaders=1&page_size=100",
    "/api/feed?leaders=1,2&source=x&page_size=100",
    "/api/feed?kinds=post&page_size=100",
];

/// Kept renderings never show a post as it was: an edit, a deletion, a leader's new name
/// and handle show on every page shape at once, and a restart starts from the data.
#[actix_web::test]
async fn kept_renderings_follow_edits_deletions_and_leader_changes() {
    use reqwest::Method;
    let mut app = spawn_app().await;
    seed_posts(&app, 30).await;
    for _ in 0..2 {
        for shape in SHAPES {
            assert_eq!(app.get_json(shape).await.0, 200);
        }
    }
    let (_, all) = app.get_json("/api/feed?page_size=100").await;
    let posts = all["posts"].as_array().unwrap();
    let of_leader = |l: u64| -> Vec<&Value> {
        posts
            .iter()
            .filter(|p| id_of(&p["leaderId"]) == l)
            .collect()
    };
    let edited = id_of(&of_leader(2)[0]["id"]);
    let deleted = id_of(&of_leader(3)[0]["id"]);
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/posts/{edited}"),
            &json!({"content": "edited after it was rendered"}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.admin_delete(&format!("/api/posts/{deleted}"))
            .await
            .status(),
        200
    );
    let res = app
        .send_json(
            Method::PUT,
            "/api/leaders/1",
            &json!({"name": "Renamed Leader", "handles": {"x": "renamed1"}}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    for round in 0..2 {
        for shape in SHAPES {
            let (status, page) = app.get_json(shape).await;
            assert_eq!(status, 200, "{shape}");
            for p in page["posts"].as_array().unwrap() {
                let id = id_of(&p["id"]);
                assert_ne!(id, deleted, "{shape}: a deleted post");
                if id == edited {
                    assert_eq!(p["content"], "edited after it was rendered", "{shape}");
                }
                match id_of(&p["leaderId"]) {
                    1 => {
                        assert_eq!(p["leaderName"], "Renamed Leader", "{shape}");
                        if p["platform"] == "x" {
                            let link = p["permalink"].as_str().unwrap();
                            assert!(
                                link.starts_with("https://x.com/renamed1/"),
                                "{shape}: {link}"
                            );
                            assert_eq!(p["author"]["handle"], "renamed1", "{shape}");
                        }
                    }
                    _ => assert_ne!(p["leaderName"], "Renamed Leader", "{shape}"),
                }
            }
        }
        if round == 0 {
            app = app.restart().await;
        }
    }
    let (_, after) = app.get_json("/api/feed?page_size=100").await;
    assert_eq!(after["total"], 29);
}
