//! HTTP's method rules: every GET route answers HEAD with the same head and no body,
//! a disallowed method is a JSON 405 with a true `Allow`, and `OPTIONS` lists methods.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::spawn_app;

/// Every GET route, with a concrete path.
const GET_ROUTES: &[&str] = &[
    "/",
    "/assets/app.css",
    "/livez",
    "/readyz",
    "/metrics",
    "/api/health",
    "/api/metrics",
    "/api/openapi.json",
    "/api/feed",
    "/api/dashboard",
    "/api/leaders",
    "/api/leaders/1",
    "/api/posts",
    "/api/posts/paginated",
    "/api/ingestion/status",
];

#[actix_web::test]
async fn every_get_route_answers_head_with_the_same_head_and_no_body() {
    let app = spawn_app().await;
    for path in GET_ROUTES {
        let get = app.get(path).await;
        let head = app
            .client
            .head(app.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD {path}: {e}"));
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert!(head.status().is_success(), "HEAD {path}: {}", head.status());
        // Answers that change from one request to the next (counters, clocks) may differ
        // in length; the rest must match to the byte.
        let dynamic = [
            "/metrics",
            "/api/metrics",
            "/api/health",
            "/api/ingestion/status",
            "/readyz",
        ];
        if dynamic.contains(path) {
            assert!(head.headers().contains_key("content-length"), "HEAD {path}");
        } else {
            assert_eq!(
                head.headers().get("content-length"),
                get.headers().get("content-length"),
                "HEAD {path}: content-length"
            );
        }
        for name in [
            "content-type",
            "cache-control",
            "etag",
            "x-content-type-options",
            "x-frame-options",
            "content-security-policy",
        ] {
            assert_eq!(
                head.headers().get(name),
                get.headers().get(name),
                "HEAD {path}: {name}"
            );
        }
        assert!(head.headers().get("x-request-id").is_some(), "HEAD {path}");
        let body = head.bytes().await.unwrap();
        assert!(body.is_empty(), "HEAD {path} sent a body");
    }
    // Uptime monitors also send HEAD to what does not exist: a bodiless 404.
    let res = app.client.head(app.url("/nothing")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

async fn assert_405(res: reqwest::Response, allow: &str, what: &str) {
    assert_eq!(res.status(), 405, "{what}");
    assert_eq!(res.headers()["allow"], allow, "{what}");
    assert!(res.headers().get("x-request-id").is_some(), "{what}");
    assert_eq!(res.headers()["x-frame-options"], "DENY", "{what}");
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(body["error"], "method_not_allowed", "{what}");
}

#[actix_web::test]
async fn a_disallowed_method_is_a_json_405_with_a_true_allow() {
    let app = spawn_app().await;
    let token = app.admin_token();
    for path in [
        "/",
        "/livez",
        "/api/health",
        "/api/feed",
        "/api/posts/paginated",
    ] {
        for method in [Method::TRACE, Method::POST, Method::PATCH, Method::PUT] {
            let res = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_405(res, "GET, HEAD, OPTIONS", &format!("{method} {path}")).await;
        }
    }
    // PUT/DELETE on the paginated list never reach the by-id handlers.
    let res = app
        .client
        .delete(app.url("/api/posts/paginated"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_405(res, "GET, HEAD, OPTIONS", "DELETE /api/posts/paginated").await;
    let res = app
        .client
        .patch(app.url("/api/leaders/1"))
        .send()
        .await
        .unwrap();
    assert_405(
        res,
        "GET, HEAD, PUT, DELETE, OPTIONS",
        "PATCH /api/leaders/1",
    )
    .await;
    let res = app
        .client
        .get(app.url("/api/ingestion/trigger"))
        .send()
        .await
        .unwrap();
    assert_405(res, "POST, OPTIONS", "GET /api/ingestion/trigger").await;
}

#[actix_web::test]
async fn options_lists_each_method_once() {
    let app = spawn_app().await;
    for (path, allow) in [
        ("/api/posts/paginated", "GET, HEAD, OPTIONS"),
        ("/api/posts", "GET, HEAD, POST, OPTIONS"),
        ("/api/posts/1", "GET, HEAD, PUT, DELETE, OPTIONS"),
        ("/", "GET, HEAD, OPTIONS"),
    ] {
        let res = app
            .client
            .request(Method::OPTIONS, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "OPTIONS {path}");
        assert_eq!(res.headers()["allow"], allow, "OPTIONS {path}");
        assert!(res.headers().get("x-request-id").is_some());
    }
}
