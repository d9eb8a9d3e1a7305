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
}

/// `GET /api/metrics`.
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
    let body = state
        .metrics
        .render()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body))
}
