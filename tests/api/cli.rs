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
fn import(dir: &std::path::Path, backup: &str) -> std::process::Output {
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
        12 + 12 + 3,
        "leaders + posts + review items"
    );
    for line in backup.lines() {
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
async fn a_second_server_on_the_same_data_dir_fails_clearly() {
    let app = spawn_app_with(&[]).await;
    let out = amber_command(app.data_dir(), &HashMap::new())
        .arg("export")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another amber process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
