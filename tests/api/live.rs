//! `GET /api/feed/events` (issue 12): new and deleted posts reach an SSE client, whatever
//! wrote them; the feed's filters, `Last-Event-ID` resume (from the ring, and from the
//! store after a restart), keep-alives, the stream cap, the rate limit, and SIGTERM with
//! streams open.

use std::time::{Duration, Instant};

use amber::x_api::fake::username;
use serde_json::{json, Value};

use crate::helpers::{eventually, id_of, spawn_app, spawn_app_with, spawn_on_fake_x, TestApp};

/// How long an expected event may take on a loaded machine (the ≤ 1 s figure is a
/// benchmark, see BENCHMARKS.md; these tests print what they saw).
const ARRIVAL: Duration = Duration::from_secs(10);

/// One block of an event stream.
#[derive(Debug, Clone, Default)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: Option<Value>,
    comment: bool,
}

/// A client of the event stream over a real socket.
struct Sse {
    res: reqwest::Response,
    buf: String,
    ended: bool,
}

/// Opens `/api/feed/events<query>` (optionally resuming) and returns the raw answer.
async fn request(app: &TestApp, query: &str, last: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(app.url(&format!("/api/feed/events{query}")))
        .header("accept", "text/event-stream");
    if let Some(id) = last {
        req = req.header("last-event-id", id);
    }
    req.send().await.expect("request")
}

impl Sse {
    /// Opens a stream and waits for its first block (`retry` + `: connected`), so that
    /// what is written afterwards is published to it.
    async fn open(app: &TestApp, query: &str, last: Option<&str>) -> Sse {
        let res = request(app, query, last).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        assert_eq!(res.headers()["cache-control"], "no-cache");
        let mut sse = Sse {
            res,
            buf: String::new(),
            ended: false,
        };
        let first = sse.frame(ARRIVAL).await.expect("the stream's first block");
        assert!(first.comment, "{first:?}");
        sse
    }

    /// The next block, `None` when the stream ended or nothing came within `wait`.
    async fn frame(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let mut f = Frame::default();
                for line in block.lines() {
                    if line.starts_with(':') {
                        f.comment = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        f.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        f.event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        f.data = Some(serde_json::from_str(v).expect("data is JSON"));
                    }
                }
                return Some(f);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(_) => self.ended = true,
            }
        }
    }

    /// The next event (comments skipped); panics if none comes within [`ARRIVAL`].
    async fn event(&mut self) -> Frame {
        loop {
            let f = self.frame(ARRIVAL).await.expect("an event");
            if f.event.is_some() {
                return f;
            }
        }
    }

    /// True when the stream ends (the server closed it) within `wait`.
    async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.frame(left).await.is_none() {
                return self.ended;
            }
        }
    }
}

async fn create(app: &TestApp, leader: u64, platform: &str, content: &str) -> u64 {
    let post = app
        .create_post(&json!({"leaderId": leader, "platform": platform, "content": content}))
        .await;
    id_of(&post["id"])
}

#[actix_web::test]
async fn a_created_post_and_its_deletion_reach_an_open_stream() {
    let app = spawn_app().await;
    let mut sse = Sse::open(&app, "", None).await;
    let sent = Instant::now();
    let id = create(&app, 2, "news", "live one").await;
    let f = sse.event().await;
    eprintln!("new post arrived {:?} after POST was sent", sent.elapsed());
    assert_eq!(f.event.as_deref(), Some("new"));
    let data = f.data.unwrap();
    assert_eq!(id_of(&data["id"]), id);
    assert_eq!(data["type"], "new");
    assert_eq!(data["leaderId"], "2");
    assert_eq!(data["platform"], "News");
    assert_eq!(data["kind"], "post");
    assert!(data["timestamp"].as_str().unwrap().ends_with('Z'));
    // The event names a post the feed already shows.
    let (_, feed) = app.get_json("/api/feed").await;
    assert_eq!(id_of(&feed["posts"][0]["id"]), id);

    let res = app.admin_delete(&format!("/api/posts/{id}")).await;
    assert!(res.status().is_success(), "{}", res.status());
    let f = sse.event().await;
    assert_eq!(f.event.as_deref(), Some("deleted"));
    assert_eq!(id_of(&f.data.unwrap()["id"]), id);
}

