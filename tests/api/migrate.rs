//! Migration from the original (Flask) system's database: `scripts/migrate-original/`
//! turns its three tables into an Amber backup, and `amber import` restores it with the
//! original's UUIDs still answering. The SQLite test needs the `sqlite3` CLI (Debian's
//! package); the Postgres test a server on `PGHOST` (default 127.0.0.1), database `test`.
//! Without either, one SKIP line; under `CI=true`, a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::cli::import;
use crate::helpers::spawn_on;

const LEADER_A: &str = "6f1c2a8e-0b7d-4a57-9a3e-1d2c3b4a5f60";
const LEADER_B: &str = "0c9d8e7f-1a2b-4c3d-8e4f-5a6b7c8d9e0f";
const POST_1: &str = "9b0e4c1d-33aa-4f8e-8c2b-7a6d5e4f3c21";
const POST_2: &str = "c4d5e6f7-0000-4000-8000-000000000002";
const REVIEW_1: &str = "a1b2c3d4-1111-4222-8333-444455556666";
const REVIEW_2: &str = "b2c3d4e5-2222-4333-8444-555566667777";

/// Hostile text: both quotes, a newline, a tab, a backslash, an emoji, markup.
const NAME: &str = "Ada \"The Quote\" O'Brien & <Co> 🦀";
const CONTENT: &str = "line one\nline 'two' \"three\"\t🦀 &<b>x</b> \\ end";
const NOTES: &str = "check \"this\"\nand <that> & 'those' 🦀";

/// The original's schema, as its SQLite database holds it.
const SQLITE_SCHEMA: &str = "
CREATE TABLE leaders (id VARCHAR(36) PRIMARY KEY, name VARCHAR NOT NULL, handles JSON,
  tracking_topics JSON, created_at DATETIME);
CREATE TABLE posts (id VARCHAR(36) PRIMARY KEY, leader_id VARCHAR(36) REFERENCES leaders(id),
  platform VARCHAR, content TEXT, timestamp DATETIME, sentiment VARCHAR, metrics JSON,
  verification_status VARCHAR, created_at DATETIME);
CREATE TABLE review_items (id VARCHAR(36) PRIMARY KEY, post_id VARCHAR(36) REFERENCES posts(id),
  state VARCHAR, notes TEXT, reviewer VARCHAR, reviewed_at DATETIME, updated_at DATETIME);
";

/// The original's schema in Postgres: native uuid, json and naive timestamp columns.
const POSTGRES_SCHEMA: &str = "
CREATE TABLE leaders (id uuid PRIMARY KEY, name text NOT NULL, handles json,
  tracking_topics json, created_at timestamp);
CREATE TABLE posts (id uuid PRIMARY KEY, leader_id uuid REFERENCES leaders(id),
  platform text, content text, timestamp timestamp, sentiment text, metrics json,
  verification_status text, created_at timestamp);
CREATE TABLE review_items (id uuid PRIMARY KEY, post_id uuid REFERENCES posts(id),
  state text, notes text, reviewer text, reviewed_at timestamp, updated_at timestamp);
";

