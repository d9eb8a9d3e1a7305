//! `GET /api/metrics` (JSON, public) and `GET /metrics` (Prometheus text, only to
//! `METRICS_ALLOWED_NETWORKS`).

use actix_web::{web, HttpRequest, HttpResponse};

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
    state.metrics.observe_stream(&state.status.stream.borrow());
    state
        .metrics
        .feed_event_streams_open
        .set(state.live.open() as i64);
    if let Some(repl) = state.writes.replicator() {
        let s = repl.state();
        let g = &state.metrics.replication;
        g.up.set(i64::from(s.connected));
        g.applied.set(s.applied as i64);
        g.lag_entries.set(s.lag_entries as i64);
        g.lag_seconds.set(s.lag_seconds);
    }
}

/// `GET /api/metrics`: today's counters plus the original system's `ingest` object.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsJson {
    /// Seconds since this process started.
    uptime_seconds: u64,
    ingest: IngestMetrics,
    requests: RequestMetrics,
    store: StoreMetrics,
    live: LiveMetrics,
    /// Replication state (`REPLICATION=redis`); null when off.
    #[schema(value_type = Option<Object>)]
    replication: Option<crate::replication::ReplState>,
}

/// The live feed's event streams (`GET /api/feed/events`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveMetrics {
    /// Streams open now.
    open_streams: u64,
    /// The most that may be open at once (`SSE_MAX_CONNECTIONS`).
    max_streams: u64,
}

/// Ingestion as the original's `/api/metrics` showed it (`totalIngests`, `lastIngestMs`,
/// `lastError`), with what its runbook watches: posts per run, X errors, the breaker.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestMetrics {
    /// Ingestion runs finished since this process started.
    total_ingests: u64,
    /// Duration of the last run finished since start, in milliseconds.
    last_ingest_ms: Option<u64>,
    /// When the last run finished (RFC 3339; kept across restarts).
    last_ingest_at: Option<String>,
    /// Posts the last run stored.
    last_posts_ingested: u64,
    /// Leaders whose fetch failed in the last run.
    last_errors: u64,
    /// The last run's first error (`@handle: message`), or why it stopped early; null
    /// when it went through every leader cleanly.
    last_error: Option<String>,
    /// Scheduled ingestion is configured and not stopped.
    enabled: bool,
    /// `closed`, `open` or `half-open`.
    circuit_breaker_state: String,
}

/// Requests answered since start.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestMetrics {
    total: u64,
    #[serde(rename = "2xx")]
    ok: u64,
    #[serde(rename = "4xx")]
    client_errors: u64,
    #[serde(rename = "5xx")]
    server_errors: u64,
    rate_limited: u64,
}

/// What the store holds now.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreMetrics {
    leaders: u64,
    posts: u64,
    /// Posts per platform (`x`, `news`, ...).
    posts_by_platform: std::collections::BTreeMap<String, u64>,
    review_items: u64,
    pending_reviews: u64,
}

/// `GET /api/metrics`.
#[utoipa::path(get, path = "/api/metrics", operation_id = "metricsJson", tag = "health", responses((status = 200, description = "JSON counters and the last ingestion", body = MetricsJson)))]
pub async fn json(state: web::Data<AppState>) -> HttpResponse {
    let stats = state.reader.stats();
    let m = &state.metrics;
    let ingest = state.status.ingest.borrow().clone();
    let last = ingest.last_run.clone().unwrap_or_default();
    HttpResponse::Ok().json(MetricsJson {
        uptime_seconds: state.started.elapsed().as_secs(),
        ingest: IngestMetrics {
            total_ingests: ingest.total_ingests,
            last_ingest_ms: ingest.last_ingest_ms,
            last_ingest_at: last
                .finished_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            last_posts_ingested: last.posts_ingested,
            last_errors: last.errors,
            last_error: last.error,
            enabled: ingest.enabled,
            circuit_breaker_state: ingest.breaker.as_str().to_string(),
        },
        requests: RequestMetrics {
            total: m.requests_total(),
            ok: m.responses("2xx"),
            client_errors: m.responses("4xx"),
            server_errors: m.responses("5xx"),
            rate_limited: m.rate_limited_total(),
        },
        store: StoreMetrics {
            leaders: stats.leaders,
            posts: stats.posts,
            posts_by_platform: stats
                .posts_by_platform
                .iter()
                .map(|(p, n)| (p.as_str().to_string(), *n))
                .collect(),
            review_items: stats.review_items,
            pending_reviews: stats.pending_reviews,
        },
        live: LiveMetrics {
            open_streams: state.live.open() as u64,
            max_streams: state.live.max() as u64,
        },
        replication: state.writes.replicator().map(|r| r.state()),
    })
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
