//! Bad input of every kind gets a JSON 4xx with the security headers; nothing is lost
//! and the connection stays usable.

use serde_json::Value;

use crate::helpers::spawn_app;

async fn assert_json_error(res: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "{what}");
    let headers = res.headers().clone();
    assert!(headers.get("x-request-id").is_some(), "{what}: request id");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self' https://platform.twitter.com"),
        "{what}"
    );
    assert_eq!(
        headers["referrer-policy"],
        "strict-origin-when-cross-origin"
    );
    let body: Value = res
        .json()
        .await
        .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{what}: {body}"
    );
    body
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_json() {
    let app = spawn_app().await;
    let body = assert_json_error(app.get("/api/nothing-here").await, 404, "unknown route").await;
    assert_eq!(body["error"], "not_found");
    assert_json_error(app.get("/favicon.ico.php").await, 404, "unknown root route").await;
    let res = app
        .client
        .patch(app.url("/api/leaders"))
        .send()
        .await
        .unwrap();
    assert_json_error(res, 405, "wrong method").await;
    assert_json_error(app.get("/api/leaders/abc").await, 404, "non-numeric id").await;
    assert_json_error(
        app.get("/api/leaders/99999999999999999999999").await,
        404,
        "huge id",
    )
    .await;
}

#[actix_web::test]
async fn malformed_json_wrong_type_and_oversized_bodies() {
    let app = spawn_app().await;
    let token = app.admin_token();
    let post = |body: Vec<u8>, ct: &'static str| {
        app.client
            .post(app.url("/api/leaders"))
            .bearer_auth(&token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let body = assert_json_error(
        post(b"{\"name\": ".to_vec(), "application/json")
            .await
            .unwrap(),
        400,
        "truncated json",
    )
    .await;
    assert_eq!(body["error"], "malformed_json");
    assert_json_error(
        post(b"[1,2,3]".to_vec(), "application/json").await.unwrap(),
        400,
        "wrong shape",
    )
    .await;
    assert_json_error(
        post(vec![0xff, 0xfe, 0x00], "application/json")
            .await
            .unwrap(),
        400,
        "binary",
    )
    .await;
    assert_json_error(
        // A form is accepted (tests/api/original.rs); other types are not.
        post(b"name=x".to_vec(), "text/plain").await.unwrap(),
        415,
        "text body",
    )
    .await;
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(200 * 1024));
    let body = assert_json_error(
        post(huge.into_bytes(), "application/json").await.unwrap(),
        413,
        "too large",
    )
    .await;
    assert_eq!(body["error"], "payload_too_large");
    // The server is still fine and stored nothing.
    let (status, leaders) = app.get_json("/api/leaders").await;
    assert_eq!(status, 200);
    assert_eq!(leaders.as_array().unwrap().len(), 11);
}

#[actix_web::test]
async fn sentiment_batch_scores_and_enforces_its_limits() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/sentiment/batch"))
        .json(
            &serde_json::json!({"texts": ["I love this!", "This is horrible.", "It is a table."]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let labels: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sentiment"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["Positive", "Negative", "Neutral"]);
    assert_eq!(body["results"][0]["text"], "I love this!");
    assert!(body["results"][0]["score"].as_f64().unwrap() >= 0.25);

    let too_many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    let res = app
        .client
        .post(app.url("/api/sentiment/batch"))
        .json(&serde_json::json!({"texts": too_many}))
        .send()
        .await
        .unwrap();
    assert_json_error(res, 400, "101 texts").await;
    let res = app
        .client
        .post(app.url("/api/sentiment/batch"))
        .json(&serde_json::json!({"texts": ["a".repeat(10 * 1024 + 1)]}))
        .send()
        .await
        .unwrap();
    assert_json_error(res, 400, "long text").await;
    // 100 texts of 10 KB are allowed.
    let big: Vec<String> = (0..100).map(|_| "good ".repeat(2048)).collect();
    let res = app
        .client
        .post(app.url("/api/sentiment/batch"))
        .json(&serde_json::json!({"texts": big}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn request_id_is_echoed_when_sane_and_replaced_when_not() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/feed"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app
        .client
        .get(app.url("/api/feed"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "bad id with spaces");
    let logs = app.logs();
    assert!(logs.contains("\"request_id\":\"abc-123\""), "{logs}");
    assert!(
        logs.contains("\"path\":\"/api/feed\"")
            && logs.contains("\"status\":200")
            && logs.contains("duration_ms")
    );
}

#[actix_web::test]
async fn cors_follows_the_configured_origins() {
    let app =
        crate::helpers::spawn_app_with(&[("CORS_ALLOWED_ORIGINS", "https://good.example")]).await;
    let res = app
        .client
        .get(app.url("/api/feed"))
        .header("origin", "https://good.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://good.example"
    );
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/leaders"))
        .header("origin", "https://good.example")
        .header("access-control-request-method", "DELETE")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let methods = res.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let res = app
        .client
        .get(app.url("/api/feed"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    // Another origin gets no CORS grant, so a browser will not hand the answer to its page.
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let _ = res
        .json::<Value>()
        .await
        .expect("a JSON answer, not a dropped connection");
}

#[actix_web::test]
async fn hostile_input_never_gets_a_500_or_a_dropped_connection() {
    let app = spawn_app().await;
    let token = app.admin_token();
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let paths = [
        "/api/feed?page=99999999999999999999",
        "/api/feed?leaders=,,,,",
        "/api/feed?leaders=1,1,1,1",
        "/api/feed?before=-9223372036854775808-0",
        "/api/feed?before=9223372036854775807-18446744073709551615",
        "/api/feed?source=%00",
        "/api/feed?page_size=%FF",
        "/api/posts/%FF%FE",
        "/api/leaders/-1",
        "/api/posts/paginated?limit=0",
        "/api/review/abc/approve",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/api/../../etc/passwd",
    ];
    for path in paths {
        let res = app
            .client
            .get(app.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(res.status().as_u16() < 500, "{path}: {}", res.status());
    }
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("/api/leaders", deep.clone().into_bytes()),
        (
            "/api/posts",
            br#"{"leaderId": 1e400, "platform": "x", "content": "x"}"#.to_vec(),
        ),
        (
            "/api/posts",
            br#"{"leaderId": 1, "platform": "x", "content": "\ud800"}"#.to_vec(),
        ),
        (
            "/api/sentiment/batch",
            br#"{"texts": [null, 1, {}]}"#.to_vec(),
        ),
        ("/api/sentiment/batch", deep.into_bytes()),
        (
            "/api/admin/token",
            br#"{"adminId": "\u0000", "secret": ""}"#.to_vec(),
        ),
        ("/api/review/1/reject", br#"{"notes": 5}"#.to_vec()),
    ];
    for (path, body) in bodies {
        let res = app
            .client
            .post(app.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
        let _: Value = res
            .json()
            .await
            .unwrap_or_else(|e| panic!("{path}: body not JSON: {e}"));
    }
    let (status, _) = app.get_json("/api/health").await;
    assert_eq!(status, 200, "still healthy");
    assert!(
        !app.logs().contains("panicked"),
        "a handler panicked: {}",
        app.logs()
    );
}
