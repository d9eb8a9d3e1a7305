//! The original system's clients, from their point of view (issue 10): they type every
//! `id`, `leaderId` and `postId` as a string, send ids as strings (HTML forms send
//! nothing else), and read the original's spellings.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{id_of, spawn_app, TestApp};

/// Every id in `v` (at any depth) named `id`, `leaderId` or `postId` is a JSON string.
fn assert_ids_are_strings(v: &Value, what: &str) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if matches!(k.as_str(), "id" | "leaderId" | "postId") && !x.is_null() {
                    assert!(x.is_string(), "{what}: {k} is {x}, not a string");
                }
                assert_ids_are_strings(x, what);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| assert_ids_are_strings(x, what)),
        _ => {}
    }
}

async fn admin_form(app: &TestApp, method: Method, path: &str, form: &str) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(app.admin_token())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .expect("request")
}

#[actix_web::test]
async fn every_id_is_a_string_and_string_ids_are_accepted_everywhere() {
    let app = spawn_app().await;
    let (_, leaders) = app.get_json("/api/leaders").await;
    let leader = leaders[0]["id"]
        .as_str()
        .expect("leader id string")
        .to_string();
    // A client that sends the ids it was given: strings, in the body, query and path.
    let post = app
        .create_post(&json!({"leaderId": leader, "platform": "news", "content": "check me", "requiresReview": true}))
        .await;
    assert_ids_are_strings(&post, "created post");
    assert_eq!(post["leaderId"], leader.as_str());
    assert_eq!(post["reviewItem"]["postId"], post["id"]);
    let post_id = post["id"].as_str().unwrap().to_string();

    for path in [
        "/api/leaders".to_string(),
        format!("/api/leaders/{leader}"),
        format!("/api/posts?leaderId={leader}"),
        format!("/api/posts/paginated?leaderId={leader}&limit=5"),
        format!("/api/posts/{post_id}"),
        format!("/api/feed?leaders={leader}"),
        "/api/dashboard".to_string(),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200, "{path}");
        assert_ids_are_strings(&body, &path);
    }
    let (_, page) = app.get_json(&format!("/api/posts?leaderId={leader}")).await;
    assert_eq!(page[0]["id"], post_id.as_str());
    let res = app
        .client
        .get(app.url("/api/review"))
        .bearer_auth(app.reviewer_token())
        .send()
        .await
        .unwrap();
    let items: Value = res.json().await.unwrap();
    assert_ids_are_strings(&items, "review queue");
    let item_id = items[0]["id"].as_str().unwrap().to_string();

    // A number where the original sent a string is the same id.
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/posts/{post_id}"),
            &json!({"leaderId": id_of(&json!(leader)), "content": "moved"}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_ids_are_strings(&updated, "updated post");
    let res = app
        .client
        .post(app.url(&format!("/api/review/{item_id}/approve")))
        .bearer_auth(app.reviewer_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_ids_are_strings(&res.json::<Value>().await.unwrap(), "decided item");

    // The OpenAPI document says so too.
    let (_, doc) = app.get_json("/api/openapi.json").await;
    let post_schema = &doc["components"]["schemas"]["PostJson"]["properties"];
    assert_eq!(post_schema["id"]["type"], "string");
    assert_eq!(post_schema["leaderId"]["type"], "string");
    let review_schema = &doc["components"]["schemas"]["ReviewJson"]["properties"];
    assert_eq!(review_schema["postId"]["type"], "string");
}

#[actix_web::test]
async fn a_form_encoded_post_names_its_leader_by_number() {
    let app = spawn_app().await;
    let res = admin_form(
        &app,
        Method::POST,
        "/api/posts",
        "leaderId=2&platform=news&content=from+a+form&requiresReview=true&metrics=%7B%22likes%22%3A3%7D",
    )
    .await;
    assert_eq!(res.status(), 201);
    let post: Value = res.json().await.unwrap();
    assert_eq!(post["leaderId"], "2");
    assert_eq!(post["content"], "from a form");
    assert_eq!(post["metrics"]["likes"], 3);
    assert!(post["reviewItem"]["id"].is_string());

    let res = admin_form(
        &app,
        Method::POST,
        "/api/leaders",
        "name=Form+Leader&handles.x=%40formleader&trackingTopics=roads&trackingTopics=water",
    )
    .await;
    assert_eq!(res.status(), 201);
    let leader: Value = res.json().await.unwrap();
    assert_eq!(leader["handles"]["x"], "formleader");
    assert_eq!(leader["trackingTopics"], json!(["roads", "water"]));
    let id = id_of(&leader["id"]);
    let res = admin_form(
        &app,
        Method::PUT,
        &format!("/api/leaders/{id}"),
        "name=Renamed",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["name"], "Renamed");

    // A form the handler cannot read is a JSON 400, like a bad JSON body.
    let res = admin_form(&app, Method::POST, "/api/posts", "leaderId=2&platform=news").await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_body");
}

#[actix_web::test]
async fn the_original_vocabulary_and_the_whole_review_queue() {
    let app = spawn_app().await;
    // The original's default and its approved spelling; Amber's old spellings still read.
    let plain = app
        .create_post(&json!({"leaderId": "1", "platform": "news", "content": "plain"}))
        .await;
    assert_eq!(plain["verificationStatus"], "Needs Review");
    for (sent, shown) in [
        ("Verified", "Verified"),
        ("Needs Review", "Needs Review"),
        ("Approved", "Verified"),
        ("Unverified", "Needs Review"),
        ("Rejected", "Rejected"),
    ] {
        let post = app
            .create_post(&json!({"leaderId": "1", "platform": "news", "content": sent, "verificationStatus": sent}))
            .await;
        assert_eq!(post["verificationStatus"], shown, "{sent}");
    }
    let res = app
        .admin_post(
            "/api/posts",
            &json!({"leaderId": "1", "platform": "news", "content": "x", "verificationStatus": "Maybe"}),
        )
        .await;
    assert_eq!(res.status(), 400);

    // Three items; the first is decided last, so it is the most recently updated.
    let mut items = Vec::new();
    for i in 0..3 {
        let post = app
            .create_post(&json!({"leaderId": "1", "platform": "news", "content": format!("review {i}"), "requiresReview": true}))
            .await;
        assert_eq!(post["verificationStatus"], "Needs Review");
        items.push(post["reviewItem"]["id"].as_str().unwrap().to_string());
    }
    let res = app
        .client
        .post(app.url(&format!("/api/review/{}/approve", items[0])))
        .bearer_auth(app.reviewer_token())
        .send()
        .await
        .unwrap();
    let decided: Value = res.json().await.unwrap();
    assert_eq!(decided["post"]["verificationStatus"], "Verified");
    let queue: Value = app
        .get_auth("/api/review", &app.reviewer_token())
        .await
        .json()
        .await
        .unwrap();
    let order: Vec<&str> = queue
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [items[0].as_str(), items[2].as_str(), items[1].as_str()],
        "every item, most recently updated first"
    );
    let pending: Value = app
        .get_auth("/api/review?state=pending", &app.reviewer_token())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending.as_array().unwrap().len(), 2, "state= still filters");
}