#[actix_web::test]
async fn a_refresh_against_the_fake_x_api_reaches_an_open_stream() {
    let (_fake, app) = spawn_on_fake_x(1, 3, &[("SEED_LEADERS", "false")]).await;
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": "Leader 0", "handles": {"x": format!("@{}", username(0))}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let leader = id_of(&res.json::<Value>().await.unwrap()["id"]);
    let mut sse = Sse::open(&app, &format!("?leaders={leader}&source=x"), None).await;
    let res = app
        .send_json(
            reqwest::Method::POST,
            &format!("/api/leaders/{leader}/refresh"),
            &json!({}),
            None,
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let f = sse.event().await;
        assert_eq!(f.event.as_deref(), Some("new"));
        let data = f.data.unwrap();
        assert_eq!(data["leaderId"], leader.to_string());
        assert_eq!(data["platform"], "X");
        ids.push(id_of(&data["id"]));
    }
    let (_, feed) = app.get_json(&format!("/api/feed?leaders={leader}")).await;
    let mut in_feed: Vec<u64> = feed["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| id_of(&p["id"]))
        .collect();
    in_feed.sort_unstable();
    ids.sort_unstable();
    assert_eq!(ids, in_feed);
}

#[actix_web::test]
async fn the_feeds_filters_choose_the_events() {
    let app = spawn_app().await;
    let mut sse = Sse::open(&app, "?leaders=1,3&source=news&kinds=post,quote", None).await;
    let mut all = Sse::open(&app, "", None).await;
    create(&app, 2, "news", "other leader").await;
    create(&app, 1, "facebook", "other source").await;
    let shown = create(&app, 3, "news", "shown").await;
    let f = sse.event().await;
    assert_eq!(id_of(&f.data.unwrap()["id"]), shown, "the filtered stream");
    // The unfiltered stream saw all three, in order (kinds: see the unit test of
    // `FeedFilter::shows`; the API cannot create a reply).
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(id_of(&all.event().await.data.unwrap()["id"]));
    }
    assert_eq!(seen.last(), Some(&shown));
    // Bad filters are the feed's 400s.
    for q in ["?leaders=x", "?source=myspace", "?kinds=story", "?kinds="] {
        let res = request(&app, q, None).await;
        assert_eq!(res.status(), 400, "{q}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_query", "{q}");
    }
}

#[actix_web::test]
async fn last_event_id_replays_what_was_missed_from_the_ring_and_after_a_restart() {
    let app = spawn_app().await;
    let mut sse = Sse::open(&app, "", None).await;
    let a = create(&app, 1, "news", "a").await;
    let last = sse.event().await.id.expect("an id");
    drop(sse);
    // Missed while away: a new post and a deletion.
    let b = create(&app, 1, "news", "b").await;
    assert!(app
        .admin_delete(&format!("/api/posts/{a}"))
        .await
        .status()
        .is_success());
    let mut sse = Sse::open(&app, "", Some(&last)).await;
    let f = sse.event().await;
    assert_eq!(
        (f.event.as_deref(), id_of(&f.data.unwrap()["id"])),
        (Some("new"), b)
    );
    let f = sse.event().await;
    assert_eq!(
        (f.event.as_deref(), id_of(&f.data.unwrap()["id"])),
        (Some("deleted"), a)
    );
    drop(sse);

    // Another run of the server: the ring is gone; the posts stored since are read from
    // the store (the deletion of a cannot be replayed: it is no longer there to show).
    let app = app.restart().await;
    let c = create(&app, 1, "news", "c").await;
    let mut sse = Sse::open(&app, "?source=news", Some(&last)).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let f = sse.event().await;
        assert_eq!(f.event.as_deref(), Some("new"));
        got.push(id_of(&f.data.unwrap()["id"]));
    }
    assert_eq!(got, vec![b, c]);
    // And live events follow without a duplicate.
    let d = create(&app, 1, "news", "d").await;
    assert_eq!(id_of(&sse.event().await.data.unwrap()["id"]), d);

    // An id this server never sent (a proxy's, a hand-made one) is no error: the stream
    // opens with a `reset` (reload the feed), so nothing is lost.
    for odd in ["abc", "1", "0", "1.2.3", "-1.2", "12345678901234567890.1"] {
        let mut sse = Sse::open(&app, "", Some(odd)).await;
        assert_eq!(sse.event().await.event.as_deref(), Some("reset"), "{odd}");
    }
}

