//! The review queue: `GET /api/review`, `POST /api/review/{id}/approve|reject`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::actors::store::DecideReview;
use crate::domain::review::ReviewState;
use crate::error::AppError;
use crate::http::auth::Reviewer;
use crate::http::feed::parse_bounded;
use crate::http::ids::path_id;
use crate::http::{AppState, ObjectBody};
use crate::shape::review::ReviewJson;
use crate::storage::Entity;

/// Longest reviewer note, in characters.
const MAX_NOTES: usize = 2000;

/// Registers the routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/review").route(web::get().to(list)))
        .service(web::resource("/review/{id}/approve").route(web::post().to(approve)))
        .service(web::resource("/review/{id}/reject").route(web::post().to(reject)));
}

/// Query of `GET /api/review`: `state=pending|approved|rejected|all` (default: every item,
/// as the original system answered).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// Which items (default: all).
    #[param(value_type = Option<StateParam>, inline)]
    state: Option<String>,
    /// How many (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// `state=` of the review queue.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum StateParam {
    Pending,
    Approved,
    Rejected,
    All,
}

/// `GET /api/review` (reviewer or admin): items with their posts, most recently updated
/// first; every item unless `state=` names one state.
#[utoipa::path(get, path = "/api/review", operation_id = "listReviews", tag = "review", security(("bearer" = [])), params(ReviewQuery), responses((status = 200, description = "Review items with their posts, most recently updated first", body = [ReviewJson]), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn list(
    _who: Reviewer,
    state: web::Data<AppState>,
    query: web::Query<ReviewQuery>,
) -> Result<HttpResponse, AppError> {
    let filter = match query.state.as_deref().unwrap_or("all") {
        "all" => None,
        s => Some(ReviewState::parse(s).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                format!("state must be pending, approved, rejected or all, got {s:?}"),
            )
        })?),
    };
    let limit = parse_bounded("limit", query.limit.as_deref(), 100, 1, 500)?;
    let reader = state.reader.clone();
    let body = web::block(move || -> Result<Vec<u8>, AppError> {
        let items = reader.reviews(filter, limit)?;
        let posts: Vec<_> = items
            .iter()
            .map(|i| reader.post(i.post_id))
            .collect::<Result<_, _>>()?;
        reader.with_leaders(|leaders| {
            let json: Vec<ReviewJson> = items
                .iter()
                .zip(posts.iter())
                .map(|(item, post)| {
                    ReviewJson::from(
                        item,
                        post.as_ref(),
                        post.as_ref().and_then(|p| leaders.get(&p.leader_id)),
                    )
                })
                .collect();
            serde_json::to_vec(&json).map_err(|e| AppError::Internal(e.into()))
        })
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// Body of approve and reject; may be absent (no body at all).
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
pub struct DecisionBody {
    /// At most 2000 characters.
    #[schema(max_length = 2000)]
    notes: Option<String>,
}

async fn decide(
    who: Reviewer,
    state: web::Data<AppState>,
    path: web::Path<String>,
    (req, body): (HttpRequest, web::Bytes),
    decision: ReviewState,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&state.reader, &path, Entity::Review)?;
    // The body is optional; when present it must be JSON.
    let notes = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        crate::http::require_json(&req)?;
        serde_json::from_slice::<ObjectBody<DecisionBody>>(&body)
            .map_err(|e| AppError::bad_request("malformed_json", e.to_string()))?
            .0
            .notes
    };
    if notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTES)
    {
        return Err(AppError::bad_request(
            "invalid_body",
            format!("notes must be at most {MAX_NOTES} characters"),
        ));
    }
    let item = state
        .writes
        .send(DecideReview {
            id,
            state: decision,
            notes,
            reviewer: who.0.sub.clone(),
        })
        .await??;
    let reader = state.reader.clone();
    let post_id = item.post_id;
    let post = web::block(move || reader.post(post_id)).await??;
    let leader = post.as_ref().and_then(|p| state.reader.leader(p.leader_id));
    Ok(HttpResponse::Ok().json(ReviewJson::from(&item, post.as_ref(), leader.as_ref())))
}

/// `POST /api/review/{id}/approve`.
#[utoipa::path(post, path = "/api/review/{id}/approve", operation_id = "approveReview", tag = "review", security(("bearer" = [])), params(("id" = String, Path, description = "Review item id (or the id it had in the system it was imported from)")), request_body(content = DecisionBody, description = "Optional notes; the body may be absent"), responses((status = 200, description = "Approved", body = ReviewJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody), (status = 404, description = "Not found", body = crate::error::ErrorBody)))]
pub async fn approve(
    who: Reviewer,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    decide(who, state, path, (req, body), ReviewState::Approved).await
}

/// `POST /api/review/{id}/reject` with `{"notes"}`.
#[utoipa::path(post, path = "/api/review/{id}/reject", operation_id = "rejectReview", tag = "review", security(("bearer" = [])), params(("id" = String, Path, description = "Review item id (or the id it had in the system it was imported from)")), request_body(content = DecisionBody, description = "Optional notes; the body may be absent"), responses((status = 200, description = "Rejected", body = ReviewJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody), (status = 404, description = "Not found", body = crate::error::ErrorBody)))]
pub async fn reject(
    who: Reviewer,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    decide(who, state, path, (req, body), ReviewState::Rejected).await
}
