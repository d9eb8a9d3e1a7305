//! A fake X API v2 server (actix-web on its own thread, bound to `127.0.0.1:0`), written
//! once and shared by the tests, the benches and `amber demo`.
//!
//! It speaks the real wire format for the two endpoints Amber reads: bearer auth (401
//! with X's problem body otherwise), `x-rate-limit-*` headers, `max_results` (5..=100,
//! 400 otherwise), `since_id`, `pagination_token` / `meta.next_token`, `includes.media`,
//! `edit_history_tweet_ids`, a `meta`-only answer when nothing is new, and the `errors`
//! array for unknown or suspended users.
//!
//! Faults are injected at run time, from code through [`FakeX`] or over HTTP so a person
//! running `amber demo` can use curl:
//!
//! ```text
//! POST   /_fake/faults   {"kind":"server_error"|"rate_limit"|"malformed"|"unauthorized"|"slow",
//!                         "count":3 (default 1; 0 = until cleared),
//!                         "reset_in_secs":900 (rate_limit), "delay_ms":2000 (slow)}
//! DELETE /_fake/faults   clear every fault
//! PUT    /_fake/latency  {"ms":5}   latency added to every API call
//! GET    /_fake/stats    calls received, posts served, recent request lines
//! POST   /_fake/users/{username}/posts  {"count":3}  new posts, newest ids
//! POST   /_fake/posts/{id}/edit         {"text":"..."} edit a post (new id, edit chain)
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{TimeZone, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::x_api::dto::{
    ApiError, Attachments, Includes, Media, Meta, PublicMetrics, TimelineResponse, Tweet, User,
    UserResponse,
};

/// X's snowflake epoch, unix milliseconds.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;
/// Generated posts start here (2026-01-01T00:00:00Z) and are one second apart.
const GENERATED_START_MS: i64 = 1_767_225_600_000;
/// X's rate-limit window.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Requests per window the fake advertises (X's app limit for user timelines).
const WINDOW_LIMIT: u64 = 1500;
/// How many request lines `stats` keeps.
const RECENT_REQUESTS: usize = 64;

/// A fault the fake serves instead of a normal answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// HTTP 500 with X's problem body.
    ServerError,
    /// HTTP 429 with `x-rate-limit-remaining: 0` and `x-rate-limit-reset` this far ahead.
    RateLimited { reset_in: Duration },
    /// HTTP 200 with a truncated JSON body.
    Malformed,
    /// HTTP 401, as for a revoked token.
    Unauthorized,
    /// The normal answer, after this delay (to trigger client timeouts).
    Slow { delay: Duration },
}

/// Counters of what the fake received and served.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FakeStats {
    /// Every call to the API endpoints (control endpoints excluded), faulted or not.
    pub api_calls: u64,
    pub user_lookups: u64,
    pub timeline_calls: u64,
    /// Posts returned in `data` over all timeline pages.
    pub posts_served: u64,
    pub faults_served: u64,
    /// The most API calls ever in progress at once.
    pub max_in_flight: u64,
    /// The last request lines (`GET /2/users/...?...`), oldest first.
    pub recent_requests: Vec<String>,
}

/// Deterministic content for the fake: `users` accounts with `posts_per_user` posts each.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeScript {
    pub users: u32,
    pub posts_per_user: u32,
    /// The bearer token the fake accepts.
    pub token: String,
    /// Latency added to every API call.
    pub latency: Duration,
    /// actix-web workers (threads) serving the fake.
    pub workers: usize,
}

impl Default for FakeScript {
    fn default() -> FakeScript {
        FakeScript {
            users: 3,
            posts_per_user: 20,
            token: "fake-bearer-token".to_string(),
            latency: Duration::ZERO,
            workers: 1,
        }
    }
}

/// The username of generated user number `idx` (`leader0000`, `leader0001`, ...).
pub fn username(idx: u32) -> String {
    format!("leader{idx:04}")
}

#[derive(Debug, Clone)]
struct FakeTweet {
    tweet: Tweet,
    media: Vec<Media>,
}

#[derive(Debug)]
struct FakeUser {
    user: User,
    idx: u64,
    suspended: bool,
    /// Posts by id (ids grow with time, as snowflakes do).
    tweets: BTreeMap<u64, FakeTweet>,
}

#[derive(Debug, Clone, Copy)]
struct ArmedFault {
    fault: Fault,
    /// None: until cleared.
    remaining: Option<u32>,
}

#[derive(Debug)]
struct State {
    token: String,
    users: Vec<FakeUser>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    faults: VecDeque<ArmedFault>,
    latency: Duration,
    window_start_ms: i64,
    window_used: u64,
    recent: VecDeque<String>,
}

#[derive(Debug, Default)]
struct Counters {
    api_calls: AtomicU64,
    user_lookups: AtomicU64,
    timeline_calls: AtomicU64,
    posts_served: AtomicU64,
    faults_served: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// Counts an API call as in progress while it lives.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> InFlight<'a> {
        let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    counters: Counters,
}