/// A SQL string literal (standard SQL: quotes doubled; newlines kept as they are).
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The original's rows: naive UTC times in the forms Python writes them, NULLs where the
/// original allowed them, `"Needs Review"` and `"Verified"`.
fn rows() -> String {
    let leader_a_handles = lit(r#"{"x":"ada_orig","facebook":null}"#);
    let topics = lit(r#"["energy","grid \"policy\""]"#);
    let metrics = lit(r#"{"likes":4,"shares":1,"platformPostId":"1790000000000000001"}"#);
    format!(
        "INSERT INTO leaders VALUES ({la}, {name}, {leader_a_handles}, {topics}, '2024-05-01 12:00:00');
INSERT INTO leaders VALUES ({lb}, 'Bo', NULL, NULL, '2024-05-02T08:00:00.250000');
INSERT INTO posts VALUES ({p1}, {la}, 'X', {content}, '2024-05-03 09:15:00', 'positive',
  {metrics}, 'Needs Review', '2024-05-03 09:16:00');
INSERT INTO posts VALUES ({p2}, {lb}, 'news', 'a news item', NULL, 'Negative', NULL, 'Verified',
  '2024-05-04 10:00:00');
INSERT INTO review_items VALUES ({r1}, {p1}, 'pending', {notes}, NULL, NULL, '2024-05-03 09:20:00');
INSERT INTO review_items VALUES ({r2}, {p2}, 'approved', NULL, 'ops@example.org',
  '2024-05-04 11:00:00', '2024-05-04 11:00:00.5');
",
        la = lit(LEADER_A),
        lb = lit(LEADER_B),
        p1 = lit(POST_1),
        p2 = lit(POST_2),
        r1 = lit(REVIEW_1),
        r2 = lit(REVIEW_2),
        name = lit(NAME),
        content = lit(CONTENT),
        notes = lit(NOTES),
    )
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/migrate-original")
        .join(name)
}

/// Runs `cmd` with `input` on its stdin.
fn run(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// True when `tool` runs; otherwise one SKIP line (a failure under `CI=true`).
fn present_or_skip(test: &str, tool: &str, check: &mut Command) -> bool {
    let ok = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: {tool} is missing and CI=true");
        }
        eprintln!("SKIP {test}: {tool} is missing");
    }
    ok
}

/// A SQLite database with the original's schema and `rows`, built by the `sqlite3` CLI.
fn sqlite_db(dir: &Path, rows: &str) -> PathBuf {
    let db = dir.join("original.db");
    let mut cmd = Command::new("sqlite3");
    cmd.arg("-batch").arg("-bail").arg(&db);
    let out = run(cmd, format!("{SQLITE_SCHEMA}{rows}").as_bytes());
    assert!(
        out.status.success(),
        "building the database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

/// The backup the SQLite script writes for `db`, as the README says to run it.
fn sqlite_export(db: &Path) -> Output {
    let mut cmd = Command::new("sqlite3");
    cmd.arg("-batch").arg("-readonly").arg(db);
    run(cmd, &std::fs::read(script("sqlite.sql")).unwrap())
}

/// Imports `backup` into `dir` twice: the first adds everything, the second nothing.
fn import_twice(dir: &Path, backup: &str) {
    for (round, expected) in [
        (
            "first",
            "imported 2 leaders, 2 posts, 2 review items; skipped 0",
        ),
        (
            "second",
            "imported 0 leaders, 0 posts, 0 review items; skipped 6",
        ),
    ] {
        let out = import(dir, backup);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{round} import: {stderr}\n{backup}");
        assert!(stderr.contains(expected), "{round} import: {stderr}");
    }
}

/// Every row answers at its old UUID with the original's fields.
async fn check_migrated(dir: &Path) {
    let app = spawn_on(dir).await;

    let (status, ada) = app.get_json(&format!("/api/leaders/{LEADER_A}")).await;
    assert_eq!(status, 200, "{ada}");
    assert_eq!(ada["name"], NAME);
    assert_eq!(
        ada["handles"],
        json!({"x": "ada_orig"}),
        "null handles dropped"
    );
    assert_eq!(ada["trackingTopics"], json!(["energy", "grid \"policy\""]));
    assert_eq!(ada["createdAt"], "2024-05-01T12:00:00.000Z");
    let ada_id = ada["id"].as_str().expect("a string id").to_string();
    let (status, bo) = app.get_json(&format!("/api/leaders/{LEADER_B}")).await;
    assert_eq!(status, 200, "{bo}");
    assert_eq!(bo["handles"], json!({}));
    assert_eq!(bo["trackingTopics"], json!([]));
    assert_eq!(bo["createdAt"], "2024-05-02T08:00:00.250Z");

    let (status, p1) = app.get_json(&format!("/api/posts/{POST_1}")).await;
    assert_eq!(status, 200, "{p1}");
    assert_eq!(p1["content"], CONTENT);
    assert_eq!(p1["leaderId"], ada_id.as_str());
    assert_eq!(p1["platform"], "X");
    assert_eq!(p1["timestamp"], "2024-05-03T09:15:00.000Z");
    assert_eq!(p1["sentiment"], "Positive");
    assert_eq!(p1["verificationStatus"], "Needs Review");
    assert_eq!(p1["metrics"]["likes"], 4, "metrics kept as JSON: {p1}");
    assert_eq!(p1["metrics"]["platformPostId"], "1790000000000000001");
    assert_eq!(p1["platformPostId"], "1790000000000000001");
    let (status, p2) = app.get_json(&format!("/api/posts/{POST_2}")).await;
    assert_eq!(status, 200, "{p2}");
    assert_eq!(p2["leaderId"], bo["id"]);
    assert_eq!(
        p2["timestamp"], "2024-05-04T10:00:00.000Z",
        "no timestamp: created_at"
    );
    assert_eq!(p2["sentiment"], "Negative");
    assert_eq!(p2["verificationStatus"], "Verified");
    // The old leader id filters its posts.
    let (_, posts) = app
        .get_json(&format!("/api/posts?leaderId={LEADER_A}"))
        .await;
    let posts = posts.as_array().unwrap();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["id"], p1["id"]);

    let res = app.get_auth("/api/review", &app.admin_token()).await;
    assert_eq!(res.status(), 200);
    let items: Value = res.json().await.unwrap();
    let items = items
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("review list: {items}"));
    assert_eq!(items.len(), 2, "{items:?}");
    let of = |post: &Value| {
        items
            .iter()
            .find(|i| i["postId"] == post["id"])
            .unwrap_or_else(|| panic!("no review item of {post}: {items:?}"))
            .clone()
    };
    let r1 = of(&p1);
    assert_eq!(r1["state"], "pending");
    assert_eq!(r1["notes"], NOTES);
    assert_eq!(r1["updatedAt"], "2024-05-03T09:20:00.000Z");
    let r2 = of(&p2);
    assert_eq!(r2["state"], "approved");
    assert_eq!(r2["reviewedBy"], "ops@example.org");
    assert_eq!(r2["reviewedAt"], "2024-05-04T11:00:00.000Z");
    assert_eq!(r2["updatedAt"], "2024-05-04T11:00:00.500Z");

    // The pending item is decided at its old id.
    let res = app
        .client
        .post(app.url(&format!("/api/review/{REVIEW_1}/reject")))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let decided: Value = res.json().await.unwrap();
    assert_eq!(decided["id"], r1["id"]);
    assert_eq!(decided["state"], "rejected");
}

#[actix_web::test]
async fn the_originals_sqlite_database_migrates_with_the_export_script() {
    let test = "sqlite migration";
    if !present_or_skip(test, "sqlite3", Command::new("sqlite3").arg("--version")) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let db = sqlite_db(work.path(), &rows());
    let out = sqlite_export(&db);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "script: {stderr}"
    );
    let backup = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        backup.lines().count(),
        7,
        "six records and a trailer: {backup}"
    );

    let data = tempfile::tempdir().unwrap();
    import_twice(data.path(), &backup);
    check_migrated(data.path()).await;
}

