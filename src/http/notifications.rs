//! Notification targets (admin): `GET/POST /api/admin/notifications`,
//! `DELETE /api/admin/notifications/{id}`, `POST /api/admin/notifications/{id}/resume`.
//! The list shows each target's delivery status and queue length.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::actors::store::{CreateNotifyTarget, DeleteNotifyTarget, SetNotifyPaused};
use crate::domain::post::PostKind;
use crate::error::AppError;
use crate::http::auth::Admin;
use crate::http::dto::Success;
use crate::http::ids::body_id;
use crate::http::AppState;
use crate::notify::delivery::DeliveryStatus;
use crate::notify::target::{
    check_keywords, check_url, Format, Target, TargetDraft, MAX_FILTER_ITEMS,
};
use crate::shape::id::IdRef;
use crate::shape::time::rfc3339;
use crate::storage::Entity;

/// Registers the routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/notifications")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(web::resource("/admin/notifications/{id}").route(web::delete().to(delete)))
    .service(web::resource("/admin/notifications/{id}/resume").route(web::post().to(resume)));
}

/// Body of `POST /api/admin/notifications`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetBody {
    /// An absolute http or https URL with a host name, an IPv4 address or `[::1]`
    /// (loopback allowed), no user name, password or fragment, at most 2048 characters.
    // `crate::notify::target::URL_PATTERN`, written out (utoipa takes a literal only); the
    // test `the_document_states_the_url_grammar_the_server_enforces` holds them equal.
    #[schema(
        pattern = "^[ \\t\\n\\r]*[hH][tT][tT][pP][sS]?://(([a-zA-Z0-9_]+(-[a-zA-Z0-9_]+)*\\.)*[a-zA-Z][a-zA-Z0-9_]*(-[a-zA-Z0-9_]+)*|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|\\[::1\\])(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?([/?][^ \\t\\n\\r#]*)?[ \\t\\n\\r]*$",
        max_length = 2048
    )]
    url: String,
    /// `json` (plain webhook), `ntfy`, `discord` or `slack`.
    #[schema(value_type = FormatName)]
    format: String,
    /// Only these leaders' posts (default: every leader).
    #[schema(value_type = Option<Vec<IdRef>>, max_items = 100)]
    leaders: Option<Vec<IdRef>>,
    /// Only these kinds (default: every kind); at most 4 entries, repeats allowed.
    #[schema(value_type = Option<Vec<crate::shape::post::KindName>>, max_items = 4)]
    kinds: Option<Vec<String>>,
    /// Only posts whose text contains one of these, ignoring case (default: every post).
    #[schema(schema_with = keywords_schema)]
    keywords: Option<Vec<String>>,
    /// Only posts a reviewer approved, sent when approved (default false).
    approved_only: Option<bool>,
}

/// The keywords' schema: at most 100, each 1 to 200 printable characters as sent, not
/// blank (the server keeps them trimmed).
fn keywords_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(crate::http::text::PRINTABLE_NOT_BLANK))
                .max_length(Some(crate::notify::target::MAX_KEYWORD_CHARS)),
        )
        .max_items(Some(MAX_FILTER_ITEMS))
        .build()
}

/// A target's format.
#[derive(utoipa::ToSchema)]
#[schema(as = FormatName)]
#[allow(dead_code)]
enum FormatName {
    #[schema(rename = "json")]
    Json,
    #[schema(rename = "ntfy")]
    Ntfy,
    #[schema(rename = "discord")]
    Discord,
    #[schema(rename = "slack")]
    Slack,
}

/// A target as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetJson {
    id: String,
    url: String,
    format: &'static str,
    leaders: Vec<String>,
    kinds: Vec<&'static str>,
    keywords: Vec<String>,
    approved_only: bool,
    /// Set by `NOTIFY_URL` (deleting it here lasts until the next start).
    from_env: bool,
    created_at: String,
    paused: bool,
    paused_at: Option<String>,
    paused_reason: Option<String>,
    /// Deliveries waiting (kept while paused).
    queued: usize,
    delivery: DeliveryStatus,
}

fn target_json(state: &AppState, t: &Target) -> Result<TargetJson, AppError> {
    Ok(TargetJson {
        id: t.id.to_string(),
        url: t.spec.url.clone(),
        format: t.spec.format.as_str(),
        leaders: t.spec.leaders.iter().map(u64::to_string).collect(),
        kinds: t.spec.kinds.iter().map(|k| k.as_str()).collect(),
        keywords: t.spec.keywords.clone(),
        approved_only: t.spec.approved_only,
        from_env: t.from_env,
        created_at: rfc3339(t.created_at_ms),
        paused: t.paused.is_some(),
        paused_at: t.paused.as_ref().map(|p| rfc3339(p.at_ms)),
        paused_reason: t.paused.as_ref().map(|p| p.reason.clone()),
        queued: state.reader.outbox_len(t.id)?,
        delivery: state.notifications.status(t.id),
    })
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::bad_request("invalid_body", message)
}

