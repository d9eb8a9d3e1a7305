//! What the server writes to its log: plain text when it is not a terminal, and the
//! level an answer deserves.

use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, spawn_app_with};

#[actix_web::test]
async fn pretty_logs_to_a_file_carry_no_colour_codes() {
    // The harness sends stderr to a file, as a service manager or `2> amber.log` would.
    let app = spawn_app_with(&[("LOG_FORMAT", "pretty")]).await;
    assert_eq!(app.get("/api/health").await.status(), 200);
    eventually(
        std::time::Duration::from_secs(10),
        "the request logged",
        || async { app.logs().contains("/api/health").then_some(()) },
    )
    .await;
    let logs = app.logs();
    assert!(logs.contains("INFO"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape in a log file:\n{logs:?}"
    );
}

#[actix_web::test]
async fn an_expected_503_is_a_warning_not_an_error() {
    // No TWITTER_BEARER_TOKEN: a manual run is refused with x_not_configured.
    let app = spawn_app().await;
    let res = app
        .admin_post("/api/ingestion/trigger", &json!({"backfill": false}))
        .await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "x_not_configured");
    let line = eventually(
        std::time::Duration::from_secs(10),
        "the request logged",
        || async {
            app.logs()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["path"] == "/api/ingestion/trigger" && l["status"] == 503)
        },
    )
    .await;
    assert_eq!(line["level"], "WARN", "{line}");
    assert!(
        !app.logs().contains("\"level\":\"ERROR\""),
        "{}",
        app.logs()
    );
}

#[actix_web::test]
async fn with_log_format_json_every_line_the_server_writes_is_one_json_object() {
    use std::io::{BufRead, Read};
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let env = std::collections::HashMap::from([("LOG_FORMAT".to_string(), "json".to_string())]);
    let mut child = crate::helpers::amber_command(dir.path(), &env)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let line: Value =
        serde_json::from_str(first.trim_end()).unwrap_or_else(|e| panic!("{e}: {first:?}"));
    let address = line["address"].as_str().unwrap().to_string();
    assert_eq!(line["message"], format!("amber listening on {address}"));
    assert_eq!(line["event"], "listening");
    assert_eq!(line["level"], "INFO");
    assert!(line["timestamp"].is_string(), "{line}");
    let res = reqwest::get(format!("{address}/api/health")).await.unwrap();
    assert_eq!(res.status(), 200);
    reqwest::get(format!("{address}/api/nope")).await.unwrap();
    // A graceful stop logs too.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let stderr = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = rest.lines().chain(stderr.lines()).collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
        assert!(v.is_object() && v["level"].is_string(), "{l}");
    }
    assert!(stderr.contains("/api/health"), "{stderr}");
}

#[actix_web::test]
async fn with_log_format_json_a_fatal_error_is_one_json_object_too() {
    let dir = tempfile::tempdir().unwrap();
    let env = std::collections::HashMap::from([
        ("LOG_FORMAT".to_string(), "json".to_string()),
        ("PORT".to_string(), "not-a-port".to_string()),
    ]);
    let out = crate::helpers::amber_command(dir.path(), &env)
        .env("PORT", "not-a-port")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
        assert_eq!(v["level"], "ERROR", "{l}");
        assert!(v["message"].as_str().unwrap().contains("PORT"), "{l}");
    }
}
