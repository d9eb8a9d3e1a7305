//! The X Activity API stream, black-box: the real binary against the fake's Activity API.

use std::time::{Duration, Instant};

use amber::x_api::fake::{username, FakeScript, FakeX, StreamFault};
use serde_json::{json, Value};

use crate::helpers::{eventually, id_of, spawn_app_with, TestApp};

/// Set-up waits (spawn, reconcile, connect) on a loaded machine.
const SETUP: Duration = Duration::from_secs(60);

fn fake() -> FakeX {
    let fake = FakeX::start(FakeScript {
        users: 1,
        posts_per_user: 2,
        ..FakeScript::default()
    })
    .expect("fake X API");
    fake.set_keepalive(Duration::from_millis(200));
    fake
}

async fn server(fake: &FakeX) -> TestApp {
    let token = fake.token();
    spawn_app_with(&[
        ("X_API_BASE_URL", fake.base_url()),
        ("TWITTER_BEARER_TOKEN", token.as_str()),
        ("SEED_LEADERS", "false"),
        ("X_ACTIVITY_STREAM", "true"),
        ("X_ACTIVITY_STALL_SECONDS", "2"),
        ("X_CIRCUIT_RESET_SECONDS", "2"),
    ])
    .await
}

async fn add_leader(app: &TestApp) -> u64 {
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": "Leader 0", "handles": {"x": format!("@{}", username(0))}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    id_of(&res.json::<Value>().await.unwrap()["id"])
}

async fn stream_status(app: &TestApp) -> Value {
    let (code, body) = app.get_json("/api/ingestion/status").await;
    assert_eq!(code, 200);
    body["stream"].clone()
}

/// Waits until the fake holds both subscriptions and one stream is open.
async fn until_streaming(fake: &FakeX, app: &TestApp) {
    eventually(SETUP, "two subscriptions and an open stream", || async {
        let subs = fake.subscriptions();
        let s = stream_status(app).await;
        (subs.len() == 2 && fake.activity_stats().open_streams == 1 && s["connected"] == true)
            .then_some(())
    })
    .await;
}

async fn feed_ids(app: &TestApp) -> Vec<String> {
    let (code, feed) = app.get_json("/api/feed?source=x&page_size=100").await;
    assert_eq!(code, 200);
    feed["posts"]
        .as_array()
        .or_else(|| feed["items"].as_array())
        .or_else(|| feed["data"].as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            p["platformPostId"]
                .as_str()
                .or_else(|| p["platform_post_id"].as_str())
                .map(str::to_string)
        })
        .collect()
}

#[actix_rt::test]
async fn a_live_post_is_in_the_feed_within_a_second_and_a_deletion_keeps_it_out() {
    let fake = fake();
    let app = server(&fake).await;
    add_leader(&app).await;
    until_streaming(&fake, &app).await;
    let subs = fake.subscriptions();
    let mut types: Vec<&str> = subs.iter().map(|s| s.event_type.as_str()).collect();
    types.sort();
    assert_eq!(types, ["post.create", "post.delete"]);

    let id = fake.add_text_post(&username(0), "live from the stream");
    let emitted = Instant::now();
    assert!(fake.emit_post_create(&id).expect("a live post").matched);
    eventually(Duration::from_secs(10), "the post in the feed", || async {
        feed_ids(&app).await.contains(&id).then_some(())
    })
    .await;
    let latency = emitted.elapsed();
    // On an idle machine this is a few ms; the goal (≤ 1 s) is measured in BENCHMARKS.
    eprintln!("event to feed: {latency:?}");

    assert!(fake.emit_post_delete(&id).expect("a live post").matched);
    eventually(
        Duration::from_secs(10),
        "the post gone from the feed",
        || async { (!feed_ids(&app).await.contains(&id)).then_some(()) },
    )
    .await;
    let export = app
        .get_auth("/api/admin/export", &app.admin_token())
        .await
        .text()
        .await
        .unwrap();
    assert!(!export.contains(&id), "the deleted post is in the export");
    let s = stream_status(&app).await;
    assert_eq!(s["events"]["post.create"], 1);
    assert_eq!(s["events"]["post.delete"], 1);
    assert_eq!(s["deletions"], 1);

    // A backfill does not bring it back, even if X still served it (tombstone).
    let res = app
        .admin_post("/api/ingestion/trigger", &json!({"backfill": true}))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    eventually(SETUP, "the backfill to end", || async {
        let (_, st) = app.get_json("/api/ingestion/status").await;
        (st["running"] == false && !st["last_run"].is_null()).then_some(())
    })
    .await;
    let ids = feed_ids(&app).await;
    assert!(!ids.contains(&id));
    assert_eq!(
        ids.len(),
        2,
        "the leader's other posts were backfilled: {ids:?}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("amber_activity_stream_deletions 1"),
        "{metrics}"
    );
    assert!(metrics.contains("amber_activity_stream_connected 1"));
}

