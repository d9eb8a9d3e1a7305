//! Posts: `GET /api/posts`, `GET /api/posts/paginated`, `GET /api/posts/{id}`, and the
//! admin `POST /api/posts`, `PUT/DELETE /api/posts/{id}`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::actors::store::{CreatePost, DeletePost, UpdatePost};
use crate::domain::json::JsonObject;
use crate::domain::post::{Author, NewPost, Platform, PostDetails, Verification};
use crate::domain::sentiment;
use crate::error::AppError;
use crate::http::auth::Admin;
use crate::http::dto::Success;
use crate::http::feed::{parse_bounded, parse_cursor};
use crate::http::ids::{body_id, path_id, query_leader};
use crate::http::text;
use crate::http::AppState;
use crate::shape::id::IdRef;
use crate::shape::post::PostJson;
use crate::shape::review::ReviewJson;
use crate::shape::time::parse_rfc3339;
use crate::storage::query::{PageStart, PostQuery};
use crate::storage::{Entity, PostPatch};

/// Largest `limit` of `GET /api/posts` (the unpaginated list).
const MAX_LIST: usize = 500;
/// Largest post content, in bytes.
const MAX_CONTENT: usize = 20_000;
/// Largest `metrics` object, in bytes of JSON.
const MAX_METRICS: usize = 16_384;

/// Registers the routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/posts")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    // Before `/posts/{id}`, as its own resource: other methods on it are a 405 here,
    // never a by-id handler with the id "paginated".
    .service(web::resource("/posts/paginated").route(web::get().to(paginated)))
    .service(
        web::resource("/posts/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    );
}

/// Query of `GET /api/posts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Only this leader's posts (its id, or the id it had in the system it was imported from).
    #[param(value_type = Option<String>, min_length = 1, max_length = 128)]
    leader_id: Option<String>,
    /// How many, newest first (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// Query of `GET /api/posts/paginated`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    /// Only this leader's posts (its id, or the id it had in the system it was imported from).
    #[param(value_type = Option<String>, min_length = 1, max_length = 128)]
    leader_id: Option<String>,
    /// Page size (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `nextCursor` of the previous page.
    #[param(value_type = Option<String>, pattern = "^-?[0-9]{1,18}-[0-9]{1,19}$")]
    before: Option<String>,
}

/// The newest `limit` posts, of one leader when `leaderId` names one.
fn leader_query(state: &AppState, raw: Option<&str>, limit: usize) -> Result<PostQuery, AppError> {
    let leaders = match raw {
        Some(s) => vec![query_leader(&state.reader, s, "leaderId")?],
        None => Vec::new(),
    };
    Ok(PostQuery::newest(limit).leaders(leaders))
}

/// `GET /api/posts?leaderId=&limit=`: newest first, at most `limit` (default 100, max 500).
#[utoipa::path(get, path = "/api/posts", operation_id = "listPosts", tag = "posts", params(ListQuery), responses((status = 200, description = "Posts, newest first", body = [PostJson]), (status = 400, description = "Bad input", body = crate::error::ErrorBody)))]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = parse_bounded("limit", query.limit.as_deref(), 100, 1, MAX_LIST)?;
    let posts_query = leader_query(&state, query.leader_id.as_deref(), limit)?;
    let reader = state.reader.clone();
    let body = web::block(move || -> Result<Vec<u8>, AppError> {
        let page = reader.page(&posts_query)?;
        reader.with_leaders(|leaders| {
            let posts: Vec<PostJson> = page
                .posts
                .iter()
                .map(|p| PostJson::from(p, leaders.get(&p.leader_id)))
                .collect();
            serde_json::to_vec(&posts).map_err(|e| AppError::Internal(e.into()))
        })
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PaginatedJson<'a> {
    items: Vec<PostJson<'a>>,
    next_cursor: Option<String>,
    has_more: bool,
}

/// `GET /api/posts/paginated?leaderId&limit&before`.
#[utoipa::path(get, path = "/api/posts/paginated", operation_id = "listPostsPaginated", tag = "posts", params(PageQuery), responses((status = 200, description = "A page of posts and the cursor of the next", body = PaginatedJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody)))]
pub async fn paginated(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = parse_bounded("limit", query.limit.as_deref(), 20, 1, 100)?;
    let start = match query.before.as_deref() {
        Some(c) => PageStart::Before(parse_cursor("before", c)?),
        None => PageStart::Offset(0),
    };
    let posts_query = leader_query(&state, query.leader_id.as_deref(), limit)?.starting(start);
    let reader = state.reader.clone();
    let body = web::block(move || -> Result<Vec<u8>, AppError> {
        let page = reader.page(&posts_query)?;
        reader.with_leaders(|leaders| {
            let body = PaginatedJson {
                items: page
                    .posts
                    .iter()
                    .map(|p| PostJson::from(p, leaders.get(&p.leader_id)))
                    .collect(),
                next_cursor: page.next_cursor.map(|c| c.to_string()),
                has_more: page.has_next,
            };
            serde_json::to_vec(&body).map_err(|e| AppError::Internal(e.into()))
        })
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// `GET /api/posts/{id}`.
#[utoipa::path(get, path = "/api/posts/{id}", operation_id = "getPost", tag = "posts", params(("id" = String, Path, description = "Post id (or the id it had in the system it was imported from)")), responses((status = 200, description = "The post", body = PostJson), (status = 404, description = "Not found", body = crate::error::ErrorBody)))]
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&state.reader, &path, Entity::Post)?;
    let reader = state.reader.clone();
    let post = web::block(move || reader.post(id))
        .await??
        .ok_or_else(|| AppError::NotFound(format!("post {id}")))?;
    let leader = state.reader.leader(post.leader_id);
    Ok(HttpResponse::Ok().json(PostJson::from(&post, leader.as_ref())))
}

/// Body of `POST /api/posts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    leader_id: IdRef,
    #[schema(value_type = PlatformName, inline)]
    platform: String,
    /// Not blank; at most 20,000 characters.
    #[schema(
        pattern = "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        max_length = 20000
    )]
    content: String,
    /// RFC 3339 (default: now). The pattern is a safe subset of what is accepted (any
    /// valid RFC 3339 date-time is).
    #[schema(value_type = Option<String>, format = DateTime, pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")]
    timestamp: Option<String>,
    /// A JSON object (at most 16 KB, 32 levels deep), stored and served as given, with
    /// Amber's `revision` (and `platformPostId`, `link` when known) set in it. Without a
    /// top-level `platformPostId`, its `platformPostId` or `externalId` is the post's.
    #[schema(value_type = Option<Object>)]
    metrics: Option<Box<RawValue>>,
    /// The platform's id; with `platform`, the dedup key (default: `metrics.platformPostId`
    /// or `metrics.externalId`).
    #[schema(max_length = 64)]
    platform_post_id: Option<String>,
    #[serde(default)]
    requires_review: bool,
    #[schema(value_type = Option<VerificationName>, inline)]
    verification_status: Option<String>,
}

