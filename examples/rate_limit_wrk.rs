//! A bench-only server for `wrk`: the production middleware stack (`around`: request id,
//! security headers, logs, JSON errors) with two routes on one server:
//!
//! - `GET /trivial`: a trivial handler, not rate limited;
//! - `GET /refused`: the same handler behind `RateLimited`, with a bucket of 1 token an
//!   hour that the server spends at start-up, so every request is refused with the full
//!   SPEC 429 (headers and JSON body).
//!
//! `cargo run --profile bench --example rate_limit_wrk -- 127.0.0.1:5099`, then
//! `wrk -t2 -c32 -d10s http://127.0.0.1:5099/trivial` and `.../refused` (BENCHMARKS.md).

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;

use amber::config::RateLimitSettings;
use amber::http::rate_limit::RateLimited;
use amber::rate_limit::key::{ClientKey, IpKey};
use amber::rate_limit::RateLimits;

async fn trivial() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5099".into());
    let settings = RateLimitSettings {
        enabled: true,
        requests_per_minute: 1,
        burst_size: 1,
        window_seconds: 3600,
        user_requests_per_minute: 1,
        user_burst_size: 1,
        trusted_proxies: Vec::new(),
    };
    let limits = web::Data::new(RateLimits::new(&settings).context("limits")?);
    for local in ["127.0.0.1", "::1"] {
        let key = ClientKey::Ip(IpKey::parse(local).context("loopback")?);
        limits.check_local(&key, std::num::NonZeroU32::MIN);
    }
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(limits.clone())
                .wrap(from_fn(amber::http::middleware::around))
                .route("/trivial", web::get().to(trivial))
                .route(
                    "/refused",
                    web::get().to(trivial).wrap(RateLimited::default()),
                )
        })
        .bind(&addr)
        .with_context(|| format!("binding {addr}"))?
        .run();
        println!("rate_limit_wrk listening on http://{addr}");
        server.await.context("server")
    })
}
