//! Cross-cutting middleware: request ids, security headers, access logs, request
//! metrics, CORS, the rule that every error response has a JSON body, and HTTP's
//! method rules: `HEAD` is answered wherever `GET` is, a 405 carries a true `Allow`,
//! and `OPTIONS` lists a path's methods.

use std::rc::Rc;
use std::time::{Instant, SystemTime};

use actix_cors::Cors;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::{web, HttpResponse};
use futures_util::future::{Either, LocalBoxFuture};
use futures_util::FutureExt;

use crate::config::{CorsOrigins, Settings};
use crate::error::ErrorBody;
use crate::http::conn::guard::ConnHandle;
use crate::http::rate_limit;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::rate_limit::limiter::Decision;

/// The Content-Security-Policy of SPEC, on every response.
pub const CSP: &str = "default-src 'self'; script-src 'self' https://platform.twitter.com; frame-src https://platform.twitter.com; img-src 'self' data: https://pbs.twimg.com";

/// The security headers of SPEC, on every response (also on those `http::conn` writes).
pub const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

fn request_id_from(req: &ServiceRequest) -> String {
    // By the constant name: a `&str` name is parsed into a `HeaderName` on every lookup.
    request_id_or_new(req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()))
}

/// The client's request id when it is short and plain (so it is safe to echo and to
/// log), else a new (version 4) UUID. Its random bits come from the thread's generator,
/// not `Uuid::new_v4`'s `getrandom` call: a system call on every request was 3–4 % of
/// the always-refused 429 path (BENCHMARKS.md, issue 14).
pub fn request_id_or_new(sent: Option<&str>) -> String {
    sent.filter(|v| {
        !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    })
    .map(str::to_string)
    .unwrap_or_else(|| {
        // Encoded straight into a buffer and copied (`to_string`, on the uuid or on
        // the encoded `&mut str`, goes through the formatter: ~580 instructions).
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        String::from(
            &*uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .hyphenated()
                .encode_lower(&mut buf),
        )
    })
}

/// The snake_case error code of a status that carries no code of its own.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        429 => "rate_limit_exceeded",
        431 => "headers_too_large",
        503 => "service_unavailable",
        s if s >= 500 => "internal_error",
        _ => "error",
    }
}

/// Wraps every request: assigns the request id, times it, adds the security headers,
/// gives bodiless error responses a JSON body, counts it and writes one log line.
///
/// `HEAD` is routed as `GET` (uptime monitors use it): the handler runs as for `GET`,
/// and actix-http's encoder, which saw the request as `HEAD`, sends the same head
/// (status, headers, `Content-Length`) without the body.
pub async fn around(
    mut req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error> {
    let started = Instant::now();
    if let Some(refused) = rate_limit::charge_early(&req).await {
        return Ok(refuse_early(req, &refused, started));
    }
    let request_id = request_id_from(&req);
    let method = req.method().clone();
    // The path outlives the request, which the inner services take: a clone of the
    // `Uri` shares its buffer (a copy into a `String` was an allocation a request).
    let uri = req.uri().clone();
    let path = uri.path();
    let conn = req.conn_data::<ConnHandle>().cloned();
    if method == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        // An inner middleware (CORS, for one) failed: answer with our JSON body and
        // headers through an `InternalError`, which the server renders as given.
        Err(err) => {
            let status = err.as_response_error().status_code();
            let mut resp = HttpResponse::build(status).json(ErrorBody {
                error: code_for(status),
                message: err.to_string(),
            });
            decorate(resp.headers_mut(), &request_id);
            log_request(
                state.as_ref().map(|s| s.metrics.as_ref()),
                method.as_str(),
                path,
                status.as_u16(),
                started,
                &request_id,
            );
            return Err(
                actix_web::error::InternalError::from_response(err.to_string(), resp).into(),
            );
        }
    };
    let mut res = res;
    if res.status() == StatusCode::METHOD_NOT_ALLOWED {
        normalize_allow(res.headers_mut());
        if method == Method::OPTIONS {
            // `OPTIONS` on a known path: its methods, not an error.
            let (http_req, old) = res.into_parts();
            let mut ok = HttpResponse::NoContent();
            if let Some(allow) = old.headers().get(header::ALLOW) {
                ok.insert_header((header::ALLOW, allow.clone()));
            }
            res = ServiceResponse::new(http_req, ok.finish());
        }
    }
    let status = res.status();
    let mut res = if status.as_u16() >= 400 && !is_json(res.headers()) {
        let (http_req, old) = res.into_parts();
        let message = match status.canonical_reason() {
            Some(reason) if status == StatusCode::METHOD_NOT_ALLOWED => {
                format!("{reason}: {method} {path}")
            }
            Some(reason) => reason.to_string(),
            None => "error".to_string(),
        };
        let mut fresh = HttpResponse::build(status);
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                fresh.insert_header((name.clone(), value.clone()));
            }
        }
        let body = fresh.json(ErrorBody {
            error: code_for(status),
            message,
        });
        ServiceResponse::new(http_req, body).map_into_right_body()
    } else {
        res.map_into_left_body()
    };
    decorate(res.headers_mut(), &request_id);
    if conn.as_ref().is_some_and(ConnHandle::health_only) {
        // A health-only slot (the server is near its connection cap) serves one probe.
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    if conn.as_ref().is_some_and(ConnHandle::is_cut) {
        // The connection layer answered (or dropped) this request already: this answer
        // is never sent, so it is neither counted nor logged as one.
        tracing::debug!(method = %method, path, request_id, "answer discarded: connection already closed");
        return Ok(res);
    }
    log_request(
        state.as_ref().map(|s| s.metrics.as_ref()),
        method.as_str(),
        path,
        res.status().as_u16(),
        started,
        &request_id,
    );
    Ok(res)
}

