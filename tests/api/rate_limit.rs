//! Rate limiting, black-box: SPEC headers and body, which routes are limited, honest
//! client addresses, user buckets, the token endpoint, the off switch, admin inspect and
//! reset, and Redis sync between several servers (against the real Redis on
//! 127.0.0.1:6379; without it these print SKIP, and fail under `CI=true`).

use std::time::{Duration, Instant};

use amber::http::auth::Role;
use amber::rate_limit::redis_sync;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app_with, TestApp};

const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn limits(per_minute: &str, burst: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REQUESTS_PER_MINUTE", per_minute.to_string()),
        ("BURST_SIZE", burst.to_string()),
    ]
}

async fn spawn(env: &[(&'static str, String)]) -> TestApp {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(&pairs).await
}

fn header<'r>(res: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

/// POST a JSON body without a token.
async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.send_json(reqwest::Method::POST, path, body, None).await
}

/// GET the feed with extra headers.
async fn feed_with(app: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(app.url("/api/feed"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("request")
}

async fn feed_status(app: &TestApp, headers: &[(&str, &str)]) -> u16 {
    feed_with(app, headers).await.status().as_u16()
}

/// A client address of the test's own, so parallel tests never share a bucket (in
/// Redis, even across test runs).
fn unique_client() -> String {
    format!(
        "198.18.{}.{}",
        rand::random::<u8>(),
        rand::random::<u8>().max(1)
    )
}

#[actix_web::test]
async fn the_eleventh_rapid_request_is_refused_with_the_spec_headers_and_body() {
    let app = spawn(&limits("10", "10")).await;
    for n in 0..10u32 {
        let res = app.get("/api/feed").await;
        assert_eq!(res.status(), 200, "request {n}");
        assert_eq!(header(&res, "x-ratelimit-limit"), Some("10"));
        let remaining = (9 - n).to_string();
        assert_eq!(
            header(&res, "x-ratelimit-remaining"),
            Some(remaining.as_str())
        );
    }
    let res = app.get("/api/feed").await;
    assert_eq!(res.status(), 429);
    let retry_after: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("10"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
    let reset: u64 = header(&res, "x-ratelimit-reset").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(reset > now && reset <= now + 7, "reset {reset}, now {now}");
    assert!(header(&res, "x-request-id").is_some());
    assert_eq!(header(&res, "x-frame-options"), Some("DENY"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "error": "rate_limit_exceeded",
            "message": "Too many requests. Please try again later.",
            "retry_after": retry_after,
        })
    );
}

/// `/api/%66eed` is `/api/feed` to the router, but not to the outer middleware's early
/// charge (it takes the exact path only): the route's own `RateLimited` answers it.
const ROUTED_FEED: &str = "/api/%66eed";

/// A response's headers by name, each name's values joined in order.
fn header_map(res: &reqwest::Response) -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::new();
    for name in res.headers().keys() {
        let values: Vec<&str> = res
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("text header"))
            .collect();
        map.insert(name.as_str().to_string(), values.join(", "));
    }
    map
}

/// A comma-separated list as a sorted list (actix-cors bakes its list from a hash set,
/// so each worker may order it differently).
fn as_set(list: &str) -> Vec<String> {
    let mut items: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
    items.sort();
    items
}

/// Every route charged before routing (`rate_limit::EARLY_ROUTES`), each with a path the
/// router maps to the same route but the early charge does not take (a `%66` for an
/// `f`), so that the route's own `RateLimited` answers it.
const EARLY_AND_ROUTED: [(&str, &str); 3] = [
    ("/api/feed", ROUTED_FEED),
    ("/api/feed/events", "/api/%66eed/events"),
    ("/feeds/opml", "/%66eeds/opml"),
];

/// GET `path` with `headers` (and, for the event stream, `Accept: text/event-stream`).
async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if path.ends_with("/events") {
        req = req.header("accept", "text/event-stream");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("request")
}

/// GET `path`, which must be admitted: its `X-RateLimit-Remaining`. An event stream is
/// opened, its first bytes read (within a deadline), then dropped.
async fn admitted_remaining(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> u32 {
    let mut res = get_with(app, path, headers).await;
    assert_eq!(res.status(), 200, "{path}");
    let remaining = header(&res, "x-ratelimit-remaining")
        .unwrap_or_else(|| panic!("{path}: no x-ratelimit-remaining"))
        .parse()
        .unwrap();
    if path.ends_with("/events") {
        assert_eq!(header(&res, "content-type"), Some("text/event-stream"));
        let first = tokio::time::timeout(Duration::from_secs(20), res.chunk())
            .await
            .unwrap_or_else(|_| panic!("{path}: no first block within 20 s"))
            .expect("stream")
            .expect("a first block");
        assert!(!first.is_empty());
    }
    remaining
}

/// Asserts that `GET /api/feed` (refused before routing) and `GET ROUTED_FEED` (refused by
/// the route's middleware) get the same answer, both sent with `headers`.
async fn assert_same_refusal(app: &TestApp, headers: &[(&str, &str)]) {
    assert_same_refusal_of(app, "/api/feed", ROUTED_FEED, headers).await;
}

/// Asserts that `GET early` (refused before routing) and `GET routed` (the same route,
/// refused by its middleware) get the same answer, both sent with `headers`.
async fn assert_same_refusal_of(
    app: &TestApp,
    early: &str,
    routed: &str,
    headers: &[(&str, &str)],
) {
    let mut headers = headers.to_vec();
    headers.push(("x-request-id", "same-id-1"));
    let (early_path, routed_path) = (early, routed);
    let early = get_with(app, early_path, &headers).await;
    let routed = get_with(app, routed_path, &headers).await;
    assert_eq!(early.status(), 429, "{early_path}");
    assert_eq!(routed.status(), 429, "{routed_path}");
    let (mut early_h, mut routed_h) = (header_map(&early), header_map(&routed));
    assert_eq!(
        early_h.keys().collect::<Vec<_>>(),
        routed_h.keys().collect::<Vec<_>>(),
        "the same header names"
    );
    // The clock may tick between the two answers: these may differ by a second.
    for name in ["date", "retry-after", "x-ratelimit-reset"] {
        let (a, b) = (
            early_h.remove(name).unwrap(),
            routed_h.remove(name).unwrap(),
        );
        if name == "date" {
            continue;
        }
        let (a, b): (i64, i64) = (a.parse().unwrap(), b.parse().unwrap());
        assert!((a - b).abs() <= 1, "{name}: {a} vs {b}");
    }
    let expose = "access-control-expose-headers";
    assert_eq!(
        early_h.remove(expose).map(|l| as_set(&l)),
        routed_h.remove(expose).map(|l| as_set(&l)),
        "{early_path}"
    );
    assert_eq!(
        early_h, routed_h,
        "{early_path}: every other header, value for value"
    );
    let (early_body, routed_body): (Value, Value) =
        (early.json().await.unwrap(), routed.json().await.unwrap());
    let retry = |v: &Value| v["retry_after"].as_i64().unwrap();
    assert!((retry(&early_body) - retry(&routed_body)).abs() <= 1);
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("retry_after");
        v
    };
    assert_eq!(strip(early_body), strip(routed_body));
}

#[actix_web::test]
async fn a_refusal_before_routing_is_the_answer_the_route_gives() {
    let app = spawn(&limits("1", "1")).await;
    // Anonymous: refused in the connection layer, before the app.
    assert_eq!(app.get("/api/feed").await.status(), 200);
    assert_same_refusal(&app, &[]).await;
    // A token holder (`user:` bucket): refused first thing in the outer middleware.
    let alice = format!("Bearer {}", app.token("alice", Role::Reviewer));
    let auth = [("Authorization", alice.as_str())];
    let mut admitted = 0;
    while feed_status(&app, &auth).await == 200 {
        admitted += 1;
        assert!(admitted < 100, "the user bucket never ran dry");
    }
    assert_same_refusal(&app, &auth).await;
}

#[actix_web::test]
async fn every_route_refused_before_routing_answers_as_the_route_does() {
    let app = spawn(&limits("1", "1")).await;
    // Anonymous: refused in the connection layer, before the app.
    assert_eq!(admitted_remaining(&app, "/feeds/opml", &[]).await, 0);
    for (early, routed) in EARLY_AND_ROUTED {
        assert_same_refusal_of(&app, early, routed, &[]).await;
    }
    // A token holder (`user:` bucket, shared by the routes): refused in the middleware.
    let alice = format!("Bearer {}", app.token("alice", Role::Reviewer));
    let auth = [("Authorization", alice.as_str())];
    let mut admitted = 0;
    while get_with(&app, "/feeds/opml", &auth).await.status() == 200 {
        admitted += 1;
        assert!(admitted < 100, "the user bucket never ran dry");
    }
    for (early, routed) in EARLY_AND_ROUTED {
        assert_same_refusal_of(&app, early, routed, &auth).await;
    }
}

#[actix_web::test]
async fn every_route_charged_before_routing_is_charged_once() {
    let app = spawn(&limits("8", "8")).await;
    // Each route, early-charged then routed: every admission spends exactly one token.
    let mut last = 8;
    for (early, routed) in EARLY_AND_ROUTED {
        for path in [early, routed] {
            let remaining = admitted_remaining(&app, path, &[]).await;
            assert_eq!(remaining + 1, last, "{path}");
            last = remaining;
        }
    }
    while get_with(&app, "/api/feed", &[]).await.status() == 200 {}
    for (early, routed) in EARLY_AND_ROUTED {
        for path in [early, routed] {
            assert_eq!(get_with(&app, path, &[]).await.status(), 429, "{path}");
        }
    }
    // A token holder's requests are charged in the outer middleware: once each too.
    let alice = format!("Bearer {}", app.token("alice", Role::Reviewer));
    let auth = [("Authorization", alice.as_str())];
    let mut last = None;
    for (early, routed) in EARLY_AND_ROUTED {
        for path in [early, routed] {
            let remaining = admitted_remaining(&app, path, &auth).await;
            if let Some(last) = last {
                assert_eq!(remaining + 1, last, "token: {path}");
            }
            last = Some(remaining);
        }
    }
}

#[actix_web::test]
async fn a_request_charged_before_routing_is_charged_once_and_refusals_are_counted() {
    let app = spawn(&limits("6", "6")).await;
    let before = request_counts(&app).await;
    // Early-charged and routed requests alternate: each spends exactly one token.
    for n in 0..6u32 {
        let path = if n % 2 == 0 { "/api/feed" } else { ROUTED_FEED };
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "request {n} ({path})");
        let remaining = (5 - n).to_string();
        assert_eq!(
            header(&res, "x-ratelimit-remaining"),
            Some(remaining.as_str()),
            "request {n} ({path})"
        );
    }
    for path in ["/api/feed", ROUTED_FEED, "/api/feed"] {
        assert_eq!(app.get(path).await.status(), 429, "{path}");
    }
    // A token holder's requests are charged in the outer middleware: once each too.
    let alice = format!("Bearer {}", app.token("alice", Role::Reviewer));
    let mut last = None;
    for n in 0..4u32 {
        let path = if n % 2 == 0 { "/api/feed" } else { ROUTED_FEED };
        let res = app
            .client
            .get(app.url(path))
            .header("Authorization", alice.as_str())
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "token request {n} ({path})");
        let remaining: u32 = header(&res, "x-ratelimit-remaining")
            .unwrap()
            .parse()
            .unwrap();
        if let Some(last) = last {
            assert_eq!(remaining + 1, last, "token request {n} ({path})");
        }
        last = Some(remaining);
    }
    let after = request_counts(&app).await;
    assert_eq!(after.rate_limited - before.rate_limited, 3);
    // The six admitted, the three refused, four with a token and the first metrics
    // request.
    assert_eq!(after.total - before.total, 14);
}

