//! The HTTP API: routes, shared state and the extractor configs that turn every bad
//! input into a JSON 4xx. Handlers talk to actors by message and read through a
//! `StoreReader`; none of them names sled.

pub mod admin;
pub mod auth;
pub mod bench;
pub mod conn;
pub mod dto;
pub mod feed;
pub mod feed_events;
pub mod feeds;
pub mod form;
pub mod health;
pub mod ids;
pub mod ingestion;
pub mod leaders;
pub mod metrics;
pub mod middleware;
pub mod notifications;
pub mod openapi;
pub mod posts;
pub mod rate_limit;
pub mod review;
pub mod sentiment;
pub mod snapshot;
pub mod text;

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::{error, web, HttpRequest, HttpResponse};

use crate::actors::store::PostStore;
use crate::config::Settings;
use crate::error::AppError;
use crate::http::auth::JwtKeys;
use crate::metrics::Metrics;
use crate::status::StatusBoard;
use crate::storage::StoreReader;

/// Largest JSON body accepted by most endpoints.
pub const JSON_LIMIT: usize = 64 * 1024;
/// Largest JSON body of `POST /api/sentiment/batch` (100 texts of 10 KB, plus room).
pub const SENTIMENT_JSON_LIMIT: usize = 1_100 * 1024;

/// What every handler can reach. Cheap to clone: handles and `Arc`s only.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub reader: StoreReader,
    pub store: Addr<PostStore>,
    /// Where replicated writes go (the stream with `REPLICATION=redis`, else the store).
    pub writes: crate::replication::Writes,
    pub jwt: Arc<JwtKeys>,
    pub metrics: Arc<Metrics>,
    pub status: StatusBoard,
    pub started: Instant,
    /// Rendered feed pages, valid for one store generation.
    pub page_cache: Arc<feed::PageCache>,
    /// The notification delivery actor and the status it publishes.
    pub notifications: crate::notify::delivery::Notifications,
    /// Rendered syndication feeds and their validators (`/feeds/...`).
    pub feed_cache: Arc<crate::feeds::validators::FeedCache>,
    /// The feed's open event streams (`GET /api/feed/events`) and their cap.
    pub live: Arc<feed_events::Streams>,
    /// The Activity API stream (`X_ACTIVITY_STREAM`), told when leaders change.
    pub activity: Option<Addr<crate::actors::stream::ActivityStream>>,
}

impl AppState {
    /// Tells the Activity API stream (if on) that leaders changed: it reconciles its
    /// subscriptions now.
    pub fn leaders_changed(&self) {
        if let Some(stream) = &self.activity {
            stream.do_send(crate::actors::stream::LeadersChanged);
        }
    }
}

/// JSON body config: size limit, content type and a JSON error for each failure.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            let app_err = match &err {
                error::JsonPayloadError::OverflowKnownLength { limit, .. }
                | error::JsonPayloadError::Overflow { limit } => {
                    AppError::PayloadTooLarge { limit: *limit }
                }
                error::JsonPayloadError::ContentType => AppError::UnsupportedMediaType,
                error::JsonPayloadError::Deserialize(e) if e.is_data() => {
                    AppError::bad_request("invalid_body", e.to_string())
                }
                error::JsonPayloadError::Deserialize(e) => {
                    AppError::bad_request("malformed_json", e.to_string())
                }
                other => AppError::bad_request("invalid_body", other.to_string()),
            };
            app_err.into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req| AppError::bad_request("invalid_query", err.to_string()).into())
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err, _req| AppError::bad_request("invalid_path", err.to_string()).into())
}

/// A JSON body that must be an object: serde's derived structs also accept an array of
/// their fields in order (`["name"]` as a leader), which the document does not allow.
#[derive(Debug)]
pub struct ObjectBody<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(std::marker::PhantomData))
            .map(ObjectBody)
    }
}

/// A 415 unless the request says its body is JSON (`application/json` or `+json`), as
/// `web::Json` requires; for handlers that read an optional body themselves.
pub fn require_json(req: &HttpRequest) -> Result<(), AppError> {
    use actix_web::HttpMessage;
    match req.mime_type() {
        Ok(Some(mime))
            if mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json") =>
        {
            Ok(())
        }
        _ => Err(AppError::UnsupportedMediaType),
    }
}

/// Unknown routes: a JSON 404.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound(format!(
        "route {} {}",
        req.method(),
        req.path()
    )))
}

/// Registers every route. `/api` routes sit in one scope with CORS from config.
///
/// Every path is a `web::resource` with its methods as routes (never `cfg.route`, which
/// puts the method guard on the resource itself): so a known path with another method
/// is a 405 whose `Allow` names that resource's methods, and a request can never fall
/// through to a later pattern (`PUT /api/posts/paginated` is not `PUT /api/posts/{id}`).
pub fn configure(cfg: &mut web::ServiceConfig, settings: &Settings) {
    cfg.app_data(json_config(JSON_LIMIT))
        .app_data(query_config())
        .app_data(path_config())
        // The document's resource before the `/api` scope, so it is matched first; with
        // the CORS of every `/api` route.
        .service(
            web::resource("/api/openapi.json")
                .wrap(middleware::cors(settings))
                .route(web::get().to(openapi::openapi_json)),
        )
        // The `/api` scope before the page, asset and feed resources: those have dynamic
        // segments, each tried by a regex (actix-router matches in registration order), so
        // every API request paid for three regex runs (4 % of the 429 path). Before the
        // probes' resources too, and the feed first in it: every resource tried is a
        // match attempt (~250 instructions each, BENCHMARKS.md issue 14), and no path of
        // one can be a path of another, so their order changes only the cost.
        .service(
            web::scope("/api")
                .wrap(middleware::cors(settings))
                .configure(feed::configure)
                .service(web::resource("/health").route(web::get().to(health::health)))
                .service(web::resource("/metrics").route(web::get().to(metrics::json)))
                .configure(feed_events::configure)
                .configure(leaders::configure)
                .configure(posts::configure)
                .configure(review::configure)
                .configure(admin::configure)
                .configure(snapshot::configure)
                .configure(notifications::configure)
                .configure(rate_limit::configure)
                .configure(sentiment::configure)
                .configure(ingestion::configure),
        )
        .service(web::resource("/livez").route(web::get().to(health::livez)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics::prometheus)))
        .configure(crate::web::configure)
        .configure(feeds::configure)
        .configure(|cfg| {
            if settings.bench_routes {
                bench::configure(cfg);
            }
        });
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) as the IPv4 address it is.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
