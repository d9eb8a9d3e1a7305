//! Rate limiting over HTTP: the [`RateLimited`] middleware any route, resource or scope
//! can wear (with a cost), the SPEC headers and 429 body, and the admin endpoints
//! `GET/DELETE /api/admin/rate-limits/{ip|user}/{key}`. The limiters themselves live in
//! `crate::rate_limit` and reach handlers as `web::Data<RateLimits>`.

use std::borrow::Cow;
use std::future::{ready, Future, Ready};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, Error, HttpMessage, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::json;

use crate::error::AppError;
use crate::http::auth::{self, Admin};
use crate::rate_limit::key::{ClientKey, IpKey, KeyKind, UserKey};
use crate::rate_limit::limiter::Decision;
use crate::rate_limit::{RateLimits, Shared};

/// `X-RateLimit-Limit`.
pub const LIMIT_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub const REMAINING_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (unix seconds), on refusals.
pub const RESET_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// The message of every 429 (SPEC).
pub const TOO_MANY_MESSAGE: &str = "Too many requests. Please try again later.";

/// Which bucket a [`RateLimited`] route spends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// The client's API bucket (`ip:` or `user:`), shared by every route wearing it.
    Api { cost: NonZeroU32 },
    /// The strict per-address bucket of `POST /api/admin/token`.
    TokenEndpoint,
    /// The client's API bucket, for a route that answers conditional GETs (the feeds):
    /// a `304` costs one token, a full answer two. A request with a validator
    /// (`If-None-Match` / `If-Modified-Since`) pays one token up front and one more only
    /// if the answer is not a `304`; one without pays two.
    Conditional,
}

/// The rate-limit middleware. `RateLimited::default()` costs one token of the client's
/// bucket; `RateLimited::cost(n)` costs `n`; `RateLimited::token_endpoint()` is the
/// strict per-address limit of the bootstrap-token route. With `RATE_LIMITING_ENABLED=false`,
/// or without `RateLimits` in the app data, it lets everything through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    policy: Policy,
}

impl Default for RateLimited {
    fn default() -> RateLimited {
        RateLimited {
            policy: Policy::Api {
                cost: NonZeroU32::MIN,
            },
        }
    }
}

impl RateLimited {
    /// A route that costs `cost` tokens of the client's bucket (0 counts as 1).
    pub fn cost(cost: u32) -> RateLimited {
        RateLimited {
            policy: Policy::Api {
                cost: NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN),
            },
        }
    }

    /// A conditional-GET route: a `304` costs one token, a full answer two.
    pub fn conditional() -> RateLimited {
        RateLimited {
            policy: Policy::Conditional,
        }
    }

    /// The strict per-address limit of `POST /api/admin/token`.
    pub fn token_endpoint() -> RateLimited {
        RateLimited {
            policy: Policy::TokenEndpoint,
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RateLimited
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RateLimitedService<S>;
    type InitError = ();
    type Future = Ready<Result<RateLimitedService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RateLimitedService {
            service: Rc::new(service),
            policy: self.policy,
        }))
    }
}

/// The service [`RateLimited`] wraps around a route.
pub struct RateLimitedService<S> {
    service: Rc<S>,
    policy: Policy,
}

type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

/// The inner service's answer, passed on untouched (rate limiting off).
type Untouched<S, B> = futures_util::future::MapOk<
    <S as Service<ServiceRequest>>::Future,
    fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>>,
>;