#[actix_web::test]
async fn a_row_the_script_cannot_convert_stops_it_before_the_trailer_and_nothing_imports() {
    let test = "sqlite migration of a bad row";
    if !present_or_skip(test, "sqlite3", Command::new("sqlite3").arg("--version")) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let bad = rows().replace(r#"{"likes":4,"#, r#"{"likes":oops,"#);
    let db = sqlite_db(work.path(), &bad);
    let out = sqlite_export(&db);
    assert!(!out.status.success(), "metrics that are not JSON");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("JSON"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backup = String::from_utf8(out.stdout).unwrap();
    assert!(!backup.contains("\"trailer\""), "{backup}");

    let data = tempfile::tempdir().unwrap();
    let out = import(data.path(), &backup);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cut short"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = spawn_on(data.path()).await;
    let (status, _) = app.get_json(&format!("/api/leaders/{LEADER_A}")).await;
    assert_eq!(status, 404, "nothing of the cut-short file was imported");
}

/// `psql` against the test server, in `schema`.
fn psql(schema: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.env(
        "PGHOST",
        std::env::var("PGHOST").unwrap_or_else(|_| "127.0.0.1".into()),
    )
    .env("PGOPTIONS", format!("-c search_path={schema}"))
    .args(["-X", "-d", "test"]);
    cmd
}

#[actix_web::test]
async fn the_originals_postgres_database_migrates_with_the_export_script() {
    let test = "postgres migration";
    let schema = format!("amber_migrate_{}", std::process::id());
    let mut check = psql("public");
    check.args(["-Atc", "SELECT 1"]);
    if !present_or_skip(test, "Postgres (psql on PGHOST, database test)", &mut check) {
        return;
    }
    let setup = format!(
        "\\set ON_ERROR_STOP on\nDROP SCHEMA IF EXISTS {schema} CASCADE;\nCREATE SCHEMA {schema};\nSET search_path = {schema};\n{POSTGRES_SCHEMA}{}",
        rows()
    );
    let mut cmd = psql(&schema);
    cmd.arg("-q");
    let out = run(cmd, setup.as_bytes());
    assert!(
        out.status.success(),
        "building the database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = psql(&schema);
    cmd.arg("-At").arg("-f").arg(script("postgres.sql"));
    let out = run(cmd, b"");
    let mut drop = psql("public");
    drop.args(["-qc", &format!("DROP SCHEMA {schema} CASCADE")]);
    let _ = run(drop, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "script: {stderr}"
    );
    let backup = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        backup.lines().count(),
        7,
        "six records and a trailer: {backup}"
    );

    let data = tempfile::tempdir().unwrap();
    import_twice(data.path(), &backup);
    check_migrated(data.path()).await;
}
