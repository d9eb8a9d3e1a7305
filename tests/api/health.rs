//! Health, liveness, readiness and metrics.

use serde_json::Value;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn health_reports_every_part_with_seams_disabled() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["database"]["stats"]["leaders"], 11);
    assert_eq!(body["checks"]["database"]["stats"]["posts"], 0);
    assert_eq!(body["checks"]["database"]["stats"]["reviewItems"], 0);
    assert_eq!(body["checks"]["redis"]["status"], "disabled");
    assert_eq!(body["checks"]["ingestion_scheduler"]["status"], "disabled");
    assert_eq!(
        body["checks"]["ingestion_scheduler"]["circuit_breaker_state"],
        "closed"
    );
    assert!(body["stats"]["totalIngests"].is_u64());
    assert_eq!(body["build"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[actix_web::test]
async fn health_shows_the_build_commit_from_the_environment() {
    let app = crate::helpers::spawn_app_with(&[
        ("GIT_COMMIT", "abc123"),
        ("BUILD_TIME", "2026-11-27T00:00:00Z"),
    ])
    .await;
    let (_, body) = app.get_json("/api/health").await;
    assert_eq!(body["build"]["commit"], "abc123");
    assert_eq!(body["build"]["buildTime"], "2026-11-27T00:00:00Z");
}

#[actix_web::test]
async fn health_shows_the_commit_and_time_recorded_at_build_time() {
    // No GIT_COMMIT / BUILD_TIME at run time: what build.rs recorded.
    let app = spawn_app().await;
    let (_, body) = app.get_json("/api/health").await;
    let time = body["build"]["buildTime"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "buildTime {time:?} is not RFC 3339"
    );
    let commit = body["build"]["commit"].as_str().unwrap();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let at_build_time = option_env!("GIT_COMMIT")
        .map(str::trim)
        .filter(|c| !c.is_empty());
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        _ if at_build_time.is_some() => assert_eq!(Some(commit), at_build_time),
        // Built from a checkout: the commit it was built from. That is HEAD, or one of
        // its ancestors if a commit landed while the tests ran.
        Some(head) => assert!(
            commit == head
                || (commit.len() == head.len()
                    && git(&["merge-base", "--is-ancestor", commit, "HEAD"]).is_some()),
            "commit {commit:?} is neither HEAD ({head}) nor an ancestor of it"
        ),
        // A tarball: nothing to record.
        None => assert_eq!(commit, "unknown"),
    }
}

#[actix_web::test]
async fn livez_and_readyz_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/livez").await.status(), 200);
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
}

#[actix_web::test]
async fn latest_post_timestamp_follows_the_newest_post() {
    let app = spawn_app().await;
    app.create_post(&serde_json::json!({"leaderId": 1, "platform": "news", "content": "old", "timestamp": "2024-01-01T00:00:00Z"})).await;
    app.create_post(&serde_json::json!({"leaderId": 1, "platform": "news", "content": "new", "timestamp": "2025-06-01T12:00:00Z"})).await;
    let (_, body) = app.get_json("/api/health").await;
    assert_eq!(
        body["checks"]["database"]["stats"]["latestPostTimestamp"],
        "2025-06-01T12:00:00.000Z"
    );
    assert_eq!(body["checks"]["database"]["stats"]["posts"], 2);
}

#[actix_web::test]
async fn prometheus_metrics_are_served_to_loopback_only_by_default() {
    let app = spawn_app().await;
    app.get("/api/feed").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(
        text.contains("amber_http_responses_total{class=\"2xx\"}"),
        "{text}"
    );
    assert!(text.contains("amber_leaders 11"), "{text}");
    assert!(text.contains("amber_circuit_breaker_open 0"), "{text}");
    assert!(text.contains("amber_redis_up 0"), "{text}");
    assert!(text.contains("amber_ingest_runs 0"), "{text}");

    // The same server with loopback excluded refuses.
    let closed =
        crate::helpers::spawn_app_with(&[("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8")]).await;
    let res = closed.get("/metrics").await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
}

#[actix_web::test]
async fn metrics_are_prometheus_text_unless_the_scraper_asks_for_openmetrics() {
    let app = spawn_app().await;
    app.get("/api/feed").await;
    // curl, an older scraper, a `curl | grep` runbook: Prometheus text 0.0.4.
    for accept in [
        None,
        Some("*/*"),
        Some("text/plain"),
        Some("text/plain;version=0.0.4"),
    ] {
        let mut req = app.client.get(app.url("/metrics"));
        if let Some(accept) = accept {
            req = req.header("Accept", accept);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            ct.starts_with("text/plain; version=0.0.4"),
            "{accept:?}: {ct}"
        );
        let text = res.text().await.unwrap();
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("# TYPE amber_http_responses_total counter"),
            "{text}"
        );
        assert!(
            text.contains("amber_http_responses_total{class=\"2xx\"}"),
            "{text}"
        );
        assert!(text.contains("amber_leaders 11"), "{text}");
    }
    // Prometheus itself (its default Accept) and an OpenMetrics-only scraper: OpenMetrics.
    for accept in [
        "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "application/openmetrics-text",
    ] {
        let res = app
            .client
            .get(app.url("/metrics"))
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/openmetrics-text"), "{accept}: {ct}");
        let text = res.text().await.unwrap();
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        assert!(text.contains("# TYPE amber_http_responses counter"), "{text}");
        assert!(
            text.contains("amber_http_responses_total{class=\"2xx\"}"),
            "{text}"
        );
    }
    // OpenMetrics refused with q=0 is not asked for.
    let res = app
        .client
        .get(app.url("/metrics"))
        .header("Accept", "application/openmetrics-text;q=0, text/plain")
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
}

#[actix_web::test]
async fn json_metrics_count_requests() {
    let app = spawn_app().await;
    app.get("/api/feed").await;
    app.get("/api/nope").await;
    let (status, body) = app.get_json("/api/metrics").await;
    assert_eq!(status, 200);
    assert!(body["requests"]["total"].as_u64().unwrap() >= 2);
    assert!(body["requests"]["4xx"].as_u64().unwrap() >= 1);
    assert_eq!(body["store"]["leaders"], 11);
}