impl<S, B> Service<ServiceRequest> for RateLimitedService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = futures_util::future::Either<Untouched<S, B>, ResponseFuture<B>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        use futures_util::TryFutureExt;
        // Off (or no limiters): straight through, without boxing a future per request.
        let limits = match req.app_data::<web::Data<RateLimits>>() {
            Some(limits) if limits.enabled() => limits.clone(),
            _ => {
                return futures_util::future::Either::Left(
                    self.service
                        .call(req)
                        .map_ok(ServiceResponse::map_into_left_body as fn(_) -> _),
                )
            }
        };
        let service = Rc::clone(&self.service);
        let policy = self.policy;
        futures_util::future::Either::Right(Box::pin(async move {
            let mut conditional_key = None;
            let early = req.extensions_mut().remove::<ChargedEarly>();
            let decision = match (early, policy) {
                // Charged by the outer middleware before routing, for this very policy.
                (Some(early), _) if early.policy == policy => early.decision,
                (_, Policy::Api { cost }) => {
                    let key = client_key(req.request(), &limits);
                    limits.check(&key, cost).await
                }
                (_, Policy::Conditional) => {
                    let key = client_key(req.request(), &limits);
                    let headers = req.headers();
                    let has_validator = headers.contains_key(header::IF_NONE_MATCH)
                        || headers.contains_key(header::IF_MODIFIED_SINCE);
                    let cost = if has_validator { 1 } else { 2 };
                    let decision = limits
                        .check(&key, NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN))
                        .await;
                    if has_validator {
                        conditional_key = Some(key);
                    }
                    decision
                }
                (_, Policy::TokenEndpoint) => {
                    limits.check_token_attempt(client_ip(req.request(), &limits))
                }
            };
            if !decision.allowed {
                return Ok(req
                    .into_response(too_many_requests(&decision, SystemTime::now()))
                    .map_into_right_body());
            }
            let mut res = service.call(req).await?;
            let mut decision = decision;
            if let Some(key) = conditional_key {
                if res.status() != actix_web::http::StatusCode::NOT_MODIFIED {
                    // The rest of a full answer's price. Already answered: a refusal here
                    // only leaves the bucket empty for the client's next request.
                    let more = limits.check(&key, NonZeroU32::MIN).await;
                    if more.allowed {
                        decision = more;
                    } else {
                        decision.remaining = 0;
                    }
                }
            }
            set_allowed_headers(res.headers_mut(), &decision);
            Ok(res.map_into_left_body())
        }))
    }
}

/// The limit of `GET /api/feed` (`http::feed`): one token.
pub const FEED_LIMIT: RateLimited = RateLimited {
    policy: Policy::Api {
        cost: NonZeroU32::MIN,
    },
};
/// The limit of `GET /api/feed/events` (`http::feed_events`): one token per stream opened.
pub const FEED_EVENTS_LIMIT: RateLimited = RateLimited {
    policy: Policy::Api {
        cost: NonZeroU32::MIN,
    },
};
/// The limit of `GET /feeds/opml` (`http::feeds`): one token.
pub const OPML_LIMIT: RateLimited = RateLimited {
    policy: Policy::Api {
        cost: NonZeroU32::MIN,
    },
};

/// A route charged before routing: its exact path, the limit its registration wears
/// (the same const, so the two cannot disagree) and whether it sits in the `/api` scope
/// (whose CORS adds `Vary` and `Access-Control-Expose-Headers` to every answer).
#[derive(Debug, Clone, Copy)]
pub struct EarlyRoute {
    pub path: &'static str,
    limit: RateLimited,
    pub cors: bool,
}

/// The routes the outer middleware (`middleware::around`) and the connection layer
/// (`http::conn::early`) charge before routing: every rate-limited `GET` whose path is
/// static and whose cost is fixed, so the request's head alone decides its route, its
/// price and its key. Their refusals are answered right there, without routing, CORS or
/// the route's middleware (BENCHMARKS.md, issue 14). Not here: the conditional feeds
/// (`/feeds/all.{format}`, `/feeds/leaders/{id}.{format}`: dynamic paths, and a price that
/// depends on the answer being a `304`) and the `POST` routes (`/api/sentiment/batch`,
/// `/api/ingestion/refresh`, the token endpoint: their bodies, auth extractors and, for
/// the token endpoint, a bucket of its own stay the route's business). A new route of
/// that kind belongs here, wearing its const; the unit test below checks every entry is
/// a static `GET` with a fixed cost, the black-box tests (`tests/api/rate_limit.rs`) that
/// each one's early answers are its routed ones.
pub const EARLY_ROUTES: [EarlyRoute; 3] = [
    EarlyRoute {
        path: "/api/feed",
        limit: FEED_LIMIT,
        cors: true,
    },
    EarlyRoute {
        path: "/api/feed/events",
        limit: FEED_EVENTS_LIMIT,
        cors: true,
    },
    EarlyRoute {
        path: "/feeds/opml",
        limit: OPML_LIMIT,
        cors: false,
    },
];