/// What actix-cors adds to the answer of a request without `Origin` (not a CORS request):
/// the exposed headers and `Vary`.
const EXPOSED_VALUE: &str =
    "x-request-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, retry-after";
const CORS_VARY: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The 429 of a request refused before routing (here or in `http::conn`), with its
/// request id: the route's `RateLimited` answer with what this middleware adds to it,
/// and, for a route of the `/api` scope (`cors`), what its CORS adds to a request
/// without `Origin`.
///
/// Everything but the request id is the same for every refusal of one limit in one
/// second (`Retry-After` and `X-RateLimit-Reset` are whole seconds), so each worker keeps
/// the last one it built, per `cors`, and clones its header map (a clone is cheaper than
/// inserting its thirteen headers one by one into the response's pooled map: BENCHMARKS.md,
/// issue 14, hR and hT); the body is shared, not rebuilt.
pub fn early_refusal(
    decision: &Decision,
    sent_request_id: Option<&str>,
    cors: bool,
) -> (HttpResponse, String) {
    let request_id = request_id_or_new(sent_request_id);
    let (headers, body) = REFUSALS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let cache = cache[usize::from(!cors)].fill(decision, SystemTime::now(), cors);
        (cache.headers.clone(), cache.body.clone())
    });
    let mut resp = HttpResponse::with_body(StatusCode::TOO_MANY_REQUESTS, body);
    *resp.headers_mut() = headers;
    // The id is plain ASCII by construction (`request_id_or_new`); the check stays.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    (resp.map_into_boxed_body(), request_id)
}

/// [`early_refusal`] as the bytes actix-http would write for it, appended to `out`, for
/// the connection layer to write itself (`http::conn::guard`): the status line, the
/// `Content-Length` actix-http's encoder adds, the same headers, its `Date`, the body.
/// Only for an HTTP/1.1 request that does not ask to close (no `Connection` header):
/// actix-http then adds no `Connection` header either. Returns the request id.
pub fn early_refusal_bytes(
    decision: &Decision,
    sent_request_id: Option<&str>,
    cors: bool,
    out: &mut Vec<u8>,
) -> String {
    let request_id = request_id_or_new(sent_request_id);
    REFUSALS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let cache = cache[usize::from(!cors)].fill(decision, SystemTime::now(), cors);
        out.reserve(cache.raw_head.len() + request_id.len() + 20 + cache.body.len());
        out.extend_from_slice(&cache.raw_head);
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(request_id.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&cache.body);
    });
    request_id
}

/// `X-Request-Id`.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

thread_local! {
    /// The last early refusal each worker built: of an `/api` route, of another.
    static REFUSALS: std::cell::RefCell<[RefusalCache; 2]> =
        std::cell::RefCell::new([RefusalCache::default(), RefusalCache::default()]);
}