/// A running fake X API. Stops when dropped.
#[derive(Debug)]
pub struct FakeX {
    base_url: String,
    shared: Arc<Shared>,
    server: ServerHandle,
}

impl Drop for FakeX {
    fn drop(&mut self) {
        // Sends the stop command at once; the server thread then ends by itself.
        drop(self.server.stop(false));
    }
}

fn snowflake(ts_ms: i64, low: u64) -> u64 {
    let since = u64::try_from(ts_ms - SNOWFLAKE_EPOCH_MS).unwrap_or(0);
    (since << 22) | (low & 0x1F_FFFF)
}

fn snowflake_ms(id: u64) -> i64 {
    i64::try_from(id >> 22).unwrap_or(0) + SNOWFLAKE_EPOCH_MS
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const POSITIVE: [&str; 3] = [
    "Proud of our wonderful volunteers, a great day for the city",
    "Thank you all, what a fantastic and happy turnout",
    "Excellent news: the new park opens, I love it",
];
const NEGATIVE: [&str; 2] = [
    "This decision is terrible and the delays are awful",
    "Sad and angry about the failed vote, a bad day",
];
const NEUTRAL: [&str; 3] = [
    "Meeting the transport committee at noon",
    "The budget hearing moved to Thursday",
    "Statement on the harbour report",
];

fn generated_text(user: u64, seq: u64) -> String {
    let pick = (user * 7 + seq * 13) % 8;
    let base = match pick {
        0..=2 => POSITIVE[(pick % 3) as usize],
        3..=4 => NEGATIVE[(pick % 2) as usize],
        _ => NEUTRAL[(pick % 3) as usize],
    };
    format!("{base} (#{seq})")
}

fn make_tweet(user: &User, user_idx: u64, id: u64, seq: u64, history: Vec<String>) -> FakeTweet {
    let mut media = Vec::new();
    if seq.is_multiple_of(3) {
        media.push(Media {
            media_key: format!("3_{id}"),
            kind: "photo".into(),
            url: Some(format!("https://pbs.twimg.com/media/{id}.jpg")),
            preview_image_url: None,
        });
    }
    if seq % 10 == 5 {
        media.push(Media {
            media_key: format!("7_{id}"),
            kind: "video".into(),
            url: None,
            preview_image_url: Some(format!("https://pbs.twimg.com/ext_tw_video_thumb/{id}.jpg")),
        });
    }
    let history = if history.is_empty() {
        vec![id.to_string()]
    } else {
        history
    };
    FakeTweet {
        tweet: Tweet {
            id: id.to_string(),
            text: generated_text(user_idx, seq),
            created_at: Some(rfc3339(snowflake_ms(id))),
            author_id: Some(user.id.clone()),
            lang: Some("en".into()),
            public_metrics: Some(PublicMetrics {
                retweet_count: (seq * 3 + user_idx) % 500,
                reply_count: (seq * 5 + user_idx) % 200,
                like_count: (seq * 37 + user_idx * 11) % 5000,
                quote_count: seq % 17,
                bookmark_count: None,
                impression_count: None,
            }),
            edit_history_tweet_ids: history,
            attachments: (!media.is_empty()).then(|| Attachments {
                media_keys: media.iter().map(|m| m.media_key.clone()).collect(),
            }),
        },
        media,
    }
}

impl State {
    fn generate(script: &FakeScript) -> State {
        let mut state = State {
            token: script.token.clone(),
            users: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            faults: VecDeque::new(),
            latency: script.latency,
            window_start_ms: Utc::now().timestamp_millis(),
            window_used: 0,
            recent: VecDeque::new(),
        };
        for u in 0..script.users {
            state.add_user(&username(u), &format!("Leader {u}"));
        }
        let n_users = i64::from(script.users.max(1));
        for (u_pos, user) in state.users.iter_mut().enumerate() {
            for seq in 0..u64::from(script.posts_per_user) {
                let ts = GENERATED_START_MS + (seq as i64 * n_users + u_pos as i64) * 1000;
                let id = snowflake(ts, user.idx);
                // Every eleventh post was edited once before we first see it: its chain
                // names an earlier id that the timeline no longer shows.
                let history = if seq % 11 == 7 {
                    vec![snowflake(ts - 1, user.idx).to_string(), id.to_string()]
                } else {
                    Vec::new()
                };
                let t = make_tweet(&user.user, user.idx, id, seq, history);
                user.tweets.insert(id, t);
            }
        }
        state
    }

    fn add_user(&mut self, username: &str, name: &str) -> usize {
        if let Some(pos) = self.by_name.get(&username.to_ascii_lowercase()) {
            return *pos;
        }
        let idx = self.users.len() as u64;
        let id = (2_000_000 + idx).to_string();
        let user = User {
            id: id.clone(),
            name: name.to_string(),
            username: username.to_string(),
            profile_image_url: Some(format!(
                "https://pbs.twimg.com/profile_images/{id}/avatar_normal.jpg"
            )),
        };
        let pos = self.users.len();
        self.users.push(FakeUser {
            user,
            idx,
            suspended: false,
            tweets: BTreeMap::new(),
        });
        self.by_name.insert(username.to_ascii_lowercase(), pos);
        self.by_id.insert(id, pos);
        pos
    }

    fn next_id(user: &FakeUser) -> u64 {
        let last_ms = user
            .tweets
            .keys()
            .next_back()
            .map(|id| snowflake_ms(*id))
            .unwrap_or(0);
        let ts = Utc::now().timestamp_millis().max(last_ms + 1);
        snowflake(ts, user.idx)
    }

    fn add_posts(&mut self, pos: usize, count: u32) -> Vec<String> {
        let user = &mut self.users[pos];
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = State::next_id(user);
            let seq = user.tweets.len() as u64;
            let t = make_tweet(&user.user, user.idx, id, seq, Vec::new());
            user.tweets.insert(id, t);
            ids.push(id.to_string());
        }
        ids
    }

    fn edit_post(&mut self, old_id: u64, text: &str) -> Option<String> {
        let user = self
            .users
            .iter_mut()
            .find(|u| u.tweets.contains_key(&old_id))?;
        let mut t = user.tweets.remove(&old_id)?;
        let new_id = State::next_id(user);
        t.tweet.id = new_id.to_string();
        t.tweet.text = text.to_string();
        t.tweet.created_at = Some(rfc3339(snowflake_ms(new_id)));
        t.tweet.edit_history_tweet_ids.push(new_id.to_string());
        user.tweets.insert(new_id, t);
        Some(new_id.to_string())
    }

    /// Takes the next armed fault, if any.
    fn take_fault(&mut self) -> Option<Fault> {
        let armed = self.faults.front_mut()?;
        let fault = armed.fault;
        match &mut armed.remaining {
            None => {}
            Some(n) if *n <= 1 => {
                self.faults.pop_front();
            }
            Some(n) => *n -= 1,
        }
        Some(fault)
    }

    /// Advances the advertised rate-limit window; returns (remaining, reset unix seconds).
    fn window_tick(&mut self) -> (u64, i64) {
        let now = Utc::now().timestamp_millis();
        let window_ms = WINDOW.as_millis() as i64;
        if now - self.window_start_ms >= window_ms {
            self.window_start_ms = now;
            self.window_used = 0;
        }
        self.window_used += 1;
        (
            WINDOW_LIMIT.saturating_sub(self.window_used),
            (self.window_start_ms + window_ms) / 1000,
        )
    }
}