/// The entry of [`EARLY_ROUTES`] a request of `method` on `path` is charged by, if any.
fn early_route(method: &Method, path: &str) -> Option<&'static EarlyRoute> {
    if method != Method::GET {
        return None;
    }
    EARLY_ROUTES.iter().find(|route| route.path == path)
}

/// A request refused before routing: its decision, and the route it was for.
#[derive(Debug, Clone, Copy)]
pub struct RefusedEarly {
    pub decision: Decision,
    pub route: &'static EarlyRoute,
}

/// An admission [`charge_early`] already spent, for the route's [`RateLimited`]: it uses
/// this decision instead of spending again.
#[derive(Debug, Clone, Copy)]
struct ChargedEarly {
    policy: Policy,
    decision: Decision,
}

/// Spends from the client's bucket before routing, as the route's [`RateLimited`] would,
/// for the request kinds whose route and cost the head decides: `GET` of exactly one
/// of [`EARLY_ROUTES`], without `Origin` (CORS may refuse a cross-origin request before
/// its route is charged). Returns the refusal for the caller to answer; an admission is
/// recorded on the request so the route spends nothing more. `None` for every other
/// request (and with limiting off): it is charged by its route as usual.
pub async fn charge_early(req: &ServiceRequest) -> Option<RefusedEarly> {
    let route = early_route(req.method(), req.path())?;
    if req.headers().contains_key(header::ORIGIN) || req.extensions().contains::<ChargedEarly>() {
        return None;
    }
    let limits = req
        .app_data::<web::Data<RateLimits>>()
        .filter(|limits| limits.enabled())?;
    let Policy::Api { cost } = route.limit.policy else {
        return None;
    };
    let key = client_key(req.request(), limits);
    let decision = limits.check(&key, cost).await;
    settle_early(&mut req.extensions_mut(), route, decision)
}

/// [`charge_early`] in the connection layer, before actix-web builds its request: for an
/// anonymous `GET` of exactly one of [`EARLY_ROUTES`] (no `Origin`, no `Authorization`:
/// its key is `ip:`) while Redis sync is not configured (so the decision is this
/// instance's bucket, taken without waiting). The same spend and the same record on the
/// request (actix-web hands the request's extensions on to its `HttpRequest`); `Some` is
/// a refusal, which the caller answers with
/// [`crate::http::middleware::answer_refused_early`].
pub fn charge_before_app(req: &actix_http::Request, limits: &RateLimits) -> Option<RefusedEarly> {
    let route = early_route(req.method(), req.path())?;
    if !limits.enabled() || limits.redis_configured() {
        return None;
    }
    let headers = req.headers();
    if headers.contains_key(header::ORIGIN) || headers.contains_key(header::AUTHORIZATION) {
        return None;
    }
    let Policy::Api { cost } = route.limit.policy else {
        return None;
    };
    let key = ClientKey::Ip(IpKey::from_addr(client_ip_of(
        req.peer_addr(),
        headers,
        limits,
    )));
    let decision = limits.check_local(&key, cost);
    settle_early(&mut req.extensions_mut(), route, decision)
}

/// An admission the connection layer charged for a request head before actix-http read
/// it ([`charge_simple_get`]), for `http::conn::early::EarlyService` to record on that
/// request instead of charging it again.
#[derive(Debug, Clone, Copy)]
pub struct Precharged {
    route: &'static EarlyRoute,
    decision: Decision,
}

impl Precharged {
    /// Records the admission on `req` (the route then spends nothing more); false, and
    /// nothing recorded, when `req` is not a request of the route it was charged for.
    pub fn apply(self, req: &actix_http::Request) -> bool {
        if req.method() != Method::GET || req.path() != self.route.path {
            return false;
        }
        settle_early(&mut req.extensions_mut(), self.route, self.decision).is_none()
    }
}

/// What [`charge_simple_get`] decided.
#[derive(Debug, Clone, Copy)]
pub enum SimpleCharge {
    /// Refused: to be answered with the route's 429.
    Refused(RefusedEarly),
    /// Admitted and spent: the request goes on, carrying this.
    Admitted(Precharged),
}

