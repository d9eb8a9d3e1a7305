//! A fake X API v2 server (actix-web on its own thread, bound to `127.0.0.1:0`), written
//! once and shared by the tests, the benches and `amber demo`.
//!
//! It answers the three read endpoints Amber may use as X's OpenAPI document
//! (`/work/shared/x-api/openapi-subset.json`, checked by `tests::schema`) says:
//! `GET /2/users/by/username/{username}`, `GET /2/users/{id}/tweets` and `GET /2/tweets`
//! (lookup by ids, with the `errors` array beside partial data). It honours
//! `tweet.fields` (or `post.fields`, answered in the new spelling), `expansions`
//! (`author_id`, `referenced_tweets.id`, `referenced_tweets.id.author_id`,
//! `in_reply_to_user_id`, `attachments.media_keys`), `media.fields` and `user.fields`;
//! sends only X's default fields otherwise; speaks bearer auth, the `x-rate-limit-*`
//! headers, `max_results` (5..=100), `since_id`, `pagination_token`/`meta.next_token`.
//! Errors: 400 is an `invalid-request` problem, 500 an `internal-error` problem
//! (`application/problem+json`); 401 and 429 are X's `Error` object (`code`, `message`).
//!
//! Posts are scripted from code through [`FakeX`] or over HTTP, so a person running
//! `amber demo` can use curl:
//!
//! ```text
//! POST   /_fake/faults   {"kind":"server_error"|"rate_limit"|"malformed"|"unauthorized"|"slow",
//!                         "count":3 (default 1; 0 = until cleared),
//!                         "reset_in_secs":900 (rate_limit), "delay_ms":2000 (slow)}
//! DELETE /_fake/faults   clear every fault
//! PUT    /_fake/latency  {"ms":5}   latency added to every API call
//! GET    /_fake/stats    calls received, posts served, recent request lines
//! POST   /_fake/users/{username}/posts  {"count":3}  new generated posts, newest ids
//!        or one scripted post: {"text":"...", "reposts"|"quotes"|"replies_to":"ID",
//!        "media":[{"type":"photo"|"video"|"animated_gif","duration_ms":9000}],
//!        "links":["https://example.com/a"]}  -> {"ids":["ID"]}
//! POST   /_fake/posts/{id}/edit         {"text":"..."} edit a post (new id, edit chain)
//! POST   /_fake/posts/{id}/delete       delete a post
//! POST   /_fake/posts/{id}/withhold     {"country_codes":["DE"]} withhold it here
//! POST   /_fake/posts/{id}/counts       {"like_count":9, ...} move its counts
//! ```

mod activity;
mod control;
mod render;
#[cfg(test)]
mod schema;
mod script;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;
use parking_lot::Mutex;
use serde::Serialize;

pub use crate::x_api::fake::activity::{
    ActivityStats, Burst, CreateShape, Emitted, FakeSubscription, StreamFault, MAX_BURST,
};
use crate::x_api::fake::control::{
    clear_faults, get_stats, post_counts, post_delete, post_edit, post_fault, post_posts,
    post_withhold, put_latency,
};
use crate::x_api::fake::render::{
    coded_error, internal_error, lookup_posts, lookup_user, user_timeline,
};
pub use crate::x_api::fake::render::{Ask, Rendered};
pub use crate::x_api::fake::script::{
    username, CountsUpdate, FakeCounts, FakeScript, MediaSpec, PostSpec,
};
use crate::x_api::fake::script::{FakePost, FakeUser};

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
    /// Calls to `GET /2/tweets` (posts lookup by ids).
    pub post_lookups: u64,
    /// Posts returned in `data` over all timeline pages.
    pub posts_served: u64,
    pub faults_served: u64,
    /// The most API calls ever in progress at once.
    pub max_in_flight: u64,
    /// The last request lines (`GET /2/users/...?...`), oldest first.
    pub recent_requests: Vec<String>,
}

#[derive(Debug, Clone)]
struct ArmedFault {
    fault: Fault,
    /// None: until cleared.
    remaining: Option<u32>,
    /// Only requests whose path contains this (None: every request).
    path: Option<String>,
}