#[actix_web::test]
async fn refill_follows_requests_per_window() {
    // 10 per 1-second window: a token every 100 ms.
    let mut env = limits("10", "1");
    env.push(("WINDOW_SECONDS", "1".into()));
    let app = spawn(&env).await;
    assert_eq!(feed_status(&app, &[]).await, 200);
    let refused = app.get("/api/feed").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    let started = Instant::now();
    eventually(Duration::from_secs(2), "a refilled token", || async {
        (feed_status(&app, &[]).await == 200).then_some(())
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[actix_web::test]
async fn health_probes_and_metrics_are_never_limited() {
    let app = spawn(&limits("1", "1")).await;
    for _ in 0..15 {
        for path in [
            "/api/health",
            "/livez",
            "/readyz",
            "/metrics",
            "/api/leaders",
        ] {
            let res = app.get(path).await;
            assert_ne!(res.status(), 429, "{path}");
            assert!(header(&res, "x-ratelimit-limit").is_none(), "{path}");
        }
    }
    assert_eq!(feed_status(&app, &[]).await, 200);
    assert_eq!(feed_status(&app, &[]).await, 429);
}

#[actix_web::test]
async fn limited_routes_share_one_bucket_per_client() {
    let app = spawn(&limits("3", "3")).await;
    assert_eq!(feed_status(&app, &[]).await, 200);
    let res = post(&app, "/api/sentiment/batch", &json!({"texts": ["good"]})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(feed_status(&app, &[]).await, 200);
    let res = post(&app, "/api/sentiment/batch", &json!({"texts": ["good"]})).await;
    assert_eq!(res.status(), 429);
}

#[actix_web::test]
async fn leader_refresh_spends_from_the_same_bucket() {
    let app = spawn(&limits("3", "3")).await;
    assert_eq!(feed_status(&app, &[]).await, 200);
    // Without an X token the refresh itself cannot run, but it is counted first.
    let res = post(&app, "/api/leaders/1/refresh", &json!({})).await;
    assert_ne!(res.status(), 429);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(feed_status(&app, &[]).await, 200);
    let res = post(&app, "/api/leaders/1/refresh", &json!({})).await;
    assert_eq!(res.status(), 429);
}

#[actix_web::test]
async fn invented_forwarding_headers_do_not_escape_the_bucket() {
    let app = spawn(&limits("3", "3")).await;
    let mut statuses = Vec::new();
    for n in 0..6 {
        let spoof = format!("203.0.113.{n}");
        let forwarded = format!("for={spoof}");
        statuses.push(
            feed_status(
                &app,
                &[
                    ("X-Forwarded-For", spoof.as_str()),
                    ("Forwarded", forwarded.as_str()),
                ],
            )
            .await,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let mut env = limits("2", "2");
    env.push(("TRUSTED_PROXIES", "127.0.0.1/32".into()));
    let app = spawn(&env).await;
    let a = [("X-Forwarded-For", "203.0.113.1")];
    let b = [("X-Forwarded-For", "203.0.113.2")];
    assert_eq!(feed_status(&app, &a).await, 200);
    assert_eq!(feed_status(&app, &a).await, 200);
    assert_eq!(feed_status(&app, &a).await, 429);
    assert_eq!(feed_status(&app, &b).await, 200);
    // Client A claims to be B; its proxy appends A's real address on the right.
    let spoof = [("X-Forwarded-For", "203.0.113.2, 203.0.113.1")];
    assert_eq!(feed_status(&app, &spoof).await, 429);
    // RFC 7239 works as well when X-Forwarded-For is absent.
    let c = [("Forwarded", "for=203.0.113.3;proto=https")];
    assert_eq!(feed_status(&app, &c).await, 200);
    assert_eq!(feed_status(&app, &c).await, 200);
    assert_eq!(feed_status(&app, &c).await, 429);
}

#[actix_web::test]
async fn ipv6_clients_are_keyed_by_their_slash_64() {
    let mut env = limits("2", "2");
    env.push(("TRUSTED_PROXIES", "127.0.0.1/32".into()));
    let app = spawn(&env).await;
    assert_eq!(
        feed_status(&app, &[("X-Forwarded-For", "2001:db8:1:2::1")]).await,
        200
    );
    assert_eq!(
        feed_status(&app, &[("X-Forwarded-For", "2001:db8:1:2:ffff::9")]).await,
        200
    );
    assert_eq!(
        feed_status(&app, &[("X-Forwarded-For", "2001:db8:1:2::77")]).await,
        429
    );
    assert_eq!(
        feed_status(&app, &[("X-Forwarded-For", "2001:db8:1:3::1")]).await,
        200
    );
    let admin = app.admin_token();
    let (status, view) = admin_get(&app, "/api/admin/rate-limits/ip/2001:db8:1:2::5", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(view["key"], "ip:2001:db8:1:2::/64");
    assert_eq!(view["local"]["remaining"], 0);
}

#[actix_web::test]
async fn a_valid_token_gets_a_user_bucket_and_an_invalid_one_does_not() {
    let app = spawn(&limits("2", "2")).await;
    assert_eq!(feed_status(&app, &[]).await, 200);
    assert_eq!(feed_status(&app, &[]).await, 200);
    assert_eq!(feed_status(&app, &[]).await, 429);

    let alice = format!("Bearer {}", app.token("alice", Role::Reviewer));
    let res = feed_with(&app, &[("Authorization", alice.as_str())]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "x-ratelimit-limit"),
        Some("4"),
        "USER_BURST_SIZE"
    );
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("3"));
    for _ in 0..3 {
        assert_eq!(
            feed_status(&app, &[("Authorization", alice.as_str())]).await,
            200
        );
    }
    assert_eq!(
        feed_status(&app, &[("Authorization", alice.as_str())]).await,
        429
    );

    let bob = format!("Bearer {}", app.token("bob", Role::Admin));
    assert_eq!(
        feed_status(&app, &[("Authorization", bob.as_str())]).await,
        200
    );

    let forged = format!("Bearer {}", forged_token("mallory"));
    assert_eq!(
        feed_status(&app, &[("Authorization", forged.as_str())]).await,
        429,
        "an invalid token is anonymous"
    );
    assert_eq!(
        feed_status(&app, &[("Authorization", "Bearer not.a.jwt")]).await,
        429
    );
}

/// A well-formed token signed with the wrong secret.
fn forged_token(sub: &str) -> String {
    let keys = amber::http::auth::JwtKeys::new(&amber::config::AuthSettings {
        jwt_secret: amber::config::Secret::new("some-other-secret-entirely"),
        jwt_ttl_seconds: 3600,
        bootstrap_secret: amber::config::Secret::new("x"),
        using_default_secret: false,
    });
    keys.issue(sub, Role::Admin, 3600).unwrap()
}

#[actix_web::test]
async fn the_token_endpoint_has_a_strict_limit_of_its_own() {
    let app = spawn(&limits("1000", "1000")).await;
    let wrong = json!({"adminId": "eve", "secret": "guess"});
    for n in 0..5 {
        let res = post(&app, "/api/admin/token", &wrong).await;
        assert_eq!(res.status(), 401, "try {n}");
    }
    let res = post(&app, "/api/admin/token", &wrong).await;
    assert_eq!(res.status(), 429);
    assert!(header(&res, "retry-after").is_some());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "rate_limit_exceeded");
    // Even the right secret waits now; the API bucket is untouched.
    let right = json!({"adminId": "ops", "secret": crate::helpers::TEST_SECRET});
    let res = post(&app, "/api/admin/token", &right).await;
    assert_eq!(res.status(), 429);
    let feed = app.get("/api/feed").await;
    assert_eq!(feed.status(), 200);
    assert_eq!(header(&feed, "x-ratelimit-remaining"), Some("999"));
}

#[actix_web::test]
async fn rate_limiting_enabled_false_turns_it_all_off() {
    let mut env = limits("1", "1");
    env.push(("RATE_LIMITING_ENABLED", "false".into()));
    let app = spawn(&env).await;
    for _ in 0..10 {
        let res = app.get("/api/feed").await;
        assert_eq!(res.status(), 200);
        assert!(header(&res, "x-ratelimit-limit").is_none());
    }
    let wrong = json!({"adminId": "eve", "secret": "guess"});
    for _ in 0..8 {
        let res = post(&app, "/api/admin/token", &wrong).await;
        assert_eq!(res.status(), 401);
    }
}

async fn admin_get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let res = app.get_auth(path, token).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn admin_delete(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let res = app
        .client
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn an_admin_inspects_and_resets_one_client() {
    let app = spawn(&limits("3", "3")).await;
    for _ in 0..3 {
        assert_eq!(feed_status(&app, &[]).await, 200);
    }
    assert_eq!(feed_status(&app, &[]).await, 429);
    let admin = app.admin_token();
    let path = "/api/admin/rate-limits/ip/127.0.0.1";
    let (status, view) = admin_get(&app, path, &admin).await;
    assert_eq!(status, 200);
    assert_eq!(view["key"], "ip:127.0.0.1");
    assert_eq!(view["redisKey"], "rate_limit:ip:127.0.0.1");
    assert_eq!(view["limit"], 3);
    assert_eq!(view["local"]["remaining"], 0);
    assert_eq!(view["local"]["tracked"], true);
    assert_eq!(view["redis"]["status"], "disabled");

    let (status, body) = admin_delete(&app, path, &admin).await;
    assert_eq!(status, 200);
    assert_eq!(body["reset"], true);
    assert_eq!(body["local"], true);
    assert_eq!(feed_status(&app, &[]).await, 200);

    let (_, view) = admin_get(&app, "/api/admin/rate-limits/user/nobody", &admin).await;
    assert_eq!(view["local"]["tracked"], false);
    assert_eq!(view["limit"], 6);

    let reviewer = app.reviewer_token();
    assert_eq!(admin_get(&app, path, &reviewer).await.0, 403);
    assert_eq!(app.get(path).await.status(), 401);
    assert_eq!(
        admin_get(&app, "/api/admin/rate-limits/token/1.2.3.4", &admin)
            .await
            .0,
        404
    );
    let (status, body) = admin_get(&app, "/api/admin/rate-limits/ip/not-an-ip", &admin).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_path");
}

/// True when the shared Redis answers; otherwise prints SKIP (panics under `CI=true`).
async fn redis_or_skip(test: &str) -> bool {
    let up = redis_sync::redis_answers(REDIS_URL, Duration::from_secs(1)).await;
    if !up {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: no Redis on {REDIS_URL} and CI=true");
        }
        println!("SKIP {test}: no Redis on {REDIS_URL}");
    }
    up
}

/// Runs `command key` against the shared Redis, as `redis-cli` would.
async fn redis_cli<T: redis::FromRedisValue>(command: &str, key: &str) -> T {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd(command)
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap()
}

async fn redis_del(key: &str) -> u32 {
    redis_cli("DEL", key).await
}

async fn redis_exists(key: &str) -> bool {
    redis_cli("EXISTS", key).await
}

async fn redis_health(app: &TestApp) -> String {
    let (_, body) = app.get_json("/api/health").await;
    body["checks"]["redis"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `n` servers sharing `redis_url`, with `burst` tokens refilled per hour: the refill
/// during a test is negligible, so "at most the burst" holds however slow the machine.
async fn spawn_synced(n: usize, burst: &str, redis_url: &str) -> Vec<TestApp> {
    let mut env = limits(burst, burst);
    env.push(("WINDOW_SECONDS", "3600".into()));
    env.push(("REDIS_URL", redis_url.to_string()));
    env.push(("TRUSTED_PROXIES", "127.0.0.1/32".into()));
    let mut apps = Vec::new();
    for _ in 0..n {
        apps.push(spawn(&env).await);
    }
    apps
}

async fn until_redis_ok(apps: &[TestApp]) {
    for app in apps {
        eventually(Duration::from_secs(5), "redis ok in health", || async {
            (redis_health(app).await == "ok").then_some(())
        })
        .await;
    }
}

#[actix_web::test]
async fn three_servers_sharing_redis_admit_at_most_the_burst() {
    if !redis_or_skip("three_servers_sharing_redis_admit_at_most_the_burst").await {
        return;
    }
    let apps = spawn_synced(3, "10", REDIS_URL).await;
    until_redis_ok(&apps).await;
    let client = unique_client();
    redis_del(&format!("rate_limit:ip:{client}")).await;
    // 300 rapid requests, 30 in flight at a time, spread round-robin over the servers.
    let xff = [("X-Forwarded-For", client.as_str())];
    let mut statuses = Vec::new();
    for wave in 0..10 {
        let requests = (0..30).map(|n| feed_status(&apps[(wave * 30 + n) % 3], &xff));
        statuses.extend(futures_util::future::join_all(requests).await);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        admitted <= 11,
        "{admitted} of 300 admitted; BURST_SIZE × 1.1 = 11"
    );
    assert!(admitted >= 5, "only {admitted} admitted");
    assert!(redis_exists(&format!("rate_limit:ip:{client}")).await);
    for app in &apps {
        assert_eq!(redis_health(app).await, "ok");
    }
    redis_del(&format!("rate_limit:ip:{client}")).await;
}

#[actix_web::test]
async fn deleting_the_redis_key_resets_the_client_within_a_second_or_two() {
    if !redis_or_skip("deleting_the_redis_key_resets_the_client_within_a_second_or_two").await {
        return;
    }
    let apps = spawn_synced(2, "5", REDIS_URL).await;
    until_redis_ok(&apps).await;
    let client = unique_client();
    let key = format!("rate_limit:ip:{client}");
    redis_del(&key).await;
    let xff = [("X-Forwarded-For", client.as_str())];
    for n in 0..20 {
        feed_status(&apps[n % 2], &xff).await;
    }
    assert_eq!(feed_status(&apps[0], &xff).await, 429);
    assert_eq!(feed_status(&apps[1], &xff).await, 429);
    assert_eq!(redis_del(&key).await, 1, "the bucket lives under {key}");
    let deleted = Instant::now();
    for app in &apps {
        eventually(Duration::from_secs(2), "client reset after DEL", || async {
            (feed_status(app, &xff).await == 200).then_some(())
        })
        .await;
    }
    assert!(deleted.elapsed() < Duration::from_secs(2));
    redis_del(&key).await;
}

#[actix_web::test]
async fn admin_reset_with_redis_clears_the_shared_bucket() {
    if !redis_or_skip("admin_reset_with_redis_clears_the_shared_bucket").await {
        return;
    }
    let apps = spawn_synced(2, "3", REDIS_URL).await;
    until_redis_ok(&apps).await;
    let client = unique_client();
    let xff = [("X-Forwarded-For", client.as_str())];
    redis_del(&format!("rate_limit:ip:{client}")).await;
    for _ in 0..4 {
        feed_status(&apps[0], &xff).await;
    }
    assert_eq!(feed_status(&apps[1], &xff).await, 429);
    let admin = apps[0].admin_token();
    let path = format!("/api/admin/rate-limits/ip/{client}");
    let (status, view) = admin_get(&apps[1], &path, &admin).await;
    assert_eq!(status, 200);
    assert_eq!(view["redis"]["status"], "ok");
    assert_eq!(view["redis"]["remaining"], 0);
    let (status, body) = admin_delete(&apps[1], &path, &admin).await;
    assert_eq!(status, 200);
    assert_eq!(body["redis"], json!({"status": "ok", "deleted": true}));
    eventually(
        Duration::from_secs(2),
        "reset seen by the other server",
        || async { (feed_status(&apps[0], &xff).await == 200).then_some(()) },
    )
    .await;
    redis_del(&format!("rate_limit:ip:{client}")).await;
}

#[actix_web::test]
async fn a_server_whose_redis_is_unreachable_keeps_serving_and_limiting() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut env = limits("10", "10");
    env.push(("REDIS_URL", format!("redis://127.0.0.1:{port}")));
    let app = spawn(&env).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let started = Instant::now();
        statuses.push(feed_status(&app, &[]).await);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a request took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(&statuses[..10], &[200; 10]);
    assert_eq!(&statuses[10..], &[429, 429]);
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["checks"]["redis"]["status"], "unavailable");
    eventually(Duration::from_secs(5), "the outage in the log", || async {
        let logs = app.logs();
        (logs.matches("redis unavailable").count() == 1).then_some(())
    })
    .await;
    let admin = app.admin_token();
    let (status, body) = admin_delete(&app, "/api/admin/rate-limits/ip/127.0.0.1", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(body["local"], true);
    assert_eq!(body["redis"]["status"], "unavailable");
    assert_eq!(feed_status(&app, &[]).await, 200);
}

fn reset_command(app: &TestApp, extra: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let port = app.address.rsplit(':').next().unwrap().to_string();
    let mut env: std::collections::HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("PORT".into(), port);
    crate::helpers::amber_command(app.data_dir(), &env)
        .args(["rate-limit", "reset"])
        .args(args)
        .output()
        .expect("run amber rate-limit reset")
}

#[actix_web::test]
async fn the_cli_reset_clears_the_running_servers_bucket_without_redis() {
    let app = spawn(&limits("2", "2")).await;
    for _ in 0..2 {
        assert_eq!(feed_status(&app, &[]).await, 200);
    }
    assert_eq!(feed_status(&app, &[]).await, 429);
    let out = reset_command(&app, &[], &["--ip", "127.0.0.1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("REDIS_URL is not set"), "{stdout}");
    assert!(
        stdout.contains("local bucket of ip:127.0.0.1 cleared"),
        "{stdout}"
    );
    assert_eq!(feed_status(&app, &[]).await, 200);

    let out = reset_command(&app, &[], &["--ip", "not-an-ip"]);
    assert!(!out.status.success());
    let out = reset_command(&app, &[], &[]);
    assert!(!out.status.success(), "--ip or --user is required");
}

#[actix_web::test]
async fn the_cli_reset_deletes_the_shared_bucket_in_redis() {
    if !redis_or_skip("the_cli_reset_deletes_the_shared_bucket_in_redis").await {
        return;
    }
    let apps = spawn_synced(1, "2", REDIS_URL).await;
    until_redis_ok(&apps).await;
    let app = &apps[0];
    let client = unique_client();
    let key = format!("rate_limit:ip:{client}");
    redis_del(&key).await;
    let xff = [("X-Forwarded-For", client.as_str())];
    for _ in 0..3 {
        feed_status(app, &xff).await;
    }
    assert_eq!(feed_status(app, &xff).await, 429);
    let out = reset_command(app, &[("REDIS_URL", REDIS_URL)], &["--ip", &client]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("redis: deleted {key}")),
        "{stdout}"
    );
    assert_eq!(feed_status(app, &xff).await, 200);
    redis_del(&key).await;
}

/// One response read off a raw keep-alive connection: the status line, the headers in
/// the order sent (names lowercase), the body (none for an answer to `HEAD`).
#[derive(Debug)]
struct RawAnswer {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }
}

/// A raw connection to `app` (no pool: the test decides what shares a connection).
async fn raw_connect(app: &TestApp) -> tokio::net::TcpStream {
    let addr = app.address.trim_start_matches("http://").to_string();
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// Reads one response; `head_only` for the answer to a `HEAD`. `None`: the server
/// closed before a response began.
async fn read_answer(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> Option<RawAnswer> {
    use tokio::io::AsyncReadExt;
    let deadline = Duration::from_secs(30);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(deadline, stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        if n == 0 {
            assert!(buf.is_empty(), "closed mid-answer: {buf:?}");
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("text head");
    let mut lines = head.trim_end().split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (n, v) = line.split_once(": ").expect("a header line");
            (n.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    let length: usize = if head_only {
        0
    } else {
        headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0)
    };
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(deadline, stream.read(&mut chunk))
            .await
            .expect("a body in time")
            .expect("read");
        assert!(n > 0, "closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some(RawAnswer {
        status_line,
        headers,
        body,
    })
}

async fn raw_send(stream: &mut tokio::net::TcpStream, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    stream.write_all(bytes).await.expect("write");
}

/// True once the server closed `stream` (reads see the end) within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut chunk)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn livez_head(request_id: &str) -> Vec<u8> {
    format!("GET /livez HTTP/1.1\r\nHost: amber\r\nX-Request-Id: {request_id}\r\n\r\n").into_bytes()
}

fn feed_head(request_id: &str) -> Vec<u8> {
    format!("GET /api/feed HTTP/1.1\r\nHost: amber\r\nX-Request-Id: {request_id}\r\n\r\n")
        .into_bytes()
}

/// Compares two 429s header for header (as sets: actix-http writes its map in hash
/// order) and body: equal but for `date` and the clock's second.
fn assert_same_raw_refusal(a: &RawAnswer, b: &RawAnswer) {
    assert_eq!(a.status_line, "HTTP/1.1 429 Too Many Requests");
    assert_eq!(a.status_line, b.status_line);
    let clocked = ["date", "retry-after", "x-ratelimit-reset"];
    let rest = |r: &RawAnswer| {
        let mut h: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(n, _)| !clocked.contains(&n.as_str()))
            .cloned()
            .collect();
        h.sort();
        h
    };
    assert_eq!(rest(a), rest(b), "every other header, value for value");
    for name in clocked {
        let (x, y) = (a.header(name).unwrap(), b.header(name).unwrap());
        if name != "date" {
            let (x, y): (i64, i64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((x - y).abs() <= 1, "{name}: {x} vs {y}");
        }
    }
    let (x, y): (Value, Value) = (
        serde_json::from_slice(&a.body).unwrap(),
        serde_json::from_slice(&b.body).unwrap(),
    );
    let retry = |v: &Value| v["retry_after"].as_i64().unwrap();
    assert!((retry(&x) - retry(&y)).abs() <= 1);
    if retry(&x) == retry(&y) {
        assert_eq!(a.body, b.body, "the same bytes");
    }
}

/// The connection layer answers a refused simple `GET` on a fresh connection itself
/// (`http::conn::guard`): its bytes must be actix-http's answer through `EarlyService`
/// (the same request on a connection actix-http has already served), and the routed
/// answer's too.
#[actix_web::test]
async fn a_refusal_written_by_the_connection_layer_is_the_answer_actix_http_writes() {
    let app = spawn(&limits("1", "1")).await;
    // The one admission, charged by the connection layer for actix-http: charged once.
    let mut first = raw_connect(&app).await;
    let mut buf = Vec::new();
    raw_send(&mut first, &feed_head("admitted-1")).await;
    let admitted = read_answer(&mut first, &mut buf, false).await.unwrap();
    assert_eq!(admitted.status(), 200, "{admitted:?}");
    assert_eq!(admitted.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(admitted.header("x-request-id"), Some("admitted-1"));
    // Refused on that connection by actix-http's `EarlyService`.
    raw_send(&mut first, &feed_head("same-1")).await;
    let through_actix = read_answer(&mut first, &mut buf, false).await.unwrap();
    // Refused on a fresh one by the connection layer.
    let mut fresh = raw_connect(&app).await;
    let mut fresh_buf = Vec::new();
    raw_send(&mut fresh, &feed_head("same-1")).await;
    let written_here = read_answer(&mut fresh, &mut fresh_buf, false)
        .await
        .unwrap();
    assert_same_raw_refusal(&written_here, &through_actix);
    assert_eq!(written_here.header("x-request-id"), Some("same-1"));
    assert!(written_here.header("connection").is_none());
    // And again on the same connection: it stays open.
    raw_send(&mut fresh, &feed_head("same-1")).await;
    let again = read_answer(&mut fresh, &mut fresh_buf, false)
        .await
        .unwrap();
    assert_same_raw_refusal(&again, &through_actix);
    // The reqwest-side comparison with the routed answer holds as before.
    assert_same_refusal(&app, &[]).await;
    // Refusals written here are counted as the app counts them.
    let before = request_counts(&app).await;
    for n in 0..3 {
        raw_send(&mut fresh, &feed_head(&format!("counted-{n}"))).await;
        let r = read_answer(&mut fresh, &mut fresh_buf, false)
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
    }
    let after = request_counts(&app).await;
    assert_eq!(after.rate_limited - before.rate_limited, 3);
    assert_eq!(after.total - before.total, 4);
}

/// Pipelined requests are answered in order, whoever answers them: the connection layer
/// answers only while actix-http owes nothing on the connection.
#[actix_web::test]
async fn pipelined_requests_are_answered_in_order_around_refusals() {
    let app = spawn(&limits("1", "1")).await;
    assert_eq!(app.get("/api/feed").await.status(), 200);
    let mut conn = raw_connect(&app).await;
    let stream = [
        feed_head("p1"),
        livez_head("p2"),
        feed_head("p3"),
        feed_head("p4"),
        // No `HEAD` in this pipeline: actix-http applies the `HEAD` of the request it
        // decoded last to the answers it encodes next (a pipelined `HEAD` after two
        // `GET`s leaves their answers without bodies; seen on main too, not this layer's).
        feed_head("p5"),
    ]
    .concat();
    raw_send(&mut conn, &stream).await;
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    for id in ["p1", "p2", "p3", "p4", "p5"] {
        let r = read_answer(&mut conn, &mut buf, false)
            .await
            .unwrap_or_else(|| panic!("an answer for {id}"));
        assert_eq!(r.header("x-request-id"), Some(id), "{seen:?} then {r:?}");
        seen.push((id, r.status()));
    }
    assert_eq!(
        seen,
        [
            ("p1", 429),
            ("p2", 200),
            ("p3", 429),
            ("p4", 429),
            ("p5", 429)
        ]
    );
    // Several refusals in one write, all answered here, then a passed-on request.
    let mut conn = raw_connect(&app).await;
    let stream = [feed_head("q1"), feed_head("q2"), livez_head("q3")].concat();
    raw_send(&mut conn, &stream).await;
    let mut buf = Vec::new();
    for (id, status) in [("q1", 429), ("q2", 429), ("q3", 200)] {
        let r = read_answer(&mut conn, &mut buf, false).await.unwrap();
        assert_eq!((r.header("x-request-id"), r.status()), (Some(id), status));
    }
}

/// `Connection: close`, HTTP/1.0, `HEAD` and a request with a body are answered as
/// before (by actix-http): the same 429, and the connection closed or kept as asked.
#[actix_web::test]
async fn refusals_keep_their_connection_semantics() {
    let app = spawn(&limits("1", "1")).await;
    assert_eq!(app.get("/api/feed").await.status(), 200);
    // `Connection: close`: the 429 says so and the server closes.
    let mut conn = raw_connect(&app).await;
    raw_send(
        &mut conn,
        b"GET /api/feed HTTP/1.1\r\nHost: amber\r\nConnection: close\r\n\r\n",
    )
    .await;
    let mut buf = Vec::new();
    let r = read_answer(&mut conn, &mut buf, false).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_within(&mut conn, Duration::from_secs(10)).await);
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut conn = raw_connect(&app).await;
    raw_send(&mut conn, b"GET /api/feed HTTP/1.0\r\n\r\n").await;
    let mut buf = Vec::new();
    let r = read_answer(&mut conn, &mut buf, false).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.status_line.starts_with("HTTP/1.0 429"), "{r:?}");
    assert!(closed_within(&mut conn, Duration::from_secs(10)).await);
    // HEAD: the 429's head, no body; the connection stays open.
    let mut conn = raw_connect(&app).await;
    raw_send(
        &mut conn,
        b"HEAD /api/feed HTTP/1.1\r\nHost: amber\r\nX-Request-Id: h1\r\n\r\n",
    )
    .await;
    let mut buf = Vec::new();
    let r = read_answer(&mut conn, &mut buf, true).await.unwrap();
    assert_eq!((r.status(), r.header("x-request-id")), (429, Some("h1")));
    raw_send(&mut conn, &feed_head("h2")).await;
    let r = read_answer(&mut conn, &mut buf, false).await.unwrap();
    assert_eq!((r.status(), r.header("x-request-id")), (429, Some("h2")));
    // A GET with a body: passed on, and refused by actix-http's `EarlyService` with the
    // same 429 as one written here.
    let mut conn = raw_connect(&app).await;
    raw_send(
        &mut conn,
        b"GET /api/feed HTTP/1.1\r\nHost: amber\r\nX-Request-Id: b1\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    let mut buf = Vec::new();
    let with_body = read_answer(&mut conn, &mut buf, false).await.unwrap();
    let mut conn = raw_connect(&app).await;
    raw_send(&mut conn, &feed_head("b1")).await;
    let mut buf = Vec::new();
    let written_here = read_answer(&mut conn, &mut buf, false).await.unwrap();
    // actix-http closes a connection after answering a request whose body it did not
    // read (`connection: close`), as it did before; every other header is the same.
    let mut with_body = with_body;
    with_body.headers.retain(|(n, _)| n != "connection");
    assert_same_raw_refusal(&written_here, &with_body);
}

/// A connection answered only by the connection layer is still closed after the
/// keep-alive time (5 s) of idling, as actix-http closes its own.
#[actix_web::test]
async fn a_connection_of_refusals_answered_early_still_idles_out() {
    let app = spawn(&limits("1", "1")).await;
    assert_eq!(app.get("/api/feed").await.status(), 200);
    let mut conn = raw_connect(&app).await;
    let mut buf = Vec::new();
    raw_send(&mut conn, &feed_head("i1")).await;
    assert_eq!(
        read_answer(&mut conn, &mut buf, false)
            .await
            .unwrap()
            .status(),
        429
    );
    // Idle for less than the keep-alive time: still served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    raw_send(&mut conn, &feed_head("i2")).await;
    let sent = Instant::now();
    assert_eq!(
        read_answer(&mut conn, &mut buf, false)
            .await
            .unwrap()
            .status(),
        429
    );
    // Then closed once idle for the keep-alive time.
    assert!(closed_within(&mut conn, Duration::from_secs(30)).await);
    let idle = sent.elapsed();
    assert!(
        idle >= Duration::from_millis(4500) && idle < Duration::from_secs(20),
        "closed after {idle:?}"
    );
}

/// `GET /api/metrics`'s request counters.
struct RequestCounts {
    rate_limited: u64,
    total: u64,
}

async fn request_counts(app: &TestApp) -> RequestCounts {
    let v: Value = app.get("/api/metrics").await.json().await.unwrap();
    let count = |what: &str| v["requests"][what].as_u64().unwrap();
    RequestCounts {
        rate_limited: count("rateLimited"),
        total: count("total"),
    }
}
