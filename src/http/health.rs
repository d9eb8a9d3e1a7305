//! `GET /api/health`, `/livez`, `/readyz`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::AppState;
use crate::shape::time::rfc3339;

/// `GET /api/health`: 200 `ok` or `degraded`; 503 only when the database check fails.
#[utoipa::path(get, path = "/api/health", operation_id = "health", tag = "health", responses((status = 200, description = "`ok` or `degraded`, with database, redis and scheduler checks, ingest stats and build", body = Object), (status = 503, description = "The database check failed", body = Object)))]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let reader = state.reader.clone();
    let db = web::block(move || {
        reader
            .check()
            .map(|_| (reader.stats(), reader.space(), reader.damage()))
    })
    .await;
    let redis = *state.status.redis.borrow();
    let ingest = state.status.ingest.borrow().clone();
    let stream = state.status.stream.borrow().clone();
    let (db_ok, database) = match db {
        Ok(Ok((stats, space, damage))) => (
            true,
            json!({
                // Reads work; below the reserve writes are refused (507) until space is
                // freed; damaged records are skipped, the rest is served.
                "status": if space.is_some_and(|s| s.low()) || damage.total() > 0 { "degraded" } else { "ok" },
                // What cannot be read back; `checked` once start-up read every record.
                "damage": {
                    "checked": damage.checked,
                    "damagedRecords": damage.total(),
                    "leaders": damage.leaders,
                    "posts": damage.posts,
                    "reviewItems": damage.review_items,
                    "missingPosts": damage.missing_posts,
                    "other": damage.other,
                    // sled's page-table snapshot failed its checksum; it was moved here
                    // and the database recovered from sled's whole log (nothing lost).
                    "sledSnapshotSetAside": damage.snapshot_set_aside.as_ref().map(|p| p.display().to_string()),
                },
                "disk": space.map(|s| json!({
                    "availableMb": s.available / (1024 * 1024),
                    "reserveMb": s.reserve / (1024 * 1024),
                    "writable": !s.low(),
                })),
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
                json!({"status": "error", "message": format!("database check failed: {err}")}),
            )
        }
        Err(_) => (
            false,
            json!({"status": "error", "message": "database check did not run"}),
        ),
    };
    let disk_low = database["status"] == "degraded";
    let repl = state.writes.replicator().map(|r| r.state());
    let degraded = disk_low
        || repl.as_ref().is_some_and(|r| !r.connected)
        || redis == crate::status::RedisHealth::Unavailable
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
            // Off: `{"status": "disabled"}`; on: position, lag, last error.
            "replication": match &repl {
                None => json!({"status": "disabled"}),
                Some(r) => {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["status"] = json!(if r.bootstrap.is_some() {
                        "bootstrapping"
                    } else if r.connected {
                        "ok"
                    } else {
                        "unavailable"
                    });
                    v
                }
            },
            "ingestion_scheduler": {
                "status": ingest.scheduler.as_str(),
                "enabled": ingest.enabled,
                "circuit_breaker_state": ingest.breaker.as_str(),
            },
            // Informational: while the stream is down polling fills the gap.
            "activity_stream": {
                "status": stream.state.as_str(),
                "connected": stream.state == crate::status::StreamState::Connected,
                "since": stream.since.map(|t| rfc3339(t.timestamp_millis())),
                "lastEventAt": stream.last_event_at.map(|t| rfc3339(t.timestamp_millis())),
                "reconnects": stream.reconnects,
                "events": {
                    "post.create": stream.events_post_create,
                    "post.delete": stream.events_post_delete,
                },
                "deletions": stream.deletions,
                "subscriptions": stream.subscriptions.held,
                "subscriptionCapReached": stream.subscriptions.cap_reached,
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
#[utoipa::path(get, path = "/livez", operation_id = "livez", tag = "health", responses((status = 200, description = "The process answers", body = Object)))]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers reads and its writer actor is alive.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health", responses((status = 200, description = "Store open and writer alive", body = Object), (status = 503, description = "Not ready", body = Object)))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let reader = state.reader.clone();
    // Not ready while writes would be refused for want of space, either.
    let store_ok = matches!(
        web::block(move || reader.check().map(|_| reader.space())).await,
        Ok(Ok(space)) if !space.is_some_and(|s| s.low())
    );
    if store_ok && state.store.connected() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready"}))
    }
}
