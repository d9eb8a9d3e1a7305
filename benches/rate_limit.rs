//! Rate limiting hot paths: one limiter decision for a hot key and for a fresh key, and
//! the whole `RateLimited` middleware around a trivial handler (allowed and refused),
//! next to the same handler without it.
//!
//! `cargo bench --bench rate_limit`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use actix_web::dev::Service;
use actix_web::{test, web, App, HttpResponse};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

use amber::config::RateLimitSettings;
use amber::http::rate_limit::RateLimited;
use amber::rate_limit::key::{ClientKey, IpKey};
use amber::rate_limit::limiter::{KeyedLimiter, Limit};
use amber::rate_limit::RateLimits;

fn settings(per_minute: u32, burst: u32) -> RateLimitSettings {
    RateLimitSettings {
        enabled: true,
        requests_per_minute: per_minute,
        burst_size: burst,
        window_seconds: 60,
        user_requests_per_minute: per_minute,
        user_burst_size: burst,
        trusted_proxies: Vec::new(),
    }
}

fn limiter_decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter");
    let limits = RateLimits::new(&settings(u32::MAX, u32::MAX)).expect("limits");
    let hot = ClientKey::Ip(IpKey::from_addr(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))));
    group.bench_function("hot_key_allowed", |b| {
        b.iter(|| black_box(limits.check_local(black_box(&hot), NonZeroU32::MIN)))
    });

    let strict = RateLimits::new(&settings(1, 1)).expect("limits");
    strict.check_local(&hot, NonZeroU32::MIN);
    group.bench_function("hot_key_refused", |b| {
        b.iter(|| black_box(strict.check_local(black_box(&hot), NonZeroU32::MIN)))
    });

    // Every decision is the first for its key: a new entry in the store. A fresh limiter
    // per sample keeps the map the size criterion's iteration count makes it.
    let limit = Limit::new(60, 60, Duration::from_secs(60)).expect("limit");
    group.bench_function("fresh_key", |b| {
        b.iter_custom(|iters| {
            let limiter: KeyedLimiter<IpKey> =
                KeyedLimiter::new(limit, usize::MAX).expect("limiter clock");
            let started = Instant::now();
            for n in 0..iters {
                let key = IpKey::V6(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                black_box(limiter.check(&key, NonZeroU32::MIN));
            }
            started.elapsed()
        })
    });
    group.finish();
}

async fn trivial() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

fn middleware(c: &mut Criterion) {
    let mut group = c.benchmark_group("middleware");
    let system = actix_rt::System::new();
    let peer = SocketAddr::from(([203, 0, 113, 7], 4711));
    let build = |per_minute: u32, burst: u32| {
        let limits = web::Data::new(RateLimits::new(&settings(per_minute, burst)).expect("limits"));
        system.block_on(test::init_service(
            App::new()
                .app_data(limits)
                .route("/plain", web::get().to(trivial))
                .route(
                    "/limited",
                    web::get().to(trivial).wrap(RateLimited::default()),
                ),
        ))
    };
    let open = build(u32::MAX, u32::MAX);
    let closed = build(1, 1);
    let request = |path: &str| {
        test::TestRequest::get()
            .uri(path)
            .peer_addr(peer)
            .to_request()
    };
    system.block_on(closed.call(request("/limited"))).ok();

    group.bench_function("trivial_handler_without_limiter", |b| {
        b.iter_batched(
            || request("/plain"),
            |req| system.block_on(open.call(req)).map(|res| res.status()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("trivial_handler_allowed", |b| {
        b.iter_batched(
            || request("/limited"),
            |req| system.block_on(open.call(req)).map(|res| res.status()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("trivial_handler_refused_429", |b| {
        b.iter_batched(
            || request("/limited"),
            |req| system.block_on(closed.call(req)).map(|res| res.status()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, limiter_decision, middleware);
criterion_main!(benches);
