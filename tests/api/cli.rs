//! Command line: export/import round trip, bad configuration, bad flags.

use std::collections::HashMap;
use std::process::Stdio;

use serde_json::{json, Value};

use crate::helpers::{amber_command, spawn_app, spawn_app_with};

async fn api_answers(app: &crate::helpers::TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/api/leaders",
        "/api/feed?page_size=100",
        "/api/feed?source=x",
        "/api/dashboard",
        "/api/posts/paginated?leaderId=1&limit=3",
    ] {
        out.push(app.get_json(path).await.1);
    }
    let res = app
        .get_auth("/api/review?state=all", &app.admin_token())
        .await;
    out.push(res.json().await.unwrap());
    out
}

/// Runs `amber import` on `dir` with `backup` on stdin.
pub(crate) fn import(dir: &std::path::Path, backup: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = amber_command(dir, &HashMap::new())
        .arg("import")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(backup.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[actix_web::test]
async fn export_then_import_into_an_empty_data_dir_gives_identical_answers() {
    let mut app = spawn_app().await;
    app.admin_post(
        "/api/leaders",
        &json!({"name": "Extra", "handles": {"x": "extra"}, "trackingTopics": ["a", "b"]}),
    )
    .await;
    for i in 0..12 {
        let platform = ["x", "news", "facebook"][i % 3];
        let mut body = json!({"leaderId": (i % 4) + 1, "platform": platform, "content": format!("post {i} is lovely"), "timestamp": format!("2025-05-0{}T0{}:00:00Z", (i % 9) + 1, i % 10), "metrics": {"likes": i}});
        if i % 3 == 0 {
            body["platformPostId"] = json!(format!("{}", 7000 + i));
        }
        if i % 4 == 0 {
            body["requiresReview"] = json!(true);
        }
        app.create_post(&body).await;
    }
    let res = app
        .send_json(
            reqwest::Method::POST,
            "/api/review/1/approve",
            &json!({"notes": "fine"}),
            Some(&app.reviewer_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
    let before = api_answers(&app).await;
    let res = app.get_auth("/api/admin/export", &app.admin_token()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let live_backup = res.text().await.unwrap();
    assert!(app.terminate().success());

    let out = amber_command(app.data_dir(), &HashMap::new())
        .arg("export")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backup = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        live_backup, backup,
        "the live export equals the offline one"
    );
    assert_eq!(
        backup.lines().count(),
        12 + 12 + 3 + 1,
        "leaders + posts + review items + the trailer"
    );
    let (last, records) = backup
        .trim_end()
        .rsplit_once('\n')
        .map(|(r, l)| (l, r))
        .unwrap();
    let trailer: Value = serde_json::from_str(last).unwrap();
    assert_eq!(
        trailer,
        json!({"kind": "trailer", "records": 27, "damagedSkipped": 0})
    );
    for line in records.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(["leader", "post", "review"].contains(&v["kind"].as_str().unwrap()));
    }

    let fresh = tempfile::tempdir().unwrap();
    let out = import(fresh.path(), &backup);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("imported 12 leaders, 12 posts, 3 review items"));

    let restored = crate::helpers::spawn_on(fresh.path()).await;
    let after = api_answers(&restored).await;
    assert_eq!(before, after);

    // Importing the same backup again merges with dedup: nothing doubles.
    drop(restored);
    assert!(import(fresh.path(), &backup).status.success());
    let restored = crate::helpers::spawn_on(fresh.path()).await;
    let (_, feed) = restored.get_json("/api/feed").await;
    assert_eq!(feed["total"], 12);
}

#[actix_web::test]
async fn import_refuses_a_bad_line_and_names_it_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = import(
        dir.path(),
        "{\"kind\":\"leader\",\"id\":1,\"name\":\"A\",\"createdAt\":\"2025-01-01T00:00:00Z\"}\n{oops\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    let app = crate::helpers::spawn_on(dir.path()).await;
    let (_, leaders) = app.get_json("/api/leaders").await;
    assert_eq!(
        leaders.as_array().unwrap().len(),
        11,
        "only the seed list, nothing imported"
    );
}

#[test]
fn bad_configuration_exits_non_zero_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("PORT", "http"),
        ("REQUESTS_PER_MINUTE", "0"),
        ("X_INGEST_CRON", "every day"),
        ("TRUSTED_PROXIES", "300.1.1.1/8"),
    ] {
        let env: HashMap<String, String> = [(var.to_string(), value.to_string())].into();
        let out = amber_command(dir.path(), &env).output().unwrap();
        assert!(!out.status.success(), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
    }
    let env: HashMap<String, String> = [("APP_ENV".to_string(), "production".to_string())].into();
    let mut cmd = amber_command(dir.path(), &env);
    cmd.env_remove("ADMIN_JWT_SECRET");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ADMIN_JWT_SECRET"));
}

#[test]
fn bad_flags_exit_non_zero_and_help_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = amber_command(dir.path(), &HashMap::new())
        .arg("--bogus")
        .output()
        .unwrap();
    assert!(!out.status.success());
    for args in [
        vec!["--help"],
        vec!["token", "--help"],
        vec!["export", "--help"],
        vec!["import", "--help"],
        vec!["serve", "--help"],
    ] {
        let out = amber_command(dir.path(), &HashMap::new())
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
    let out = amber_command(dir.path(), &HashMap::new())
        .args(["token", "--sub", "a", "--role", "god"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[actix_web::test]
async fn export_import_and_ingest_on_a_running_servers_data_dir_say_what_to_do_instead() {
    let app = spawn_app_with(&[]).await;
    let port = app.address.rsplit(':').next().unwrap().to_string();
    let env: HashMap<String, String> = [
        ("PORT".to_string(), port.clone()),
        ("TWITTER_BEARER_TOKEN".to_string(), "t".to_string()),
    ]
    .into();
    for (command, advice) in [
        ("export", "/api/admin/export"),
        ("import", "stop the server"),
        ("ingest", "/api/ingestion/trigger"),
    ] {
        let out = amber_command(app.data_dir(), &env)
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{command}: {stderr}");
        assert!(stderr.contains("server is running"), "{command}: {stderr}");
        assert!(stderr.contains(advice), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}")) || command == "import",
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("WouldBlock"), "{command}: {stderr}");
    }
}

#[test]
fn token_without_a_secret_warns_on_stderr_and_prints_only_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = amber_command(dir.path(), &HashMap::new());
    cmd.env_remove("ADMIN_JWT_SECRET");
    let out = cmd.args(["token", "--sub", "ops"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim().split('.').count(), 3, "a JWT: {stdout}");
    assert_eq!(stdout.trim().lines().count(), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ADMIN_JWT_SECRET is not set"), "{stderr}");
    // With the secret set: no warning.
    let out = amber_command(dir.path(), &HashMap::new())
        .args(["token", "--sub", "ops"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("ADMIN_JWT_SECRET"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port some other socket holds for as long as the listener lives.
fn taken_port() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    (listener, port)
}

#[test]
fn serve_and_demo_on_a_taken_port_fail_with_one_clear_line() {
    let (_holder, port) = taken_port();
    for args in [vec!["serve"], vec!["demo", "--new-post-every", "0"]] {
        let dir = tempfile::tempdir().unwrap();
        let env: HashMap<String, String> = [
            ("PORT".to_string(), port.clone()),
            // Ingestion on: its actor must not be started (and then dropped) before the bind.
            ("X_INGEST_ENABLED".to_string(), "true".to_string()),
            ("TWITTER_BEARER_TOKEN".to_string(), "t".to_string()),
            ("TMPDIR".to_string(), dir.path().display().to_string()),
        ]
        .into();
        let out = amber_command(dir.path(), &env)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // One line of ours says what failed (log lines of other threads may come after it).
        // With LOG_FORMAT=json (the harness default) it is the `message` of a `fatal` line.
        let ours: Vec<String> = stderr
            .lines()
            .filter_map(|l| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(v) if v["event"] == "fatal" => v["message"].as_str().map(str::to_string),
                Ok(_) => None,
                Err(_) => l.starts_with("amber: ").then(|| l.to_string()),
            })
            .collect();
        assert_eq!(
            ours,
            [format!(
                "amber: binding 127.0.0.1:{port}: Address already in use (os error 98)"
            )],
            "{args:?}: {stderr}"
        );
        // The demo removed its data directory on the way out.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("amber-demo-"))
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}

/// Starts `amber demo` (two leaders, `posts` posts each, a new post every `every` s) with
/// its temporary directory under `tmp`; answers the child, its stdout's remaining lines
/// and the address its first line names.
fn spawn_demo(
    tmp: &std::path::Path,
    posts: &str,
    every: &str,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    String,
) {
    use std::io::BufRead;
    let env: HashMap<String, String> = [("TMPDIR".to_string(), tmp.display().to_string())].into();
    let mut child = amber_command(tmp, &env)
        .args([
            "demo",
            "--leaders",
            "2",
            "--posts",
            posts,
            "--new-post-every",
            every,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let address = first
        .strip_prefix("amber listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    (child, lines, address)
}

#[actix_web::test]
async fn the_demo_runs_on_a_random_port_and_removes_its_data_when_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, mut lines, address) = spawn_demo(tmp.path(), "5", "0");
    assert!(!address.ends_with(":5000"), "{address}");
    let second = lines.next().unwrap().unwrap();
    let data_dir = second
        .split("data in ")
        .nth(1)
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or_else(|| panic!("{second}"))
        .to_string();
    assert!(second.contains("deleted when the demo stops"), "{second}");
    assert!(
        std::path::Path::new(&data_dir).starts_with(tmp.path()),
        "{data_dir}"
    );
    // Posts flow from the simulated X API.
    let client = reqwest::Client::new();
    crate::helpers::eventually(
        std::time::Duration::from_secs(30),
        "demo posts in the feed",
        || async {
            let feed: Value = client
                .get(format!("{address}/api/feed?source=x"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (feed["total"].as_u64()? > 0).then_some(())
        },
    )
    .await;
    std::thread::spawn(move || for _ in lines {});
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !std::path::Path::new(&data_dir).exists(),
        "{data_dir} left behind"
    );
}

#[actix_web::test]
async fn the_demo_pushes_posts_from_its_activity_stream_to_an_open_page() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, lines, address) = spawn_demo(tmp.path(), "3", "1");
    std::thread::spawn(move || for _ in lines {});
    // A page's event stream, opened at once.
    let mut sse = reqwest::Client::new()
        .get(format!("{address}/api/feed/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let client = reqwest::Client::new();
    let status = |client: reqwest::Client, address: String| async move {
        let s: Value = client
            .get(format!("{address}/api/ingestion/status"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(s["stream"].clone())
    };
    // The demo turned the stream on; it subscribes and connects.
    crate::helpers::eventually(
        Duration::from_secs(60),
        "the demo's stream connected",
        || async {
            let s = status(client.clone(), address.clone()).await?;
            (s["connected"] == true && s["subscriptions"]["held"] == 4).then_some(())
        },
    )
    .await;
    // Its script publishes every second and deletes every fifth: the stream stores posts
    // polling has not read (a poll runs once a minute), deletes one, and the open page
    // hears of both.
    let mut buf = String::new();
    let (mut new, mut deleted) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while new == 0 || deleted == 0 {
        let chunk = tokio::time::timeout_at(deadline, sse.chunk())
            .await
            .unwrap_or_else(|_| panic!("{new} new and {deleted} deleted events in 90 s: {buf}"))
            .unwrap()
            .expect("the event stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = buf.find("\n\n") {
            let block: String = buf.drain(..at + 2).collect();
            new += usize::from(block.contains("event: new\n"));
            deleted += usize::from(block.contains("event: deleted\n"));
        }
    }
    let s =
        crate::helpers::eventually(Duration::from_secs(30), "the stream's counters", || async {
            let s = status(client.clone(), address.clone()).await?;
            (s["posts_stored"].as_u64()? >= 1 && s["deletions"].as_u64()? >= 1).then_some(s)
        })
        .await;
    assert!(s["events"]["post.create"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["events"]["post.delete"].as_u64().unwrap() >= 1, "{s}");
    drop(sse);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit}");
}
