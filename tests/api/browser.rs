//! Browser tests: the web page in headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `tests/browser/`) against a spawned server with seeded posts.
//! The scenarios live in `tests/browser/scenarios.mjs`; this file seeds the server,
//! runs one scenario per test and checks what it reports.
//!
//! Needs `chromium` (or `$CHROMIUM`), `node` and `npm ci --prefix tests/browser`. The build
//! script looks for them: without them every test here is `#[ignore]`d, so `cargo test`
//! reports them as ignored (never as passed) and `build.rs` prints which piece is missing.
//! Under `CI=true` they are never ignored, and a missing piece fails each test (`.ci/run`
//! installs them). Screenshots go to `target/browser/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use amber::x_api::fake::{username, FakeScript, FakeX, Fault};

use crate::helpers::{eventually, spawn_app, spawn_app_with, TestApp};

/// One Chromium at a time: the machine has two cores.
static BROWSER: Mutex<()> = Mutex::new(());
/// Posts per feed page, as the page asks for them.
const PAGE_SIZE: usize = 20;
/// Seeded posts: more than two pages.
const SEEDED: usize = 45;

/// Where the scenario runner lives.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Screenshots and other artefacts (not committed).
fn artefact_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

/// Fails the test unless node, Chromium and playwright-core are all there. The build
/// script only compiles these tests in as runnable when it found them (or under
/// `CI=true`), so a missing piece here is a real failure, never a silent pass.
fn require_browser(test: &str) {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let chromium_ok = Path::new(&chromium()).exists();
    let playwright = browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists();
    let missing = [
        (!node).then_some("node"),
        (!chromium_ok).then_some("chromium (apt-get install chromium)"),
        (!playwright).then_some("playwright-core (npm ci --prefix tests/browser)"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    assert!(
        missing.is_empty(),
        "browser test {test} cannot run: missing {missing}"
    );
}

/// Runs one scenario and returns its `RESULT` JSON; panics with the runner's output on
/// failure. Node runs on a blocking thread so the test's runtime stays responsive.
/// `args.expectedFailures` gains the ones this server is expected to produce.
async fn run_scenario(app: &TestApp, scenario: &str, args: &Value) -> Value {
    let mut args = args.clone();
    let mut expected: Vec<Value> = args["expectedFailures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    expected.extend(expected_failures(app).await.into_iter().map(Value::from));
    args["expectedFailures"] = Value::Array(expected);
    let cmd_args = (scenario.to_string(), app.address.clone(), args.to_string());
    let out = actix_web::rt::task::spawn_blocking(move || {
        let _one_at_a_time = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
        Command::new("node")
            .arg(browser_dir().join("run.mjs"))
            .arg(&cmd_args.0)
            .arg(&cmd_args.1)
            .arg(artefact_dir())
            .arg(&cmd_args.2)
            .env("CHROMIUM", chromium())
            .output()
            .expect("run node")
    })
    .await
    .expect("node thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scenario {scenario} failed:\n{stdout}\n{stderr}\nserver log tail:\n{}",
        tail(&app.logs(), 20)
    );
    let result = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("scenario {scenario} printed no RESULT:\n{stdout}\n{stderr}"));
    eprintln!("browser::{scenario}: {result}");
    serde_json::from_str(result).expect("RESULT is JSON")
}

/// GET with a new connection: the shared client's pooled one may have idled out while
/// the browser ran.
async fn fresh_get(app: &TestApp, path: &str, token: Option<&str>) -> Value {
    let mut req = reqwest::Client::new().get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request");
    assert_eq!(res.status(), 200, "GET {path}");
    res.json().await.expect("json")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Same-origin failures the page is expected to meet on this server: the ingestion
/// status endpoint answers 404 on a build without ingestion.
async fn expected_failures(app: &TestApp) -> Vec<String> {
    let mut expected = Vec::new();
    if app.get("/api/ingestion/status").await.status() == 404 {
        expected.push("404 /api/ingestion/status".to_string());
    }
    expected
}

/// The X post seeded with CSP-allowed avatar and media.
const ALLOWED_AVATAR: &str = "https://pbs.twimg.com/profile_images/1/avatar_normal.jpg";
const ALLOWED_MEDIA: &str = "https://pbs.twimg.com/media/seeded.jpg";
/// The X post seeded with avatar and media on a host the CSP does not allow.
const BLOCKED_AVATAR: &str = "https://avatars.example.org/a.png";
const BLOCKED_MEDIA: &str = "https://cdn.example.org/m.jpg";

/// What the seed put where, for the scenarios to check against.
struct Seed {
    newest: Value,
    oldest: Value,
    allowed_x: Value,
    blocked_x: Value,
}

/// Seeds `n` posts over leaders 1..=3, cycling X, News, Facebook, one minute apart
/// (post `i` is newer than post `i - 1`). X posts carry the metrics ingestion stores.
async fn seed_posts(app: &TestApp, n: usize) -> Seed {
    let mut created = Vec::new();
    for i in 0..n {
        let platform = ["x", "news", "facebook"][i % 3];
        let mut body = json!({
            "leaderId": (i % 3) + 1,
            "platform": platform,
            "content": format!("post number {i}: a good day for the state"),
            "timestamp": format!("2025-03-01T{:02}:{:02}:00Z", i / 60, i % 60),
        });
        if platform == "x" {
            let (avatar, media) = if i % 2 == 0 {
                (ALLOWED_AVATAR, ALLOWED_MEDIA)
            } else {
                (BLOCKED_AVATAR, BLOCKED_MEDIA)
            };
            body["platformPostId"] = json!(format!("{}", 1_800_000_000_000_000_000u64 + i as u64));
            body["metrics"] = json!({
                "origin": "x", "externalId": format!("{}", 1_800_000_000_000_000_000u64 + i as u64),
                "avatarUrl": avatar, "mediaUrl": media, "mediaUrls": [media],
                "likes": i, "comments": 1, "shares": 2, "language": "en",
            });
        }
        created.push(app.create_post(&body).await);
    }
    // Look the X posts up in the feed, where their permalinks are computed.
    let (_, feed) = app.get_json("/api/feed?page_size=100").await;
    let posts = feed["posts"].as_array().expect("posts").clone();
    let x_post = |avatar: &str| {
        posts
            .iter()
            .find(|p| p["metrics"]["avatarUrl"] == avatar)
            .cloned()
            .expect("seeded X post")
    };
    Seed {
        newest: created.last().expect("posts")["content"].clone(),
        oldest: created.first().expect("posts")["content"].clone(),
        allowed_x: x_post(ALLOWED_AVATAR),
        blocked_x: x_post(BLOCKED_AVATAR),
    }
}

async fn review_queue(app: &TestApp, state: &str) -> Value {
    let path = format!("/api/review?state={state}");
    fresh_get(app, &path, Some(&app.reviewer_token())).await
}

async fn seeded_app() -> (TestApp, Seed) {
    let app = spawn_app().await;
    let seed = seed_posts(&app, SEEDED).await;
    (app, seed)
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn feed_renders_plain_cards_offline_on_desktop_and_phone() {
    require_browser("feed");
    let (app, seed) = seeded_app().await;
    let result = run_scenario(
        &app,
        "feed",
        &json!({
            "pageSize": PAGE_SIZE,
            "newest": seed.newest,
            "x": {"id": seed.allowed_x["id"], "permalink": seed.allowed_x["permalink"],
                  "avatar": ALLOWED_AVATAR, "media": ALLOWED_MEDIA},
            "blocked": {"id": seed.blocked_x["id"], "media": BLOCKED_MEDIA},
        }),
    )
    .await;
    assert_eq!(result["cards"], PAGE_SIZE);
    let first_post_ms = result["firstPostMs"].as_f64().expect("first post mark");
    assert!(first_post_ms > 0.0);
    assert!(artefact_dir().join("feed-desktop.png").exists());
    assert!(artefact_dir().join("feed-phone.png").exists());
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn leader_and_source_filters_change_what_is_shown() {
    require_browser("filters");
    let (app, _seed) = seeded_app().await;
    // Leader 1 has every third post, all on X; leader 4 has none.
    let (_, by_leader) = app.get_json("/api/feed?leaders=1&page_size=1").await;
    let result = run_scenario(
        &app,
        "filters",
        &json!({
            "leader": 1,
            "leaderTotal": by_leader["total"],
            "emptyLeader": 4,
        }),
    )
    .await;
    assert_eq!(result["byLeader"], SEEDED / 3);
    assert_eq!(result["bySource"], SEEDED / 3);
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn the_page_links_the_combined_feeds_and_every_leaders_feeds() {
    require_browser("feedLinks");
    let (app, _seed) = seeded_app().await;
    let leaders: Vec<Value> = fresh_get(&app, "/api/leaders", None)
        .await
        .as_array()
        .expect("leaders")
        .iter()
        .map(|l| json!({"id": l["id"], "name": l["name"]}))
        .collect();
    assert!(!leaders.is_empty());
    let result = run_scenario(&app, "feedLinks", &json!({ "leaders": leaders })).await;
    assert_eq!(result["alternates"], 3);
    assert_eq!(result["leaders"], leaders.len());
    // The three combined feeds, the first leader's three and the OPML, fetched by the page.
    assert_eq!(result["fetched"], 7);
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn scrolling_loads_the_next_page_until_the_oldest_post() {
    require_browser("scroll");
    let (app, seed) = seeded_app().await;
    let result = run_scenario(
        &app,
        "scroll",
        &json!({
            "pageSize": PAGE_SIZE,
            "total": SEEDED,
            "oldest": seed.oldest,
        }),
    )
    .await;
    assert_eq!(result["pages"], json!([20, 40, 45]));
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn x_posts_become_embeds_when_the_widget_loads() {
    require_browser("embed");
    let (app, _seed) = seeded_app().await;
    let result = run_scenario(&app, "embed", &json!({})).await;
    assert!(result["embedded"].as_u64().expect("count") > 0);
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn an_empty_feed_says_there_are_no_leaders() {
    require_browser("empty");
    let app = spawn_app_with(&[("SEED_LEADERS", "false")]).await;
    run_scenario(
        &app,
        "empty",
        &json!({
            "reason": "no-leaders",
            "mentions": ["No leaders", "Admin panel"],
        }),
    )
    .await;
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn an_empty_feed_says_ingestion_is_off() {
    require_browser("empty");
    let app = spawn_app().await;
    run_scenario(
        &app,
        "empty",
        &json!({
            "reason": "ingestion-off",
            "mentions": ["Ingestion is off", "X_INGEST_ENABLED", "TWITTER_BEARER_TOKEN", "amber demo"],
            // No bearer token: a manual run would only answer 503 x_not_configured.
            "absent": ["trigger a run"],
        }),
    )
    .await;
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn an_empty_feed_offers_a_manual_run_when_x_is_configured() {
    require_browser("empty");
    // A bearer token, but no schedule (X_INGEST_ENABLED is false).
    let (_fake, app) = app_with_fake_x(1, 3, &[]).await;
    run_scenario(
        &app,
        "empty",
        &json!({
            "reason": "ingestion-off",
            "mentions": ["Ingestion is off", "An admin can also trigger a run"],
        }),
    )
    .await;
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn admin_panel_manages_leaders_and_a_reviewer_rejects_with_notes() {
    require_browser("admin");
    let (app, _seed) = seeded_app().await;
    let post = app
        .create_post(&json!({
            "leaderId": 2, "platform": "news", "content": "needs a second look",
            "requiresReview": true,
        }))
        .await;
    let queue = review_queue(&app, "pending").await;
    let review_id = queue
        .as_array()
        .expect("queue")
        .iter()
        .find(|r| r["postId"] == post["id"])
        .expect("review item")["id"]
        .clone();
    let notes = "source could not be confirmed";
    run_scenario(
        &app,
        "admin",
        &json!({
            "adminToken": app.admin_token(),
            "reviewerToken": app.reviewer_token(),
            "reviewId": review_id,
            "notes": notes,
            "expectedFailures": ["401 /api/admin/ping"],
        }),
    )
    .await;
    // What the page did is what the server stored.
    let leaders = fresh_get(&app, "/api/leaders", None).await;
    assert!(!leaders
        .as_array()
        .expect("leaders")
        .iter()
        .any(|l| l["name"] == "Browser Test Leader"));
    let rejected = review_queue(&app, "rejected").await;
    let item = rejected
        .as_array()
        .expect("items")
        .iter()
        .find(|r| r["id"] == review_id)
        .expect("rejected item")
        .clone();
    assert_eq!(item["notes"], notes);
    assert_eq!(item["reviewedBy"], "test-reviewer");
    assert!(artefact_dir().join("admin-panel.png").exists());
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn a_rate_limited_feed_shows_the_wait_and_recovers() {
    require_browser("ratelimit");
    // One token, refilled every two seconds: the page's first feed request takes it.
    let app = spawn_app_with(&[
        ("REQUESTS_PER_MINUTE", "1"),
        ("BURST_SIZE", "1"),
        ("WINDOW_SECONDS", "2"),
    ])
    .await;
    seed_posts(&app, 9).await;
    // Seeding read the feed from this address: give the browser a full bucket.
    let res = app
        .send_json(
            reqwest::Method::DELETE,
            "/api/admin/rate-limits/ip/127.0.0.1",
            &json!({}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200, "bucket reset");
    let result = run_scenario(
        &app,
        "ratelimit",
        &json!({"maxWait": 5, "expectedFailures": ["429 /api/feed"]}),
    )
    .await;
    let wait = result["waitShown"].as_u64().expect("wait");
    assert!((1..=5).contains(&wait), "{result}");
}

/// The project's fake X API with `users` accounts of `posts` posts each, and a server
/// (plus `extra` settings) pointed at it with one leader per account and no seed.
async fn app_with_fake_x(users: u32, posts: u32, extra: &[(&str, &str)]) -> (FakeX, TestApp) {
    let fake = FakeX::start(FakeScript {
        users,
        posts_per_user: posts,
        ..FakeScript::default()
    })
    .expect("fake X API");
    let token = fake.token();
    let mut env = vec![
        ("X_API_BASE_URL", fake.base_url()),
        ("TWITTER_BEARER_TOKEN", token.as_str()),
        ("SEED_LEADERS", "false"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(&env).await;
    for u in 0..users {
        let res = app
            .admin_post(
                "/api/leaders",
                &json!({"name": format!("Fake Leader {u}"), "handles": {"x": username(u)}}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    (fake, app)
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn admin_panel_triggers_ingestion_and_new_posts_appear() {
    require_browser("trigger");
    const USERS: u32 = 2;
    const POSTS_PER_USER: u32 = 6;
    let (fake, app) = app_with_fake_x(USERS, POSTS_PER_USER, &[]).await;
    let expected = USERS * POSTS_PER_USER;
    let result = run_scenario(
        &app,
        "trigger",
        &json!({
            "adminToken": app.admin_token(),
            "expectedPosts": expected,
            // X_INGEST_ENABLED is false: started again, the schedule is still off.
            "stateAfterStart": "off",
        }),
    )
    .await;
    assert_eq!(result["cards"], expected);
    assert!(
        result["result"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("{expected} new posts"))),
        "{result}"
    );
    // The page showed what the server stored, and the fake was really called.
    let feed = fresh_get(&app, "/api/feed?source=x&page_size=100", None).await;
    assert_eq!(feed["total"], expected);
    assert!(fake.api_calls() > 0);
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn an_empty_feed_says_the_breaker_is_open() {
    require_browser("empty");
    let (fake, app) = app_with_fake_x(
        1,
        3,
        &[
            ("X_CIRCUIT_FAIL_MAX", "1"),
            ("X_CIRCUIT_RESET_SECONDS", "300"),
        ],
    )
    .await;
    fake.inject(Fault::ServerError, None);
    let res = app
        .admin_post("/api/ingestion/trigger", &json!({"backfill": false}))
        .await;
    assert_eq!(res.status(), 202);
    eventually(Duration::from_secs(60), "the breaker to open", || async {
        let (_, s) = app.get_json("/api/ingestion/status").await;
        (s["circuit_breaker_state"] == "open" && s["running"] == false).then_some(())
    })
    .await;
    run_scenario(
        &app,
        "empty",
        &json!({
            "reason": "breaker-open",
            "mentions": ["circuit breaker is open", "TWITTER_BEARER_TOKEN", "Ingestion panel"],
        }),
    )
    .await;
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn posts_show_reposts_quotes_replies_threads_and_videos_in_the_contract_json() {
    require_browser("posts");
    // The page comes from the server; the feed, leaders and ingestion status are answered
    // in the shared contract's JSON by the scenario (tests/browser/contract.mjs).
    let app = spawn_app().await;
    let result = run_scenario(&app, "posts", &json!({})).await;
    assert_eq!(result["cards"], 11, "{result}");
    // Leaving reposts and replies out leaves 5 posts (one from News) and 2 quotes.
    assert_eq!(result["filtered"], 7, "{result}");
    assert!(artefact_dir().join("posts-desktop.png").exists());
}

#[actix_web::test]
#[cfg_attr(
    not(amber_browser),
    ignore = "needs node, chromium and playwright-core (npm ci --prefix tests/browser): see README"
)]
async fn new_posts_are_announced_and_deleted_ones_go_without_a_reload() {
    require_browser("live");
    let (app, _seed) = seeded_app().await;
    let result = run_scenario(&app, "live", &json!({"adminToken": app.admin_token()})).await;
    assert_eq!(result["before"], PAGE_SIZE);
    let removed = result["removed"].as_str().expect("removed id").to_string();
    let feed = fresh_get(&app, "/api/feed?page_size=100", None).await;
    assert!(feed["posts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["id"] != removed.as_str()));
}