#[derive(Debug)]
struct State {
    token: String,
    users: Vec<FakeUser>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    /// Which user holds each live post.
    owner: HashMap<u64, usize>,
    /// Earlier versions of edited posts (lookups by id still answer them, as X does).
    old_versions: HashMap<u64, FakePost>,
    deleted: HashSet<u64>,
    /// Posts withheld in the fake's viewer's country, with the countries.
    withheld: HashMap<u64, Vec<String>>,
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
    post_lookups: AtomicU64,
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
    /// The Activity API's subscriptions and streams (`activity.rs`).
    activity: activity::Activity,
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

impl State {
    /// Takes the first armed fault that applies to a request for `path`, if any.
    fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let at = self
            .faults
            .iter()
            .position(|armed| armed.path.as_deref().is_none_or(|p| path.contains(p)))?;
        let armed = &mut self.faults[at];
        let fault = armed.fault;
        match &mut armed.remaining {
            None => {}
            Some(n) if *n <= 1 => {
                self.faults.remove(at);
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
            activity: activity::Activity::default(),
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
                            .route("/2/tweets", web::get().to(lookup_posts))
                            .route("/_fake/faults", web::post().to(post_fault))
                            .route("/_fake/faults", web::delete().to(clear_faults))
                            .route("/_fake/latency", web::put().to(put_latency))
                            .route("/_fake/stats", web::get().to(get_stats))
                            .route("/_fake/users/{username}/posts", web::post().to(post_posts))
                            .route("/_fake/posts/{id}/edit", web::post().to(post_edit))
                            .route("/_fake/posts/{id}/delete", web::post().to(post_delete))
                            .route("/_fake/posts/{id}/withhold", web::post().to(post_withhold))
                            .route("/_fake/posts/{id}/counts", web::post().to(post_counts))
                            .configure(activity::routes)
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
        self.arm(fault, count, None);
    }

    /// As [`FakeX::inject`], for requests whose path contains `path` only (e.g.
    /// `"/tweets"`: timelines, not user lookups), so a test picks which call fails
    /// whatever order concurrent calls arrive in.
    pub fn inject_on(&self, fault: Fault, count: Option<u32>, path: &str) {
        self.arm(fault, count, Some(path.to_string()));
    }

    fn arm(&self, fault: Fault, count: Option<u32>, path: Option<String>) {
        let remaining = match count {
            Some(0) | None => None,
            Some(n) => Some(n),
        };
        self.shared.state.lock().faults.push_back(ArmedFault {
            fault,
            remaining,
            path,
        });
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

    /// Adds one post saying `text` to `username` (created if unknown); over 280 characters
    /// it comes as a long post (`note_tweet`). Returns its id.
    pub fn add_text_post(&self, username: &str, text: &str) -> String {
        let mut state = self.shared.state.lock();
        let pos = state.add_user(username, username);
        state.add_text_post(pos, text)
    }

    /// Adds a post to `username` (created if unknown) as `spec` scripts it: a repost, a
    /// quote, a reply or a thread's next post, with media and links. Returns its id, or
    /// what is wrong with `spec` (an unknown referenced post, two references).
    pub fn add_post(&self, username: &str, spec: &PostSpec) -> Result<String, String> {
        let mut state = self.shared.state.lock();
        let pos = state.add_user(username, username);
        state.add_post(pos, spec)
    }

    /// Deletes a post: it leaves the timeline; lookups answer it in `errors`.
    pub fn delete_post(&self, id: &str) -> bool {
        id.parse()
            .is_ok_and(|id| self.shared.state.lock().delete_post(id))
    }

    /// Withholds a post in `countries`, the fake's viewer among them: it leaves the
    /// timeline; lookups and expansions answer it in `errors`.
    pub fn withhold_post(&self, id: &str, countries: &[&str]) -> bool {
        let countries = countries.iter().map(|c| c.to_string()).collect();
        id.parse()
            .is_ok_and(|id| self.shared.state.lock().withhold_post(id, countries))
    }

    /// Sets some of a post's counts; returns all six, or `None` for an unknown post.
    pub fn set_counts(&self, id: &str, counts: &CountsUpdate) -> Option<FakeCounts> {
        let id = id.parse().ok()?;
        self.shared.state.lock().set_counts(id, counts)
    }

    /// Renders live posts by id as X would answer `ask` (unknown ids are left out), with
    /// the `includes` of their expansions: the payload of a timeline page or of the
    /// Activity API's `post.create`.
    pub fn render(&self, ids: &[&str], ask: &Ask) -> Rendered {
        let state = self.shared.state.lock();
        let posts: Vec<&FakePost> = ids
            .iter()
            .filter_map(|id| id.parse().ok())
            .filter_map(|id| state.visible(id))
            .collect();
        state.render_posts(&posts, ask)
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
        post_lookups: c.post_lookups.load(Ordering::Relaxed),
        posts_served: c.posts_served.load(Ordering::Relaxed),
        faults_served: c.faults_served.load(Ordering::Relaxed),
        max_in_flight: c.max_in_flight.load(Ordering::Relaxed),
        recent_requests: shared.state.lock().recent.iter().cloned().collect(),
    }
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
        let fault = state.take_fault(req.path());
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
            Fault::ServerError => return Err(internal_error()),
            Fault::Unauthorized => return Err(unauthorized()),
            Fault::Malformed => {
                return Err(HttpResponse::Ok()
                    .content_type("application/json")
                    .body(r#"{"data":[{"id":"1","text":"trunc"#))
            }
            Fault::RateLimited { reset_in } => {
                let reset = Utc::now().timestamp() + reset_in.as_secs() as i64;
                let resp = coded_error(StatusCode::TOO_MANY_REQUESTS, 88, "Rate limit exceeded");
                return Err(with_window(resp, (0, reset)));
            }
            Fault::Slow { delay } => actix_rt::time::sleep(delay).await,
        }
    }
    if !authorized {
        return Err(unauthorized());
    }
    Ok(window)
}

fn unauthorized() -> HttpResponse {
    coded_error(StatusCode::UNAUTHORIZED, 89, "Invalid or expired token.")
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
