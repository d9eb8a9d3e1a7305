//! `GET /api/health`, `/livez`, `/readyz`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::dto::rfc3339;
use crate::http::AppState;

/// `GET /api/health`: 200 `ok` or `degraded`; 503 only when the database check fails.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let reader = state.reader.clone();
    let db = web::block(move || reader.check().map(|_| reader.stats())).await;
    let redis = *state.status.redis.borrow();
    let ingest = state.status.ingest.borrow().clone();
    let (db_ok, database) = match db {
        Ok(Ok(stats)) => (
            true,
            json!({
                "status": "ok",
                "stats": {
                    "leaders": stats.leaders,
                    "posts": stats.posts,
                    "reviewItems": stats.review_items,
                    "latestPostTimestamp": stats.latest_post_ms.map(rfc3339),
                }
            }),
        ),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "database health check failed");
            (
                false,
                json!({"status": "error", "message": "database check failed"}),
            )
        }
        Err(_) => (
            false,
            json!({"status": "error", "message": "database check did not run"}),
        ),
    };
    let degraded = redis == crate::status::RedisHealth::Unavailable
        || ingest.breaker == crate::status::BreakerHealth::Open;
    let status = if !db_ok {
        "error"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    let body = json!({
        "status": status,
        "timestamp": rfc3339(chrono::Utc::now().timestamp_millis()),
        "checks": {
            "database": database,
            "redis": {"status": redis.as_str()},
            "ingestion_scheduler": {
                "status": ingest.scheduler.as_str(),
                "enabled": ingest.enabled,
                "circuit_breaker_state": ingest.breaker.as_str(),
            },
        },
        "stats": {"totalIngests": ingest.total_ingests, "lastIngestMs": ingest.last_ingest_ms},
        "build": {
            "version": state.settings.build.version,
            "commit": state.settings.build.commit,
            "buildTime": state.settings.build.build_time,
        },
    });
    if db_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /livez`: the process answers.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers reads and its writer actor is alive.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let reader = state.reader.clone();
    let store_ok = matches!(web::block(move || reader.check()).await, Ok(Ok(())));
    if store_ok && state.store.connected() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready"}))
    }
}
