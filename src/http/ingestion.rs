//! Ingestion endpoints: `GET /api/ingestion/status`, the admin `POST /api/ingestion/trigger`,
//! `/stop` and `/start`, and the public `POST /api/leaders/{id}/refresh`. Handlers only
//! talk to the `IngestScheduler` by message; the JSON shapes live here.

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::actors::fetcher::LeaderError;
use crate::actors::scheduler::{
    GetStatus, IngestScheduler, IngestStatus, RefreshError, RefreshLeader, StartIngestion,
    StopIngestion, TriggerError, TriggerRun, COST_PER_POST_READ_USD, COST_PER_USER_READ_USD,
};
use crate::error::AppError;
use crate::http::auth::Admin;
use crate::http::dto::RunJson;
use crate::http::ids::path_id;
use crate::http::rate_limit::RateLimited;
use crate::http::{AppState, ObjectBody};
use crate::shape::post::PostJson;
use crate::storage::Entity;
use crate::x_api::client::FetchError;

/// Registers the routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ingestion/status").route(web::get().to(status)))
        .service(web::resource("/ingestion/trigger").route(web::post().to(trigger)))
        .service(web::resource("/ingestion/stop").route(web::post().to(stop)))
        .service(web::resource("/ingestion/start").route(web::post().to(start)))
        .service(
            web::resource("/leaders/{id}/refresh")
                .route(web::post().to(refresh).wrap(RateLimited::default())),
        );
}

type Scheduler = web::Data<Addr<IngestScheduler>>;

fn unavailable(err: actix::MailboxError) -> AppError {
    tracing::error!(error = %err, "ingestion scheduler mailbox");
    AppError::Unavailable {
        code: "ingestion_unavailable",
        message: "the ingestion scheduler is not answering".into(),
    }
}

