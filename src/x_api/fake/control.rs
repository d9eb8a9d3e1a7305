//! The control endpoints under `/_fake/` (faults, latency, stats, new posts, edits), so
//! a person running `amber demo` can steer the fake with curl.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

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
    state.faults.push_back(ArmedFault { fault, remaining });
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

#[derive(Debug, Deserialize)]
pub(super) struct PostsRequest {
    #[serde(default)]
    count: Option<u32>,
}

pub(super) async fn post_posts(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: Option<web::Json<PostsRequest>>,
) -> HttpResponse {
    let count = body.and_then(|b| b.count).unwrap_or(1).min(10_000);
    let username = path.into_inner();
    let mut state = shared.state.lock();
    let pos = state.add_user(&username, &username);
    let ids = state.add_posts(pos, count);
    HttpResponse::Ok().json(json!({ "ids": ids }))
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
        None => {
            HttpResponse::NotFound().json(json!({"error": "not_found", "message": "no such post"}))
        }
    }
}
