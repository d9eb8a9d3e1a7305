//! The X Activity API stream, black-box: the real binary against the fake's Activity API.

use std::time::{Duration, Instant};

use amber::x_api::fake::{username, FakeScript, FakeX, StreamFault};
use serde_json::{json, Value};

use crate::helpers::{eventually, id_of, redis_server, spawn_app_with, spawn_on_with, TestApp};

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
    server_with(fake, &[]).await
}

async fn server_with(fake: &FakeX, extra: &[(&str, &str)]) -> TestApp {
    let token = fake.token();
    let mut env = vec![
        ("X_API_BASE_URL", fake.base_url()),
        ("TWITTER_BEARER_TOKEN", token.as_str()),
        ("SEED_LEADERS", "false"),
        ("X_ACTIVITY_STREAM", "true"),
        ("X_ACTIVITY_STALL_SECONDS", "2"),
        ("X_CIRCUIT_RESET_SECONDS", "2"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

async fn add_leader(app: &TestApp) -> u64 {
    add_leader_of(app, 0).await
}

/// Adds a leader for the fake's user `n`.
async fn add_leader_of(app: &TestApp, n: u32) -> u64 {
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": format!("Leader {n}"), "handles": {"x": format!("@{}", username(n))}}),
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

#[actix_rt::test]
async fn x_s_subscription_cap_is_respected_and_reported() {
    let fake = FakeX::start(FakeScript {
        users: 2,
        posts_per_user: 1,
        ..FakeScript::default()
    })
    .expect("fake X API");
    fake.set_keepalive(Duration::from_millis(200));
    // Two leaders want four subscriptions; the app may hold three.
    fake.set_subscription_cap(3);
    let app = server(&fake).await;
    add_leader_of(&app, 0).await;
    add_leader_of(&app, 1).await;
    let s = eventually(SETUP, "the cap reported", || async {
        let s = stream_status(&app).await;
        (s["subscriptions"]["cap_reached"] == true
            && s["subscriptions"]["wanted"] == 4
            && s["connected"] == true)
            .then_some(s)
    })
    .await;
    // X refused the fourth: Amber holds exactly what X holds and asked for no more.
    assert_eq!(fake.subscriptions().len(), 3, "{s}");
    assert_eq!(s["subscriptions"]["held"], 3, "{s}");
    assert_eq!(s["subscriptions"]["missing"], 1, "{s}");
    let (_, health) = app.get_json("/api/health").await;
    assert_eq!(
        health["checks"]["activity_stream"]["subscriptionCapReached"], true,
        "{health}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("amber_activity_subscriptions 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("amber_activity_subscriptions_missing 1"),
        "{metrics}"
    );
    // Room at X again (the app's tier raised, others' subscriptions deleted): the next
    // reconcile (any leader change) creates the missing one, and the report clears.
    fake.set_subscription_cap(4);
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": "Nobody on X", "handles": {"x": "@nobody_at_all"}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let s = eventually(SETUP, "the missing subscription created", || async {
        let s = stream_status(&app).await;
        (s["subscriptions"]["cap_reached"] == false && s["subscriptions"]["held"] == 4).then_some(s)
    })
    .await;
    assert_eq!(fake.subscriptions().len(), 4, "{s}");
    assert_eq!(s["subscriptions"]["missing"], 0, "{s}");
}

#[actix_rt::test]
async fn with_redis_only_the_lease_holder_streams_and_the_other_takes_over_after_a_kill() {
    // A redis-server of its own: no other test's keys, and the lease key is fixed.
    let Some((mut redis, url)) = redis_server() else {
        assert!(
            std::env::var("CI").is_err(),
            "redis-server is needed for the stream lease test under CI"
        );
        eprintln!("redis-server not installed: skipping the stream lease test");
        return;
    };
    eventually(Duration::from_secs(10), "redis up", || async {
        std::net::TcpStream::connect(url.trim_start_matches("redis://"))
            .ok()
            .map(|_| ())
    })
    .await;
    let fake = fake();
    let redis_env = [("REDIS_URL", url.as_str())];
    let mut a = server_with(&fake, &redis_env).await;
    add_leader(&a).await;
    until_streaming(&fake, &a).await;
    let b = server_with(&fake, &redis_env).await;
    add_leader(&b).await;
    // Polled by hand so that a timeout says where each instance was.
    let deadline = std::time::Instant::now() + SETUP;
    loop {
        let s = stream_status(&b).await;
        if s["state"] == "standby" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for b standing by: b {s}, a {}, X's stream {:?}",
            stream_status(&a).await,
            fake.activity_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // b holds no stream: one connection ever, a's.
    assert_eq!(fake.activity_stats().stream_connects, 1);
    assert_eq!(fake.activity_stats().open_streams, 1);
    assert_eq!(stream_status(&a).await["connected"], true);
    let id = fake.add_text_post(&username(0), "heard by a");
    assert_eq!(fake.emit_post_create(&id).unwrap().delivered, 1);
    eventually(Duration::from_secs(10), "the post in a's feed", || async {
        feed_ids(&a).await.contains(&id).then_some(())
    })
    .await;

    // a dies without releasing the lease: b takes the stream once the lease expires
    // (60 s) and replays what it missed in the meantime.
    let killed = Instant::now();
    a.kill9();
    let missed = fake.add_text_post(&username(0), "while nobody held the stream");
    fake.emit_post_create(&missed);
    eventually(
        SETUP + Duration::from_secs(90),
        "b holding the stream",
        || async {
            (stream_status(&b).await["connected"] == true
                && fake.activity_stats().open_streams == 1)
                .then_some(())
        },
    )
    .await;
    eprintln!("b took over {:?} after the kill", killed.elapsed());
    assert!(
        killed.elapsed() >= Duration::from_secs(30),
        "b took the stream before a's lease could expire"
    );
    assert_eq!(
        fake.subscriptions().len(),
        2,
        "no duplicates after the takeover"
    );
    eventually(
        Duration::from_secs(10),
        "b replayed what it missed",
        || async { feed_ids(&b).await.contains(&missed).then_some(()) },
    )
    .await;
    let live = fake.add_text_post(&username(0), "heard by b");
    eventually(Duration::from_secs(10), "b's feed has it", || async {
        fake.emit_post_create(&live);
        feed_ids(&b).await.contains(&live).then_some(())
    })
    .await;
    drop(b);
    let _ = redis.kill();
    let _ = redis.wait();
}

/// A burst cut by `kill -9`: every post the stream counted as stored before the kill is
/// in the store after it (a batch is counted only once its commit returned). The store is
/// reopened without the stream, so no replay can make up for a loss.
#[actix_rt::test]
async fn a_kill_mid_burst_loses_nothing_the_stream_counted_as_stored() {
    let fake = std::sync::Arc::new(fake());
    let mut app = server(&fake).await;
    add_leader(&app).await;
    until_streaming(&fake, &app).await;
    // The fake renders the whole burst before it writes a line: on its own thread, so
    // this test keeps polling meanwhile.
    let burst = std::thread::spawn({
        let fake = fake.clone();
        move || fake.emit_burst(&username(0), 10_000)
    });
    // Several batches in, the kill lands while the next ones are read, mapped and stored.
    let counted = eventually(SETUP, "a part of the burst stored", || async {
        let stored = stream_status(&app).await["posts_stored"]
            .as_u64()
            .unwrap_or(0);
        (stored >= 2_000).then_some(stored)
    })
    .await;
    app.kill9();
    let after = spawn_on_with(app.data_dir(), &[("SEED_LEADERS", "false")]).await;
    let (code, feed) = after.get_json("/api/feed?source=x&page_size=1").await;
    assert_eq!(code, 200);
    let total = feed["total"].as_u64().unwrap();
    assert_eq!(burst.join().unwrap().delivered, 10_000);
    eprintln!("counted {counted} before the kill, {total} stored after it");
    assert!(
        total >= counted,
        "{counted} counted as stored, {total} after kill -9"
    );
}