impl FakeX {
    /// Starts a fake with `script`'s generated users and posts on its own thread.
    pub fn start(script: FakeScript) -> std::io::Result<FakeX> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::generate(&script)),
            counters: Counters::default(),
        });
        let data = web::Data::from(shared.clone());
        let workers = script.workers.max(1);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("fake-x-api".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::JsonConfig::default().limit(64 * 1024))
                            .route(
                                "/2/users/by/username/{username}",
                                web::get().to(lookup_user),
                            )
                            .route("/2/users/{id}/tweets", web::get().to(user_timeline))
                            .route("/_fake/faults", web::post().to(post_fault))
                            .route("/_fake/faults", web::delete().to(clear_faults))
                            .route("/_fake/latency", web::put().to(put_latency))
                            .route("/_fake/stats", web::get().to(get_stats))
                            .route("/_fake/users/{username}/posts", web::post().to(post_posts))
                            .route("/_fake/posts/{id}/edit", web::post().to(post_edit))
                    })
                    .workers(workers)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind(("127.0.0.1", 0));
                    let server = match server {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let addr = server.addrs().first().copied();
                    let running = server.run();
                    let _ = tx.send(
                        addr.map(|a| (a, running.handle()))
                            .ok_or_else(|| std::io::Error::other("no bound address")),
                    );
                    let _ = running.await;
                });
            })?;
        let (addr, server) = rx
            .recv()
            .map_err(|_| std::io::Error::other("fake X API thread died"))??;
        Ok(FakeX {
            base_url: format!("http://{addr}/2"),
            shared,
            server,
        })
    }

    /// The base URL to put in `X_API_BASE_URL` (`http://127.0.0.1:PORT/2`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The origin serving the control endpoints (`http://127.0.0.1:PORT`).
    pub fn control_url(&self) -> &str {
        self.base_url.trim_end_matches("/2")
    }

    /// The token the fake accepts.
    pub fn token(&self) -> String {
        self.shared.state.lock().token.clone()
    }

    /// Arms `fault` for the next `count` API calls (`None`: every call until cleared).
    /// Faults queue: a second one applies once the first is used up.
    pub fn inject(&self, fault: Fault, count: Option<u32>) {
        let remaining = match count {
            Some(0) | None => None,
            Some(n) => Some(n),
        };
        self.shared
            .state
            .lock()
            .faults
            .push_back(ArmedFault { fault, remaining });
    }

    /// Removes every armed fault.
    pub fn clear_faults(&self) {
        self.shared.state.lock().faults.clear();
    }

    /// Sets the latency added to every API call.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state.lock().latency = latency;
    }

    /// Accepts only `token` from now on (token rotation).
    pub fn set_token(&self, token: &str) {
        self.shared.state.lock().token = token.to_string();
    }

    /// Adds `count` new posts to `username` (created if unknown); returns their ids.
    pub fn add_posts(&self, username: &str, count: u32) -> Vec<String> {
        let mut state = self.shared.state.lock();
        let pos = state.add_user(username, username);
        state.add_posts(pos, count)
    }

    /// Adds a user with no posts; returns its id.
    pub fn add_user(&self, username: &str, name: &str) -> String {
        let mut state = self.shared.state.lock();
        let pos = state.add_user(username, name);
        state.users[pos].user.id.clone()
    }

    /// Marks a user suspended: lookups and timelines answer with X's `errors` array.
    pub fn suspend(&self, username: &str) {
        let mut state = self.shared.state.lock();
        if let Some(pos) = state.by_name.get(&username.to_ascii_lowercase()).copied() {
            state.users[pos].suspended = true;
        }
    }

    /// Edits a post as X does: the new version gets a new id and the chain of ids.
    pub fn edit_post(&self, id: &str, text: &str) -> Option<String> {
        let id = id.parse().ok()?;
        self.shared.state.lock().edit_post(id, text)
    }

    /// Ids of a user's posts, newest first.
    pub fn post_ids(&self, username: &str) -> Vec<String> {
        let state = self.shared.state.lock();
        state
            .by_name
            .get(&username.to_ascii_lowercase())
            .map(|pos| {
                state.users[*pos]
                    .tweets
                    .keys()
                    .rev()
                    .map(u64::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Counters so far.
    pub fn stats(&self) -> FakeStats {
        stats_of(&self.shared)
    }

    /// API calls received so far.
    pub fn api_calls(&self) -> u64 {
        self.shared.counters.api_calls.load(Ordering::Relaxed)
    }
}

fn stats_of(shared: &Shared) -> FakeStats {
    let c = &shared.counters;
    FakeStats {
        api_calls: c.api_calls.load(Ordering::Relaxed),
        user_lookups: c.user_lookups.load(Ordering::Relaxed),
        timeline_calls: c.timeline_calls.load(Ordering::Relaxed),
        posts_served: c.posts_served.load(Ordering::Relaxed),
        faults_served: c.faults_served.load(Ordering::Relaxed),
        max_in_flight: c.max_in_flight.load(Ordering::Relaxed),
        recent_requests: shared.state.lock().recent.iter().cloned().collect(),
    }
}

fn problem(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status).json(ApiError {
        title: Some(title.to_string()),
        detail: Some(detail.to_string()),
        kind: Some("about:blank".to_string()),
        status: Some(status.as_u16()),
        ..ApiError::default()
    })
}

fn invalid_request(detail: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "errors": [{"message": detail}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request"
    }))
}