/// [`charge_before_app`] from a request head the connection layer read itself, before
/// actix-http: `path` is the target's path of a `GET` without `Origin` and
/// `Authorization` (`http::conn::framing::SimpleGet`), `peer` the socket's. The same
/// spend from the same bucket, for the same requests, except that a peer that is a
/// trusted proxy is left to [`charge_before_app`] (its key comes from forwarded
/// headers). `None`: not charged here.
pub fn charge_simple_get(
    path: &str,
    peer: Option<SocketAddr>,
    limits: &RateLimits,
) -> Option<SimpleCharge> {
    let route = early_route(&Method::GET, path)?;
    if !limits.enabled() || limits.redis_configured() {
        return None;
    }
    let peer = peer?.ip();
    if limits.trusts(peer) {
        return None;
    }
    let Policy::Api { cost } = route.limit.policy else {
        return None;
    };
    let key = ClientKey::Ip(IpKey::from_addr(peer.to_canonical()));
    let decision = limits.check_local(&key, cost);
    Some(if decision.allowed {
        SimpleCharge::Admitted(Precharged { route, decision })
    } else {
        SimpleCharge::Refused(RefusedEarly { decision, route })
    })
}

/// An early charge's outcome: an admission is recorded on the request (the route then
/// spends nothing more), a refusal is returned for the caller to answer.
fn settle_early(
    extensions: &mut actix_web::dev::Extensions,
    route: &'static EarlyRoute,
    decision: Decision,
) -> Option<RefusedEarly> {
    if decision.allowed {
        extensions.insert(ChargedEarly {
            policy: route.limit.policy,
            decision,
        });
        return None;
    }
    Some(RefusedEarly { decision, route })
}

/// The address a request is limited by: the socket peer, or the forwarded client when
/// the peer is a trusted proxy.
pub fn client_ip(req: &HttpRequest, limits: &RateLimits) -> IpAddr {
    client_ip_of(req.peer_addr(), req.headers(), limits)
}

/// [`client_ip`] from the socket peer and the request's headers.
fn client_ip_of(peer: Option<SocketAddr>, headers: &HeaderMap, limits: &RateLimits) -> IpAddr {
    let peer = peer
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !limits.trusts(peer) {
        return peer.to_canonical();
    }
    // Lossy, so one line with stray bytes cannot hide the hops a proxy appended to it.
    let lines = |name: &str| -> Vec<Cow<'_, str>> {
        headers
            .get_all(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()))
            .collect()
    };
    let x_forwarded_for = lines("x-forwarded-for");
    let forwarded = lines("forwarded");
    limits.client_addr(
        peer,
        x_forwarded_for.iter().map(AsRef::as_ref),
        forwarded.iter().map(AsRef::as_ref),
    )
}

/// The bucket key of a request: `user:<sub>` for a valid token, else `ip:<addr>`.
/// An invalid or expired token counts as no token.
pub fn client_key(req: &HttpRequest, limits: &RateLimits) -> ClientKey {
    if let Ok(Some(claims)) = auth::claims_of(req) {
        if let Ok(user) = UserKey::parse(&claims.sub) {
            return ClientKey::User(user);
        }
    }
    ClientKey::Ip(IpKey::from_addr(client_ip(req, limits)))
}

/// `X-RateLimit-Limit` and `X-RateLimit-Remaining` on an allowed response.
fn set_allowed_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert(LIMIT_HEADER, number(u64::from(decision.limit)));
    headers.insert(REMAINING_HEADER, number(u64::from(decision.remaining)));
}

#[cfg(test)]
#[derive(serde::Serialize)]
struct TooManyBody {
    error: &'static str,
    message: &'static str,
    retry_after: u64,
}

/// The 429's JSON body up to its `retry_after` number ([`TOO_MANY_MESSAGE`] inside; a
/// test holds it to what serde writes for the same fields).
const TOO_MANY_BODY_HEAD: &str = r#"{"error":"rate_limit_exceeded","message":"Too many requests. Please try again later.","retry_after":"#;

