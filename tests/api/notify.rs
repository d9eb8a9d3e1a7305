//! Notifications, black-box: the real binary ingests from the fake X API and delivers to
//! a local receiver (a std `TcpListener` speaking just enough HTTP/1.1) whose answers the
//! test steers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amber::x_api::fake::{username, FakeScript, FakeX};
use serde_json::{json, Value};

use crate::helpers::{eventually, id_of, run_ingestion as run, spawn_app_with, TestApp};

const WAIT: Duration = Duration::from_secs(60);

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    status: u16,
    at: Instant,
}

impl Got {
    pub(crate) fn key(&self) -> String {
        self.headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the receiver answers next: a status and extra header lines.
type Answer = (u16, Vec<(String, String)>);

#[derive(Default)]
struct ReceiverState {
    got: Vec<Got>,
    /// Answers to give first, in order; then `default`.
    script: Vec<Answer>,
    default: u16,
}

#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ReceiverState {
            default: 200,
            ..Default::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, shared));
            }
        });
        Receiver { url, state }
    }

    pub(crate) fn set_default(&self, status: u16) {
        self.state.lock().unwrap().default = status;
    }

    fn script(&self, answers: Vec<Answer>) {
        self.state.lock().unwrap().script = answers;
    }

    pub(crate) fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    /// The requests answered 2xx.
    pub(crate) fn delivered(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.status))
            .collect()
    }
}

fn serve(stream: std::net::TcpStream, state: Arc<Mutex<ReceiverState>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, extra) = {
            let mut s = state.lock().unwrap();
            let answer = if s.script.is_empty() {
                (s.default, vec![])
            } else {
                s.script.remove(0)
            };
            s.got.push(Got {
                path,
                headers,
                body,
                status: answer.0,
                at: Instant::now(),
            });
            answer
        };
        let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n");
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

struct World {
    fake: FakeX,
    app: TestApp,
}

