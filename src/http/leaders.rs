//! Leaders CRUD: `GET/POST /api/leaders`, `GET/PUT/DELETE /api/leaders/{id}`.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::actors::store::{CreateLeader, DeleteLeader, UpdateLeader};
use crate::domain::leader::LeaderDraft;
use crate::error::AppError;
use crate::http::auth::Admin;
use crate::http::dto::Success;
use crate::http::ids::path_id;
use crate::http::text;
use crate::http::AppState;
use crate::shape::leader::LeaderJson;
use crate::storage::Entity;

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

/// Body of `PUT /api/leaders/{id}`: an absent (or null) field keeps its stored value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderBody {
    /// Not blank; at most 200 characters.
    #[schema(
        pattern = "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        max_length = 200
    )]
    name: Option<String>,
    #[schema(schema_with = handles_schema)]
    handles: Option<BTreeMap<String, String>>,
    #[schema(schema_with = topics_schema)]
    tracking_topics: Option<Vec<String>>,
    /// An http or https URL of at most 2048 characters.
    #[schema(pattern = "^https?://", max_length = 2048)]
    avatar_url: Option<String>,
}

/// Body of `POST /api/leaders`: as [`LeaderBody`], with `name` required.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewLeaderBody {
    /// Not blank; at most 200 characters.
    #[schema(
        pattern = "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        max_length = 200
    )]
    name: String,
    #[schema(schema_with = handles_schema)]
    handles: Option<BTreeMap<String, String>>,
    #[schema(schema_with = topics_schema)]
    tracking_topics: Option<Vec<String>>,
    /// An http or https URL of at most 2048 characters.
    #[schema(pattern = "^https?://", max_length = 2048)]
    avatar_url: Option<String>,
}

impl From<NewLeaderBody> for LeaderBody {
    fn from(b: NewLeaderBody) -> LeaderBody {
        LeaderBody {
            name: Some(b.name),
            handles: b.handles,
            tracking_topics: b.tracking_topics,
            avatar_url: b.avatar_url,
        }
    }
}

/// A handle: no white space inside, 1 to 100 characters once trimmed, not only `@`s.
const HANDLE: &str = "^[\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{1,100}[\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$";
/// ...and a character that is neither white space nor `@`.
const HANDLE_NOT_ONLY_AT: &str =
    "[^@\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// `handles`: platform → handle, at most 20; platform names not blank.
fn handles_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, SchemaType, Type};
    let handle = AllOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(HANDLE)),
        )
        .item(ObjectBuilder::new().pattern(Some(HANDLE_NOT_ONLY_AT)));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(
            "Platform (`x`, `facebook`, ...; `twitter` is `x`) → handle (a leading `@` is dropped for X)",
        ))
        .additional_properties(Some(handle))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(text::NOT_BLANK)),
        ))
        .max_properties(Some(20))
        .build()
}

/// `trackingTopics`: at most 50 strings of at most 200 characters.
fn topics_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(200)),
        )
        .max_items(Some(50))
        .build()
}

fn draft(
    body: LeaderBody,
    base: Option<&crate::domain::leader::Leader>,
) -> Result<LeaderDraft, AppError> {
    let bad = |m: &str| AppError::bad_request("invalid_leader", m);
    // The document's rules, checked on the raw values (LeaderDraft trims afterwards).
    if body
        .name
        .as_deref()
        .is_some_and(|n| !text::not_blank(n) || text::chars(n) > 200)
    {
        return Err(bad("name must be 1 to 200 characters, not blank"));
    }
    if let Some(handles) = &body.handles {
        for (platform, handle) in handles {
            let trimmed = handle.trim();
            if !text::not_blank(platform)
                || trimmed.is_empty()
                || text::chars(trimmed) > 100
                || trimmed.contains(char::is_whitespace)
                || trimmed.chars().all(|c| c == '@')
            {
                return Err(bad(&format!(
                    "handle for {:?} must be 1 to 100 characters without spaces",
                    platform.trim()
                )));
            }
        }
    }
    if body
        .avatar_url
        .as_deref()
        .is_some_and(|u| text::chars(u) > 2048)
    {
        return Err(bad("avatarUrl must be an http or https URL"));
    }
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
#[utoipa::path(get, path = "/api/leaders", operation_id = "listLeaders", tag = "leaders", responses((status = 200, description = "Every leader", body = [LeaderJson])))]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let leaders = state.reader.leaders();
    Ok(HttpResponse::Ok().json(leaders.iter().map(LeaderJson::from).collect::<Vec<_>>()))
}

/// `GET /api/leaders/{id}`.
#[utoipa::path(get, path = "/api/leaders/{id}", operation_id = "getLeader", tag = "leaders", params(("id" = String, Path, description = "Leader id (or the id it had in the system it was imported from)")), responses((status = 200, description = "The leader", body = LeaderJson), (status = 404, description = "Not found", body = crate::error::ErrorBody)))]
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&state.reader, &path, Entity::Leader)?;
    let leader = state
        .reader
        .leader(id)
        .ok_or_else(|| AppError::NotFound(format!("leader {id}")))?;
    Ok(HttpResponse::Ok().json(LeaderJson::from(&leader)))
}

/// `POST /api/leaders` (admin).
#[utoipa::path(post, path = "/api/leaders", operation_id = "createLeader", tag = "leaders", security(("bearer" = [])), request_body = NewLeaderBody, responses((status = 201, description = "Created", body = LeaderJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn create(
    _admin: Admin,
    state: web::Data<AppState>,
    body: crate::http::form::JsonOrForm<NewLeaderBody>,
) -> Result<HttpResponse, AppError> {
    let draft = draft(body.0.into(), None)?;
    let leader = state.writes.send(CreateLeader(draft)).await??;
    state.leaders_changed();
    Ok(HttpResponse::Created().json(LeaderJson::from(&leader)))
}

/// `PUT /api/leaders/{id}` (admin).
#[utoipa::path(put, path = "/api/leaders/{id}", operation_id = "updateLeader", tag = "leaders", security(("bearer" = [])), params(("id" = String, Path, description = "Leader id (or the id it had in the system it was imported from)")), request_body = LeaderBody, responses((status = 200, description = "Updated; absent fields kept", body = LeaderJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody), (status = 404, description = "Not found", body = crate::error::ErrorBody)))]
pub async fn update(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: crate::http::form::JsonOrForm<LeaderBody>,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&state.reader, &path, Entity::Leader)?;
    let current = state
        .reader
        .leader(id)
        .ok_or_else(|| AppError::NotFound(format!("leader {id}")))?;
    let draft = draft(body.0, Some(&current))?;
    let leader = state.writes.send(UpdateLeader { id, draft }).await??;
    state.leaders_changed();
    Ok(HttpResponse::Ok().json(LeaderJson::from(&leader)))
}

/// `DELETE /api/leaders/{id}` (admin): the leader, its posts, review items and dedup keys.
#[utoipa::path(delete, path = "/api/leaders/{id}", operation_id = "deleteLeader", tag = "leaders", security(("bearer" = [])), params(("id" = String, Path, description = "Leader id (or the id it had in the system it was imported from)")), responses((status = 200, description = "Removed with its posts, review items and dedup keys", body = Success), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody), (status = 404, description = "Not found", body = crate::error::ErrorBody)))]
pub async fn delete(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&state.reader, &path, Entity::Leader)?;
    state.writes.send(DeleteLeader(id)).await??;
    state.leaders_changed();
    Ok(HttpResponse::Ok().json(Success { success: true }))
}