/// What every API call goes through before its own logic: counting, latency, auth,
/// faults. `Err` is the answer to send instead.
async fn gate(shared: &Shared, req: &HttpRequest) -> Result<(u64, i64), HttpResponse> {
    shared.counters.api_calls.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::enter(&shared.counters);
    let line = format!(
        "{} {}",
        req.method(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
    );
    let (latency, fault, authorized, window) = {
        let mut state = shared.state.lock();
        state.recent.push_back(line);
        while state.recent.len() > RECENT_REQUESTS {
            state.recent.pop_front();
        }
        let expected = format!("Bearer {}", state.token);
        let authorized = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(expected.as_str());
        let fault = state.take_fault();
        (state.latency, fault, authorized, state.window_tick())
    };
    if !latency.is_zero() {
        actix_rt::time::sleep(latency).await;
    }
    if let Some(fault) = fault {
        shared
            .counters
            .faults_served
            .fetch_add(1, Ordering::Relaxed);
        match fault {
            Fault::ServerError => {
                return Err(problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    "Something went wrong. Please try again later.",
                ))
            }
            Fault::Unauthorized => {
                return Err(problem(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "Unauthorized",
                ))
            }
            Fault::Malformed => {
                return Err(HttpResponse::Ok()
                    .content_type("application/json")
                    .body(r#"{"data":[{"id":"1","text":"trunc"#))
            }
            Fault::RateLimited { reset_in } => {
                let reset = Utc::now().timestamp() + reset_in.as_secs() as i64;
                let resp = problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests",
                    "Too Many Requests",
                );
                return Err(with_window(resp, (0, reset)));
            }
            Fault::Slow { delay } => actix_rt::time::sleep(delay).await,
        }
    }
    if !authorized {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        ));
    }
    Ok(window)
}

