//! `GET /api/metrics` (JSON, public) and `GET /metrics` (Prometheus text, only to
//! `METRICS_ALLOWED_NETWORKS`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::error::AppError;
use crate::http::AppState;

fn refresh_store_gauges(state: &AppState) {
    let stats = state.reader.stats();
    state.metrics.posts.set(stats.posts as i64);
    state.metrics.leaders.set(stats.leaders as i64);
    state.metrics.review_items.set(stats.review_items as i64);
    let ingest = state.status.ingest.borrow().clone();
    state.metrics.ingest_runs.set(ingest.total_ingests as i64);
    state
        .metrics
        .last_ingest_seconds
        .set(ingest.last_ingest_ms.unwrap_or(0) as f64 / 1000.0);
    state.metrics.breaker_open.set(i64::from(
        ingest.breaker != crate::status::BreakerHealth::Closed,
    ));
    state.metrics.redis_up.set(i64::from(
        *state.status.redis.borrow() == crate::status::RedisHealth::Ok,
    ));
}

/// `GET /api/metrics`.
#[utoipa::path(get, path = "/api/metrics", operation_id = "metricsJson", tag = "health", responses((status = 200, description = "JSON counters", body = Object)))]
pub async fn json(state: web::Data<AppState>) -> HttpResponse {
    let stats = state.reader.stats();
    let m = &state.metrics;
    let by_platform: serde_json::Map<String, serde_json::Value> = stats
        .posts_by_platform
        .iter()
        .map(|(p, n)| (p.as_str().to_string(), json!(n)))
        .collect();
    HttpResponse::Ok().json(json!({
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "requests": {
            "total": m.requests_total(),
            "2xx": m.responses("2xx"),
            "4xx": m.responses("4xx"),
            "5xx": m.responses("5xx"),
            "rateLimited": m.rate_limited_total(),
        },
        "store": {
            "leaders": stats.leaders,
            "posts": stats.posts,
            "postsByPlatform": by_platform,
            "reviewItems": stats.review_items,
            "pendingReviews": stats.pending_reviews,
        },
    }))
}

/// `GET /metrics`: Prometheus text, answered only to allowed networks.
#[utoipa::path(get, path = "/metrics", operation_id = "metricsPrometheus", tag = "health", responses((status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics 1.0.0 when `Accept` names `application/openmetrics-text`", content((String = "text/plain"), (String = "application/openmetrics-text"))), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn prometheus(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let peer = req.peer_addr().map(|a| a.ip());
    let allowed = peer.is_some_and(|ip| {
        let ip = crate::http::canonical_ip(ip);
        state
            .settings
            .metrics_allowed_networks
            .iter()
            .any(|net| net.contains(&ip))
    });
    if !allowed {
        return Err(AppError::Forbidden(
            "metrics are not served to this address".into(),
        ));
    }
    refresh_store_gauges(&state);
    let (body, content_type) = if wants_openmetrics(&req) {
        (
            state.metrics.render(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            state.metrics.render_prometheus(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let body = body.map_err(|e| AppError::Internal(anyhow::anyhow!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((actix_web::http::header::VARY, "Accept"))
        .body(body))
}

/// Whether `Accept` names OpenMetrics with a non-zero quality (Prometheus sends
/// `application/openmetrics-text;version=1.0.0;q=0.5,...,text/plain;version=0.0.4;q=0.3`).
fn wants_openmetrics(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(actix_web::http::header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let q_zero = parts
                .filter_map(|p| p.strip_prefix("q="))
                .any(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0));
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        })
}