#[actix_web::test]
async fn refreshing_a_leader_without_an_x_handle_is_200_with_no_posts_and_requests_log_the_original_fields(
) {
    let app = spawn_app().await;
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": "No Handle", "handles": {"facebook": "nh"}}),
        )
        .await;
    let leader: Value = res.json().await.unwrap();
    let id = leader["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/api/leaders/{id}/refresh")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"posts": [], "origin": "none"})
    );
    let line = crate::helpers::eventually(
        std::time::Duration::from_secs(10),
        "the refresh logged",
        || async {
            app.logs()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["path"] == format!("/api/leaders/{id}/refresh"))
        },
    )
    .await;
    assert_eq!(line["event"], "request", "{line}");
    assert!(line["durationMs"].is_number(), "{line}");
}

/// A backup as the original's rows give it: UUID ids, `leaderId`/`postId` naming UUIDs,
/// `"Needs Review"`.
fn uuid_backup() -> String {
    let lines = [
        r#"{"kind":"leader","id":"6f1c2a8e-0b7d-4a57-9a3e-1d2c3b4a5f60","name":"Ada Original","handles":{"x":"ada_orig"},"trackingTopics":["energy"],"createdAt":"2025-03-01T10:00:00Z"}"#,
        r#"{"kind":"leader","id":"leader-two","name":"Bo Original","createdAt":"2025-03-02T10:00:00Z"}"#,
        r#"{"kind":"post","id":"9b0e4c1d-33aa-4f8e-8c2b-7a6d5e4f3c21","leaderId":"6f1c2a8e-0b7d-4a57-9a3e-1d2c3b4a5f60","platform":"X","content":"from the original","timestamp":"2025-03-03T09:00:00Z","sentiment":"Positive","metrics":{"likes":4},"platformPostId":"1890000000000000001","verificationStatus":"Needs Review"}"#,
        r#"{"kind":"post","id":"c4d5e6f7-0000-4000-8000-000000000002","leaderId":"leader-two","platform":"news","content":"a news item","timestamp":"2025-03-04T09:00:00Z","sentiment":"Neutral","verificationStatus":"Verified"}"#,
        r#"{"kind":"review","id":"a1b2c3d4-1111-4222-8333-444455556666","postId":"9b0e4c1d-33aa-4f8e-8c2b-7a6d5e4f3c21","state":"pending","updatedAt":"2025-03-03T09:05:00Z"}"#,
        r#"{"kind":"trailer","records":5,"damagedSkipped":0}"#,
    ];
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[actix_web::test]
async fn an_original_backup_with_uuids_imports_once_and_answers_at_its_old_ids() {
    let dir = tempfile::tempdir().unwrap();
    for round in ["first", "second"] {
        let out = crate::cli::import(dir.path(), &uuid_backup());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{round} import: {stderr}");
        let expected = if round == "first" {
            "imported 2 leaders, 2 posts, 1 review items; skipped 0"
        } else {
            "imported 0 leaders, 0 posts, 0 review items; skipped 5"
        };
        assert!(stderr.contains(expected), "{round} import: {stderr}");
    }
    let app = crate::helpers::spawn_on(dir.path()).await;

    let (status, ada) = app
        .get_json("/api/leaders/6f1c2a8e-0b7d-4a57-9a3e-1d2c3b4a5f60")
        .await;
    assert_eq!(status, 200, "{ada}");
    assert_eq!(ada["name"], "Ada Original");
    assert_eq!(ada["handles"]["x"], "ada_orig");
    let ada_id = ada["id"].as_str().expect("string id").to_string();
    assert!(
        ada_id.bytes().all(|b| b.is_ascii_digit()),
        "fresh id {ada_id}"
    );
    let (_, bo) = app.get_json("/api/leaders/leader-two").await;
    assert_eq!(bo["name"], "Bo Original");

    // The post answers at its old id, its leaderId remapped to the leader's fresh id.
    let (status, post) = app
        .get_json("/api/posts/9b0e4c1d-33aa-4f8e-8c2b-7a6d5e4f3c21")
        .await;
    assert_eq!(status, 200, "{post}");
    assert_eq!(post["leaderId"], ada_id.as_str());
    assert_eq!(post["content"], "from the original");
    assert_eq!(post["verificationStatus"], "Needs Review");
    assert_eq!(post["metrics"]["likes"], 4);
    let (_, news) = app
        .get_json("/api/posts/c4d5e6f7-0000-4000-8000-000000000002")
        .await;
    assert_eq!(news["verificationStatus"], "Verified");
    // Filters by the old leader id find the leader's posts, once each.
    let (_, posts) = app
        .get_json("/api/posts?leaderId=6f1c2a8e-0b7d-4a57-9a3e-1d2c3b4a5f60")
        .await;
    let posts = posts.as_array().unwrap();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["id"], post["id"]);

    // The review item, remapped to the post, is decided at its old id.
    let res = app
        .client
        .post(app.url("/api/review/a1b2c3d4-1111-4222-8333-444455556666/approve"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let review: Value = res.json().await.unwrap();
    assert_eq!(review["postId"], post["id"]);
    assert_eq!(review["state"], "approved");
    let (_, post) = app
        .get_json("/api/posts/9b0e4c1d-33aa-4f8e-8c2b-7a6d5e4f3c21")
        .await;
    assert_eq!(post["verificationStatus"], "Verified");

    // An id never imported still names nothing.
    let (status, _) = app
        .get_json("/api/leaders/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
}

/// Refreshes a leader (X answers; no cooldown in these tests) and returns its posts.
async fn refresh_and_list(app: &TestApp, leader: &str) -> Vec<Value> {
    let res = app
        .client
        .post(app.url(&format!("/api/leaders/{leader}/refresh")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let (_, posts) = app.get_json(&format!("/api/posts?leaderId={leader}")).await;
    posts.as_array().unwrap().clone()
}

fn by_x_id<'a>(posts: &'a [Value], id: &str) -> &'a Value {
    posts
        .iter()
        .find(|p| p["platformPostId"] == id)
        .unwrap_or_else(|| panic!("no post {id} in {posts:?}"))
}

#[actix_web::test]
async fn post_metrics_carry_the_originals_fields_and_a_post_named_by_its_x_id_dedups_against_ingestion(
) {
    use amber::x_api::fake::{username, CountsUpdate};
    let (fake, app) = crate::helpers::spawn_on_fake_x(
        1,
        3,
        &[
            ("SEED_LEADERS", "false"),
            ("X_REFRESH_COOLDOWN_SECONDS", "0"),
        ],
    )
    .await;
    let handle = username(0);
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": "Ada", "handles": {"x": handle}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let leader = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let on_x = fake.post_ids(&handle);

    // The original's bridge posts an X post naming its id only inside `metrics`.
    let bridged = app
        .create_post(
            &json!({"leaderId": leader, "platform": "X", "content": "bridged",
            "metrics": {"externalId": on_x[0], "likes": 1, "source": "bridge"}}),
        )
        .await;
    assert_eq!(bridged["platformPostId"], on_x[0].as_str(), "{bridged}");
    let m = &bridged["metrics"];
    assert_eq!(m["platformPostId"], on_x[0].as_str(), "{m}");
    assert_eq!(m["externalId"], on_x[0].as_str(), "{m}");
    assert_eq!(
        m["link"],
        format!("https://x.com/{handle}/status/{}", on_x[0]),
        "{m}"
    );
    assert_eq!(m["revision"], 0, "{m}");
    assert_eq!(m["source"], "bridge", "{m}");
    // The same X id again, named by `metrics.platformPostId` (as a number): a conflict.
    let res = app
        .admin_post(
            "/api/posts",
            &json!({"leaderId": leader, "platform": "X", "content": "again",
                "metrics": {"platformPostId": on_x[0].parse::<u64>().unwrap()}}),
        )
        .await;
    assert_eq!(res.status(), 409);
    // A post without any X id reads `revision` too.
    let plain = app
        .create_post(&json!({"leaderId": leader, "platform": "news", "content": "plain"}))
        .await;
    assert_eq!(plain["metrics"], json!({"revision": 0}));

    // Ingestion finds the bridged post stored: no second copy; X's counts, one revision.
    fake.set_counts(
        &on_x[0],
        &CountsUpdate {
            like_count: Some(77),
            ..Default::default()
        },
    )
    .unwrap();
    let posts = refresh_and_list(&app, &leader).await;
    assert_eq!(posts.len(), 4, "3 on X (one bridged) and the news item");
    let p = by_x_id(&posts, &on_x[0]);
    assert_eq!(p["id"], bridged["id"]);
    assert_eq!(p["content"], "bridged");
    assert_eq!(p["metrics"]["likes"], 77, "{p}");
    assert_eq!(p["metrics"]["revision"], 1, "{p}");
    assert_eq!(p["metrics"]["source"], "bridge", "{p}");
    // An ingested post: both id names, its permalink, never changed.
    let ingested = by_x_id(&posts, &on_x[1]);
    let m = &ingested["metrics"];
    assert_eq!(m["externalId"], on_x[1].as_str(), "{m}");
    assert_eq!(m["platformPostId"], on_x[1].as_str(), "{m}");
    assert_eq!(
        m["link"],
        format!("https://x.com/{handle}/status/{}", on_x[1])
    );
    assert_eq!(m["revision"], 0, "{m}");

    // Today's post is read again by the next refresh: its moved counts are a revision;
    // unchanged counts are not.
    let today = fake.add_posts(&handle, 1)[0].clone();
    let posts = refresh_and_list(&app, &leader).await;
    assert_eq!(by_x_id(&posts, &today)["metrics"]["revision"], 0);
    fake.set_counts(
        &today,
        &CountsUpdate {
            like_count: Some(5000),
            reply_count: Some(12),
            retweet_count: Some(30),
            ..Default::default()
        },
    )
    .unwrap();
    let posts = refresh_and_list(&app, &leader).await;
    let m = &by_x_id(&posts, &today)["metrics"];
    assert_eq!(
        (&m["likes"], &m["comments"], &m["shares"], &m["revision"]),
        (&json!(5000), &json!(12), &json!(30), &json!(1)),
        "{m}"
    );
    let posts = refresh_and_list(&app, &leader).await;
    assert_eq!(by_x_id(&posts, &today)["metrics"]["revision"], 1);
    assert_eq!(posts.len(), 5);

    // A change through the API is a revision too.
    let id = bridged["id"].as_str().unwrap();
    let res = app
        .send_json(
            Method::PUT,
            &format!("/api/posts/{id}"),
            &json!({"content": "bridged, corrected"}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["metrics"]["revision"], 2);
}