fn time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The status JSON: SPEC's shape plus `usage` and a few operator fields.
fn status_json(s: &IngestStatus) -> serde_json::Value {
    let remaining = s
        .monthly_read_budget
        .map(|b| b.saturating_sub(s.usage.posts_read));
    json!({
        "enabled": s.enabled,
        "stopped": s.stopped,
        "configured": s.configured,
        "running": s.running,
        "circuit_breaker_state": s.breaker.state.as_str(),
        "circuit_breaker_failures": s.breaker.failures,
        "circuit_breaker_open_until": time(s.breaker.open_until),
        "jobs": s.jobs.iter().map(|j| json!({
            "id": j.id,
            "name": j.name,
            "next_run": time(j.next_run),
            "trigger": j.trigger,
        })).collect::<Vec<_>>(),
        "config": {
            "backfill_count": s.backfill_count,
            "interval_minutes": s.interval_minutes,
            "cron": s.cron,
            "ingest_limit": s.ingest_limit,
            "concurrency": s.concurrency,
            "monthly_read_budget": s.monthly_read_budget,
        },
        "last_run": s.last_run.as_ref().map(RunJson::of),
        "current_run": s.current_run.as_ref().map(RunJson::of),
        "paused_until": time(s.paused_until),
        "usage": {
            "month": s.usage.month,
            "posts_read": s.usage.posts_read,
            "users_read": s.usage.users_read,
            "estimated_cost_usd": s.usage.estimated_cost_usd(),
            "price_per_post_read_usd": COST_PER_POST_READ_USD,
            "price_per_user_read_usd": COST_PER_USER_READ_USD,
            "monthly_read_budget": s.monthly_read_budget,
            "budget_remaining": remaining,
        },
        "waiting": s.waiting.map(|w| json!({
            "reason": "x_rate_limit",
            "since": time(Some(w.since)),
            "until": time(Some(w.until)),
        })),
        "last_skipped": s.last_skipped.as_ref().map(|k| json!({
            "at": time(Some(k.at)),
            "reason": k.reason,
        })),
        "skipped_ticks": s.skipped_ticks,
        "failing_leaders": s.backing_off.iter().map(|(id, failures, retry)| json!({
            "leaderId": id,
            "failures": failures,
            "retry_after": time(Some(*retry)),
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/ingestion/status`.
#[utoipa::path(get, path = "/api/ingestion/status", operation_id = "ingestionStatus", tag = "ingestion", responses((status = 200, description = "Schedule, next run, last run, breaker, usage", body = Object), (status = 503, description = "The scheduler is not answering", body = crate::error::ErrorBody)))]
pub async fn status(
    scheduler: Scheduler,
    state: web::Data<crate::http::AppState>,
) -> Result<HttpResponse, AppError> {
    let s = scheduler.send(GetStatus).await.map_err(unavailable)?;
    let mut body = status_json(&s);
    // The Activity API stream (X_ACTIVITY_STREAM): connection, events, subscriptions.
    body["stream"] = state.status.stream.borrow().to_json();
    Ok(HttpResponse::Ok().json(body))
}

/// Body of `POST /api/ingestion/trigger` (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// Read `X_BACKFILL_COUNT` posts per leader (default false).
    #[serde(default)]
    backfill: bool,
}

/// `POST /api/ingestion/trigger`: 202, 409 while a run is going, 503 without a token.
#[utoipa::path(post, path = "/api/ingestion/trigger", operation_id = "ingestionTrigger", tag = "ingestion", security(("bearer" = [])), request_body(content = TriggerBody, description = "Optional: the body may be absent"), responses((status = 202, description = "`{\"status\":\"triggered\",\"backfill\",\"message\"}`", body = Object), (status = 400, description = "Bad body", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody), (status = 409, description = "`ingestion_already_running`", body = crate::error::ErrorBody), (status = 503, description = "`x_not_configured` (no bearer token) or shutting down", body = crate::error::ErrorBody)))]
pub async fn trigger(
    _admin: Admin,
    scheduler: Scheduler,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        crate::http::require_json(&req)?;
        serde_json::from_slice::<ObjectBody<TriggerBody>>(&body)
            .map_err(|e| AppError::bad_request("invalid_body", e.to_string()))?
            .0
    };
    let backfill = body.backfill;
    match scheduler
        .send(TriggerRun {
            backfill,
            source: "manual",
        })
        .await
        .map_err(unavailable)?
    {
        Ok(()) => Ok(HttpResponse::Accepted().json(json!({
            "status": "triggered",
            "backfill": backfill,
            "message": if backfill {
                "ingestion run started with backfill; follow it in GET /api/ingestion/status"
            } else {
                "ingestion run started; follow it in GET /api/ingestion/status"
            },
        }))),
        Err(TriggerError::AlreadyRunning) => Err(AppError::Conflict {
            code: "ingestion_already_running",
            message: TriggerError::AlreadyRunning.to_string(),
        }),
        Err(e @ TriggerError::NotConfigured) => Err(AppError::Unavailable {
            code: "x_not_configured",
            message: e.to_string(),
        }),
        Err(e @ TriggerError::ShuttingDown) => Err(AppError::Unavailable {
            code: "shutting_down",
            message: e.to_string(),
        }),
    }
}

/// With replication, a stop or start is a command in the stream: every instance's
/// schedule follows once it applies it (this one before the answer). False without
/// replication (the scheduler persists the switch itself).
async fn switch_replicated(state: &AppState, stopped: bool) -> Result<bool, AppError> {
    let Some(repl) = state.writes.replicator() else {
        return Ok(false);
    };
    repl.submit(crate::replication::Command::IngestionStopped { stopped })
        .await?;
    Ok(true)
}

/// `POST /api/ingestion/stop`: emergency off (persisted).
#[utoipa::path(post, path = "/api/ingestion/stop", operation_id = "ingestionStop", tag = "ingestion", security(("bearer" = [])), responses((status = 200, description = "Scheduled ingestion stopped (persists across restarts)", body = Object), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn stop(
    _admin: Admin,
    scheduler: Scheduler,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if !switch_replicated(&state, true).await? {
        scheduler
            .send(StopIngestion)
            .await
            .map_err(unavailable)?
            .map_err(|e| AppError::Internal(anyhow::anyhow!(e).context("persisting the stop")))?;
    }
    let s = scheduler.send(GetStatus).await.map_err(unavailable)?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "stopped",
        "message": "scheduled ingestion stopped; a running run stops at the next leader",
        "ingestion": status_json(&s),
    })))
}