/// Checks a body into a draft.
fn draft_of(state: &AppState, b: TargetBody) -> Result<TargetDraft, AppError> {
    let url = check_url(&b.url).map_err(invalid)?;
    let format = Format::parse(&b.format).ok_or_else(|| {
        invalid(format!(
            "format must be json, ntfy, discord or slack, got {:?}",
            b.format
        ))
    })?;
    let leader_refs = b.leaders.unwrap_or_default();
    if leader_refs.len() > MAX_FILTER_ITEMS {
        return Err(invalid(format!("leaders: at most {MAX_FILTER_ITEMS}")));
    }
    let mut leaders = Vec::new();
    for r in &leader_refs {
        let id = body_id(&state.reader, r, Entity::Leader)?;
        if state.reader.leader(id).is_none() {
            return Err(AppError::NotFound(format!("leader {r}")));
        }
        if !leaders.contains(&id) {
            leaders.push(id);
        }
    }
    let kind_names = b.kinds.unwrap_or_default();
    if kind_names.len() > PostKind::ALL.len() {
        return Err(invalid(format!("kinds: at most {}", PostKind::ALL.len())));
    }
    let mut kinds = Vec::new();
    for k in kind_names {
        let kind = PostKind::parse(&k).ok_or_else(|| {
            invalid(format!(
                "kinds must be post, repost, quote or reply, got {k:?}"
            ))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(TargetDraft {
        url,
        format,
        leaders,
        kinds,
        keywords: check_keywords(b.keywords.unwrap_or_default()).map_err(invalid)?,
        approved_only: b.approved_only.unwrap_or(false),
    })
}

fn target_id(state: &AppState, raw: &str) -> Result<u64, AppError> {
    raw.parse::<u64>()
        .ok()
        .filter(|id| state.reader.notify_target(*id).is_some())
        .ok_or_else(|| AppError::NotFound(format!("notification target {raw:?}")))
}

/// `GET /api/admin/notifications`: every target with its status and queue length.
#[utoipa::path(get, path = "/api/admin/notifications", operation_id = "listNotificationTargets", tag = "admin", responses((status = 200, description = "Every target", body = Vec<TargetJson>), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Not an admin", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn list(_admin: Admin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let out = state
        .reader
        .notify_targets()
        .iter()
        .map(|t| target_json(&state, t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(out))
}

/// `POST /api/admin/notifications`: a new target; only posts stored from now on notify.
#[utoipa::path(post, path = "/api/admin/notifications", operation_id = "createNotificationTarget", tag = "admin", request_body = TargetBody, responses((status = 201, description = "The new target", body = TargetJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Not an admin", body = crate::error::ErrorBody), (status = 404, description = "A named leader does not exist", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<crate::http::ObjectBody<TargetBody>>,
) -> Result<HttpResponse, AppError> {
    let draft = draft_of(&state, body.into_inner().0)?;
    let target = state.writes.send(CreateNotifyTarget(draft)).await??;
    state.notifications.targets_changed();
    Ok(HttpResponse::Created().json(target_json(&state, &target)?))
}

/// `DELETE /api/admin/notifications/{id}`: the target and its queue.
#[utoipa::path(delete, path = "/api/admin/notifications/{id}", operation_id = "deleteNotificationTarget", tag = "admin", params(("id" = String, Path, description = "Target id")), responses((status = 200, description = "Deleted", body = Success), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Not an admin", body = crate::error::ErrorBody), (status = 404, description = "No such target", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn delete(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = target_id(&state, &path)?;
    let dropped = state.writes.send(DeleteNotifyTarget(id)).await??;
    if dropped > 0 {
        tracing::warn!(
            target_id = id,
            dropped,
            "notification target deleted with deliveries still queued"
        );
    }
    state.notifications.targets_changed();
    Ok(HttpResponse::Ok().json(Success { success: true }))
}

/// `POST /api/admin/notifications/{id}/resume`: deliveries start again from the head of
/// the kept queue.
#[utoipa::path(post, path = "/api/admin/notifications/{id}/resume", operation_id = "resumeNotificationTarget", tag = "admin", params(("id" = String, Path, description = "Target id")), responses((status = 200, description = "The target, resumed", body = TargetJson), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Not an admin", body = crate::error::ErrorBody), (status = 404, description = "No such target", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)), security(("bearer" = [])))]
pub async fn resume(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = target_id(&state, &path)?;
    state.notifications.reset_failures(id);
    let target = state
        .writes
        .send(SetNotifyPaused { id, paused: None })
        .await??;
    state.notifications.targets_changed();
    Ok(HttpResponse::Ok().json(target_json(&state, &target)?))
}
