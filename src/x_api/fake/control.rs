//! The control endpoints under `/_fake/` (faults, latency, stats, new posts of every
//! kind, edits, deletions, withholdings, counts), so a person running `amber demo` can
//! steer the fake with curl.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::x_api::fake::script::{CountsUpdate, PostSpec};
use crate::x_api::fake::{stats_of, ArmedFault, Fault, Shared};

/// Body of `POST /_fake/faults`.
#[derive(Debug, Deserialize)]
pub(super) struct FaultRequest {
    kind: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    reset_in_secs: Option<u64>,
    #[serde(default)]
    delay_ms: Option<u64>,
}

pub(super) async fn post_fault(
    shared: web::Data<Shared>,
    body: web::Json<FaultRequest>,
) -> HttpResponse {
    let fault = match body.kind.as_str() {
        "server_error" | "500" => Fault::ServerError,
        "rate_limit" | "429" => Fault::RateLimited {
            reset_in: Duration::from_secs(body.reset_in_secs.unwrap_or(900)),
        },
        "malformed" => Fault::Malformed,
        "unauthorized" | "401" => Fault::Unauthorized,
        "slow" => Fault::Slow {
            delay: Duration::from_millis(body.delay_ms.unwrap_or(15_000)),
        },
        other => {
            return HttpResponse::BadRequest().json(json!({
                "error": "unknown_fault",
                "message": format!("unknown fault kind {other:?}: use server_error, rate_limit, malformed, unauthorized or slow")
            }))
        }
    };
    let remaining = match body.count {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(1),
    };
    let mut state = shared.state.lock();
    state.faults.push_back(ArmedFault {
        fault,
        remaining,
        path: None,
    });
    HttpResponse::Ok().json(
        json!({"armed": format!("{fault:?}"), "count": remaining, "queued": state.faults.len()}),
    )
}

pub(super) async fn clear_faults(shared: web::Data<Shared>) -> HttpResponse {
    shared.state.lock().faults.clear();
    HttpResponse::Ok().json(json!({"cleared": true}))
}

#[derive(Debug, Deserialize)]
pub(super) struct LatencyRequest {
    ms: u64,
}

pub(super) async fn put_latency(
    shared: web::Data<Shared>,
    body: web::Json<LatencyRequest>,
) -> HttpResponse {
    shared.state.lock().latency = Duration::from_millis(body.ms);
    HttpResponse::Ok().json(json!({"latency_ms": body.ms}))
}

pub(super) async fn get_stats(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(stats_of(&shared))
}

/// Body of `POST /_fake/users/{username}/posts`: `count` generated posts, or one post
/// scripted by the other fields.
#[derive(Debug, Deserialize)]
pub(super) struct PostsRequest {
    #[serde(default)]
    count: Option<u32>,
    #[serde(flatten)]
    post: PostSpec,
}

fn bad_request(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": "bad_request", "message": message}))
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "not_found", "message": "no such post"}))
}

pub(super) async fn post_posts(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: Option<web::Json<PostsRequest>>,
) -> HttpResponse {
    let username = path.into_inner();
    let mut state = shared.state.lock();
    let pos = state.add_user(&username, &username);
    match body.map(web::Json::into_inner) {
        Some(PostsRequest { count: None, post }) if post != PostSpec::default() => {
            match state.add_post(pos, &post) {
                Ok(id) => HttpResponse::Ok().json(json!({ "ids": [id] })),
                Err(e) => bad_request(e),
            }
        }
        body => {
            let count = body.and_then(|b| b.count).unwrap_or(1).min(10_000);
            let ids = state.add_posts(pos, count);
            HttpResponse::Ok().json(json!({ "ids": ids }))
        }
    }
}

fn post_id(path: web::Path<String>) -> Option<u64> {
    path.into_inner().parse().ok()
}

pub(super) async fn post_delete(
    shared: web::Data<Shared>,
    path: web::Path<String>,
) -> HttpResponse {
    match post_id(path) {
        Some(id) if shared.state.lock().delete_post(id) => {
            HttpResponse::Ok().json(json!({"deleted": id.to_string()}))
        }
        _ => not_found(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WithholdRequest {
    #[serde(default)]
    country_codes: Vec<String>,
}

pub(super) async fn post_withhold(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: Option<web::Json<WithholdRequest>>,
) -> HttpResponse {
    let countries = body
        .map(|b| b.into_inner().country_codes)
        .unwrap_or_default();
    match post_id(path) {
        Some(id) if shared.state.lock().withhold_post(id, countries) => {
            HttpResponse::Ok().json(json!({"withheld": id.to_string()}))
        }
        _ => not_found(),
    }
}

pub(super) async fn post_counts(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: web::Json<CountsUpdate>,
) -> HttpResponse {
    let counts = post_id(path).and_then(|id| shared.state.lock().set_counts(id, &body));
    match counts {
        Some(c) => HttpResponse::Ok().json(json!({
            "retweet_count": c.retweet_count, "reply_count": c.reply_count,
            "like_count": c.like_count, "quote_count": c.quote_count,
            "bookmark_count": c.bookmark_count, "impression_count": c.impression_count,
        })),
        None => not_found(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct EditRequest {
    text: String,
}

pub(super) async fn post_edit(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: web::Json<EditRequest>,
) -> HttpResponse {
    let edited = path
        .into_inner()
        .parse::<u64>()
        .ok()
        .and_then(|id| shared.state.lock().edit_post(id, &body.text));
    match edited {
        Some(id) => HttpResponse::Ok().json(json!({ "id": id })),
        None => not_found(),
    }
}