#[actix_rt::test]
async fn a_cut_a_stall_and_a_429_each_reconnect() {
    let fake = fake();
    let app = server(&fake).await;
    add_leader(&app).await;
    until_streaming(&fake, &app).await;
    let connects = |f: &FakeX| f.activity_stats().stream_connects;

    let before = connects(&fake);
    assert_eq!(fake.disconnect_streams(true), 1);
    eventually(SETUP, "a reconnect after a cut", || async {
        (connects(&fake) > before && fake.activity_stats().open_streams == 1).then_some(())
    })
    .await;

    let before = connects(&fake);
    assert_eq!(fake.stall_streams(), 1);
    // (The fake cannot see a stalled connection go: it writes nothing, so it still
    // counts it open. The client's new connection and status say it reconnected.)
    eventually(SETUP, "a reconnect after a stall", || async {
        let s = stream_status(&app).await;
        (connects(&fake) > before && s["connected"] == true && s["reconnects"] == 2).then_some(())
    })
    .await;

    fake.inject_stream_fault(
        StreamFault::RateLimited {
            reset_in: Duration::from_secs(2),
        },
        Some(1),
    );
    assert!(fake.disconnect_streams(false) >= 1);
    eventually(SETUP, "a reconnect after the 429's reset", || async {
        (fake.activity_stats().stream_faults_served == 1 && fake.activity_stats().open_streams == 1)
            .then_some(())
    })
    .await;
    // Still delivering after all that.
    let id = fake.add_text_post(&username(0), "after the storms");
    eventually(Duration::from_secs(10), "the post in the feed", || async {
        fake.emit_post_create(&id);
        feed_ids(&app).await.contains(&id).then_some(())
    })
    .await;
    let s = stream_status(&app).await;
    assert!(s["reconnects"].as_u64().unwrap() >= 3, "{s}");
}

#[actix_rt::test]
async fn leaders_added_and_removed_move_subscriptions_and_a_kill_leaves_no_orphan() {
    let fake = fake();
    let mut app = server(&fake).await;
    let leader = add_leader(&app).await;
    until_streaming(&fake, &app).await;
    let id = fake.add_text_post(&username(0), "stored before the crash");
    assert!(fake.emit_post_create(&id).unwrap().matched);
    eventually(Duration::from_secs(10), "the post in the feed", || async {
        feed_ids(&app).await.contains(&id).then_some(())
    })
    .await;

    app.kill9();
    let app = app.restart().await;
    // The acknowledged post survived; the restart reconciled: still exactly two.
    assert!(feed_ids(&app).await.contains(&id));
    until_streaming(&fake, &app).await;
    assert_eq!(fake.subscriptions().len(), 2);

    let res = app.admin_delete(&format!("/api/leaders/{leader}")).await;
    assert_eq!(res.status(), 200);
    eventually(SETUP, "the subscriptions removed", || async {
        fake.subscriptions().is_empty().then_some(())
    })
    .await;
    add_leader(&app).await;
    eventually(SETUP, "the subscriptions created again", || async {
        (fake.subscriptions().len() == 2).then_some(())
    })
    .await;
}
