//! Replication (`REPLICATION=redis`): several instances, each its own `DATA_DIR` and
//! port, one Redis Stream. The tests use the shared Redis on 127.0.0.1:6379 with a
//! stream of their own (a unique `REPLICATION_CLUSTER`); without it they print SKIP (and
//! fail under `CI=true`). The Redis-stopped test runs a `redis-server` of its own.

use std::time::Duration;

use amber::rate_limit::redis_sync;
use serde_json::{json, Value};

use amber::x_api::fake::{username, FakeScript, FakeX};

use crate::helpers::{eventually, id_of, redis_server, spawn_app_with, TestApp};
use crate::notify::Receiver;

const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Deadline for instances to converge (scaled for a loaded machine).
const CONVERGE: Duration = Duration::from_secs(60);

async fn redis_or_skip(test: &str) -> bool {
    let up = redis_sync::redis_answers(REDIS_URL, Duration::from_secs(1)).await;
    if !up {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: no Redis on {REDIS_URL} and CI=true");
        }
        println!("SKIP {test}: no Redis on {REDIS_URL}");
    }
    up
}

fn cluster() -> String {
    format!(
        "test-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn instance(url: &str, cluster: &str) -> TestApp {
    spawn_app_with(&[
        ("REDIS_URL", url),
        ("REPLICATION", "redis"),
        ("REPLICATION_CLUSTER", cluster),
        ("RATE_LIMITING_ENABLED", "false"),
        ("X_INGEST_ENABLED", "false"),
    ])
    .await
}

/// Replication as health shows it.
/// Three instances of `cluster` on the shared Redis.
async fn three_instances(cluster: &str) -> (TestApp, TestApp, TestApp) {
    (
        instance(REDIS_URL, cluster).await,
        instance(REDIS_URL, cluster).await,
        instance(REDIS_URL, cluster).await,
    )
}

async fn repl(app: &TestApp) -> Value {
    app.get_json("/api/health").await.1["checks"]["replication"].clone()
}

async fn export(app: &TestApp) -> String {
    let res = app.get_auth("/api/admin/export", &app.admin_token()).await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// Waits until every instance has applied `at_least` entries and all stand at the same
/// position, then returns the position.
async fn converged(apps: &[&TestApp], at_least: u64) -> String {
    eventually(CONVERGE, "instances at one position", || async {
        let mut seen = Vec::new();
        for app in apps {
            let r = repl(app).await;
            if r["applied"].as_u64().unwrap_or(0) < at_least || r["lagEntries"] != 0 {
                return None;
            }
            seen.push(r["position"].as_str().unwrap_or("").to_string());
        }
        seen.windows(2)
            .all(|w| w[0] == w[1])
            .then(|| seen[0].clone())
    })
    .await
}

/// The writes one client makes on one instance: a leader, posts (every third needing
/// review), an edit, a deletion, a review decision. Returns the ids of the posts it
/// created and kept, and how many entries it appended.
async fn write_everything(app: &TestApp, tag: usize, posts: usize) -> (Vec<u64>, u64) {
    let mut entries = 0;
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": format!("Leader {tag}"), "handles": {"x": format!("leader{tag}")}}),
        )
        .await;
    assert_eq!(res.status(), 201, "create leader");
    entries += 1;
    let leader = id_of(&res.json::<Value>().await.unwrap()["id"]);
    let mut kept = Vec::new();
    let mut review = None;
    for i in 0..posts {
        let mut body = json!({
            "leaderId": leader,
            "platform": "news",
            "content": format!("post {i} of {tag}"),
            "timestamp": format!("2026-01-01T00:{:02}:{:02}Z", tag, i),
        });
        if i % 3 == 0 {
            body["requiresReview"] = json!(true);
        }
        let post = app.create_post(&body).await;
        entries += 1;
        if let (None, Some(item)) = (&review, post.get("reviewItem")) {
            review = Some(id_of(&item["id"]));
        }
        kept.push(id_of(&post["id"]));
    }
    let edited = kept[1];
    let res = app
        .send_json(
            reqwest::Method::PUT,
            &format!("/api/posts/{edited}"),
            &json!({"content": format!("edited by {tag}")}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200, "update post");
    entries += 1;
    let gone = kept.remove(2);
    assert_eq!(
        app.admin_delete(&format!("/api/posts/{gone}"))
            .await
            .status(),
        200
    );
    entries += 1;
    let review = review.expect("a review item");
    let res = app
        .send_json(
            reqwest::Method::POST,
            &format!("/api/review/{review}/approve"),
            &json!({"notes": format!("ok {tag}")}),
            Some(&app.reviewer_token()),
        )
        .await;
    assert_eq!(res.status(), 200, "approve");
    entries += 1;
    (kept, entries)
}

#[actix_web::test]
async fn three_instances_take_writes_at_once_and_hold_the_same_data() {
    if !redis_or_skip("three_instances_take_writes_at_once_and_hold_the_same_data").await {
        return;
    }
    let cluster = cluster();
    let (a, b, c) = three_instances(&cluster).await;
    let (ra, rb, rc) = tokio::join!(
        write_everything(&a, 1, 12),
        write_everything(&b, 2, 12),
        write_everything(&c, 3, 12),
    );
    // The writes' own entries, plus one seed entry per instance (only the first seeds).
    let entries = ra.1 + rb.1 + rc.1 + 3;
    converged(&[&a, &b, &c], entries).await;
    let (ea, eb, ec) = (export(&a).await, export(&b).await, export(&c).await);
    assert_eq!(ea, eb, "a and b hold the same records");
    assert_eq!(ea, ec, "a and c hold the same records");
    // Every acknowledged post is there once; deleted ones are not.
    let posts: Vec<Value> = ea
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "post")
        .collect();
    let mut ids: Vec<u64> = posts.iter().map(|p| id_of(&p["id"])).collect();
    ids.sort_unstable();
    let mut want: Vec<u64> = [ra.0, rb.0, rc.0].concat();
    want.sort_unstable();
    assert_eq!(
        ids, want,
        "each kept post once, with the id its write answered"
    );
    let page = "/api/posts/paginated?limit=50";
    let (pa, pb, pc) = (
        a.get_json(page).await.1,
        b.get_json(page).await.1,
        c.get_json(page).await.1,
    );
    assert_eq!(pa, pb);
    assert_eq!(pa, pc);
    assert!(ea.contains("edited by 2") && ea.contains("ok 3"));
}

#[actix_web::test]
async fn an_instance_killed_mid_stream_catches_up_and_applies_nothing_twice() {
    if !redis_or_skip("an_instance_killed_mid_stream_catches_up_and_applies_nothing_twice").await {
        return;
    }
    let cluster = cluster();
    let a = instance(REDIS_URL, &cluster).await;
    let b = instance(REDIS_URL, &cluster).await;
    // a keeps writing while b is killed with -9 and started again.
    let writer = async {
        let mut created = Vec::new();
        for i in 0..40 {
            let post = a
                .create_post(
                    &json!({"leaderId": 1, "platform": "news", "content": format!("kill {i}")}),
                )
                .await;
            created.push(id_of(&post["id"]));
        }
        created
    };
    let killer = async {
        eventually(CONVERGE, "b applying a's writes", || async {
            (repl(&b).await["applied"].as_u64().unwrap_or(0) >= 10).then_some(())
        })
        .await;
        b.restart().await
    };
    let (created, b) = tokio::join!(writer, killer);
    converged(&[&a, &b], 42).await;
    let (ea, eb) = (export(&a).await, export(&b).await);
    assert_eq!(ea, eb, "the restarted instance holds what the other holds");
    for id in created {
        let (status, post) = b.get_json(&format!("/api/posts/{id}")).await;
        assert_eq!(status, 200, "post {id} on the restarted instance");
        assert_eq!(id_of(&post["id"]), id);
    }
    let (_, page) = b.get_json("/api/posts/paginated?limit=100").await;
    let kills = page.to_string().matches("kill ").count();
    assert_eq!(kills, 40, "every write once: {page}");
}

/// A `redis-server` of the test's own on a free port, with an append-only file in `dir`
/// (so a restart keeps the stream, as README says to configure it).
fn own_redis(dir: &std::path::Path, port: u16) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args(["--appendfsync", "always", "--dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server")
}

#[actix_web::test]
async fn with_redis_stopped_writes_get_503_reads_work_and_nothing_applies_twice() {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "redis-server is needed under CI"
        );
        println!("SKIP: redis-server not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let answers = || async {
        redis_sync::redis_answers(&url, Duration::from_millis(500))
            .await
            .then_some(())
    };
    let mut redis = own_redis(dir.path(), port);
    eventually(CONVERGE, "own redis up", answers).await;
    let cluster = cluster();
    let a = instance(&url, &cluster).await;
    let b = instance(&url, &cluster).await;
    for i in 0..5 {
        a.create_post(
            &json!({"leaderId": 1, "platform": "news", "content": format!("before {i}")}),
        )
        .await;
    }
    redis.kill().unwrap();
    redis.wait().unwrap();
    let body = json!({"leaderId": 1, "platform": "news", "content": "while down"});
    let refused = eventually(CONVERGE, "a 503 while Redis is down", || async {
        let res = b.admin_post("/api/posts", &body).await;
        (res.status() == 503).then_some(res)
    })
    .await;
    let err: Value = refused.json().await.unwrap();
    assert_eq!(err["error"], "replication_unavailable", "{err}");
    // The other replicated writes alike: a stop, a notification target.
    let res = b.admin_post("/api/ingestion/stop", &json!({})).await;
    assert_eq!(res.status(), 503);
    let res = b
        .admin_post(
            "/api/admin/notifications",
            &json!({"url": "http://127.0.0.1:9/hook", "format": "json"}),
        )
        .await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "replication_unavailable"
    );
    let (status, page) = a.get_json("/api/posts/paginated?limit=50").await;
    assert_eq!(status, 200, "reads keep working");
    assert!(!page.to_string().contains("while down"));
    assert_eq!(
        repl(&b).await["status"],
        "unavailable",
        "health shows replication down"
    );

    let mut redis = own_redis(dir.path(), port);
    eventually(CONVERGE, "own redis back", answers).await;
    let post = eventually(CONVERGE, "writes accepted again", || async {
        let res = b
            .admin_post(
                "/api/posts",
                &json!({"leaderId": 1, "platform": "news", "content": "after"}),
            )
            .await;
        if res.status() == 201 {
            res.json::<Value>().await.ok()
        } else {
            None
        }
    })
    .await;
    converged(&[&a, &b], 3).await;
    assert_eq!(export(&a).await, export(&b).await);
    for app in [&a, &b] {
        let (_, s) = app.get_json("/api/ingestion/status").await;
        assert_eq!(s["stopped"], false, "the refused stop applied nowhere");
        let res = app
            .get_auth("/api/admin/notifications", &app.admin_token())
            .await;
        assert_eq!(res.json::<Value>().await.unwrap(), json!([]));
    }
    for app in [&a, &b] {
        let (_, page) = app.get_json("/api/posts/paginated?limit=50").await;
        let text = page.to_string();
        assert_eq!(text.matches("before ").count(), 5, "{text}");
        assert_eq!(text.matches("\"after\"").count(), 1, "{text}");
        assert!(!text.contains("while down"));
        let (status, _) = app
            .get_json(&format!("/api/posts/{}", id_of(&post["id"])))
            .await;
        assert_eq!(status, 200);
    }
    let _ = redis.kill();
    let _ = redis.wait();
}

