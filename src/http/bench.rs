//! Baseline routes for load tests, mounted only with `AMBER_BENCH_ROUTES=true`:
//! `GET /bench/fixed?bytes=N` answers N fixed bytes, the ceiling the server can reach
//! for a payload of that size, to compare real endpoints against in the same run.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

/// Largest fixed body.
const MAX_FIXED: usize = 1 << 20;
static FILLER: [u8; MAX_FIXED] = [b' '; MAX_FIXED];

/// Registers the bench routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/bench/fixed").route(web::get().to(fixed)));
}

/// Query of `/bench/fixed`.
#[derive(Deserialize)]
pub struct FixedQuery {
    bytes: Option<usize>,
}

/// `GET /bench/fixed?bytes=N`: N bytes of JSON whitespace, no work.
#[utoipa::path(get, path = "/bench/fixed", operation_id = "benchFixed", tag = "bench",
    params(("bytes" = Option<usize>, Query, description = "Body size, at most 1 MiB (default 1024)")),
    responses((status = 200, description = "Only with AMBER_BENCH_ROUTES=true: N bytes of whitespace, for load-test baselines")))]
pub async fn fixed(query: web::Query<FixedQuery>) -> HttpResponse {
    let n = query.bytes.unwrap_or(1024).min(MAX_FIXED);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(&FILLER[..n])
}