/// `POST /api/ingestion/start`: back on (persisted).
#[utoipa::path(post, path = "/api/ingestion/start", operation_id = "ingestionStart", tag = "ingestion", security(("bearer" = [])), responses((status = 200, description = "Scheduled ingestion back on (persists across restarts)", body = Object), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn start(
    _admin: Admin,
    scheduler: Scheduler,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    if !switch_replicated(&state, false).await? {
        scheduler
            .send(StartIngestion)
            .await
            .map_err(unavailable)?
            .map_err(|e| AppError::Internal(anyhow::anyhow!(e).context("persisting the start")))?;
    }
    let s = scheduler.send(GetStatus).await.map_err(unavailable)?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "started",
        "message": if s.enabled { "scheduled ingestion running" } else { "X_INGEST_ENABLED is false: nothing is scheduled" },
        "ingestion": status_json(&s),
    })))
}

fn refresh_error(err: RefreshError) -> AppError {
    let message = err.to_string();
    let unavailable = |code| AppError::Unavailable {
        code,
        message: message.clone(),
    };
    match err {
        RefreshError::UnknownLeader(id) => AppError::NotFound(format!("leader {id}")),
        // The leader exists but has nothing to fetch from X: its state, not the request,
        // is the problem.
        RefreshError::NoHandle(_) => AppError::Conflict {
            code: "no_x_handle",
            message,
        },
        RefreshError::NotConfigured => unavailable("x_not_configured"),
        RefreshError::BudgetExhausted(_) => unavailable("x_budget_exhausted"),
        RefreshError::Fetch(LeaderError::X(e)) => match e {
            FetchError::CircuitOpen { .. } => unavailable("circuit_open"),
            FetchError::RateLimited { .. } => unavailable("x_rate_limited"),
            FetchError::NotFound(_) | FetchError::Suspended(_) => {
                AppError::NotFound(format!("X user ({message})"))
            }
            _ => unavailable("x_unavailable"),
        },
        RefreshError::Fetch(_) => unavailable("ingestion_failed"),
    }
}

/// `POST /api/leaders/{id}/refresh`: fetch one leader now, at most once per cooldown.
#[utoipa::path(post, path = "/api/leaders/{id}/refresh", operation_id = "refreshLeader", tag = "ingestion", params(("id" = String, Path, description = "Leader id (or the id it had in the system it was imported from)")), responses((status = 200, description = "`{\"posts\":[new posts],\"origin\":\"x\"|\"cache\"|\"none\"}`; within the cooldown no X call is made (`cache`); a leader without an X handle has no posts (`none`)", body = Object), (status = 409, description = "`no_x_handle`: the leader lost its X handle while the refresh was queued", body = crate::error::ErrorBody), (status = 404, description = "Unknown leader or X user", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody), (status = 503, description = "X not configured, breaker open, X rate limit or budget", body = crate::error::ErrorBody)))]
pub async fn refresh(
    state: web::Data<AppState>,
    scheduler: Scheduler,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path_id(&state.reader, &path, Entity::Leader)?;
    // A leader with nothing to fetch from X has no new posts: 200, as the original
    // answered (no X call is made, so `origin` is `none`).
    if state
        .reader
        .leader(id)
        .is_some_and(|l| l.x_handle().is_none())
    {
        return Ok(HttpResponse::Ok().json(json!({"posts": [], "origin": "none"})));
    }
    let refreshed = scheduler
        .send(RefreshLeader { leader_id: id })
        .await
        .map_err(unavailable)?
        .map_err(refresh_error)?;
    let leader = state.reader.leader(id);
    let posts: Vec<PostJson> = refreshed
        .posts
        .iter()
        .map(|p| PostJson::from(p, leader.as_ref()))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "posts": posts,
        "origin": refreshed.origin.as_str(),
    })))
}
