//! Syndication feeds, black-box (issue 13): RSS and Atom read by real clients (Python's
//! `feedparser`, which does not read JSON Feed; from PyPI into `target/feedparser`, see `.ci/run`; Debian's
//! `newsboat`), conditional GET, filters and bad input.
//!
//! Without feedparser or newsboat the tests that need them print one SKIP line, except
//! under `CI=true`, where a missing client is a failure.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use amber::x_api::fake::username;

use crate::helpers::{id_of, run_ingestion, spawn_app_with, spawn_on_fake_x, TestApp};

const FORMATS: [&str; 3] = ["rss", "atom", "json"];

/// The Python of the feedparser venv, if it can import feedparser.
fn feedparser_python() -> Option<PathBuf> {
    let python = match std::env::var("FEEDPARSER_PYTHON") {
        Ok(p) => PathBuf::from(p),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/feedparser/bin/python"),
    };
    let ok = Command::new(&python)
        .args(["-c", "import feedparser"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "feedparser is missing (.ci/run installs it into target/feedparser)"
    );
    None
}

/// What feedparser makes of a document: bozo, version, the feed's title and its entries.
const PARSE: &str = r#"
import json, sys, feedparser
d = feedparser.parse(sys.stdin.buffer.read(), response_headers={"content-type": sys.argv[1]})
def entry(e):
    return {
        "id": e.get("id"), "title": e.get("title"), "link": e.get("link"),
        "author": e.get("author"),
        "content": [c.get("value") for c in e.get("content", [])] or [e.get("summary")],
        "published": list(e.published_parsed[:6]) if e.get("published_parsed") else None,
        "enclosures": [x.get("href") for x in e.get("enclosures", [])],
    }
print(json.dumps({
    "bozo": bool(d.bozo), "error": str(d.get("bozo_exception", "")),
    "version": d.version, "title": d.feed.get("title"),
    "entries": [entry(e) for e in d.entries],
}))
"#;

/// Parses `body` as feedparser does a download with this `Content-Type`.
fn feedparser(python: &PathBuf, content_type: &str, body: &[u8]) -> Value {
    let mut child = Command::new(python)
        .args(["-c", PARSE, content_type])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().expect("feedparser output");
    assert!(out.status.success(), "feedparser failed");
    serde_json::from_slice(&out.stdout).expect("feedparser JSON")
}

async fn server() -> TestApp {
    spawn_app_with(&[("SEED_LEADERS", "false")]).await
}

async fn add_leader(app: &TestApp, name: &str, handle: &str) -> u64 {
    let res = app
        .admin_post(
            "/api/leaders",
            &json!({"name": name, "handles": {"x": handle}}),
        )
        .await;
    assert_eq!(res.status(), 201);
    id_of(&res.json::<Value>().await.unwrap()["id"])
}

async fn add_post(app: &TestApp, leader: u64, text: &str, ext: &str, ts: &str) -> Value {
    app.create_post(&json!({
        "leaderId": leader, "platform": "x", "content": text,
        "platformPostId": ext, "timestamp": ts,
    }))
    .await
}

async fn body(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let res = app.get(path).await;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

#[actix_web::test]
async fn every_format_parses_in_feedparser_with_the_posts_newest_first() {
    let app = server().await;
    let ann = add_leader(&app, "Ann & <Lee>", "ann").await;
    let bob = add_leader(&app, "Bob", "bob").await;
    let hostile = "Tom & Jerry <script>alert(1)</script> \u{1F600} مرحبا بالعالم \u{0}\u{7}bell";
    add_post(
        &app,
        ann,
        "first post",
        "1800000000000000001",
        "2025-01-01T10:00:00Z",
    )
    .await;
    add_post(
        &app,
        ann,
        hostile,
        "1800000000000000002",
        "2025-01-02T10:00:00Z",
    )
    .await;
    add_post(
        &app,
        bob,
        "bob speaks",
        "1800000000000000003",
        "2025-01-03T10:00:00Z",
    )
    .await;
    let python = feedparser_python();
    if python.is_none() {
        eprintln!("SKIP feedparser checks: no feedparser (see .ci/run)");
    }
    for format in FORMATS {
        let (status, headers, all) = body(&app, &format!("/feeds/all.{format}")).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&all));
        let ct = headers["content-type"].to_str().unwrap();
        assert!(ct.starts_with(match format {
            "rss" => "application/rss+xml",
            "atom" => "application/atom+xml",
            _ => "application/feed+json",
        }));
        assert!(headers.contains_key("etag") && headers.contains_key("last-modified"));
        assert!(headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age="));
        let text = String::from_utf8(all.clone()).unwrap();
        assert!(!text.contains('\u{0}') && !text.contains('\u{7}'));
        if format == "json" {
            let doc: Value = serde_json::from_slice(&all).unwrap();
            assert_eq!(doc["version"], "https://jsonfeed.org/version/1.1");
            let items = doc["items"].as_array().unwrap();
            assert_eq!(items.len(), 3);
            assert_eq!(items[0]["content_text"], "bob speaks");
            assert_eq!(items[1]["id"], "https://x.com/i/status/1800000000000000002");
            assert!(items[1]["content_text"]
                .as_str()
                .unwrap()
                .contains("<script>alert(1)</script> \u{1F600} مرحبا بالعالم bell"));
            assert_eq!(
                items[1]["url"],
                "https://x.com/ann/status/1800000000000000002"
            );
            assert_eq!(items[2]["date_published"], "2025-01-01T10:00:00Z");
            for item in items {
                assert!(item["id"].is_string() && item["content_html"].is_string());
                assert!(item["authors"][0]["name"].is_string());
            }
            assert!(doc["feed_url"]
                .as_str()
                .unwrap()
                .ends_with("/feeds/all.json"));
        }
        // feedparser (6.0, the released line) reads RSS and Atom; JSON Feed is checked
        // above against the 1.1 document's fields.
        let Some(py) = python.as_ref().filter(|_| format != "json") else {
            continue;
        };
        let parsed = feedparser(py, ct, &all);
        assert_eq!(parsed["bozo"], false, "{format}: {}", parsed["error"]);
        let entries = parsed["entries"].as_array().unwrap();
        let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "https://x.com/i/status/1800000000000000003",
                "https://x.com/i/status/1800000000000000002",
                "https://x.com/i/status/1800000000000000001"
            ],
            "{format}"
        );
        let hostile_entry = &entries[1];
        let content = hostile_entry["content"][0].as_str().unwrap();
        // The HTML escapes the text: the script tag is text, never markup.
        assert!(content.contains("&lt;script&gt;"), "{format}: {content}");
        assert!(
            content.contains("\u{1F600} مرحبا بالعالم"),
            "{format}: {content}"
        );
        assert_eq!(
            hostile_entry["link"],
            "https://x.com/ann/status/1800000000000000002"
        );
        assert_eq!(
            entries[2]["published"],
            json!([2025, 1, 1, 10, 0, 0]),
            "{format}"
        );
        assert!(hostile_entry["author"].as_str().unwrap().contains("ann"));
        // One leader's feed: only that leader's posts, the leader's name in the title.
        let (status, _, one) = body(&app, &format!("/feeds/leaders/{ann}.{format}")).await;
        assert_eq!(status, 200);
        let parsed = feedparser(py, ct, &one);
        assert_eq!(parsed["bozo"], false, "{format}: {}", parsed["error"]);
        assert_eq!(parsed["title"], "Amber: Ann & <Lee>");
        assert_eq!(parsed["entries"].as_array().unwrap().len(), 2);
    }
}