/// The `platform` spellings accepted on input.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
enum PlatformName {
    #[serde(rename = "X")]
    XName,
    #[serde(rename = "x")]
    XLower,
    #[serde(rename = "Twitter")]
    Twitter,
    #[serde(rename = "twitter")]
    TwitterLower,
    #[serde(rename = "Facebook")]
    Facebook,
    #[serde(rename = "facebook")]
    FacebookLower,
    #[serde(rename = "News")]
    News,
    #[serde(rename = "news")]
    NewsLower,
}

/// The `verificationStatus` spellings accepted on input: the original's (`Needs Review`,
/// `Verified`, `Rejected`) and Amber's earlier ones (`Unverified` and `Pending` are
/// `Needs Review`, `Approved` is `Verified`).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
enum VerificationName {
    #[serde(rename = "Needs Review")]
    NeedsReview,
    Verified,
    Rejected,
    Unverified,
    Pending,
    Approved,
}

fn parse_platform(raw: &str) -> Result<Platform, AppError> {
    const NAMES: [&str; 8] = [
        "X", "x", "Twitter", "twitter", "Facebook", "facebook", "News", "news",
    ];
    NAMES
        .contains(&raw)
        .then(|| Platform::parse(raw))
        .flatten()
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_post",
                format!("platform must be X, Facebook or News, got {raw:?}"),
            )
        })
}

fn check_content(content: &str) -> Result<(), AppError> {
    if !text::not_blank(content) || text::chars(content) > MAX_CONTENT {
        return Err(AppError::bad_request(
            "invalid_post",
            format!("content must be 1 to {MAX_CONTENT} characters, not blank"),
        ));
    }
    Ok(())
}

/// `metrics` as it will be stored: an object that can be served back as strict JSON,
/// checked before anything is written (`1e400`, deep nesting and the like are a 400).
fn check_metrics(metrics: Option<Box<RawValue>>) -> Result<Option<JsonObject>, AppError> {
    let Some(raw) = metrics else { return Ok(None) };
    JsonObject::parse(raw.get(), MAX_METRICS)
        .map(Some)
        .map_err(|e| AppError::bad_request("invalid_post", format!("metrics {e}")))
}

fn parse_timestamp(raw: &str) -> Result<i64, AppError> {
    parse_rfc3339(raw).ok_or_else(|| {
        AppError::bad_request(
            "invalid_post",
            format!("timestamp must be RFC 3339, got {raw:?}"),
        )
    })
}

fn parse_verification(raw: &str) -> Result<Verification, AppError> {
    Verification::SPELLINGS
        .contains(&raw)
        .then(|| Verification::parse(raw))
        .flatten()
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_post",
                format!(
                    "verificationStatus must be Needs Review, Verified or Rejected, got {raw:?}"
                ),
            )
        })
}

