//! The reference the load scripts measure Amber against: a bare actix-web server in a
//! process of its own, with none of Amber's layers (no connection guard, middleware,
//! limiter or store). `bare_server PORT` serves
//! - `GET /hello`: `Hello world!`, the classic hello route;
//! - `GET /static/{bytes}`: that many bytes (at most 1 MiB) of JSON whitespace, built once,
//!   the ceiling for a body of that size;
//! - `POST /hook`: 200 with no body, the fastest notification receiver (`notify.sh`), and
//!   `GET /hook/stats`: `COUNT SECONDS`, the deliveries received and the time from the
//!   first to the last.
//!
//! Two workers, as Amber runs on a 2-core machine by default (one per core).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::{web, App, HttpResponse, HttpServer};

const MAX_BODY: usize = 1 << 20;
static FILLER: [u8; MAX_BODY] = [b' '; MAX_BODY];

async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("Hello world!")
}

async fn fixed(bytes: web::Path<usize>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(&FILLER[..bytes.into_inner().min(MAX_BODY)])
}

static HOOKS: AtomicU64 = AtomicU64::new(0);
static HOOK_SPAN: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);

async fn hook(_body: web::Bytes) -> HttpResponse {
    let now = Instant::now();
    let mut span = HOOK_SPAN.lock().unwrap_or_else(|e| e.into_inner());
    *span = Some(span.map_or((now, now), |(first, _)| (first, now)));
    HOOKS.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Ok().finish()
}

async fn hook_stats() -> HttpResponse {
    let span = *HOOK_SPAN.lock().unwrap_or_else(|e| e.into_inner());
    let secs = span.map_or(0.0, |(first, last)| (last - first).as_secs_f64());
    HttpResponse::Ok()
        .content_type("text/plain")
        .body(format!("{} {secs:.6}\n", HOOKS.load(Ordering::Relaxed)))
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(5099);
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    actix_web::rt::System::new().block_on(
        HttpServer::new(|| {
            App::new()
                .service(web::resource("/hello").route(web::get().to(hello)))
                .service(web::resource("/static/{bytes}").route(web::get().to(fixed)))
                .service(web::resource("/hook").route(web::post().to(hook)))
                .service(web::resource("/hook/stats").route(web::get().to(hook_stats)))
        })
        .workers(workers)
        .bind(("127.0.0.1", port))?
        .run(),
    )
}