fn with_window(mut resp: HttpResponse, (remaining, reset): (u64, i64)) -> HttpResponse {
    let h = resp.headers_mut();
    h.insert(
        "x-rate-limit-limit".parse().expect("static header name"),
        WINDOW_LIMIT.into(),
    );
    h.insert(
        "x-rate-limit-remaining"
            .parse()
            .expect("static header name"),
        remaining.into(),
    );
    h.insert(
        "x-rate-limit-reset".parse().expect("static header name"),
        reset.into(),
    );
    resp
}

fn user_error(value: &str, parameter: &str, suspended: bool) -> ApiError {
    ApiError {
        title: Some(
            if suspended {
                "Forbidden"
            } else {
                "Not Found Error"
            }
            .to_string(),
        ),
        detail: Some(if suspended {
            format!("User has been suspended: [{value}].")
        } else {
            format!("Could not find user with {parameter}: [{value}].")
        }),
        kind: Some("https://api.twitter.com/2/problems/resource-not-found".to_string()),
        resource_type: Some("user".to_string()),
        resource_id: Some(value.to_string()),
        parameter: Some(parameter.to_string()),
        value: Some(json!(value)),
        status: None,
    }
}

async fn lookup_user(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    shared.counters.user_lookups.fetch_add(1, Ordering::Relaxed);
    let username = path.into_inner();
    let state = shared.state.lock();
    let body = match state.by_name.get(&username.to_ascii_lowercase()) {
        Some(pos) if !state.users[*pos].suspended => UserResponse {
            data: Some(state.users[*pos].user.clone()),
            errors: Vec::new(),
        },
        Some(_) => UserResponse {
            data: None,
            errors: vec![user_error(&username, "username", true)],
        },
        None => UserResponse {
            data: None,
            errors: vec![user_error(&username, "username", false)],
        },
    };
    with_window(HttpResponse::Ok().json(body), window)
}

const PAGE_TOKEN_PREFIX: &str = "pt";

fn parse_page_token(token: &str) -> Option<u64> {
    u64::from_str_radix(token.strip_prefix(PAGE_TOKEN_PREFIX)?, 36).ok()
}

fn page_token(until_id: u64) -> String {
    let mut digits = Vec::new();
    let mut n = until_id;
    loop {
        let d = (n % 36) as u32;
        digits.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    format!(
        "{PAGE_TOKEN_PREFIX}{}",
        digits.into_iter().collect::<String>()
    )
}

async fn user_timeline(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    shared
        .counters
        .timeline_calls
        .fetch_add(1, Ordering::Relaxed);
    let max_results = match query.get("max_results").map(|v| v.parse::<u32>()) {
        None => 10,
        Some(Ok(n)) if (5..=100).contains(&n) => n,
        Some(_) => {
            return invalid_request(format!(
                "The `max_results` query parameter value [{}] is not between 5 and 100",
                query.get("max_results").map(String::as_str).unwrap_or("")
            ))
        }
    };
    let since_id = match query.get("since_id").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return invalid_request("The `since_id` query parameter is invalid".into()),
    };
    let until = match query.get("pagination_token").map(|t| parse_page_token(t)) {
        None => u64::MAX,
        Some(Some(n)) => n,
        Some(None) => {
            return invalid_request("The `pagination_token` query parameter is invalid".into())
        }
    };
    let user_id = path.into_inner();
    let state = shared.state.lock();
    let user = match state.by_id.get(&user_id) {
        Some(pos) if !state.users[*pos].suspended => &state.users[*pos],
        other => {
            let body = UserResponse {
                data: None,
                errors: vec![user_error(&user_id, "id", other.is_some())],
            };
            return with_window(HttpResponse::Ok().json(body), window);
        }
    };
    // A since_id at or past the page's end selects nothing (BTreeMap::range would panic).
    let start = since_id.saturating_add(1).min(until);
    let mut selected = user
        .tweets
        .range(start..until)
        .rev()
        .take(max_results as usize + 1)
        .map(|(_, t)| t)
        .collect::<Vec<_>>();
    let more = selected.len() > max_results as usize;
    selected.truncate(max_results as usize);
    let media: Vec<Media> = selected
        .iter()
        .flat_map(|t| t.media.iter().cloned())
        .collect();
    let data: Vec<Tweet> = selected.iter().map(|t| t.tweet.clone()).collect();
    let oldest = selected.last().and_then(|t| t.tweet.id.parse::<u64>().ok());
    let meta = Meta {
        result_count: data.len() as u32,
        newest_id: data.first().map(|t| t.id.clone()),
        oldest_id: data.last().map(|t| t.id.clone()),
        next_token: if more { oldest.map(page_token) } else { None },
        previous_token: None,
    };
    drop(state);
    shared
        .counters
        .posts_served
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    let body = TimelineResponse {
        data,
        includes: (!media.is_empty()).then(|| Includes {
            media,
            users: Vec::new(),
        }),
        meta,
        errors: Vec::new(),
    };
    with_window(HttpResponse::Ok().json(body), window)
}