/// The JSON body of a 429: `{"error", "message", "retry_after"}`, written directly.
fn too_many_body(retry_after: u64) -> Vec<u8> {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(retry_after);
    let mut body = Vec::with_capacity(TOO_MANY_BODY_HEAD.len() + digits.len() + 1);
    body.extend_from_slice(TOO_MANY_BODY_HEAD.as_bytes());
    body.extend_from_slice(digits.as_bytes());
    body.push(b'}');
    body
}

/// `n` as a header value, formatted without the formatter or a heap allocation
/// (`HeaderValue::from(u64)` goes through `fmt::Write` into a `BytesMut`).
fn number(n: u64) -> HeaderValue {
    match n {
        0 => HeaderValue::from_static("0"),
        1 => HeaderValue::from_static("1"),
        _ => {
            let mut buf = itoa::Buffer::new();
            // Digits are always a valid header value.
            HeaderValue::from_str(buf.format(n)).unwrap_or_else(|_| HeaderValue::from(n))
        }
    }
}

/// The parts of SPEC's 429 that depend on the decision and the clock: `Retry-After`,
/// `X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset`, the JSON
/// `Content-Type`, added to `headers`; and the JSON body.
pub fn refusal_parts(decision: &Decision, now: SystemTime, headers: &mut HeaderMap) -> Bytes {
    let retry_after = decision.retry_after_secs();
    let now_secs = unix_secs(now);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, number(retry_after));
    headers.insert(LIMIT_HEADER, number(u64::from(decision.limit)));
    headers.insert(REMAINING_HEADER, number(0));
    headers.insert(RESET_HEADER, number(now_secs + retry_after));
    Bytes::from(too_many_body(retry_after))
}

/// Whole seconds since the unix epoch (0 before it).
pub fn unix_secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The 429 of SPEC: `Retry-After`, `X-RateLimit-Limit`, `X-RateLimit-Remaining: 0`,
/// `X-RateLimit-Reset` and the JSON body.
pub fn too_many_requests(decision: &Decision, now: SystemTime) -> HttpResponse {
    let mut headers = HeaderMap::with_capacity(16);
    let body = refusal_parts(decision, now, &mut headers);
    let mut res = HttpResponse::with_body(StatusCode::TOO_MANY_REQUESTS, body);
    *res.headers_mut() = headers;
    res.map_into_boxed_body()
}

/// Longest token subject accepted in an admin path (JWT subjects Amber issues are shorter).
const MAX_PATH_SUBJECT: usize = 64;

/// Registers the admin endpoints of this module (under `/api`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // One resource per kind, so the document can say what each key is (an address or a
    // token subject); another kind is a 404.
    cfg.service(
        web::resource("/admin/rate-limits/ip/{key:.+}")
            .route(web::get().to(inspect_ip))
            .route(web::delete().to(reset_ip)),
    )
    .service(
        web::resource("/admin/rate-limits/user/{key:.+}")
            .route(web::get().to(inspect_user))
            .route(web::delete().to(reset_user)),
    );
}

/// The client an admin path names (`{kind}/{key}`), and the limiters.
fn target(
    req: &HttpRequest,
    kind: KeyKind,
    key: &str,
) -> Result<(ClientKey, web::Data<RateLimits>), AppError> {
    if kind == KeyKind::User && key.chars().count() > MAX_PATH_SUBJECT {
        return Err(AppError::bad_request(
            "invalid_path",
            format!("a user key in a path is at most {MAX_PATH_SUBJECT} characters"),
        ));
    }
    let key = ClientKey::parse(kind, key)
        .map_err(|e| AppError::bad_request("invalid_path", e.to_string()))?;
    let limits = req
        .app_data::<web::Data<RateLimits>>()
        .cloned()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("rate limits missing from app data")))?;
    Ok((key, limits))
}

fn shared_json<T>(
    shared: &Shared<T>,
    done: impl FnOnce(&T) -> serde_json::Value,
) -> serde_json::Value {
    match shared {
        Shared::Disabled => json!({"status": "disabled"}),
        Shared::Unavailable(why) => json!({"status": "unavailable", "message": why}),
        Shared::Done(value) => done(value),
    }
}