/// One refusal's headers (all but the request id), body and raw head, and what they
/// were built for.
#[derive(Default)]
struct RefusalCache {
    built: Option<RefusalKey>,
    headers: header::HeaderMap,
    body: actix_web::web::Bytes,
    /// The response as actix-http writes it, up to the request id: status line,
    /// `content-length`, every header of `headers`, `date` ([`early_refusal_bytes`]).
    raw_head: Vec<u8>,
}

/// What a refusal's headers and body depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RefusalKey {
    limit: u32,
    retry_after: u64,
    now_secs: u64,
}

impl RefusalCache {
    /// The headers, body and raw head of a refusal of `decision` at `now`, built only
    /// when the key changed (at most once a second).
    fn fill(&mut self, decision: &Decision, now: SystemTime, cors: bool) -> &RefusalCache {
        let key = RefusalKey {
            limit: decision.limit,
            retry_after: decision.retry_after_secs(),
            now_secs: rate_limit::unix_secs(now),
        };
        if self.built != Some(key) {
            let mut headers = header::HeaderMap::with_capacity(16);
            if cors {
                plain_cors_headers(&mut headers);
            }
            for (name, value) in SECURITY_HEADER_VALUES {
                headers.insert(name, value);
            }
            self.body = rate_limit::refusal_parts(decision, now, &mut headers);
            let mut raw = format!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-length: {}\r\n",
                self.body.len()
            )
            .into_bytes();
            for (name, value) in headers.iter() {
                raw.extend_from_slice(name.as_str().as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(value.as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"date: ");
            raw.extend_from_slice(header::HttpDate::from(now).to_string().as_bytes());
            raw.extend_from_slice(b"\r\n");
            self.raw_head = raw;
            self.headers = headers;
            self.built = Some(key);
        }
        self
    }
}

/// The answer to a request [`rate_limit::charge_early`] refused before routing: the one
/// the route's `RateLimited`, the `/api` scope's CORS and this middleware give it, every
/// header and the body alike (tests compare the two), counted and logged the same way.
fn refuse_early(
    req: ServiceRequest,
    refused: &rate_limit::RefusedEarly,
    started: Instant,
) -> ServiceResponse<EitherBody<BoxBody>> {
    let state = req.app_data::<web::Data<AppState>>();
    let resp = answer_refused_early(
        req.headers(),
        req.conn_data::<ConnHandle>(),
        req.method().as_str(),
        req.path(),
        refused,
        started,
        state.map(|s| s.metrics.as_ref()),
    );
    req.into_response(resp).map_into_left_body()
}

/// An early refusal's answer, for this middleware and for the connection layer's
/// `EarlyService` alike: [`early_refusal`], closed after it on a health-only connection,
/// logged and counted like any answer (not when the connection was already cut).
pub fn answer_refused_early(
    headers: &header::HeaderMap,
    conn: Option<&ConnHandle>,
    method: &str,
    path: &str,
    refused: &rate_limit::RefusedEarly,
    started: Instant,
    metrics: Option<&Metrics>,
) -> HttpResponse {
    let sent_id = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok());
    let (mut resp, request_id) = early_refusal(&refused.decision, sent_id, refused.route.cors);
    if conn.is_some_and(ConnHandle::health_only) {
        resp.head_mut().set_connection_type(ConnectionType::Close);
    }
    if conn.is_some_and(ConnHandle::is_cut) {
        tracing::debug!(
            method,
            path,
            request_id,
            "answer discarded: connection already closed"
        );
    } else {
        log_request(
            metrics,
            method,
            path,
            resp.status().as_u16(),
            started,
            &request_id,
        );
    }
    resp
}

/// Rewrites a 405's `Allow` (actix lists the methods of the matched resource's routes)
/// into the methods really answered: each once, `HEAD` wherever `GET` is, and `OPTIONS`.
fn normalize_allow(headers: &mut header::HeaderMap) {
    let mut methods: Vec<String> = Vec::new();
    for value in headers.get_all(header::ALLOW) {
        for m in value.to_str().unwrap_or("").split(',') {
            let m = m.trim().to_ascii_uppercase();
            if !m.is_empty() && !methods.contains(&m) {
                methods.push(m);
            }
        }
    }
    if let Some(get) = methods.iter().position(|m| m == "GET") {
        if !methods.iter().any(|m| m == "HEAD") {
            methods.insert(get + 1, "HEAD".to_string());
        }
    }
    if !methods.iter().any(|m| m == "OPTIONS") {
        methods.push("OPTIONS".to_string());
    }
    if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
        headers.insert(header::ALLOW, v);
    }
}

