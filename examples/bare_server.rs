//! The reference the load scripts measure Amber against: a bare actix-web server in a
//! process of its own, with none of Amber's layers (no connection guard, middleware,
//! limiter or store). `bare_server PORT` serves
//! - `GET /hello`: `Hello world!`, the classic hello route;
//! - `GET /static/{bytes}`: that many bytes (at most 1 MiB) of JSON whitespace, built once,
//!   the ceiling for a body of that size.
//!
//! Two workers, as Amber runs on a 2-core machine by default (one per core).

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
        })
        .workers(workers)
        .bind(("127.0.0.1", port))?
        .run(),
    )
}