/// `GET /api/admin/rate-limits/{ip|user}/{key}`: this instance's bucket and the shared
/// one, spending nothing.
#[utoipa::path(get, path = "/api/admin/rate-limits/ip/{key}", operation_id = "inspectIpRateLimit", tag = "admin", security(("bearer" = [])), params(("key" = String, Path, description = "Client address (IPv4, or IPv6: any address of its /64)", format = "ip")), responses((status = 200, description = "This instance's bucket and the shared one in Redis, spending nothing", body = Object), (status = 400, description = "Malformed key", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn inspect_ip(
    admin: Admin,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    inspect(admin, req, KeyKind::Ip, &key).await
}

#[utoipa::path(get, path = "/api/admin/rate-limits/user/{key}", operation_id = "inspectUserRateLimit", tag = "admin", security(("bearer" = [])), params(("key" = String, Path, description = "Token subject: 1 to 64 characters, no control characters", pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$")), responses((status = 200, description = "This instance's bucket and the shared one in Redis, spending nothing", body = Object), (status = 400, description = "Malformed key", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn inspect_user(
    admin: Admin,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    inspect(admin, req, KeyKind::User, &key).await
}

async fn inspect(
    _admin: Admin,
    req: HttpRequest,
    kind: KeyKind,
    key: &str,
) -> Result<HttpResponse, AppError> {
    let (key, limits) = target(&req, kind, key)?;
    let view = limits.inspect(&key).await;
    let limit = view.local.limit;
    let redis = shared_json(&view.shared, |shared| match shared {
        Some(bucket) => json!({
            "status": "ok",
            "remaining": bucket.remaining,
            "resetSeconds": bucket.full_after.as_secs_f64().ceil() as u64,
        }),
        None => json!({"status": "ok", "remaining": limit, "resetSeconds": 0}),
    });
    Ok(HttpResponse::Ok().json(json!({
        "key": view.key.to_string(),
        "redisKey": view.key.redis_key(),
        "enabled": limits.enabled(),
        "limit": limit,
        "local": {
            "tracked": view.local.tracked,
            "remaining": view.local.remaining,
            "resetSeconds": view.local.full_after.as_secs_f64().ceil() as u64,
        },
        "redis": redis,
    })))
}

/// `DELETE /api/admin/rate-limits/{ip|user}/{key}`: clears this instance's bucket and the
/// shared one in Redis. 200 even when Redis did not answer; `redis.status` says so.
#[utoipa::path(delete, path = "/api/admin/rate-limits/ip/{key}", operation_id = "resetIpRateLimit", tag = "admin", security(("bearer" = [])), params(("key" = String, Path, description = "Client address (IPv4, or IPv6: any address of its /64)", format = "ip")), responses((status = 200, description = "Local and shared bucket cleared; `redis.status` says whether Redis answered", body = Object), (status = 400, description = "Malformed key", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn reset_ip(
    admin: Admin,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    reset(admin, req, KeyKind::Ip, &key).await
}

#[utoipa::path(delete, path = "/api/admin/rate-limits/user/{key}", operation_id = "resetUserRateLimit", tag = "admin", security(("bearer" = [])), params(("key" = String, Path, description = "Token subject: 1 to 64 characters, no control characters", pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$")), responses((status = 200, description = "Local and shared bucket cleared; `redis.status` says whether Redis answered", body = Object), (status = 400, description = "Malformed key", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn reset_user(
    admin: Admin,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    reset(admin, req, KeyKind::User, &key).await
}

