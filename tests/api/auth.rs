//! Every auth failure kind, role checks, the token endpoint and the CLI token.

use amber::http::auth::{Claims, Role};
use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TEST_SECRET};

fn signed(claims: &Claims, secret: &str) -> String {
    amber::http::auth::install_jwt_crypto();
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

#[actix_web::test]
async fn every_bad_token_kind_is_401_and_the_wrong_role_403() {
    let app = spawn_app().await;
    let body = json!({"name": "New Leader"});
    let expired = signed(
        &Claims {
            sub: "a".into(),
            role: Role::Admin,
            iat: now() - 7200,
            exp: now() - 3600,
        },
        TEST_SECRET,
    );
    let wrong_key = signed(
        &Claims {
            sub: "a".into(),
            role: Role::Admin,
            iat: now(),
            exp: now() + 3600,
        },
        "some-other-secret-entirely",
    );
    let header = base64_url(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64_url(&format!(
        r#"{{"sub":"a","role":"admin","iat":{},"exp":{}}}"#,
        now(),
        now() + 3600
    ));
    let alg_none = format!("{header}.{payload}.");
    // RFC 7519 `nbf`: valid signature and expiry, but not valid for another hour.
    let not_yet = encode(
        &Header::default(),
        &json!({"sub": "a", "role": "admin", "iat": now(), "exp": now() + 7200, "nbf": now() + 3600}),
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap();
    for (what, auth) in [
        ("nbf an hour ahead", Some(format!("Bearer {not_yet}"))),
        ("missing", None),
        ("expired", Some(format!("Bearer {expired}"))),
        ("wrong key", Some(format!("Bearer {wrong_key}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        ("malformed", Some("Bearer not-a-jwt".to_string())),
        ("wrong scheme", Some(format!("Basic {wrong_key}"))),
        ("empty bearer", Some("Bearer ".to_string())),
    ] {
        let mut req = app.client.post(app.url("/api/leaders")).json(&body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"], "unauthorized", "{what}");
    }
    let res = app
        .send_json(
            Method::POST,
            "/api/leaders",
            &body,
            Some(&app.reviewer_token()),
        )
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "forbidden");
    let (_, leaders) = app.get_json("/api/leaders").await;
    assert_eq!(leaders.as_array().unwrap().len(), 11, "nothing was created");
}

fn base64_url(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[actix_web::test]
async fn every_mutating_endpoint_needs_a_token() {
    let app = spawn_app().await;
    let routes = [
        (Method::POST, "/api/leaders"),
        (Method::PUT, "/api/leaders/1"),
        (Method::DELETE, "/api/leaders/1"),
        (Method::POST, "/api/posts"),
        (Method::PUT, "/api/posts/1"),
        (Method::DELETE, "/api/posts/1"),
        (Method::POST, "/api/review/1/approve"),
        (Method::POST, "/api/review/1/reject"),
        (Method::GET, "/api/review"),
        (Method::GET, "/api/admin/ping"),
        (Method::GET, "/api/admin/export"),
        (Method::GET, "/api/admin/replication/snapshot"),
    ];
    for (method, path) in routes {
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{method} {path}");
    }
    let (_, leaders) = app.get_json("/api/leaders").await;
    assert_eq!(leaders.as_array().unwrap().len(), 11);
}

#[actix_web::test]
async fn bootstrap_secret_buys_a_token_that_works() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/admin/token"))
        .json(&json!({"adminId": "ops", "secret": TEST_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expiresIn"], 3600);
    let token = body["token"].as_str().unwrap();
    let res = app.get_auth("/api/admin/ping", token).await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"status": "ok", "admin": "ops", "role": "admin"})
    );

    let res = app
        .client
        .post(app.url("/api/admin/token"))
        .json(&json!({"adminId": "r", "secret": TEST_SECRET, "role": "reviewer"}))
        .send()
        .await
        .unwrap();
    let token: Value = res.json().await.unwrap();
    let res = app
        .send_json(
            Method::POST,
            "/api/leaders",
            &json!({"name": "x"}),
            token["token"].as_str(),
        )
        .await;
    assert_eq!(res.status(), 403);

    let res = app
        .client
        .post(app.url("/api/admin/token"))
        .json(&json!({"adminId": "ops", "secret": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .post(app.url("/api/admin/token"))
        .json(&json!({"adminId": "ops", "secret": TEST_SECRET, "role": "root"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(
        !app.logs().contains(TEST_SECRET),
        "the secret must never reach the log"
    );
}

#[actix_web::test]
async fn cli_token_is_accepted_by_the_server() {
    let app = spawn_app().await;
    let out = crate::helpers::amber_command(app.data_dir(), &Default::default())
        .args([
            "token", "--sub", "cli-user", "--role", "reviewer", "--ttl", "60",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let res = app.get_auth("/api/admin/ping", &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["admin"], "cli-user");
    assert!(!app.logs().contains(&token), "tokens are never logged");
}