/// [`SECURITY_HEADERS`] as header values, checked once at compile time (`from_static`
/// at run time re-checks every byte of the CSP on each response).
const SECURITY_HEADER_VALUES: [(HeaderName, HeaderValue); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
];

/// Adds the request id and the security headers.
fn decorate(headers: &mut header::HeaderMap, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, v);
    }
    for (name, value) in SECURITY_HEADER_VALUES {
        headers.insert(name, value);
    }
}

/// Counts the request and writes its log line (never headers or bodies). Also used for
/// the answers `http::conn` writes itself, so every answer is counted and logged alike.
pub fn log_request(
    metrics: Option<&Metrics>,
    method: &str,
    path: &str,
    status: u16,
    started: Instant,
    request_id: &str,
) {
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.observe_request(status, elapsed);
    }
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    // The original system's field names, beside ours: `event` and `durationMs`.
    let event = "request";
    #[allow(non_snake_case)]
    let durationMs = duration_ms;
    if status == 503 {
        // An expected state (X not configured, breaker open, shutting down, ...), named
        // by the answer's error code; a fault of ours is a 500 and logged as an error.
        tracing::warn!(
            event,
            method,
            path,
            status,
            duration_ms,
            durationMs,
            request_id,
            "request"
        );
    } else if status >= 500 {
        tracing::error!(
            event,
            method,
            path,
            status,
            duration_ms,
            durationMs,
            request_id,
            "request"
        );
    } else if (method == "GET" || method == "HEAD")
        && (path == "/livez" || path == "/readyz" || path == "/metrics")
    {
        tracing::debug!(
            event,
            method,
            path,
            status,
            duration_ms,
            durationMs,
            request_id,
            "request"
        );
    } else {
        tracing::info!(
            event,
            method,
            path,
            status,
            duration_ms,
            durationMs,
            request_id,
            "request"
        );
    }
}

fn is_json(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/json") || v.starts_with("application/problem+json"))
        .unwrap_or(false)
}

/// The response headers `/api` exposes to cross-origin scripts (CORS).
pub const EXPOSED_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-ratelimit-limit"),
    HeaderName::from_static("x-ratelimit-remaining"),
    HeaderName::from_static("x-ratelimit-reset"),
    header::RETRY_AFTER,
];

/// CORS for `/api/*` from `CORS_ALLOWED_ORIGINS`.
pub fn cors(settings: &Settings) -> ApiCors {
    ApiCors {
        cors: cors_rules(&settings.cors_allowed_origins),
    }
}

/// The actix-cors rules of `/api/*`.
fn cors_rules(origins: &CorsOrigins) -> Cors {
    let cors = Cors::default()
        .allowed_methods(vec!["GET", "POST", "PUT", "DELETE"])
        .allowed_headers(vec![header::CONTENT_TYPE, header::AUTHORIZATION])
        .expose_headers(EXPOSED_HEADERS)
        .max_age(3600);
    match origins {
        CorsOrigins::Any => cors.allow_any_origin(),
        CorsOrigins::List(list) => list.iter().fold(cors, |c, origin| c.allowed_origin(origin)),
    }
}

/// CORS for `/api/*`: actix-cors ([`cors_rules`]) for every request with an `Origin`
/// and every `OPTIONS` (a preflight), and for the rest, which are not CORS requests,
/// exactly what actix-cors does to them without its per-request work (~2k instructions a
/// feed page, BENCHMARKS.md issue 14): the inner service's answer, or the error it
/// fails with, gets [`plain_cors_headers`]. A unit test holds the two paths together.
pub struct ApiCors {
    cors: Cors,
}

impl<S, B> Transform<S, ServiceRequest> for ApiCors
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ApiCorsService<S, actix_cors::CorsMiddleware<Rc<S>>>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let service = Rc::new(service);
        let cors = self.cors.new_transform(Rc::clone(&service));
        Box::pin(async move {
            Ok(ApiCorsService {
                cors: cors.await?,
                service,
            })
        })
    }
}