/// A server on the fake X API with one leader whose first posts are already ingested
/// (a first sight is a backfill: nothing is announced).
async fn world(extra: &[(&str, &str)]) -> World {
    let fake = FakeX::start(FakeScript {
        users: 1,
        posts_per_user: 3,
        ..FakeScript::default()
    })
    .expect("fake X API");
    let token = fake.token();
    let mut env = vec![
        ("X_API_BASE_URL", fake.base_url()),
        ("TWITTER_BEARER_TOKEN", token.as_str()),
        ("SEED_LEADERS", "false"),
        ("NOTIFY_RETRY_BASE_MS", "20"),
        ("NOTIFY_RETRY_MAX_MS", "200"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(&env).await;
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": "Leader Zero", "handles": {"x": format!("@{}", username(0))}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    World { fake, app }
}

async fn add_target(app: &TestApp, body: Value) -> u64 {
    let res = app.admin_post("/api/admin/notifications", &body).await;
    assert_eq!(res.status(), 201);
    id_of(&res.json::<Value>().await.unwrap()["id"])
}

async fn targets(app: &TestApp) -> Vec<Value> {
    let token = app.admin_token();
    let res = app.get_auth("/api/admin/notifications", &token).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Every target's queue is empty and `n` were delivered.
async fn wait_delivered(app: &TestApp, n: u64) {
    eventually(WAIT, "deliveries", || async {
        let all = targets(app).await;
        all.iter()
            .all(|t| t["queued"] == 0 && t["delivery"]["delivered"] == n)
            .then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_new_post_reaches_every_format_and_a_backfill_reaches_none() {
    let rx = Receiver::start();
    let w = world(&[]).await;
    for f in ["json", "ntfy", "discord", "slack"] {
        add_target(
            &w.app,
            json!({"url": format!("{}/{f}", rx.url), "format": f}),
        )
        .await;
    }
    run(&w.app).await; // first sight: a backfill
    let added = w.fake.add_posts(&username(0), 1);
    run(&w.app).await;
    wait_delivered(&w.app, 1).await;
    let got = rx.delivered();
    assert_eq!(got.len(), 4, "{got:?}");
    let by = |p: &str| got.iter().find(|g| g.path == p).unwrap().clone();
    let key = by("/json").key();
    assert!(got.iter().all(|g| g.key() == key), "one idempotency key");
    let body = by("/json").json();
    assert_eq!(body["idempotencyKey"], key.as_str());
    assert_eq!(body["event"], "post.new");
    assert_eq!(body["post"]["id"], key.as_str());
    assert_eq!(body["post"]["platformPostId"], added[0].as_str());
    let ntfy = by("/ntfy");
    let link = format!("https://x.com/{}/status/{}", username(0), added[0]);
    assert_eq!(ntfy.headers["click"], link);
    assert_eq!(ntfy.headers["tags"], "post");
    assert!(ntfy.headers["title"].contains("Leader Zero"));
    assert_eq!(
        ntfy.body,
        body["post"]["content"].as_str().unwrap().as_bytes()
    );
    assert!(by("/discord").json()["content"]
        .as_str()
        .unwrap()
        .contains(&link));
    assert!(by("/slack").json()["text"]
        .as_str()
        .unwrap()
        .contains(&link));
    let list = targets(&w.app).await;
    assert_eq!(list[0]["delivery"]["lastDeliveredPostId"], key.as_str());
    assert!(list[0]["delivery"]["lastDeliveryAt"].is_string());
    let metrics = w.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("amber_notifications_total{result=\"delivered\"} 4"),
        "{metrics}"
    );
}

#[actix_web::test]
async fn a_receiver_that_was_down_gets_every_post_once_in_order() {
    let rx = Receiver::start();
    let w = world(&[("NOTIFY_PAUSE_AFTER", "1000")]).await;
    add_target(&w.app, json!({"url": rx.url, "format": "json"})).await;
    run(&w.app).await;
    rx.set_default(503);
    w.fake.add_posts(&username(0), 3);
    run(&w.app).await;
    w.fake.add_posts(&username(0), 2);
    run(&w.app).await;
    // Down for a while: failed tries pile up, nothing is lost.
    eventually(WAIT, "retries", || async {
        (rx.got().len() >= 10).then_some(())
    })
    .await;
    assert_eq!(targets(&w.app).await[0]["queued"], 5);
    rx.set_default(200);
    wait_delivered(&w.app, 5).await;
    let keys: Vec<u64> = rx
        .delivered()
        .iter()
        .map(|g| g.key().parse().unwrap())
        .collect();
    assert_eq!(keys.len(), 5, "each post delivered once: {keys:?}");
    assert!(keys.windows(2).all(|k| k[0] < k[1]), "in order: {keys:?}");
    let t = &targets(&w.app).await[0];
    assert!(t["delivery"]["failures"].as_u64().unwrap() >= 10);
    assert_eq!(t["delivery"]["lastError"], "HTTP 503");
}

#[actix_web::test]
async fn a_429_retry_after_is_honoured() {
    let rx = Receiver::start();
    let w = world(&[]).await;
    add_target(&w.app, json!({"url": rx.url, "format": "ntfy"})).await;
    run(&w.app).await;
    rx.script(vec![(429, vec![("Retry-After".into(), "2".into())])]);
    w.fake.add_posts(&username(0), 1);
    run(&w.app).await;
    wait_delivered(&w.app, 1).await;
    let got = rx.got();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].status, 429);
    let waited = got[1].at - got[0].at;
    // The retry base here is 20 ms: only Retry-After explains a two-second wait.
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert_eq!(got[0].key(), got[1].key());
}

#[actix_web::test]
async fn a_full_outbox_survives_kill_9() {
    let rx = Receiver::start();
    let w = world(&[]).await;
    add_target(&w.app, json!({"url": rx.url, "format": "slack"})).await;
    run(&w.app).await;
    rx.set_default(500);
    w.fake.add_posts(&username(0), 4);
    run(&w.app).await;
    assert_eq!(targets(&w.app).await[0]["queued"], 4);
    let app = w.app.restart().await; // kill -9, then start again
    rx.set_default(200);
    eventually(WAIT, "deliveries after the restart", || async {
        let t = targets(&app).await;
        (t[0]["queued"] == 0).then_some(())
    })
    .await;
    let mut keys: Vec<String> = rx.delivered().iter().map(Got::key).collect();
    keys.dedup();
    assert_eq!(keys.len(), 4, "{keys:?}");
}

#[actix_web::test]
async fn a_target_that_keeps_failing_is_paused_and_resumed() {
    let rx = Receiver::start();
    let w = world(&[("NOTIFY_PAUSE_AFTER", "3")]).await;
    let id = add_target(&w.app, json!({"url": rx.url, "format": "discord"})).await;
    run(&w.app).await;
    rx.set_default(500);
    w.fake.add_posts(&username(0), 2);
    run(&w.app).await;
    let t = eventually(WAIT, "the pause", || async {
        let t = targets(&w.app).await.remove(0);
        (t["paused"] == true).then_some(t)
    })
    .await;
    assert_eq!(rx.got().len(), 3);
    assert_eq!(t["queued"], 2, "the queue is kept");
    assert!(t["pausedReason"].as_str().unwrap().contains("HTTP 500"));
    rx.set_default(204);
    let res = w
        .app
        .admin_post(&format!("/api/admin/notifications/{id}/resume"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    wait_delivered(&w.app, 2).await;
    assert_eq!(targets(&w.app).await[0]["paused"], false);
}

#[actix_web::test]
async fn bad_targets_are_refused_with_4xx() {
    let app = spawn_app_with(&[("SEED_LEADERS", "false")]).await;
    for body in [
        json!({"url": "ftp://x/", "format": "json"}),
        json!({"url": "http://127.0.0.1:9/", "format": "matrix"}),
        json!({"url": "http://127.0.0.1:9/", "format": "json", "kinds": ["tweet"]}),
        json!({"url": "http://127.0.0.1:9/", "format": "json", "keywords": [" "]}),
        json!({"url": "http://127.0.0.1:9/", "format": "json", "extra": 1}),
        json!({"format": "json"}),
    ] {
        let res = app.admin_post("/api/admin/notifications", &body).await;
        assert_eq!(res.status(), 400, "{body}");
        let e: Value = res.json().await.unwrap();
        assert!(e["error"].is_string() || e["error"].is_object(), "{e}");
    }
    let res = app
        .admin_post(
            "/api/admin/notifications",
            &json!({"url": "http://127.0.0.1:9/", "format": "json", "leaders": ["99"]}),
        )
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        app.admin_delete("/api/admin/notifications/7")
            .await
            .status(),
        404
    );
    let res = app.get("/api/admin/notifications").await;
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn notify_url_configures_a_default_target() {
    let rx = Receiver::start();
    let url = format!("{}/env", rx.url);
    let w = world(&[("NOTIFY_URL", url.as_str()), ("NOTIFY_FORMAT", "ntfy")]).await;
    let t = targets(&w.app).await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["fromEnv"], true);
    assert_eq!(t[0]["format"], "ntfy");
    assert_eq!(t[0]["url"], url.as_str());
    // A restart keeps the same target (and its queue), not a second one.
    let app = w.app.restart().await;
    let again = targets(&app).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["id"], t[0]["id"]);
}

/// A receiver that accepts connections and never answers: each delivery to it hangs
/// until the server's timeout. Counts the connections it holds.
struct Hang {
    url: String,
    held: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Hang {
    fn start() -> Hang {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hang", listener.local_addr().unwrap());
        let held: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let keep = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                keep.lock().unwrap().push(stream);
            }
        });
        Hang { url, held }
    }

    fn connections(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

#[actix_web::test]
async fn a_receiver_that_never_answers_delays_neither_ingestion_nor_the_api() {
    let rx = Receiver::start();
    let hang = Hang::start();
    // A delivery may take an hour: anything that waited for one would miss WAIT.
    let w = world(&[("NOTIFY_TIMEOUT_SECONDS", "3600")]).await;
    let dead = add_target(&w.app, json!({"url": hang.url, "format": "json"})).await;
    add_target(&w.app, json!({"url": rx.url, "format": "json"})).await;
    run(&w.app).await;
    let first = w.fake.add_posts(&username(0), 2);
    run(&w.app).await;
    // The dead receiver holds a delivery open...
    eventually(WAIT, "a delivery to the silent receiver", || async {
        (hang.connections() >= 1).then_some(())
    })
    .await;
    // ...while ingestion runs again, the API serves the new posts and the other target
    // gets every one of them.
    let second = w.fake.add_posts(&username(0), 2);
    run(&w.app).await;
    let (status, feed) = w.app.get_json("/api/feed?page_size=50").await;
    assert_eq!(status, 200);
    let shown: Vec<String> = feed["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platformPostId"].as_str().unwrap_or_default().to_string())
        .collect();
    for id in first.iter().chain(&second) {
        assert!(shown.contains(id), "{id} not in the feed: {shown:?}");
    }
    eventually(WAIT, "the answering target's deliveries", || async {
        (rx.delivered().len() == 4).then_some(())
    })
    .await;
    let (status, _) = w.app.get_json("/api/ingestion/status").await;
    assert_eq!(status, 200);
    let all = targets(&w.app).await;
    let silent = all.iter().find(|t| id_of(&t["id"]) == dead).unwrap();
    assert_eq!(silent["queued"], 4, "the silent target keeps its queue");
    assert_eq!(silent["delivery"]["delivered"], 0);
    assert_eq!(hang.connections(), 1, "one delivery at a time per target");
}

#[actix_web::test]
async fn an_approved_only_target_hears_of_approvals_not_of_new_posts() {
    let rx = Receiver::start();
    let w = world(&[]).await;
    add_target(
        &w.app,
        json!({"url": format!("{}/approved", rx.url), "format": "json", "approvedOnly": true}),
    )
    .await;
    add_target(
        &w.app,
        json!({"url": format!("{}/new", rx.url), "format": "json"}),
    )
    .await;
    let list = targets(&w.app).await;
    assert_eq!(list[0]["approvedOnly"], true);
    assert_eq!(list[1]["approvedOnly"], false);
    run(&w.app).await;
    let added = w.fake.add_posts(&username(0), 1);
    run(&w.app).await;
    eventually(WAIT, "the new post's delivery", || async {
        (rx.delivered().len() == 1).then_some(())
    })
    .await;
    let got = rx.delivered();
    assert_eq!(got[0].path, "/new");
    assert_eq!(got[0].json()["post"]["platformPostId"], added[0].as_str());
    // A post waiting for review: approving it (once) is what the approved-only target hears.
    let (_, leaders) = w.app.get_json("/api/leaders").await;
    let leader_id = id_of(&leaders[0]["id"]);
    let post = w
        .app
        .create_post(&json!({"leaderId": leader_id, "platform": "news",
            "content": "awaiting review", "requiresReview": true}))
        .await;
    let item = id_of(&post["reviewItem"]["id"]);
    for _ in 0..2 {
        let res = w
            .app
            .admin_post(&format!("/api/review/{item}/approve"), &json!({}))
            .await;
        assert_eq!(res.status(), 200);
    }
    wait_delivered(&w.app, 1).await;
    let got = rx.delivered();
    assert_eq!(got.len(), 2, "{got:?}");
    let approved = got.iter().find(|g| g.path == "/approved").unwrap();
    let body = approved.json();
    assert_eq!(body["event"], "post.approved");
    assert_eq!(body["post"]["content"], "awaiting review");
    assert_eq!(approved.key(), id_of(&post["id"]).to_string());
}