/// Body of `POST /_fake/faults`.
#[derive(Debug, Deserialize)]
struct FaultRequest {
    kind: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    reset_in_secs: Option<u64>,
    #[serde(default)]
    delay_ms: Option<u64>,
}

async fn post_fault(shared: web::Data<Shared>, body: web::Json<FaultRequest>) -> HttpResponse {
    let fault = match body.kind.as_str() {
        "server_error" | "500" => Fault::ServerError,
        "rate_limit" | "429" => Fault::RateLimited {
            reset_in: Duration::from_secs(body.reset_in_secs.unwrap_or(900)),
        },
        "malformed" => Fault::Malformed,
        "unauthorized" | "401" => Fault::Unauthorized,
        "slow" => Fault::Slow {
            delay: Duration::from_millis(body.delay_ms.unwrap_or(15_000)),
        },
        other => {
            return HttpResponse::BadRequest().json(json!({
                "error": "unknown_fault",
                "message": format!("unknown fault kind {other:?}: use server_error, rate_limit, malformed, unauthorized or slow")
            }))
        }
    };
    let remaining = match body.count {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(1),
    };
    let mut state = shared.state.lock();
    state.faults.push_back(ArmedFault { fault, remaining });
    HttpResponse::Ok().json(
        json!({"armed": format!("{fault:?}"), "count": remaining, "queued": state.faults.len()}),
    )
}

async fn clear_faults(shared: web::Data<Shared>) -> HttpResponse {
    shared.state.lock().faults.clear();
    HttpResponse::Ok().json(json!({"cleared": true}))
}

#[derive(Debug, Deserialize)]
struct LatencyRequest {
    ms: u64,
}

async fn put_latency(shared: web::Data<Shared>, body: web::Json<LatencyRequest>) -> HttpResponse {
    shared.state.lock().latency = Duration::from_millis(body.ms);
    HttpResponse::Ok().json(json!({"latency_ms": body.ms}))
}

async fn get_stats(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(stats_of(&shared))
}

#[derive(Debug, Deserialize)]
struct PostsRequest {
    #[serde(default)]
    count: Option<u32>,
}

async fn post_posts(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: Option<web::Json<PostsRequest>>,
) -> HttpResponse {
    let count = body.and_then(|b| b.count).unwrap_or(1).min(10_000);
    let username = path.into_inner();
    let mut state = shared.state.lock();
    let pos = state.add_user(&username, &username);
    let ids = state.add_posts(pos, count);
    HttpResponse::Ok().json(json!({ "ids": ids }))
}

#[derive(Debug, Deserialize)]
struct EditRequest {
    text: String,
}