/// The service [`ApiCors`] puts around `/api/*`: `cors` is actix-cors around `service`.
pub struct ApiCorsService<S, C> {
    cors: C,
    service: Rc<S>,
}

type PlainCors<S, B> = futures_util::future::Map<
    <S as Service<ServiceRequest>>::Future,
    fn(
        Result<ServiceResponse<B>, actix_web::Error>,
    ) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error>,
>;

impl<S, B, C> Service<ServiceRequest> for ApiCorsService<S, C>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    C: Service<ServiceRequest, Response = ServiceResponse<EitherBody<B>>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Either<C::Future, PlainCors<S, B>>;

    actix_web::dev::forward_ready!(cors);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if req.method() == Method::OPTIONS || req.headers().contains_key(header::ORIGIN) {
            return Either::Left(self.cors.call(req));
        }
        Either::Right(
            self.service
                .call(req)
                .map(not_cross_origin::<B> as fn(_) -> _),
        )
    }
}

/// What actix-cors does to the outcome of a request without `Origin` (not `OPTIONS`):
/// its headers on the answer, or on the error's answer when it is rendered.
fn not_cross_origin<B>(
    outcome: Result<ServiceResponse<B>, actix_web::Error>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    match outcome {
        Ok(mut res) => {
            plain_cors_headers(res.headers_mut());
            Ok(res.map_into_left_body())
        }
        Err(mut err) => {
            err.add_response_mapper(|mut res| {
                plain_cors_headers(res.headers_mut());
                res
            });
            Err(err)
        }
    }
}

