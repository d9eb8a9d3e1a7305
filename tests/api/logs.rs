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
