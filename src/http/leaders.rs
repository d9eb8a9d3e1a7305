//! Leaders CRUD: `GET/POST /api/leaders`, `GET/PUT/DELETE /api/leaders/{id}`.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::actors::store::{CreateLeader, DeleteLeader, UpdateLeader};
use crate::domain::leader::LeaderDraft;
use crate::error::AppError;
use crate::http::auth::Admin;
use crate::http::dto::{LeaderJson, Success};
use crate::http::AppState;

/// Registers the routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/leaders")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/leaders/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    );
}

/// Body of `POST /api/leaders` and `PUT /api/leaders/{id}`. On PUT an absent field keeps
/// its stored value.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderBody {
    name: Option<String>,
    handles: Option<BTreeMap<String, String>>,
    tracking_topics: Option<Vec<String>>,
    avatar_url: Option<String>,
}

/// Parses a numeric id from the path.
pub fn parse_id(raw: &str, what: &str) -> Result<u64, AppError> {
    raw.parse::<u64>()
        .map_err(|_| AppError::NotFound(format!("{what} {raw:?}")))
}

fn draft(
    body: LeaderBody,
    base: Option<&crate::domain::leader::Leader>,
) -> Result<LeaderDraft, AppError> {
    let name = body
        .name
        .or_else(|| base.map(|b| b.name.clone()))
        .ok_or_else(|| AppError::bad_request("invalid_body", "name is required"))?;
    LeaderDraft::parse(
        &name,
        body.handles
            .or_else(|| base.map(|b| b.handles.clone()))
            .unwrap_or_default(),
        body.tracking_topics
            .or_else(|| base.map(|b| b.tracking_topics.clone()))
            .unwrap_or_default(),
        body.avatar_url
            .or_else(|| base.and_then(|b| b.avatar_url.clone())),
    )
    .map_err(|e| AppError::bad_request("invalid_leader", e.to_string()))
}

/// `GET /api/leaders`.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let leaders = state.reader.leaders();
    Ok(HttpResponse::Ok().json(leaders.iter().map(LeaderJson::from).collect::<Vec<_>>()))
}

/// `GET /api/leaders/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path, "leader")?;
    let leader = state
        .reader
        .leader(id)
        .ok_or_else(|| AppError::NotFound(format!("leader {id}")))?;
    Ok(HttpResponse::Ok().json(LeaderJson::from(&leader)))
}

/// `POST /api/leaders` (admin).
pub async fn create(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<LeaderBody>,
) -> Result<HttpResponse, AppError> {
    let draft = draft(body.into_inner(), None)?;
    let leader = state.store.send(CreateLeader(draft)).await??;
    Ok(HttpResponse::Created().json(LeaderJson::from(&leader)))
}

/// `PUT /api/leaders/{id}` (admin).
pub async fn update(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<LeaderBody>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path, "leader")?;
    let current = state
        .reader
        .leader(id)
        .ok_or_else(|| AppError::NotFound(format!("leader {id}")))?;
    let draft = draft(body.into_inner(), Some(&current))?;
    let leader = state.store.send(UpdateLeader { id, draft }).await??;
    Ok(HttpResponse::Ok().json(LeaderJson::from(&leader)))
}

/// `DELETE /api/leaders/{id}` (admin): the leader, its posts, review items and dedup keys.
pub async fn delete(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = parse_id(&path, "leader")?;
    state.store.send(DeleteLeader(id)).await??;
    Ok(HttpResponse::Ok().json(Success { success: true }))
}