#[actix_web::test]
async fn keep_alives_flow_and_a_stream_ends_after_its_time() {
    let app = spawn_app_with(&[
        ("SSE_KEEPALIVE_SECONDS", "1"),
        ("SSE_MAX_STREAM_SECONDS", "3"),
    ])
    .await;
    let mut sse = Sse::open(&app, "", None).await;
    let f = sse.frame(ARRIVAL).await.expect("a keep-alive");
    assert!(f.comment && f.event.is_none(), "{f:?}");
    assert!(sse.ends_within(ARRIVAL).await, "the stream ends");
}

#[actix_web::test]
async fn the_stream_cap_answers_503_json_and_frees_a_slot_when_a_client_goes() {
    let app = spawn_app_with(&[("SSE_MAX_CONNECTIONS", "2"), ("SSE_KEEPALIVE_SECONDS", "1")]).await;
    let first = Sse::open(&app, "", None).await;
    let _second = Sse::open(&app, "", None).await;
    let res = request(&app, "", None).await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "too_many_streams");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("SSE_MAX_CONNECTIONS"));
    drop(first);
    // The server notices the closed socket at its next write (a keep-alive at the
    // latest); poll until the slot is free.
    eventually(Duration::from_secs(40), "a free stream slot", || async {
        let res = request(&app, "", None).await;
        (res.status() == 200).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn opening_a_stream_costs_a_token() {
    let app = spawn_app_with(&[("REQUESTS_PER_MINUTE", "2"), ("BURST_SIZE", "2")]).await;
    let _a = Sse::open(&app, "", None).await;
    let _b = Sse::open(&app, "", None).await;
    let res = request(&app, "", None).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
}

#[actix_web::test]
async fn sigterm_ends_open_streams_and_the_server_stops_at_once() {
    let mut app = spawn_app_with(&[("SSE_KEEPALIVE_SECONDS", "60")]).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(Sse::open(&app, "", None).await);
    }
    let id = create(&app, 1, "news", "before the stop").await;
    for s in &mut streams {
        assert_eq!(id_of(&s.event().await.data.unwrap()["id"]), id);
    }
    let asked = Instant::now();
    app.send_sigterm();
    for s in &mut streams {
        assert!(s.ends_within(ARRIVAL).await, "a stream ends at SIGTERM");
    }
    let status = app.wait_exit();
    let took = asked.elapsed();
    assert!(status.success(), "exit status {status:?}");
    // The drain allows 30 s; open streams must not be what it waits for.
    assert!(took < Duration::from_secs(20), "stop took {took:?}");
    assert!(app.logs().contains("store flushed"), "{}", app.logs());
}

/// `amber_feed_event_streams_open` in `/metrics`, `live` in `/api/metrics`.
async fn open_streams(app: &TestApp) -> (i64, Value) {
    let text = app.get("/metrics").await.text().await.unwrap();
    let gauge = text
        .lines()
        .find_map(|l| l.strip_prefix("amber_feed_event_streams_open "))
        .unwrap_or_else(|| panic!("no open-streams gauge in {text}"))
        .trim()
        .parse()
        .unwrap();
    let (code, json) = app.get_json("/api/metrics").await;
    assert_eq!(code, 200);
    (gauge, json["live"].clone())
}

#[actix_web::test]
async fn metrics_count_the_open_streams() {
    let app = spawn_app_with(&[("SSE_MAX_CONNECTIONS", "5"), ("SSE_KEEPALIVE_SECONDS", "1")]).await;
    let (gauge, live) = open_streams(&app).await;
    assert_eq!(gauge, 0);
    assert_eq!(live, json!({"openStreams": 0, "maxStreams": 5}));
    let first = Sse::open(&app, "", None).await;
    let _second = Sse::open(&app, "?source=x", None).await;
    let (gauge, live) = open_streams(&app).await;
    assert_eq!(gauge, 2);
    assert_eq!(live["openStreams"], 2);
    drop(first);
    // Freed when the server notices the closed socket (a keep-alive at the latest).
    eventually(Duration::from_secs(40), "one stream counted", || async {
        let (gauge, live) = open_streams(&app).await;
        (gauge == 1 && live["openStreams"] == 1).then_some(())
    })
    .await;
}