/// The headers actix-cors 0.7 (`augment_response_headers`, with [`cors_rules`]' settings:
/// exposed headers, no credentials, `Vary` on) adds to the answer of a request without
/// `Origin`: `Access-Control-Expose-Headers`, and `Vary` (appended to one the answer has).
/// actix-cors joins the exposed names in a `HashSet`'s order, which differs from process
/// to process; this is one fixed order of them. Early refusals of `/api` routes send
/// these same headers (`RefusalCache::fill`).
fn plain_cors_headers(headers: &mut header::HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_VALUE),
    );
    let vary = match headers.get(header::VARY) {
        Some(sent) => {
            let mut joined = Vec::with_capacity(sent.len() + 2 + CORS_VARY.len());
            joined.extend_from_slice(sent.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(CORS_VARY.as_bytes());
            // A header value and ASCII: always a header value.
            HeaderValue::from_bytes(&joined).ok()
        }
        None => Some(HeaderValue::from_static(CORS_VARY)),
    };
    if let Some(vary) = vary {
        headers.insert(header::VARY, vary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precomputed_header_values_say_what_their_sources_say() {
        for ((name, text), (value_name, value)) in
            SECURITY_HEADERS.iter().zip(SECURITY_HEADER_VALUES)
        {
            assert_eq!(*name, value_name);
            assert_eq!(value.to_str().unwrap(), *text);
        }
        let names = EXPOSED_HEADERS;
        let exposed: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
        assert_eq!(EXPOSED_VALUE, exposed.join(", "));
    }

    #[test]
    fn an_early_refusal_carries_the_spec_and_cors_headers() {
        let decision = Decision::refuse(10, std::time::Duration::from_millis(5500));
        let (resp, id) = early_refusal(&decision, Some("abc-1"), true);
        assert_eq!(id, "abc-1");
        assert_eq!(resp.status(), 429);
        let h = resp.headers();
        assert_eq!(h.get("x-request-id").unwrap(), "abc-1");
        assert_eq!(h.get(header::RETRY_AFTER).unwrap(), "6");
        assert_eq!(h.get(header::VARY).unwrap(), CORS_VARY);
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), "application/json");
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(h.get(name).unwrap(), value);
        }
        let (plain, _) = early_refusal(&decision, Some("abc-2"), false);
        assert!(plain.headers().get(header::VARY).is_none());
        assert!(plain
            .headers()
            .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
            .is_none());
        assert_eq!(plain.headers().get(header::RETRY_AFTER).unwrap(), "6");
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(plain.headers().get(name).unwrap(), value);
        }
        let (_, fresh) = early_refusal(&decision, Some("not ok"), true);
        assert_eq!(fresh.len(), 36, "a new UUID: {fresh}");
    }

    /// A middleware that fails, so the error path of CORS is exercised.
    async fn fail(
        _req: ServiceRequest,
        _next: actix_web::middleware::Next<impl MessageBody>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        Err(actix_web::error::ErrorConflict("failed"))
    }

    /// Status, headers (the exposed and allowed names as sorted lists: actix-cors joins
    /// them in a `HashSet`'s order, different in each instance) and body of each request,
    /// answered through `/api`'s CORS.
    type Seen = Vec<(u16, Vec<(String, String)>, web::Bytes)>;

    macro_rules! answers_through {
        ($wrap:expr, $requests:expr) => {{
            use actix_web::test;
            let app =
                test::init_service(
                    actix_web::App::new().service(
                        web::scope("/api")
                            .wrap($wrap)
                            .service(web::resource("/plain").route(
                                web::get().to(|| async { HttpResponse::Ok().body("plain") }),
                            ))
                            .service(web::resource("/vary").route(web::get().to(|| async {
                                HttpResponse::Ok()
                                    .insert_header((header::VARY, "Accept-Encoding"))
                                    .body("vary")
                            })))
                            .service(
                                web::resource("/fails")
                                    .wrap(actix_web::middleware::from_fn(fail))
                                    .route(web::get().to(|| async { HttpResponse::Ok().finish() })),
                            ),
                    ),
                )
                .await;
            let mut seen: Seen = Vec::new();
            for req in $requests {
                let resp = match app.call(req).await {
                    Ok(res) => res.into_parts().1.map_into_boxed_body(),
                    Err(err) => err.error_response(),
                };
                let mut headers: Vec<(String, String)> = resp
                    .headers()
                    .iter()
                    .map(|(name, value)| {
                        let value = value.to_str().unwrap().to_string();
                        let value = if name == header::ACCESS_CONTROL_EXPOSE_HEADERS
                            || name == header::ACCESS_CONTROL_ALLOW_HEADERS
                            || name == header::ACCESS_CONTROL_ALLOW_METHODS
                        {
                            let mut names: Vec<&str> = value.split(", ").collect();
                            names.sort_unstable();
                            names.join(", ")
                        } else {
                            value
                        };
                        (name.to_string(), value)
                    })
                    .collect();
                headers.sort();
                let status = resp.status().as_u16();
                let body = actix_web::body::to_bytes(resp.into_body()).await.unwrap();
                seen.push((status, headers, body));
            }
            seen
        }};
    }

    fn requests() -> Vec<actix_http::Request> {
        use actix_web::test::TestRequest;
        let mut requests = Vec::new();
        for origin in [None, Some("http://a.example"), Some("http://b.example")] {
            for (method, path) in [
                (Method::GET, "/api/plain"),
                (Method::GET, "/api/vary"),
                (Method::GET, "/api/fails"),
                (Method::POST, "/api/plain"),
                (Method::GET, "/api/missing"),
                (Method::OPTIONS, "/api/plain"),
            ] {
                let mut req = TestRequest::default().method(method.clone()).uri(path);
                if let Some(origin) = origin {
                    req = req.insert_header((header::ORIGIN, origin));
                }
                requests.push(req.to_request());
                if method == Method::OPTIONS {
                    let mut req = TestRequest::default()
                        .method(method)
                        .uri(path)
                        .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "GET"));
                    if let Some(origin) = origin {
                        req = req.insert_header((header::ORIGIN, origin));
                    }
                    requests.push(req.to_request());
                }
            }
        }
        requests
    }

    #[actix_web::test]
    async fn the_api_cors_answers_every_request_as_actix_cors_does() {
        for origins in [
            CorsOrigins::Any,
            CorsOrigins::List(vec!["http://a.example".to_string()]),
        ] {
            let want = answers_through!(cors_rules(&origins), requests());
            let got = answers_through!(
                ApiCors {
                    cors: cors_rules(&origins)
                },
                requests()
            );
            assert_eq!(got.len(), want.len());
            for (got, want) in got.iter().zip(&want) {
                assert_eq!(got, want, "{origins:?}");
            }
            // Not a CORS request: the exposed headers and `Vary`, joined to the answer's.
            let vary = &got[1].1;
            assert!(vary.contains(&("vary".to_string(), format!("Accept-Encoding, {CORS_VARY}"))));
        }
    }
}