async fn xlen(stream: &str) -> u64 {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Writes `count` posts on `app`, then waits until the stream is trimmed to one entry
/// (every live instance reported the last position).
async fn write_then_trim(app: &TestApp, stream: &str, tag: &str, count: usize) {
    for i in 0..count {
        app.create_post(
            &json!({"leaderId": 1, "platform": "news", "content": format!("{tag} {i}")}),
        )
        .await;
    }
    eventually(CONVERGE, "the stream trimmed", || async {
        (xlen(stream).await <= 1).then_some(())
    })
    .await;
}

/// An instance of `cluster` that joins late: no seeding (its own entry would wait for the
/// bootstrap), plus `extra`.
async fn late_instance(cluster: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("REDIS_URL", REDIS_URL),
        ("REPLICATION", "redis"),
        ("REPLICATION_CLUSTER", cluster),
        ("RATE_LIMITING_ENABLED", "false"),
        ("X_INGEST_ENABLED", "false"),
        ("SEED_LEADERS", "false"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

#[actix_web::test]
async fn a_late_instance_catches_up_and_one_after_the_trim_bootstraps_from_a_snapshot() {
    if !redis_or_skip(
        "a_late_instance_catches_up_and_one_after_the_trim_bootstraps_from_a_snapshot",
    )
    .await
    {
        return;
    }
    let cluster = cluster();
    let stream = format!("amber:repl:{{{cluster}}}");
    let a = instance(REDIS_URL, &cluster).await;
    for i in 0..20 {
        a.create_post(&json!({"leaderId": 1, "platform": "news", "content": format!("early {i}")}))
            .await;
    }
    // Started after 21 entries: it reads them all from the stream.
    let late = instance(REDIS_URL, &cluster).await;
    converged(&[&a, &late], 22).await;
    assert_eq!(export(&a).await, export(&late).await);
    // Both reported their position: the stream is trimmed to what the slowest needs.
    eventually(CONVERGE, "the stream trimmed", || async {
        (xlen(&stream).await <= 1).then_some(())
    })
    .await;
    // One with no position now would miss the trimmed entries: it fetches the snapshot
    // another instance advertises, switches to it and follows the stream from there.
    let fresh = late_instance(&cluster, &[]).await;
    converged(&[&a, &late, &fresh], 22).await;
    assert_eq!(export(&a).await, export(&fresh).await);
    assert!(fresh.logs().contains("bootstrapped from a snapshot"));
    let r = repl(&fresh).await;
    assert_eq!(r["status"], "ok", "{r}");
    assert!(r["lastError"].is_null(), "{r}");
    // It follows the stream: a write on another instance reaches it, a write on it
    // reaches the others.
    let post = a
        .create_post(&json!({"leaderId": 1, "platform": "news", "content": "after the bootstrap"}))
        .await;
    fresh
        .create_post(&json!({"leaderId": 1, "platform": "news", "content": "from the fresh one"}))
        .await;
    converged(&[&a, &late, &fresh], 24).await;
    let (status, _) = fresh
        .get_json(&format!("/api/posts/{}", id_of(&post["id"])))
        .await;
    assert_eq!(status, 200);
    let ea = export(&a).await;
    assert_eq!(ea, export(&fresh).await);
    assert_eq!(ea, export(&late).await);
    assert!(ea.contains("from the fresh one"));
}

#[actix_web::test]
async fn an_instance_killed_mid_bootstrap_restarts_on_its_old_data_and_completes() {
    if !redis_or_skip("an_instance_killed_mid_bootstrap_restarts_on_its_old_data_and_completes")
        .await
    {
        return;
    }
    let cluster = cluster();
    let stream = format!("amber:repl:{{{cluster}}}");
    let a = instance(REDIS_URL, &cluster).await;
    write_then_trim(&a, &stream, "kept", 20).await;
    let source = a.url("/api/admin/replication/snapshot");
    // Pointed at a's snapshot, loading slowly (a pause every 10 records).
    let mut slow = late_instance(
        &cluster,
        &[
            ("REPLICATION_SNAPSHOT", &source),
            ("AMBER_TEST_BOOTSTRAP_PAUSE_MS", "400"),
        ],
    )
    .await;
    eventually(CONVERGE, "the load under way", || async {
        let r = repl(&slow).await;
        (r["status"] == "bootstrapping"
            && r["bootstrap"]["phase"] == "loading"
            && r["bootstrap"]["records"].as_u64().unwrap_or(0) >= 10)
            .then_some(())
    })
    .await;
    slow.kill9();
    assert!(
        slow.data_dir().join("db.bootstrap").exists(),
        "killed with a half-loaded snapshot"
    );
    slow.env.remove("AMBER_TEST_BOOTSTRAP_PAUSE_MS");
    let slow = slow.restart().await;
    converged(&[&a, &slow], 21).await;
    assert_eq!(export(&a).await, export(&slow).await);
    let logs = slow.logs();
    assert!(logs.contains("unfinished snapshot load"), "{logs}");
    assert!(!slow.data_dir().join("db.bootstrap").exists());
}

#[actix_web::test]
async fn a_snapshot_of_another_cluster_is_refused() {
    if !redis_or_skip("a_snapshot_of_another_cluster_is_refused").await {
        return;
    }
    let other = instance(REDIS_URL, &cluster()).await;
    other
        .create_post(&json!({"leaderId": 1, "platform": "news", "content": "elsewhere"}))
        .await;
    let res = other
        .get_auth("/api/admin/replication/snapshot", &other.admin_token())
        .await;
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();

    let cluster = cluster();
    let stream = format!("amber:repl:{{{cluster}}}");
    let a = instance(REDIS_URL, &cluster).await;
    write_then_trim(&a, &stream, "here", 3).await;
    let path = file.path().to_str().unwrap().to_string();
    let fresh = late_instance(&cluster, &[("REPLICATION_SNAPSHOT", &path)]).await;
    let r = eventually(CONVERGE, "the snapshot refused", || async {
        let r = repl(&fresh).await;
        r["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("is of cluster"))
            .then_some(r)
    })
    .await;
    assert_eq!(r["status"], "bootstrapping", "{r}");
    assert_eq!(r["applied"], 0, "{r}");
    let (status, page) = fresh.get_json("/api/posts/paginated?limit=5").await;
    assert_eq!(status, 200);
    assert!(
        !page.to_string().contains("elsewhere"),
        "nothing of it loaded"
    );
    // Writes are refused while it bootstraps, nothing is appended for it.
    let res = fresh
        .admin_post(
            "/api/leaders",
            &json!({"name": "Not now", "handles": {"x": "notnow"}}),
        )
        .await;
    assert_eq!(res.status(), 503);
}

/// An instance of `cluster` on `url` pointed at the fake X API; ingestion runs only when
/// triggered.
async fn ingesting_instance(url: &str, cluster: &str, fake: &FakeX) -> TestApp {
    let token = fake.token();
    spawn_app_with(&[
        ("REDIS_URL", url),
        ("REPLICATION", "redis"),
        ("REPLICATION_CLUSTER", cluster),
        ("RATE_LIMITING_ENABLED", "false"),
        ("X_INGEST_ENABLED", "false"),
        ("SEED_LEADERS", "false"),
        ("X_API_BASE_URL", fake.base_url()),
        ("TWITTER_BEARER_TOKEN", token.as_str()),
    ])
    .await
}

async fn ingestion_status(app: &TestApp) -> Value {
    let (status, body) = app.get_json("/api/ingestion/status").await;
    assert_eq!(status, 200);
    body
}

/// The posts of an export, as (platformPostId, id).
fn exported_posts(export: &str) -> Vec<(String, u64)> {
    export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "post")
        .map(|p| {
            (
                p["platformPostId"].as_str().unwrap_or("").to_string(),
                id_of(&p["id"]),
            )
        })
        .collect()
}

/// Waits until `app` has finished a run of its own (its `last_run` set) and returns it.
async fn own_run(app: &TestApp) -> Option<Value> {
    let s = ingestion_status(app).await;
    (s["running"] == false && !s["last_run"].is_null()).then(|| s["last_run"].clone())
}

#[actix_web::test]
async fn three_instances_ingest_through_the_lease_holder_and_a_killed_holder_hands_over() {
    let Some((mut redis, url)) = own_redis_up().await else {
        return;
    };
    let users = 6;
    let fake = FakeX::start(FakeScript {
        users,
        posts_per_user: 5,
        ..FakeScript::default()
    })
    .expect("fake X API");
    // Every call takes a while: a run lasts long enough for the others to meet its lease.
    fake.set_latency(Duration::from_millis(300));
    let cluster = cluster();
    let mut apps = vec![
        ingesting_instance(&url, &cluster, &fake).await,
        ingesting_instance(&url, &cluster, &fake).await,
        ingesting_instance(&url, &cluster, &fake).await,
    ];
    for u in 0..users {
        let res = apps[(u % 3) as usize]
            .admin_post(
                "/api/leaders",
                &json!({"name": format!("Leader {u}"), "handles": {"x": format!("@{}", username(u))}}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    converged(&apps.iter().collect::<Vec<_>>(), users as u64).await;

    // All three are asked at once: one takes the lease and fetches, the others skip.
    let body = json!({"backfill": false});
    let (ta, tb, tc) = tokio::join!(
        apps[0].admin_post("/api/ingestion/trigger", &body),
        apps[1].admin_post("/api/ingestion/trigger", &body),
        apps[2].admin_post("/api/ingestion/trigger", &body),
    );
    for res in [ta, tb, tc] {
        assert_eq!(res.status(), 202);
    }
    let runs = eventually(CONVERGE, "every instance done", || async {
        let mut runs = Vec::new();
        for app in &apps {
            let s = ingestion_status(app).await;
            if s["running"] != false || (s["last_run"].is_null() && s["skipped_ticks"] == 0) {
                return None;
            }
            runs.push(s);
        }
        Some(runs)
    })
    .await;
    let holders: Vec<usize> = (0..3).filter(|i| !runs[*i]["last_run"].is_null()).collect();
    assert_eq!(holders.len(), 1, "exactly one instance ran: {runs:?}");
    let holder = holders[0];
    assert_eq!(runs[holder]["last_run"]["posts_ingested"], 30, "{runs:?}");
    for (i, s) in runs.iter().enumerate().filter(|(i, _)| *i != holder) {
        let why = s["last_skipped"]["reason"].as_str().unwrap_or("");
        assert!(
            why.contains("lease"),
            "instance {i} skipped for the lease: {s}"
        );
    }
    converged(&apps.iter().collect::<Vec<_>>(), users as u64 + 1).await;
    let first = export(&apps[0]).await;
    for app in &apps[1..] {
        assert_eq!(
            export(app).await,
            first,
            "every instance holds the holder's batches"
        );
    }
    let posts = exported_posts(&first);
    assert_eq!(posts.len(), 30, "{first}");

    // The holder is killed in the middle of a run; once its lease expires another
    // instance runs, and the posts it stores reach the survivors once, at one id each.
    for u in 0..users {
        fake.add_posts(&username(u), 2);
    }
    fake.set_latency(Duration::from_millis(1500));
    let before = runs[holder]["last_run"]["started_at"].clone();
    assert_eq!(
        apps[holder]
            .admin_post("/api/ingestion/trigger", &json!({"backfill": false}))
            .await
            .status(),
        202
    );
    eventually(CONVERGE, "the holder's second run under way", || async {
        let s = ingestion_status(&apps[holder]).await;
        (s["running"] == true && s["last_run"]["started_at"] == before).then_some(())
    })
    .await;
    apps[holder].kill9();
    let killed = std::time::Instant::now();
    fake.set_latency(Duration::from_millis(50));
    let survivors: Vec<usize> = (0..3).filter(|i| *i != holder).collect();
    // Asked again and again: refused while the dead holder's lease lasts (up to 60 s).
    let taker = eventually(
        CONVERGE + Duration::from_secs(60),
        "a survivor runs",
        || async {
            for &i in &survivors {
                if own_run(&apps[i]).await.is_some() {
                    return Some(i);
                }
                let _ = apps[i]
                    .admin_post("/api/ingestion/trigger", &json!({"backfill": false}))
                    .await;
            }
            None
        },
    )
    .await;
    eprintln!(
        "instance {taker} ran {:?} after the holder was killed",
        killed.elapsed()
    );
    let survivors_ref: Vec<&TestApp> = survivors.iter().map(|i| &apps[*i]).collect();
    converged(&survivors_ref, users as u64 + 2).await;
    let after = export(&apps[survivors[0]]).await;
    assert_eq!(after, export(&apps[survivors[1]]).await);
    let posts = exported_posts(&after);
    let mut external: Vec<&String> = posts.iter().map(|(e, _)| e).collect();
    external.sort();
    external.dedup();
    assert_eq!(external.len(), posts.len(), "no post twice: {after}");
    assert_eq!(posts.len(), 42, "every post once: {after}");

    // The killed instance comes back and catches up: three identical exports.
    let dead = apps.remove(holder);
    apps.insert(holder, dead.restart().await);
    converged(&apps.iter().collect::<Vec<_>>(), users as u64 + 2).await;
    for app in &apps {
        assert_eq!(export(app).await, after);
    }
    drop(apps);
    let _ = redis.kill();
    let _ = redis.wait();
}

async fn targets(app: &TestApp) -> Value {
    let res = app
        .get_auth("/api/admin/notifications", &app.admin_token())
        .await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()
}

/// A redis-server of the test's own (the ingestion lease key is fixed and other tests
/// take it), up and answering; None (SKIP) when none is installed outside CI.
async fn own_redis_up() -> Option<(std::process::Child, String)> {
    let Some((redis, url)) = redis_server() else {
        assert!(
            std::env::var("CI").is_err(),
            "redis-server is needed under CI"
        );
        println!("SKIP: redis-server not installed");
        return None;
    };
    eventually(CONVERGE, "own redis up", || async {
        redis_sync::redis_answers(&url, Duration::from_millis(500))
            .await
            .then_some(())
    })
    .await;
    Some((redis, url))
}

/// Triggers a run on `app` and waits until it has a run record newer than before.
async fn run_on(app: &TestApp) -> Value {
    let before = ingestion_status(app).await["last_run"]["started_at"].clone();
    let res = app
        .admin_post("/api/ingestion/trigger", &json!({"backfill": false}))
        .await;
    assert_eq!(res.status(), 202);
    eventually(CONVERGE, "the run over", || async {
        let s = ingestion_status(app).await;
        (s["running"] == false && !s["last_run"].is_null() && s["last_run"]["started_at"] != before)
            .then(|| s["last_run"].clone())
    })
    .await
}

#[actix_web::test]
async fn ingestion_stop_start_and_notification_targets_reach_every_instance_and_each_post_is_announced_once(
) {
    let Some((mut redis, url)) = own_redis_up().await else {
        return;
    };
    let rx = Receiver::start();
    let fake = FakeX::start(FakeScript {
        users: 3,
        posts_per_user: 3,
        ..FakeScript::default()
    })
    .expect("fake X API");
    let cluster = cluster();
    let a = ingesting_instance(&url, &cluster, &fake).await;
    let b = ingesting_instance(&url, &cluster, &fake).await;
    let c = ingesting_instance(&url, &cluster, &fake).await;
    let all = [&a, &b, &c];
    for u in 0..3 {
        let res = a
            .admin_post(
                "/api/leaders",
                &json!({"name": format!("Leader {u}"), "handles": {"x": format!("@{}", username(u))}}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    // Stopped on one: every schedule stops (and says so).
    assert_eq!(
        b.admin_post("/api/ingestion/stop", &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(
        ingestion_status(&b).await["stopped"],
        true,
        "read your writes"
    );
    eventually(CONVERGE, "every instance stopped", || async {
        for app in all {
            if ingestion_status(app).await["stopped"] != true {
                return None;
            }
        }
        Some(())
    })
    .await;
    // The first run backfills (announces nothing).
    assert_eq!(run_on(&a).await["posts_ingested"], 9);
    // A target created on one is every instance's, at one id.
    let res = c
        .admin_post(
            "/api/admin/notifications",
            &json!({"url": format!("{}/hook", rx.url), "format": "json"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let target = id_of(&res.json::<Value>().await.unwrap()["id"]);
    eventually(CONVERGE, "the target on every instance", || async {
        for app in all {
            let t = targets(app).await;
            if t.as_array().map(Vec::len) != Some(1) || id_of(&t[0]["id"]) != target {
                return None;
            }
        }
        Some(())
    })
    .await;
    // New posts ingested by another instance: each announced once across the cluster
    // (by the instance whose turn it is), and every copy of the outbox emptied.
    for u in 0..3 {
        fake.add_posts(&username(u), 4);
    }
    assert_eq!(run_on(&b).await["posts_ingested"], 12);
    eventually(
        CONVERGE,
        "every post announced and every outbox empty",
        || async {
            if rx.delivered().len() < 12 {
                return None;
            }
            for app in all {
                if targets(app).await[0]["queued"] != 0 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let mut keys: Vec<u64> = rx
        .delivered()
        .iter()
        .map(|g| g.key().parse().unwrap())
        .collect();
    keys.sort_unstable();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, 12, "each post announced once across the cluster");
    assert_eq!(keys.len(), 12);
    let stored: Vec<u64> = exported_posts(&export(&a).await)
        .iter()
        .map(|p| p.1)
        .collect();
    assert!(
        keys.iter().all(|k| stored.contains(k)),
        "{keys:?} {stored:?}"
    );
    // Started on another: every schedule runs again; the target deleted on a third.
    assert_eq!(
        a.admin_post("/api/ingestion/start", &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(
        b.admin_delete(&format!("/api/admin/notifications/{target}"))
            .await
            .status(),
        200
    );
    eventually(CONVERGE, "started and no target everywhere", || async {
        for app in all {
            if ingestion_status(app).await["stopped"] != false
                || targets(app).await.as_array().map(Vec::len) != Some(0)
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    converged(&all, 10).await;
    assert_eq!(export(&a).await, export(&b).await);
    assert_eq!(export(&a).await, export(&c).await);
    drop((a, b, c));
    let _ = redis.kill();
    let _ = redis.wait();
}

/// A backup with Amber's own ids: a leader, `posts` X posts numbered from 1 (ids the
/// cluster has taken already), and a review item, at the end, for every hundredth.
fn amber_id_backup(posts: u64) -> String {
    let mut lines = vec![
        r#"{"kind":"leader","id":900,"name":"Imported","handles":{"x":"imported"},"createdAt":"2025-01-01T00:00:00.000Z"}"#.to_string(),
    ];
    for i in 1..=posts {
        lines.push(format!(
            r#"{{"kind":"post","id":{i},"leaderId":900,"platform":"X","content":"imported post {i}","timestamp":"2025-02-01T00:{:02}:{:02}.000Z","sentiment":"Neutral","metrics":{{"likes":{i}}},"platformPostId":"{}","verificationStatus":"Unverified"}}"#,
            (i / 60) % 60,
            i % 60,
            1_900_000_000_000_000_000u64 + i
        ));
    }
    for i in (1..=posts).step_by(100) {
        lines.push(format!(
            r#"{{"kind":"review","id":{i},"postId":{i},"state":"pending","updatedAt":"2025-02-02T00:00:00.000Z"}}"#
        ));
    }
    let mut out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    out.push_str(&format!(
        "{{\"kind\":\"trailer\",\"records\":{},\"damagedSkipped\":0}}\n",
        lines.len()
    ));
    out
}

/// `amber import` of `backup` into `cluster` (its own empty `DATA_DIR`, never opened).
fn replicated_import(cluster: &str, backup: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.jsonl");
    std::fs::write(&file, backup).unwrap();
    let env: std::collections::HashMap<String, String> = [
        ("REDIS_URL", REDIS_URL),
        ("REPLICATION", "redis"),
        ("REPLICATION_CLUSTER", cluster),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    crate::helpers::amber_command(dir.path(), &env)
        .arg("import")
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap()
}

async fn appended(cluster: &str) -> u64 {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let n: Option<u64> = redis::cmd("GET")
        .arg(format!("amber:repl:{{{cluster}}}:n"))
        .query_async(&mut conn)
        .await
        .unwrap();
    n.unwrap_or(0)
}

#[actix_web::test]
async fn amber_import_reaches_every_instance_at_the_same_ids_and_a_bad_file_appends_nothing() {
    if !redis_or_skip("amber_import_reaches_every_instance_at_the_same_ids").await {
        return;
    }
    let cluster = cluster();
    let (a, b, c) = three_instances(&cluster).await;
    // The cluster holds posts 1-5 already: the backup's posts 1-5 get fresh ids, and the
    // reviews naming them (in a later batch) must follow them.
    for i in 0..5 {
        a.create_post(
            &json!({"leaderId": 1, "platform": "news", "content": format!("before {i}")}),
        )
        .await;
    }
    converged(&[&a, &b, &c], 8).await;
    let at = appended(&cluster).await;
    let mut bad = amber_id_backup(1200);
    bad = bad.replacen("imported post 700\"", "imported post 700\",\"id\":", 1);
    let out = replicated_import(&cluster, &bad);
    assert!(!out.status.success(), "a bad line is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line"), "{err}");
    assert_eq!(
        appended(&cluster).await,
        at,
        "nothing appended for a bad file"
    );

    let out = replicated_import(&cluster, &amber_id_backup(1200));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("applied by"), "{err}");
    // 1213 records in three batches, and the end.
    assert_eq!(appended(&cluster).await, at + 4, "{err}");
    converged(&[&a, &b, &c], at + 4).await;
    let ea = export(&a).await;
    assert_eq!(ea, export(&b).await);
    assert_eq!(ea, export(&c).await);
    let records: Vec<Value> = ea
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let content: std::collections::HashMap<u64, String> = records
        .iter()
        .filter(|r| r["kind"] == "post")
        .map(|p| {
            (
                id_of(&p["id"]),
                p["content"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let imported = content
        .values()
        .filter(|c| c.starts_with("imported post "))
        .count();
    assert_eq!(imported, 1200);
    let reviews: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["kind"] == "review" && r["updatedAt"].as_str().unwrap_or("").starts_with("2025")
        })
        .collect();
    assert_eq!(reviews.len(), 12, "{reviews:?}");
    for r in reviews {
        let post = &content[&id_of(&r["postId"])];
        let backup_id: u64 = post.trim_start_matches("imported post ").parse().unwrap();
        assert_eq!(backup_id % 100, 1, "review {r} follows its post ({post})");
    }
    // Imported again: everything is recognised, nothing added.
    let out = replicated_import(&cluster, &amber_id_backup(1200));
    assert!(out.status.success());
    converged(&[&a, &b, &c], at + 8).await;
    assert_eq!(export(&a).await, ea, "a second import adds nothing");
}