async fn post_edit(
    shared: web::Data<Shared>,
    path: web::Path<String>,
    body: web::Json<EditRequest>,
) -> HttpResponse {
    let edited = path
        .into_inner()
        .parse::<u64>()
        .ok()
        .and_then(|id| shared.state.lock().edit_post(id, &body.text));
    match edited {
        Some(id) => HttpResponse::Ok().json(json!({ "id": id })),
        None => {
            HttpResponse::NotFound().json(json!({"error": "not_found", "message": "no such post"}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::x_api::client::{FetchError, RetryPolicy, XClient};

    fn fast_policy() -> RetryPolicy {
        RetryPolicy {
            max_tries: 3,
            base_delay: Duration::from_millis(5),
            max_reset_wait: Duration::from_secs(2),
            request_timeout: Duration::from_millis(500),
        }
    }

    fn client_for(fake: &FakeX) -> XClient {
        XClient::new(fake.base_url(), Secret::new(fake.token()), fast_policy()).unwrap()
    }

    fn fake(users: u32, posts: u32) -> FakeX {
        FakeX::start(FakeScript {
            users,
            posts_per_user: posts,
            ..FakeScript::default()
        })
        .unwrap()
    }

    #[test]
    fn page_tokens_round_trip() {
        for id in [0u64, 1, 35, 36, 1_999_999_999_999_999_999, u64::MAX] {
            assert_eq!(parse_page_token(&page_token(id)), Some(id));
        }
        assert_eq!(parse_page_token("garbage!"), None);
    }

    #[actix_rt::test]
    async fn a_handle_resolves_to_its_user_with_name_and_avatar() {
        let fake = fake(2, 0);
        let user = client_for(&fake).resolve_user("leader0001").await.unwrap();
        assert_eq!(user.username, "leader0001");
        assert_eq!(user.name, "Leader 1");
        assert!(user
            .profile_image_url
            .unwrap()
            .starts_with("https://pbs.twimg.com/"));
        assert_eq!(fake.stats().user_lookups, 1);
    }

    #[actix_rt::test]
    async fn unknown_and_suspended_users_come_back_as_typed_errors() {
        let fake = fake(2, 5);
        let client = client_for(&fake);
        assert_eq!(
            client.resolve_user("nobody").await,
            Err(FetchError::NotFound("nobody".into()))
        );
        let id = client.resolve_user("leader0000").await.unwrap().id;
        fake.suspend("leader0000");
        assert!(matches!(
            client.resolve_user("leader0000").await,
            Err(FetchError::Suspended(_))
        ));
        assert!(matches!(
            client.timeline(&id, None, 10, None).await,
            Err(FetchError::Suspended(_))
        ));
    }

    #[actix_rt::test]
    async fn the_timeline_request_carries_exactly_the_spec_parameters() {
        let fake = fake(1, 3);
        let client = client_for(&fake);
        let user = client.resolve_user("leader0000").await.unwrap();
        client
            .timeline(&user.id, Some("42"), 7, Some("pt1"))
            .await
            .unwrap();
        let line = fake.stats().recent_requests.last().cloned().unwrap();
        assert_eq!(
            line,
            format!(
                "GET /2/users/{}/tweets?max_results=7\
                 &tweet.fields=created_at%2Cpublic_metrics%2Clang%2Cauthor_id%2Cedit_history_tweet_ids\
                 &expansions=attachments.media_keys&media.fields=url%2Cpreview_image_url%2Ctype\
                 &since_id=42&pagination_token=pt1",
                user.id
            )
        );
    }

    #[actix_rt::test]
    async fn pagination_walks_every_post_once_newest_first() {
        let fake = fake(2, 23);
        let client = client_for(&fake);
        let user = client.resolve_user("leader0001").await.unwrap();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .timeline(&user.id, None, 10, token.as_deref())
                .await
                .unwrap()
                .response;
            assert!(page.data.len() <= 10);
            seen.extend(page.data.iter().map(|t| t.id.parse::<u64>().unwrap()));
            token = page.meta.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 23);
        assert!(
            seen.windows(2).all(|w| w[0] > w[1]),
            "newest first, no repeats"
        );
        assert_eq!(
            seen.iter().map(u64::to_string).collect::<Vec<_>>(),
            fake.post_ids("leader0001")
        );
    }

    #[actix_rt::test]
    async fn since_id_returns_only_newer_posts_and_an_empty_answer_has_only_meta() {
        let fake = fake(1, 6);
        let client = client_for(&fake);
        let user = client.resolve_user("leader0000").await.unwrap();
        let newest = fake.post_ids("leader0000")[0].clone();
        let page = client
            .timeline(&user.id, Some(&newest), 100, None)
            .await
            .unwrap()
            .response;
        assert!(page.data.is_empty());
        assert_eq!(page.meta.result_count, 0);
        let added = fake.add_posts("leader0000", 2);
        let page = client
            .timeline(&user.id, Some(&newest), 100, None)
            .await
            .unwrap()
            .response;
        let got: Vec<_> = page.data.iter().map(|t| t.id.clone()).collect();
        assert_eq!(got, vec![added[1].clone(), added[0].clone()]);
        assert_eq!(page.meta.newest_id.as_deref(), Some(added[1].as_str()));
    }

    #[actix_rt::test]
    async fn media_and_edit_chains_are_served_in_wire_format() {
        let fake = fake(1, 12);
        let client = client_for(&fake);
        let user = client.resolve_user("leader0000").await.unwrap();
        let page = client
            .timeline(&user.id, None, 100, None)
            .await
            .unwrap()
            .response;
        let media = page.media_by_key();
        let with_media = page.data.iter().filter(|t| t.attachments.is_some()).count();
        assert!(with_media >= 4, "{with_media}");
        for t in &page.data {
            for key in t.attachments.iter().flat_map(|a| a.media_keys.iter()) {
                assert!(media.contains_key(key.as_str()), "media {key} joined");
            }
        }
        assert!(page
            .data
            .iter()
            .any(|t| t.edit_history_tweet_ids.len() == 2));
        let old = page.data[0].id.clone();
        let new = fake.edit_post(&old, "fixed a typo").unwrap();
        let page = client
            .timeline(&user.id, None, 100, None)
            .await
            .unwrap()
            .response;
        assert_eq!(page.data[0].id, new);
        assert_eq!(page.data[0].edit_history_tweet_ids, vec![old, new]);
        assert_eq!(page.data.len(), 12);
    }

    #[actix_rt::test]
    async fn a_wrong_token_is_an_auth_error_and_is_not_retried() {
        let fake = fake(1, 1);
        let client = XClient::new(fake.base_url(), Secret::new("wrong"), fast_policy()).unwrap();
        assert_eq!(
            client.resolve_user("leader0000").await,
            Err(FetchError::Auth { status: 401 })
        );
        assert_eq!(fake.api_calls(), 1);
    }

    #[actix_rt::test]
    async fn server_errors_are_retried_up_to_three_tries() {
        let fake = fake(1, 1);
        let client = client_for(&fake);
        fake.inject(Fault::ServerError, Some(2));
        assert!(client.resolve_user("leader0000").await.is_ok());
        assert_eq!(fake.api_calls(), 3);
        fake.inject(Fault::ServerError, Some(3));
        assert_eq!(
            client.resolve_user("leader0000").await,
            Err(FetchError::Server { status: 500 })
        );
        assert_eq!(fake.api_calls(), 6);
    }

    #[actix_rt::test]
    async fn slow_answers_time_out_and_are_retried() {
        let fake = fake(1, 1);
        let client = client_for(&fake);
        fake.inject(
            Fault::Slow {
                delay: Duration::from_secs(2),
            },
            Some(1),
        );
        assert!(client.resolve_user("leader0000").await.is_ok());
        assert_eq!(fake.api_calls(), 2);
        fake.inject(
            Fault::Slow {
                delay: Duration::from_secs(2),
            },
            Some(3),
        );
        assert_eq!(
            client.resolve_user("leader0000").await,
            Err(FetchError::Timeout)
        );
    }

    #[actix_rt::test]
    async fn malformed_json_is_an_error_not_a_panic() {
        let fake = fake(1, 1);
        let client = client_for(&fake);
        fake.inject(Fault::Malformed, Some(1));
        assert!(matches!(
            client.resolve_user("leader0000").await,
            Err(FetchError::Malformed(_))
        ));
        assert_eq!(fake.api_calls(), 1, "malformed answers are not retried");
    }

    #[actix_rt::test]
    async fn a_near_rate_limit_reset_is_waited_for_and_a_far_one_is_surfaced() {
        let fake = fake(1, 1);
        let client = client_for(&fake);
        fake.inject(
            Fault::RateLimited {
                reset_in: Duration::from_secs(1),
            },
            Some(1),
        );
        let started = std::time::Instant::now();
        assert!(client.resolve_user("leader0000").await.is_ok());
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(fake.api_calls(), 2);
        fake.inject(
            Fault::RateLimited {
                reset_in: Duration::from_secs(900),
            },
            Some(1),
        );
        match client.resolve_user("leader0000").await {
            Err(FetchError::RateLimited { reset_at: Some(at) }) => {
                let ahead = (at - Utc::now()).num_seconds();
                assert!((890..=901).contains(&ahead), "{ahead}");
            }
            other => panic!("expected a far rate limit, got {other:?}"),
        }
        assert_eq!(fake.api_calls(), 3);
    }

    #[actix_rt::test]
    async fn a_bad_max_results_is_clamped_by_the_client_and_refused_by_the_fake() {
        let fake = fake(1, 30);
        let client = client_for(&fake);
        let user = client.resolve_user("leader0000").await.unwrap();
        let page = client
            .timeline(&user.id, None, 1, None)
            .await
            .unwrap()
            .response;
        assert_eq!(page.data.len(), 5);
        let page = client
            .timeline(&user.id, None, 500, None)
            .await
            .unwrap()
            .response;
        assert_eq!(page.data.len(), 30);
        let raw = reqwest::Client::new()
            .get(format!(
                "{}/users/{}/tweets?max_results=3",
                fake.base_url(),
                user.id
            ))
            .bearer_auth(fake.token())
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), 400);
    }

    #[actix_rt::test]
    async fn faults_can_be_armed_over_http_and_stats_read_back() {
        let fake = fake(1, 1);
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/_fake/faults", fake.control_url()))
            .json(&json!({"kind": "server_error", "count": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let client = client_for(&fake);
        assert_eq!(
            client.resolve_user("leader0000").await,
            Err(FetchError::Server { status: 500 })
        );
        let stats: serde_json::Value = http
            .get(format!("{}/_fake/stats", fake.control_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats["api_calls"], 3);
        assert_eq!(stats["faults_served"], 3);
        let bad = http
            .post(format!("{}/_fake/faults", fake.control_url()))
            .json(&json!({"kind": "gremlins"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        http.post(format!("{}/_fake/faults", fake.control_url()))
            .json(&json!({"kind": "unauthorized", "count": 0}))
            .send()
            .await
            .unwrap();
        assert!(client.resolve_user("leader0000").await.is_err());
        assert!(client.resolve_user("leader0000").await.is_err());
        http.delete(format!("{}/_fake/faults", fake.control_url()))
            .send()
            .await
            .unwrap();
        assert!(client.resolve_user("leader0000").await.is_ok());
    }

    #[actix_rt::test]
    async fn every_answer_carries_rate_limit_headers() {
        let fake = fake(1, 1);
        let resp = reqwest::Client::new()
            .get(format!("{}/users/by/username/leader0000", fake.base_url()))
            .bearer_auth(fake.token())
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        assert_eq!(h["x-rate-limit-limit"], "1500");
        assert_eq!(h["x-rate-limit-remaining"], "1499");
        let reset: i64 = h["x-rate-limit-reset"].to_str().unwrap().parse().unwrap();
        assert!(reset > Utc::now().timestamp());
    }
}