#[actix_web::test]
async fn filters_size_and_keywords_choose_the_items_and_bad_values_are_400s() {
    let app = server().await;
    let ann = add_leader(&app, "Ann", "ann").await;
    for (i, text) in ["Rust is fast", "Go is simple", "rust and go", "Python"]
        .iter()
        .enumerate()
    {
        add_post(
            &app,
            ann,
            text,
            &format!("18000000000000000{i:02}"),
            &format!("2025-01-0{}T10:00:00Z", i + 1),
        )
        .await;
    }
    let titles = |doc: Value| -> Vec<String> {
        assert!(doc["items"].is_array(), "{doc}");
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, doc) = app.get_json("/feeds/all.json?q=RUST").await;
    assert_eq!(titles(doc), ["rust and go", "Rust is fast"]);
    let (_, doc) = app.get_json("/feeds/all.json?q=rust&exclude=go").await;
    assert_eq!(titles(doc), ["Rust is fast"]);
    let (_, doc) = app
        .get_json(&format!("/feeds/leaders/{ann}.json?size=2"))
        .await;
    assert_eq!(titles(doc), ["Python", "rust and go"]);
    let (_, doc) = app.get_json("/feeds/all.json?source=news").await;
    assert_eq!(titles(doc), Vec::<String>::new());
    let (_, doc) = app.get_json("/feeds/all.json?kinds=repost").await;
    assert_eq!(titles(doc), Vec::<String>::new());
    let (_, doc) = app
        .get_json(&format!("/feeds/leaders/{ann}.json?kinds=post,reply"))
        .await;
    assert_eq!(titles(doc).len(), 4);
    for bad in [
        "size=0",
        "size=201",
        "size=x",
        "source=myspace",
        "kinds=retweet",
        "leaders=a",
    ] {
        let (status, err) = app.get_json(&format!("/feeds/all.rss?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(err["error"], "invalid_query", "{bad}");
        assert!(err["message"].is_string());
    }
    for missing in [
        "/feeds/all.xml",
        "/feeds/leaders/999.rss",
        "/feeds/leaders/nope.atom",
    ] {
        let (status, err) = app.get_json(missing).await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(err["error"], "not_found");
    }
}

#[actix_web::test]
async fn validators_answer_304_until_the_feed_itself_changes() {
    let app = server().await;
    let ann = add_leader(&app, "Ann", "ann").await;
    let bob = add_leader(&app, "Bob", "bob").await;
    add_post(
        &app,
        ann,
        "one",
        "1800000000000000001",
        "2025-01-01T10:00:00Z",
    )
    .await;
    let path = format!("/feeds/leaders/{ann}.atom");
    let (status, headers, _) = body(&app, &path).await;
    assert_eq!(status, 200);
    let etag = headers["etag"].to_str().unwrap().to_string();
    let last_modified = headers["last-modified"].to_str().unwrap().to_string();
    let conditional = |name: &'static str, value: String| {
        let req = app.client.get(app.url(&path)).header(name, value);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let etag = res.headers()["etag"].to_str().unwrap().to_string();
            (status, etag, res.bytes().await.unwrap())
        }
    };
    let (status, same, empty) = conditional("if-none-match", etag.clone()).await;
    assert_eq!(
        (status, same.as_str(), empty.len()),
        (304, etag.as_str(), 0)
    );
    let (status, _, empty) = conditional("if-modified-since", last_modified.clone()).await;
    assert_eq!((status, empty.len()), (304, 0));
    // Another leader's post: this feed's content is unchanged, and so are its validators.
    add_post(
        &app,
        bob,
        "bob",
        "1800000000000000002",
        "2025-01-02T10:00:00Z",
    )
    .await;
    let (status, same, _) = conditional("if-none-match", etag.clone()).await;
    assert_eq!((status, same.as_str()), (304, etag.as_str()));
    // This leader's new post: a new ETag and a full answer.
    add_post(
        &app,
        ann,
        "two",
        "1800000000000000003",
        "2025-01-03T10:00:00Z",
    )
    .await;
    let (status, new, full) = conditional("if-none-match", etag.clone()).await;
    assert_eq!(status, 200);
    assert_ne!(new, etag);
    assert!(String::from_utf8_lossy(&full).contains("two"));
    let (status, _, _) = conditional("if-modified-since", last_modified).await;
    assert_eq!(status, 200);
    // An edit of the text (the newest time unchanged) changes the validators too.
    let posts = app.get_json("/api/posts").await.1;
    let first = posts
        .as_array()
        .and_then(|a| a.iter().find(|p| p["content"] == "one"))
        .map(|p| p["id"].as_str().unwrap().to_string())
        .expect("post one");
    let res = app
        .send_json(
            reqwest::Method::PUT,
            &format!("/api/posts/{first}"),
            &json!({"content": "one, corrected"}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let (status, newer, full) = conditional("if-none-match", new.clone()).await;
    assert_eq!(status, 200);
    assert_ne!(newer, new);
    assert!(String::from_utf8_lossy(&full).contains("one, corrected"));
}

#[actix_web::test]
async fn a_304_costs_one_token_and_a_full_answer_two() {
    let app = spawn_app_with(&[
        ("SEED_LEADERS", "false"),
        ("REQUESTS_PER_MINUTE", "6"),
        ("BURST_SIZE", "6"),
    ])
    .await;
    let res = app.get("/feeds/all.rss").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "4");
    let etag = res.headers()["etag"].clone();
    let res = app
        .client
        .get(app.url("/feeds/all.rss"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "3");
    // A validator that does not match: one up front, one more for the full answer.
    let res = app
        .client
        .get(app.url("/feeds/all.rss"))
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "1");
}

/// `newsboat` and `sqlite3` (to read what newsboat stored), if both are installed.
fn newsboat_present() -> bool {
    let has = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = has("newsboat") && has("sqlite3");
    assert!(
        ok || std::env::var("CI").as_deref() != Ok("true"),
        "newsboat or sqlite3 is missing (.ci/run installs them)"
    );
    ok
}

/// newsboat with its own config, URL list and cache in `dir` (and `dir` as its home, so
/// it touches nothing of the user's). Returns stdout; panics when newsboat fails.
fn newsboat(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("newsboat")
        .args(["-C", "config", "-u", "urls", "-c", "cache.db"])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("run newsboat");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "newsboat {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Rows of newsboat's cache, `|`-separated.
fn newsboat_cache(dir: &std::path::Path, sql: &str) -> Vec<String> {
    let out = Command::new("sqlite3")
        .arg(dir.join("cache.db"))
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[actix_web::test]
async fn newsboat_imports_the_opml_and_shows_every_feeds_items_once() {
    if !newsboat_present() {
        eprintln!("SKIP newsboat test: newsboat or sqlite3 is missing (see .ci/run)");
        return;
    }
    let app = server().await;
    let ann = add_leader(&app, "Ann & <Lee>", "ann").await;
    let bob = add_leader(&app, "Bob", "bob").await;
    add_post(
        &app,
        ann,
        "ann one",
        "1800000000000000001",
        "2025-01-01T10:00:00Z",
    )
    .await;
    add_post(
        &app,
        ann,
        "ann <two> & more",
        "1800000000000000002",
        "2025-01-02T10:00:00Z",
    )
    .await;
    add_post(
        &app,
        bob,
        "bob one",
        "1800000000000000003",
        "2025-01-03T10:00:00Z",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (status, _, opml) = body(&app, "/feeds/opml").await;
    assert_eq!(status, 200);
    std::fs::write(dir.path().join("amber.opml"), &opml).unwrap();
    std::fs::write(dir.path().join("config"), "").unwrap();
    std::fs::write(dir.path().join("urls"), "").unwrap();
    newsboat(dir.path(), &["-i", "amber.opml"]);
    let urls = std::fs::read_to_string(dir.path().join("urls")).unwrap();
    let all = app.url("/feeds/all.rss");
    let ann_feed = app.url(&format!("/feeds/leaders/{ann}.rss"));
    let bob_feed = app.url(&format!("/feeds/leaders/{bob}.rss"));
    for url in [&all, &ann_feed, &bob_feed] {
        assert!(
            urls.lines().any(|l| l.starts_with(url.as_str())),
            "{url} not imported: {urls}"
        );
    }
    // Every post is in the combined feed and in its leader's, with the same GUID: newsboat
    // (which keys articles by GUID) shows each once.
    let out = newsboat(dir.path(), &["-x", "reload", "print-unread"]);
    assert!(out.contains("3 unread articles"), "{out}");
    let feeds = newsboat_cache(dir.path(), "select rssurl, title from rss_feed");
    for (url, title) in [
        (&all, "Amber: all leaders"),
        (&ann_feed, "Amber: Ann & <Lee>"),
        (&bob_feed, "Amber: Bob"),
    ] {
        assert!(feeds.contains(&format!("{url}|{title}")), "{feeds:?}");
    }
    let items = newsboat_cache(
        dir.path(),
        "select guid, title, url, author from rss_item order by pubDate desc",
    );
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[0].starts_with(
        "https://x.com/i/status/1800000000000000003|bob one|https://x.com/bob/status/1800000000000000003|"
    ), "{items:?}");
    assert!(items[1].starts_with(
        "https://x.com/i/status/1800000000000000002|ann <two> & more|https://x.com/ann/status/1800000000000000002|"
    ), "{items:?}");
    // Polling again (newsboat sends the validators) adds nothing; a new post adds one.
    let out = newsboat(dir.path(), &["-x", "reload", "print-unread"]);
    assert!(out.contains("3 unread articles"), "{out}");
    add_post(
        &app,
        bob,
        "bob two",
        "1800000000000000004",
        "2025-01-04T10:00:00Z",
    )
    .await;
    let out = newsboat(dir.path(), &["-x", "reload", "print-unread"]);
    assert!(out.contains("4 unread articles"), "{out}");
    let guids = newsboat_cache(
        dir.path(),
        "select count(*), count(distinct guid) from rss_item",
    );
    assert_eq!(guids, ["4|4"]);
}

#[actix_web::test]
async fn an_edited_post_keeps_its_guid_across_edits_and_restarts() {
    let (fake, app) = spawn_on_fake_x(1, 3, &[("SEED_LEADERS", "false")]).await;
    add_leader(&app, "Leader Zero", &format!("@{}", username(0))).await;
    run_ingestion(&app).await;
    let first = fake.post_ids(&username(0))[0].clone();
    let guid = format!("https://x.com/i/status/{first}");
    let items = |app: &TestApp| {
        let url = app.url("/feeds/all.json");
        let client = app.client.clone();
        async move {
            let doc: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            doc["items"].as_array().unwrap().clone()
        }
    };
    let before = items(&app).await;
    assert_eq!(before.len(), 3);
    assert!(
        before.iter().any(|i| i["id"] == guid.as_str()),
        "{before:?}"
    );
    // Two edits: each gives the post a new X id; the item keeps the first one.
    let second = fake.edit_post(&first, "Corrected once").unwrap();
    run_ingestion(&app).await;
    let third = fake.edit_post(&second, "Corrected twice").unwrap();
    run_ingestion(&app).await;
    let check = |items: Vec<Value>| {
        assert_eq!(items.len(), 3, "an edit is no new item: {items:?}");
        let edited = items
            .iter()
            .find(|i| i["content_text"] == "Corrected twice")
            .unwrap_or_else(|| panic!("the edit is not in the feed: {items:?}"));
        assert_eq!(edited["id"], guid.as_str());
        assert!(
            edited["url"].as_str().unwrap().ends_with(&third),
            "{edited}"
        );
        assert!(items.iter().all(|i| {
            let id = i["id"].as_str().unwrap();
            !id.ends_with(&second) && !id.ends_with(&third)
        }));
    };
    check(items(&app).await);
    let (_, rss_headers, rss) = body(&app, "/feeds/all.rss").await;
    assert_eq!(
        rss_headers["content-type"].to_str().unwrap(),
        "application/rss+xml; charset=utf-8"
    );
    let rss = String::from_utf8(rss).unwrap();
    assert!(
        rss.contains(&format!("<guid isPermaLink=\"false\">{guid}</guid>")),
        "{rss}"
    );
    // kill -9 and a new process: the same GUID.
    let app = app.restart().await;
    check(items(&app).await);
}
