//! The page and its assets over HTTP: content types, caching, CSP, and the OpenAPI document.

use crate::helpers::spawn_app;

/// The Content-Security-Policy of SPEC, word for word.
const CSP: &str = "default-src 'self'; script-src 'self' https://platform.twitter.com; frame-src https://platform.twitter.com; img-src 'self' data: https://pbs.twimg.com";

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[actix_web::test]
async fn page_is_html_under_the_spec_csp_and_revalidates_with_its_etag() {
    let app = spawn_app().await;
    let res = app.get("/").await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&res, "content-security-policy"), CSP);
    assert_eq!(header(&res, "cache-control"), "no-cache");
    let etag = header(&res, "etag").to_string();
    assert!(etag.starts_with('"'), "etag {etag:?}");
    let html = res.text().await.unwrap();
    assert!(html.contains("<ol id=\"feed\""));

    let again = app
        .client
        .get(app.url("/"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
}

#[actix_web::test]
async fn versioned_assets_are_immutable_and_others_revalidate() {
    let app = spawn_app().await;
    let html = app.get("/").await.text().await.unwrap();
    let link = html
        .split('"')
        .find(|s| s.starts_with("/assets/app.js?v="))
        .expect("versioned app.js link")
        .to_string();
    let res = app.get(&link).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&res, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");

    let css = app.get("/assets/app.css?v=stale").await;
    assert_eq!(header(&css, "content-type"), "text/css; charset=utf-8");
    assert_eq!(header(&css, "cache-control"), "no-cache");

    let gz = app
        .client
        .get(app.url(&link))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&gz, "content-encoding"), "gzip");
}

#[actix_web::test]
async fn unknown_assets_and_traversal_are_json_404s() {
    let app = spawn_app().await;
    for path in [
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/src/main.rs",
        "/assets/js/feed.js",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"], "not_found", "{path}");
    }
}

#[actix_web::test]
async fn openapi_document_lists_the_api_with_cors() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/openapi.json"))
        .header("Origin", "https://example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!header(&res, "access-control-allow-origin").is_empty());
    let doc: serde_json::Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/feed"]["get"].is_object());
    assert!(doc["paths"]["/api/leaders/{id}"]["delete"]["security"].is_array());
}