async fn reset(
    admin: Admin,
    req: HttpRequest,
    kind: KeyKind,
    key: &str,
) -> Result<HttpResponse, AppError> {
    let (key, limits) = target(&req, kind, key)?;
    let outcome = limits.reset(&key).await;
    tracing::info!(admin = %admin.0.sub, key = %outcome.key, "rate-limit bucket reset");
    let redis = shared_json(
        &outcome.shared,
        |deleted| json!({"status": "ok", "deleted": deleted}),
    );
    Ok(HttpResponse::Ok().json(json!({
        "key": outcome.key.to_string(),
        "reset": true,
        "local": outcome.local,
        "redis": redis,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_carries_every_spec_header_and_the_body() {
        let decision = Decision::refuse(10, Duration::from_millis(5500));
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let res = too_many_requests(&decision, now);
        assert_eq!(res.status(), 429);
        let h = res.headers();
        assert_eq!(h.get(header::RETRY_AFTER).unwrap(), "6");
        assert_eq!(h.get(LIMIT_HEADER).unwrap(), "10");
        assert_eq!(h.get(REMAINING_HEADER).unwrap(), "0");
        assert_eq!(h.get(RESET_HEADER).unwrap(), "1006");
    }

    #[test]
    fn the_written_body_is_what_serde_writes() {
        for retry_after in [0, 1, 6, 60, u64::MAX] {
            let serde = serde_json::to_vec(&TooManyBody {
                error: "rate_limit_exceeded",
                message: TOO_MANY_MESSAGE,
                retry_after,
            })
            .unwrap();
            assert_eq!(too_many_body(retry_after), serde, "{retry_after}");
        }
    }

    #[test]
    fn numbers_are_written_as_the_formatter_writes_them() {
        for n in [0, 1, 2, 9, 10, 59, 60, 999, 1_000, 1_764_806_400, u64::MAX] {
            assert_eq!(number(n), HeaderValue::from(n), "{n}");
        }
    }

    fn settings(per_minute: u32, burst: u32, enabled: bool) -> crate::config::RateLimitSettings {
        crate::config::RateLimitSettings {
            enabled,
            requests_per_minute: per_minute,
            burst_size: burst,
            window_seconds: 60,
            user_requests_per_minute: per_minute,
            user_burst_size: burst,
            trusted_proxies: Vec::new(),
        }
    }

    async fn remaining_after_calls(enabled: bool, calls: usize) -> Vec<(u16, Option<String>)> {
        use actix_web::{test, App};
        let limits = web::Data::new(RateLimits::new(&settings(10, 10, enabled)).unwrap());
        let app = test::init_service(
            App::new().app_data(limits).service(
                web::scope("/scoped")
                    .wrap(RateLimited::cost(4))
                    .route("/a", web::get().to(HttpResponse::Ok))
                    .route("/b", web::get().to(HttpResponse::Ok)),
            ),
        )
        .await;
        let mut seen = Vec::new();
        for n in 0..calls {
            let path = if n % 2 == 0 { "/scoped/a" } else { "/scoped/b" };
            let req = test::TestRequest::get()
                .uri(path)
                .peer_addr("203.0.113.7:4711".parse().unwrap())
                .to_request();
            let res = test::call_service(&app, req).await;
            let remaining = res
                .headers()
                .get(REMAINING_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            seen.push((res.status().as_u16(), remaining));
        }
        seen
    }

    #[actix_web::test]
    async fn a_scope_wears_the_limiter_with_a_cost_shared_by_its_routes() {
        let seen = remaining_after_calls(true, 3).await;
        assert_eq!(
            seen,
            [
                (200, Some("6".to_string())),
                (200, Some("2".to_string())),
                (429, Some("0".to_string())),
            ]
        );
    }

    #[actix_web::test]
    async fn switched_off_it_adds_nothing() {
        let seen = remaining_after_calls(false, 4).await;
        assert!(seen.iter().all(|s| *s == (200, None)), "{seen:?}");
    }

    #[test]
    fn a_zero_cost_counts_as_one() {
        assert_eq!(RateLimited::cost(0), RateLimited::default());
        assert_ne!(RateLimited::cost(2), RateLimited::default());
    }

    #[test]
    fn the_early_routes_are_static_gets_with_a_fixed_cost() {
        for route in EARLY_ROUTES {
            assert!(route.path.starts_with('/'), "{route:?}");
            assert!(
                !route.path.contains(['{', '}', '*', '%']),
                "a static path: {route:?}"
            );
            assert!(
                matches!(route.limit.policy, Policy::Api { .. }),
                "a fixed cost: {route:?}"
            );
            assert_eq!(route.cors, route.path.starts_with("/api/"), "{route:?}");
            assert_eq!(
                early_route(&Method::GET, route.path).map(|r| r.path),
                Some(route.path)
            );
            assert!(early_route(&Method::HEAD, route.path).is_none());
            assert!(early_route(&Method::POST, route.path).is_none());
        }
        assert!(early_route(&Method::GET, "/api/feed/").is_none());
        assert!(early_route(&Method::GET, "/feeds/all.rss").is_none());
    }
}