/// `POST /api/posts` (admin). `requiresReview: true` also creates a review item. The body
/// may also be an HTML form (`application/x-www-form-urlencoded`, see `http::form`).
#[utoipa::path(post, path = "/api/posts", operation_id = "createPost", tag = "posts", security(("bearer" = [])), request_body = CreateBody, responses((status = 201, description = "Created (with `reviewItem` when `requiresReview`)", body = PostJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody), (status = 404, description = "Unknown leader", body = crate::error::ErrorBody), (status = 409, description = "Conflict", body = crate::error::ErrorBody)))]
pub async fn create(
    _admin: Admin,
    state: web::Data<AppState>,
    body: crate::http::form::JsonOrForm<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let b = body.0;
    let platform = parse_platform(&b.platform)?;
    check_content(&b.content)?;
    let timestamp_ms = match b.timestamp.as_deref() {
        Some(t) => parse_timestamp(t)?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let metrics = check_metrics(b.metrics)?;
    // The original's clients name the X id only inside `metrics` (`platformPostId` or
    // `externalId`): it becomes the post's, so the post dedups against ingestion.
    let platform_post_id = b
        .platform_post_id
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| metrics.as_ref().and_then(JsonObject::platform_post_id));
    if platform_post_id
        .as_deref()
        .is_some_and(|s| text::chars(s) > 64)
    {
        return Err(AppError::bad_request(
            "invalid_post",
            "platformPostId (or metrics.platformPostId / metrics.externalId) must be at most 64 characters",
        ));
    }
    let verification = match b.verification_status.as_deref() {
        Some(v) => parse_verification(v)?,
        None => Verification::Unverified,
    };
    let (score, label) = sentiment::analyze(&b.content);
    let new = NewPost {
        leader_id: body_id(&state.reader, &b.leader_id, Entity::Leader)?,
        platform,
        content: b.content,
        timestamp_ms,
        sentiment: label,
        sentiment_score: score,
        platform_post_id,
        verification,
        author: Author::default(),
        details: PostDetails::default(),
        client_metrics: metrics.map(JsonObject::into_string),
        edit_history: Vec::new(),
    };
    let (post, review) = state
        .writes
        .send(CreatePost {
            post: new,
            requires_review: b.requires_review,
        })
        .await??;
    let leader = state.reader.leader(post.leader_id);
    let mut json = serde_json::to_value(PostJson::from(&post, leader.as_ref()))
        .map_err(|e| AppError::Internal(e.into()))?;
    if let (Some(item), Some(obj)) = (&review, json.as_object_mut()) {
        let review_json = serde_json::to_value(ReviewJson::from(item, None, None))
            .map_err(|e| AppError::Internal(e.into()))?;
        obj.insert("reviewItem".to_string(), review_json);
    }
    Ok(HttpResponse::Created().json(json))
}

/// Body of `PUT /api/posts/{id}`; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    /// Not blank; at most 20,000 characters.
    #[schema(
        pattern = "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        max_length = 20000
    )]
    content: Option<String>,
    /// RFC 3339 (see `CreateBody`).
    #[schema(value_type = Option<String>, format = DateTime, pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")]
    timestamp: Option<String>,
    /// A JSON object (at most 16 KB, 32 levels deep).
    #[schema(value_type = Option<Object>)]
    metrics: Option<Box<RawValue>>,
    #[schema(value_type = Option<VerificationName>, inline)]
    verification_status: Option<String>,
    #[schema(value_type = Option<IdRef>)]
    leader_id: Option<IdRef>,
}

/// `PUT /api/posts/{id}` (admin).
#[utoipa::path(put, path = "/api/posts/{id}", operation_id = "updatePost", tag = "posts", security(("bearer" = [])), params(("id" = String, Path, description = "Post id (or the id it had in the system it was imported from)")), request_body = UpdateBody, responses((status = 200, description = "Updated", body = PostJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody), (status = 404, description = "Not found", body = crate::error::ErrorBody)))]
pub async fn update(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: crate::http::form::JsonOrForm<UpdateBody>,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&state.reader, &path, Entity::Post)?;
    let b = body.0;
    if let Some(c) = &b.content {
        check_content(c)?;
    }
    let patch = PostPatch {
        content: b.content,
        timestamp_ms: b.timestamp.as_deref().map(parse_timestamp).transpose()?,
        metrics: check_metrics(b.metrics)?.map(JsonObject::into_string),
        verification: b
            .verification_status
            .as_deref()
            .map(parse_verification)
            .transpose()?,
        leader_id: b
            .leader_id
            .as_ref()
            .map(|l| body_id(&state.reader, l, Entity::Leader))
            .transpose()?,
    };
    let post = state.writes.send(UpdatePost { id, patch }).await??;
    let leader = state.reader.leader(post.leader_id);
    Ok(HttpResponse::Ok().json(PostJson::from(&post, leader.as_ref())))
}

/// `DELETE /api/posts/{id}` (admin).
#[utoipa::path(delete, path = "/api/posts/{id}", operation_id = "deletePost", tag = "posts", security(("bearer" = [])), params(("id" = String, Path, description = "Post id (or the id it had in the system it was imported from)")), responses((status = 200, description = "Deleted", body = Success), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody), (status = 404, description = "Not found", body = crate::error::ErrorBody)))]
pub async fn delete(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&state.reader, &path, Entity::Post)?;
    state.writes.send(DeletePost(id)).await??;
    Ok(HttpResponse::Ok().json(Success { success: true }))
}
