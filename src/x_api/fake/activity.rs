//! The fake's X Activity API (XAA): subscriptions and the persistent HTTP stream, as
//! X's OpenAPI document and the Activity pages in `/work/shared/x-api/` describe them.
//!
//! ```text
//! POST   /2/activity/subscriptions       {"event_type":"post.create","filter":{"user_id":"ID"},"tag":"..."}
//!        -> {"data":{"subscription":{...}},"meta":{"total_subscriptions":N}}  (OpenAPI's shape;
//!           `PUT /_fake/activity {"create_shape":"quickstart"}` answers `data` as the
//!           subscription itself, as the quickstart page shows)
//! GET    /2/activity/subscriptions       ?max_results=1..1000&pagination_token=...
//! DELETE /2/activity/subscriptions/{id}  -> {"data":{"deleted":true},"meta":{"total_subscriptions":N}}
//! GET    /2/activity/stream              ?backfill_minutes=0..5: one JSON event a line
//!        (`\r\n`), a bare `\r\n` keep-alive every 20 s (settable)
//! ```
//!
//! One event type per subscription; at most 1,500 subscriptions (the self-serve cap,
//! settable); an event reaches the open streams only when a subscription matches its
//! event type and user. Events are scripted and the stream is broken from the control
//! endpoints:
//!
//! ```text
//! GET    /_fake/activity              subscriptions, open streams, counters, settings
//! PUT    /_fake/activity              {"subscription_cap":1500,"keepalive_ms":20000,
//!                                      "create_shape":"openapi"|"quickstart"}
//! POST   /_fake/activity/events       {"event_type":"post.create"|"post.delete","post_id":"ID"}
//!        post.create sends a live post as a timeline would render it for Amber's client;
//!        post.delete deletes the post in the fake too -> {"matched":true,"delivered":N}
//! POST   /_fake/activity/burst        {"username":"NAME","count":N} adds N posts (at most
//!                                      50,000) to NAME and sends a post.create for each as
//!                                      fast as it can -> {"first","last","emitted","matched",
//!                                      "delivered","emit_ms"} (throughput benches)
//! POST   /_fake/activity/disconnect   {"mid_event":true} closes every open stream (after
//!                                      half an event line when mid_event)
//! POST   /_fake/activity/stall        open streams go silent (no keep-alive, no events)
//! POST   /_fake/activity/faults       {"kind":"rate_limit"|"server_error"|"too_many_connections",
//!                                      "count":1, "reset_in_secs":60} for the next stream connects
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{SecondsFormat, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::x_api::fake::render::{coded_error, internal_error, invalid_request, Ask};
use crate::x_api::fake::{gate, with_window, FakeX, Shared, State};

/// The self-serve tier's subscription cap.
pub const DEFAULT_SUBSCRIPTION_CAP: usize = 1500;
/// X's keep-alive period on streaming endpoints.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(20);
/// Events kept for `backfill_minutes`.
const BACKFILL_EVENTS: usize = 1000;
/// The longest backfill X offers.
const MAX_BACKFILL_MINUTES: i64 = 5;
const PROBLEMS: &str = "https://api.x.com/2/problems";

/// The event types X's document accepts on create.
const EVENT_TYPES: [&str; 42] = [
    "profile.update.bio",
    "profile.update.profile_picture",
    "profile.update.banner_picture",
    "profile.update.screenname",
    "profile.update.geo",
    "profile.update.url",
    "profile.update.verified_badge",
    "profile.update.affiliate_badge",
    "profile.update.handle",
    "news.new",
    "follow.follow",
    "follow.unfollow",
    "spaces.start",
    "spaces.end",
    "broadcast.start",
    "broadcast.end",
    "broadcast.chat",
    "chat.received",
    "chat.sent",
    "chat.conversation.join",
    "chat.conversation_join",
    "chat.conversation.member_added",
    "chat.conversation.member_removed",
    "chat.conversation.admin_added",
    "chat.conversation.admin_removed",
    "chat.update.group_name",
    "chat.update.restrictions",
    "dm.sent",
    "dm.received",
    "dm.indicate_typing",
    "dm.read",
    "post.create",
    "post.delete",
    "post.mention.create",
    "post.reply.create",
    "post.quote.create",
    "post.repost.create",
    "like.create",
    "mute.mute",
    "mute.unmute",
    "block.block",
    "block.unblock",
];

/// A subscription as the fake holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FakeSubscription {
    pub subscription_id: String,
    pub event_type: String,
    /// The `filter.user_id` (empty for filterless event types).
    pub user_id: String,
    pub tag: Option<String>,
    pub created_at: String,
}

impl FakeSubscription {
    fn json(&self) -> Value {
        let mut v = json!({
            "subscription_id": self.subscription_id,
            "event_type": self.event_type,
            "filter": {},
            "created_at": self.created_at,
            "updated_at": self.created_at,
        });
        if !self.user_id.is_empty() {
            v["filter"]["user_id"] = json!(self.user_id);
        }
        if let Some(tag) = &self.tag {
            v["tag"] = json!(tag);
        }
        v
    }
}

/// How `POST /2/activity/subscriptions` answers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreateShape {
    /// `data.subscription`, as X's OpenAPI document says.
    #[default]
    OpenApi,
    /// `data` is the subscription, as X's quickstart page shows.
    Quickstart,
}

/// A fault served on the next stream connects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StreamFault {
    /// 429 with `x-rate-limit-reset` this far ahead.
    RateLimited { reset_in: Duration },
    /// 500 internal-error problem.
    ServerError,
    /// 429 with X's `TooManyConnections` streaming problem.
    TooManyConnections,
}

/// What a stream connection is told to do.
#[derive(Debug)]
enum Frame {
    Line(Bytes),
    /// Close, after these bytes (half an event) if any.
    Close(Option<Bytes>),
    Stall,
}

/// Counters of the Activity API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActivityStats {
    pub stream_connects: u64,
    pub stream_faults_served: u64,
    pub open_streams: usize,
    pub subscriptions_created: u64,
    pub subscriptions_deleted: u64,
    /// Events scripted that matched a subscription.
    pub events_matched: u64,
    /// Events scripted that matched none (not delivered).
    pub events_unmatched: u64,
    /// Event lines written to open streams (one per stream).
    pub events_delivered: u64,
    pub keepalives_sent: u64,
}

#[derive(Debug)]
struct Inner {
    subs: BTreeMap<u64, FakeSubscription>,
    next_sub: u64,
    next_event: u64,
    cap: usize,
    keepalive: Duration,
    create_shape: CreateShape,
    streams: HashMap<u64, mpsc::UnboundedSender<Frame>>,
    next_stream: u64,
    faults: VecDeque<(StreamFault, Option<u32>)>,
    /// Recent matched events (emitted unix ms, line) for `backfill_minutes`.
    recent: VecDeque<(i64, Bytes)>,
    stats: ActivityStats,
}

/// The Activity API's state, beside the fake's posts.
#[derive(Debug)]
pub(super) struct Activity {
    inner: Mutex<Inner>,
    /// Keep-alives written (outside the lock: streams tick on their own).
    keepalives: std::sync::atomic::AtomicU64,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            inner: Mutex::new(Inner {
                subs: BTreeMap::new(),
                next_sub: 1_976_325_569_252_868_096,
                next_event: 2_080_761_390_344_937_796,
                cap: DEFAULT_SUBSCRIPTION_CAP,
                keepalive: DEFAULT_KEEPALIVE,
                create_shape: CreateShape::default(),
                streams: HashMap::new(),
                next_stream: 0,
                faults: VecDeque::new(),
                recent: VecDeque::new(),
                stats: ActivityStats::default(),
            }),
            keepalives: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Inner {
    fn take_fault(&mut self) -> Option<StreamFault> {
        let (fault, remaining) = self.faults.front_mut()?;
        let fault = *fault;
        match remaining {
            None => {}
            Some(n) if *n <= 1 => {
                self.faults.pop_front();
            }
            Some(n) => *n -= 1,
        }
        Some(fault)
    }

    /// Sends `frame` (built per stream) to every open stream; drops closed ones.
    fn broadcast(&mut self, frame: impl Fn() -> Frame) -> usize {
        self.streams.retain(|_, tx| tx.send(frame()).is_ok());
        self.streams.len()
    }

    /// Sends a matched event to the open streams and keeps it for backfill.
    fn deliver(&mut self, line: Bytes) -> usize {
        let now = Utc::now().timestamp_millis();
        self.recent.push_back((now, line.clone()));
        while self.recent.len() > BACKFILL_EVENTS {
            self.recent.pop_front();
        }
        let delivered = self.broadcast(|| Frame::Line(line.clone()));
        self.stats.events_matched += 1;
        self.stats.events_delivered += delivered as u64;
        delivered
    }

    fn matching(&self, event_type: &str, user_id: &str) -> Option<&FakeSubscription> {
        self.subs
            .values()
            .find(|s| s.event_type == event_type && s.user_id == user_id)
    }

    /// Builds and delivers an event if a subscription matches; `None`: unmatched.
    fn emit(
        &mut self,
        event_type: &str,
        user_id: &str,
        payload: Value,
        includes: Option<Value>,
    ) -> Option<usize> {
        let Some(sub) = self.matching(event_type, user_id) else {
            self.stats.events_unmatched += 1;
            return None;
        };
        let tag = sub.tag.clone();
        self.next_event += 1;
        let mut data = json!({
            "event_uuid": self.next_event.to_string(),
            "filter": {"user_id": user_id},
            "event_type": event_type,
            "payload": payload,
        });
        if let Some(tag) = tag {
            data["tag"] = json!(tag);
        }
        if let Some(includes) = includes {
            data["includes"] = includes;
        }
        let mut line = serde_json::to_vec(&json!({ "data": data })).expect("JSON serializes");
        line.extend_from_slice(b"\r\n");
        Some(self.deliver(Bytes::from(line)))
    }
}

impl State {
    /// The id of the user holding a live post.
    fn owner_id_of(&self, id: u64) -> Option<String> {
        self.owner
            .get(&id)
            .map(|pos| self.users[*pos].user.id.clone())
    }
}

/// What scripting an event did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Emitted {
    /// A subscription matched the event (else nobody hears of it).
    pub matched: bool,
    /// Open streams it was written to.
    pub delivered: usize,
}

impl FakeX {
    /// Sends `post.create` for a live post (rendered as a timeline renders it for Amber's
    /// client). `None`: no such live post.
    pub fn emit_post_create(&self, id: &str) -> Option<Emitted> {
        emit_post_create(&self.shared, id)
    }

    /// Deletes a post in the fake and sends `post.delete` for it. `None`: no such live post.
    pub fn emit_post_delete(&self, id: &str) -> Option<Emitted> {
        emit_post_delete(&self.shared, id)
    }

    /// Closes every open stream (after half an event line when `mid_event`); returns how
    /// many were open.
    pub fn disconnect_streams(&self, mid_event: bool) -> usize {
        disconnect(&self.shared, mid_event)
    }

    /// Makes every open stream go silent (no keep-alive, no events) until the client
    /// gives up on it; returns how many were open.
    pub fn stall_streams(&self) -> usize {
        self.shared.activity.inner.lock().broadcast(|| Frame::Stall)
    }

    /// Arms `fault` for the next `count` stream connects (`None`: until cleared).
    pub fn inject_stream_fault(&self, fault: StreamFault, count: Option<u32>) {
        let count = count.filter(|n| *n > 0);
        self.shared
            .activity
            .inner
            .lock()
            .faults
            .push_back((fault, count));
    }

    /// The subscriptions, oldest first.
    pub fn subscriptions(&self) -> Vec<FakeSubscription> {
        self.shared
            .activity
            .inner
            .lock()
            .subs
            .values()
            .cloned()
            .collect()
    }

    /// Sets how many subscriptions the app may hold.
    pub fn set_subscription_cap(&self, cap: usize) {
        self.shared.activity.inner.lock().cap = cap;
    }

    /// Sets the keep-alive period of streams opened from now on.
    pub fn set_keepalive(&self, every: Duration) {
        self.shared.activity.inner.lock().keepalive = every;
    }

    /// Sets the shape of the create answer.
    pub fn set_create_shape(&self, shape: CreateShape) {
        self.shared.activity.inner.lock().create_shape = shape;
    }

    /// Adds `count` posts (at most [`MAX_BURST`]) to `username` and sends a `post.create`
    /// for each, as fast as the fake can.
    pub fn emit_burst(&self, username: &str, count: u32) -> Burst {
        burst(&self.shared, username, count)
    }

    /// The Activity API's counters.
    pub fn activity_stats(&self) -> ActivityStats {
        activity_stats(&self.shared)
    }
}

fn activity_stats(shared: &Shared) -> ActivityStats {
    let mut inner = shared.activity.inner.lock();
    inner.streams.retain(|_, tx| !tx.is_closed());
    let mut stats = inner.stats.clone();
    stats.open_streams = inner.streams.len();
    stats.keepalives_sent = shared
        .activity
        .keepalives
        .load(std::sync::atomic::Ordering::Relaxed);
    stats
}

fn emit_post_create(shared: &Shared, id: &str) -> Option<Emitted> {
    let num: u64 = id.parse().ok()?;
    let (author, rendered) = {
        let state = shared.state.lock();
        let author = state.owner_id_of(num)?;
        let post = state.visible(num)?;
        (author, state.render_posts(&[post], &Ask::amber_client()))
    };
    let payload = rendered.data.into_iter().next()?;
    let delivered =
        shared
            .activity
            .inner
            .lock()
            .emit("post.create", &author, payload, rendered.includes);
    Some(Emitted {
        matched: delivered.is_some(),
        delivered: delivered.unwrap_or(0),
    })
}

/// The most posts one burst adds.
pub const MAX_BURST: u32 = 50_000;

/// What a burst did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Burst {
    /// The first and last post ids added (empty when `count` was 0).
    pub first: String,
    pub last: String,
    /// Events scripted.
    pub emitted: u64,
    /// Of which a subscription matched.
    pub matched: u64,
    /// Event lines written to open streams.
    pub delivered: u64,
    /// Milliseconds spent rendering and writing the events.
    pub emit_ms: u64,
}

fn burst(shared: &Shared, username: &str, count: u32) -> Burst {
    let started = std::time::Instant::now();
    let count = count.min(MAX_BURST);
    let (author, rendered, ids) = {
        let mut state = shared.state.lock();
        let pos = state.add_user(username, username);
        let ids = state.add_posts(pos, count);
        let author = state.users[pos].user.id.clone();
        let ask = Ask::amber_client();
        let rendered: Vec<_> = ids
            .iter()
            .filter_map(|id| id.parse::<u64>().ok())
            .filter_map(|id| state.visible(id))
            .map(|post| state.render_posts(&[post], &ask))
            .collect();
        (author, rendered, ids)
    };
    let mut done = Burst {
        first: ids.first().cloned().unwrap_or_default(),
        last: ids.last().cloned().unwrap_or_default(),
        emitted: 0,
        matched: 0,
        delivered: 0,
        emit_ms: 0,
    };
    let mut inner = shared.activity.inner.lock();
    for r in rendered {
        let Some(payload) = r.data.into_iter().next() else {
            continue;
        };
        done.emitted += 1;
        if let Some(n) = inner.emit("post.create", &author, payload, r.includes) {
            done.matched += 1;
            done.delivered += n as u64;
        }
    }
    done.emit_ms = started.elapsed().as_millis() as u64;
    done
}

fn emit_post_delete(shared: &Shared, id: &str) -> Option<Emitted> {
    let num: u64 = id.parse().ok()?;
    let author = {
        let mut state = shared.state.lock();
        let author = state.owner_id_of(num)?;
        state.delete_post(num);
        author
    };
    let payload = json!({"id": num.to_string(), "author_id": author});
    let delivered = shared
        .activity
        .inner
        .lock()
        .emit("post.delete", &author, payload, None);
    Some(Emitted {
        matched: delivered.is_some(),
        delivered: delivered.unwrap_or(0),
    })
}

fn disconnect(shared: &Shared, mid_event: bool) -> usize {
    let mut inner = shared.activity.inner.lock();
    let open = inner.broadcast(|| {
        Frame::Close(
            mid_event
                .then(|| Bytes::from_static(br#"{"data":{"event_uuid":"1","filter":{"user_id":"#)),
        )
    });
    inner.streams.clear();
    open
}

/// Registers the Activity API's routes (the API and its control endpoints).
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/2/activity/subscriptions", web::post().to(create))
        .route("/2/activity/subscriptions", web::get().to(list))
        .route("/2/activity/subscriptions/{id}", web::delete().to(delete))
        .route("/2/activity/stream", web::get().to(stream))
        .route("/_fake/activity", web::get().to(control_get))
        .route("/_fake/activity", web::put().to(control_put))
        .route("/_fake/activity/events", web::post().to(control_event))
        .route(
            "/_fake/activity/disconnect",
            web::post().to(control_disconnect),
        )
        .route("/_fake/activity/stall", web::post().to(control_stall))
        .route("/_fake/activity/burst", web::post().to(control_burst))
        .route("/_fake/activity/faults", web::post().to(control_fault));
}

fn problem(status: StatusCode, kind: &str, title: &str, detail: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "title": title,
            "detail": detail,
            "type": format!("{PROBLEMS}/{kind}"),
            "status": status.as_u16(),
        }))
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks a create body; `Ok((event_type, user_id, tag))`.
fn parse_create(body: &[u8]) -> Result<(String, String, Option<String>), Box<HttpResponse>> {
    let bad = |parameter: &str, value: &str, detail: String| {
        Err(Box::new(invalid_request(parameter, value, detail)))
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return bad("body", "", "The request body is not valid JSON.".into());
    };
    let Some(event_type) = v.get("event_type").and_then(Value::as_str) else {
        return bad("event_type", "", "event_type is required.".into());
    };
    if !EVENT_TYPES.contains(&event_type) {
        return bad(
            "event_type",
            event_type,
            format!("The `event_type` value [{event_type}] is not one of the allowed values."),
        );
    }
    let event_type = event_type.replace("chat.conversation_join", "chat.conversation.join");
    let Some(filter) = v.get("filter").and_then(Value::as_object) else {
        return bad("filter", "", "filter is required.".into());
    };
    if let Some(k) = filter
        .keys()
        .find(|k| !["user_id", "keyword", "direction"].contains(&k.as_str()))
    {
        return bad("filter", k, format!("Unknown filter field [{k}]."));
    }
    let user_id = filter.get("user_id").and_then(Value::as_str).unwrap_or("");
    if event_type != "news.new" && !is_id(user_id) {
        return bad(
            "filter.user_id",
            user_id,
            "filter.user_id must be a user id of 1 to 19 digits.".into(),
        );
    }
    let tag = match v.get("tag") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if (1..=200).contains(&t.chars().count()) => Some(t.clone()),
        Some(other) => {
            return bad(
                "tag",
                &other.to_string(),
                "tag must be a string of 1 to 200 characters.".into(),
            )
        }
    };
    Ok((event_type, user_id.to_string(), tag))
}

async fn create(shared: web::Data<Shared>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let (event_type, user_id, tag) = match parse_create(&body) {
        Ok(parsed) => parsed,
        Err(resp) => return *resp,
    };
    let mut inner = shared.activity.inner.lock();
    if inner.subs.len() >= inner.cap {
        let cap = inner.cap;
        return problem(
            StatusCode::FORBIDDEN,
            "subscription-limit",
            "Subscription Limit",
            format!("This app has reached its limit of {cap} subscriptions."),
        );
    }
    inner.next_sub += 1;
    let id = inner.next_sub;
    let sub = FakeSubscription {
        subscription_id: id.to_string(),
        event_type,
        user_id,
        tag,
        created_at: now_rfc3339(),
    };
    let data = match inner.create_shape {
        CreateShape::OpenApi => json!({ "subscription": sub.json() }),
        CreateShape::Quickstart => sub.json(),
    };
    inner.subs.insert(id, sub);
    inner.stats.subscriptions_created += 1;
    let total = inner.subs.len();
    with_window(
        HttpResponse::Ok().json(json!({"data": data, "meta": {"total_subscriptions": total}})),
        window,
    )
}

/// Pagination tokens: the last id of the previous page, in base32hex-like digits (16+).
fn page_token(after: u64) -> String {
    format!("{after:020}")
}

async fn list(
    shared: web::Data<Shared>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let max = match query.get("max_results").map(|m| m.parse::<usize>()) {
        None => 100,
        Some(Ok(m)) if (1..=1000).contains(&m) => m,
        Some(_) => {
            let value = query.get("max_results").cloned().unwrap_or_default();
            return invalid_request(
                "max_results",
                &value,
                format!(
                    "The `max_results` query parameter value [{value}] is not between 1 and 1000"
                ),
            );
        }
    };
    let after = match query.get("pagination_token") {
        None => None,
        Some(t) => match t.parse::<u64>() {
            Ok(after) if t.len() >= 16 => Some(after),
            _ => {
                return invalid_request(
                    "pagination_token",
                    t,
                    format!("The `pagination_token` query parameter value [{t}] is not valid"),
                )
            }
        },
    };
    let inner = shared.activity.inner.lock();
    let range = inner
        .subs
        .range(after.map_or(0, |a| a.saturating_add(1))..)
        .map(|(id, s)| (*id, s));
    let page: Vec<(u64, &FakeSubscription)> = range.take(max + 1).collect();
    let mut meta = json!({"total_subscriptions": inner.subs.len()});
    let shown = &page[..page.len().min(max)];
    if page.len() > max {
        if let Some((last, _)) = shown.last() {
            meta["next_token"] = json!(page_token(*last));
        }
    }
    let data: Vec<Value> = shown.iter().map(|(_, s)| s.json()).collect();
    let mut body = json!({ "meta": meta });
    if !data.is_empty() {
        body["data"] = Value::Array(data);
    }
    with_window(HttpResponse::Ok().json(body), window)
}

async fn delete(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let id = path.into_inner();
    if !is_id(&id) {
        return invalid_request(
            "subscription_id",
            &id,
            format!("The `subscription_id` path parameter value [{id}] is not valid"),
        );
    }
    let mut inner = shared.activity.inner.lock();
    let removed = id.parse::<u64>().ok().and_then(|n| inner.subs.remove(&n));
    if removed.is_none() {
        return HttpResponse::NotFound()
            .content_type("application/problem+json")
            .json(json!({
                "title": "Not Found Error",
                "detail": format!("Could not find subscription with subscription_id: [{id}]."),
                "type": format!("{PROBLEMS}/resource-not-found"),
                "resource_type": "subscription",
                "resource_id": id,
                "parameter": "subscription_id",
                "value": id,
            }));
    }
    inner.stats.subscriptions_deleted += 1;
    let total = inner.subs.len();
    with_window(
        HttpResponse::Ok()
            .json(json!({"data": {"deleted": true}, "meta": {"total_subscriptions": total}})),
        window,
    )
}

/// One open stream's side: its frames, its keep-alive, and its slot in the open set.
struct Conn {
    rx: mpsc::UnboundedReceiver<Frame>,
    keepalive: Duration,
    stalled: bool,
    closing: bool,
    shared: web::Data<Shared>,
    id: u64,
    backlog: VecDeque<Bytes>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.activity.inner.lock().streams.remove(&self.id);
    }
}

async fn next_chunk(mut conn: Conn) -> Option<(Result<Bytes, std::io::Error>, Conn)> {
    if conn.closing {
        return None;
    }
    if let Some(line) = conn.backlog.pop_front() {
        return Some((Ok(line), conn));
    }
    loop {
        let tick = conn.keepalive;
        tokio::select! {
            frame = conn.rx.recv() => match frame {
                Some(Frame::Line(line)) if !conn.stalled => return Some((Ok(line), conn)),
                Some(Frame::Line(_)) => {}
                Some(Frame::Stall) => conn.stalled = true,
                Some(Frame::Close(Some(half))) => {
                    conn.closing = true;
                    return Some((Ok(half), conn));
                }
                Some(Frame::Close(None)) | None => return None,
            },
            _ = tokio::time::sleep(tick), if !conn.stalled => {
                conn.shared
                    .activity
                    .keepalives
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Some((Ok(Bytes::from_static(b"\r\n")), conn));
            }
        }
    }
}

async fn stream(
    shared: web::Data<Shared>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let backfill = match query.get("backfill_minutes").map(|m| m.parse::<i64>()) {
        None => 0,
        Some(Ok(m)) if (0..=MAX_BACKFILL_MINUTES).contains(&m) => m,
        Some(_) => {
            let value = query.get("backfill_minutes").cloned().unwrap_or_default();
            return invalid_request(
                "backfill_minutes",
                &value,
                format!(
                    "The `backfill_minutes` query parameter value [{value}] is not between 0 and 5"
                ),
            );
        }
    };
    let mut inner = shared.activity.inner.lock();
    inner.stats.stream_connects += 1;
    if let Some(fault) = inner.take_fault() {
        inner.stats.stream_faults_served += 1;
        return match fault {
            StreamFault::ServerError => internal_error(),
            StreamFault::RateLimited { reset_in } => {
                let reset = Utc::now().timestamp() + reset_in.as_secs() as i64;
                with_window(
                    coded_error(StatusCode::TOO_MANY_REQUESTS, 88, "Rate limit exceeded"),
                    (0, reset),
                )
            }
            StreamFault::TooManyConnections => HttpResponse::TooManyRequests()
                .content_type("application/problem+json")
                .json(json!({
                    "title": "ConnectionException",
                    "detail": "This stream is currently at the maximum allowed connection limit.",
                    "connection_issue": "TooManyConnections",
                    "type": format!("{PROBLEMS}/streaming-connection"),
                })),
        };
    }
    let since = Utc::now().timestamp_millis() - backfill * 60_000;
    let backlog = if backfill > 0 {
        inner
            .recent
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, line)| line.clone())
            .collect()
    } else {
        VecDeque::new()
    };
    let (tx, rx) = mpsc::unbounded_channel();
    inner.next_stream += 1;
    let id = inner.next_stream;
    inner.streams.insert(id, tx);
    let conn = Conn {
        rx,
        keepalive: inner.keepalive,
        stalled: false,
        closing: false,
        shared: shared.clone(),
        id,
        backlog,
    };
    drop(inner);
    let body = futures_util::stream::unfold(conn, next_chunk);
    with_window(
        HttpResponse::Ok()
            .content_type("application/json")
            .streaming(body),
        window,
    )
}

async fn control_get(shared: web::Data<Shared>) -> HttpResponse {
    let stats = activity_stats(&shared);
    let inner = shared.activity.inner.lock();
    let subs: Vec<&FakeSubscription> = inner.subs.values().collect();
    HttpResponse::Ok().json(json!({
        "subscriptions": subs,
        "stats": stats,
        "subscription_cap": inner.cap,
        "keepalive_ms": inner.keepalive.as_millis() as u64,
        "create_shape": inner.create_shape,
        "faults_queued": inner.faults.len(),
    }))
}

fn control_error(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": "bad_request", "message": message}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    subscription_cap: Option<usize>,
    keepalive_ms: Option<u64>,
    create_shape: Option<CreateShape>,
}

async fn control_put(shared: web::Data<Shared>, body: web::Json<Settings>) -> HttpResponse {
    if body.keepalive_ms == Some(0) {
        return control_error("keepalive_ms must be at least 1".into());
    }
    {
        let mut inner = shared.activity.inner.lock();
        if let Some(cap) = body.subscription_cap {
            inner.cap = cap;
        }
        if let Some(ms) = body.keepalive_ms {
            inner.keepalive = Duration::from_millis(ms);
        }
        if let Some(shape) = body.create_shape {
            inner.create_shape = shape;
        }
    }
    control_get(shared).await
}

#[derive(Debug, Deserialize)]
struct EventRequest {
    event_type: String,
    post_id: String,
}

async fn control_event(shared: web::Data<Shared>, body: web::Json<EventRequest>) -> HttpResponse {
    let emitted = match body.event_type.as_str() {
        "post.create" => emit_post_create(&shared, &body.post_id),
        "post.delete" => emit_post_delete(&shared, &body.post_id),
        other => {
            return control_error(format!(
                "unknown event_type {other:?}: use post.create or post.delete"
            ))
        }
    };
    match emitted {
        Some(e) => HttpResponse::Ok().json(e),
        None => HttpResponse::NotFound()
            .json(json!({"error": "not_found", "message": "no such live post"})),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BurstRequest {
    username: String,
    count: u32,
}

async fn control_burst(shared: web::Data<Shared>, body: web::Json<BurstRequest>) -> HttpResponse {
    if body.count > MAX_BURST || body.username.is_empty() {
        return control_error(format!(
            "username must be named and count at most {MAX_BURST}"
        ));
    }
    let shared = shared.into_inner();
    let body = body.into_inner();
    match web::block(move || burst(&shared, &body.username, body.count)).await {
        Ok(done) => HttpResponse::Ok().json(done),
        Err(e) => HttpResponse::InternalServerError()
            .json(json!({"error": "internal", "message": e.to_string()})),
    }
}

#[derive(Debug, Default, Deserialize)]
struct DisconnectRequest {
    #[serde(default)]
    mid_event: bool,
}

async fn control_disconnect(
    shared: web::Data<Shared>,
    body: Option<web::Json<DisconnectRequest>>,
) -> HttpResponse {
    let mid_event = body.is_some_and(|b| b.mid_event);
    HttpResponse::Ok().json(json!({"closed": disconnect(&shared, mid_event)}))
}

async fn control_stall(shared: web::Data<Shared>) -> HttpResponse {
    let stalled = shared.activity.inner.lock().broadcast(|| Frame::Stall);
    HttpResponse::Ok().json(json!({ "stalled": stalled }))
}

#[derive(Debug, Deserialize)]
struct FaultRequest {
    kind: String,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    reset_in_secs: Option<u64>,
}

async fn control_fault(shared: web::Data<Shared>, body: web::Json<FaultRequest>) -> HttpResponse {
    let fault = match body.kind.as_str() {
        "rate_limit" | "429" => StreamFault::RateLimited {
            reset_in: Duration::from_secs(body.reset_in_secs.unwrap_or(60)),
        },
        "server_error" | "500" => StreamFault::ServerError,
        "too_many_connections" => StreamFault::TooManyConnections,
        other => {
            return control_error(format!(
                "unknown fault kind {other:?}: use rate_limit, server_error or too_many_connections"
            ))
        }
    };
    let count = match body.count {
        Some(0) => None,
        Some(n) => Some(n),
        None => Some(1),
    };
    let mut inner = shared.activity.inner.lock();
    inner.faults.push_back((fault, count));
    HttpResponse::Ok()
        .json(json!({"armed": format!("{fault:?}"), "count": count, "queued": inner.faults.len()}))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::x_api::fake::schema::{assert_answer, Schemas};
    use crate::x_api::fake::FakeScript;

    fn fake() -> FakeX {
        FakeX::start(FakeScript {
            users: 2,
            posts_per_user: 3,
            ..FakeScript::default()
        })
        .expect("the fake starts")
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    async fn call(
        fake: &FakeX,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = client()
            .request(method, format!("{}{path}", fake.control_url()))
            .bearer_auth(fake.token());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("the fake answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("a JSON body"))
    }

    /// `body` without `meta` (X's quickstart sends `meta.total_subscriptions`; the
    /// document's response schemas do not name it), validated strictly.
    fn assert_schema(schemas: &Schemas, name: &str, body: &Value) {
        let mut body = body.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("meta");
        }
        assert_answer(schemas, name, &body, false);
    }

    fn leader_id(fake: &FakeX) -> String {
        let ids = fake.post_ids(&crate::x_api::fake::username(0));
        let rendered = fake.render(&[ids[0].as_str()], &Ask::amber_client());
        rendered.data[0]["author_id"]
            .as_str()
            .expect("author_id")
            .to_string()
    }

    fn sub_body(event_type: &str, user_id: &str) -> Value {
        json!({"event_type": event_type, "filter": {"user_id": user_id}, "tag": "amber"})
    }

    #[actix_rt::test]
    async fn subscriptions_are_created_listed_capped_and_deleted_as_the_schema_says() {
        let schemas = Schemas::load();
        let fake = fake();
        let user = leader_id(&fake);
        let post = reqwest::Method::POST;
        let (status, created) = call(
            &fake,
            post.clone(),
            "/2/activity/subscriptions",
            Some(sub_body("post.create", &user)),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        assert_schema(&schemas, "CreateActivitySubscriptionResponse", &created);
        let sub = &created["data"]["subscription"];
        assert_eq!(sub["event_type"], "post.create");
        assert_eq!(sub["filter"]["user_id"], user.as_str());
        assert_eq!(created["meta"]["total_subscriptions"], 1);

        // The quickstart's shape: `data` is the subscription itself.
        fake.set_create_shape(CreateShape::Quickstart);
        let (status, created2) = call(
            &fake,
            post.clone(),
            "/2/activity/subscriptions",
            Some(sub_body("post.delete", &user)),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(created2["data"]["event_type"], "post.delete");
        assert!(created2["data"]["subscription_id"].is_string());

        // Bad bodies are X's invalid-request problems, nothing is created.
        for bad in [
            json!({"event_type": "post.explode", "filter": {"user_id": user}}),
            json!({"event_type": "post.create"}),
            json!({"event_type": "post.create", "filter": {"user_id": "abc"}}),
            json!({"event_type": "post.create", "filter": {"user_id": user}, "tag": ""}),
        ] {
            let (status, body) = call(
                &fake,
                post.clone(),
                "/2/activity/subscriptions",
                Some(bad.clone()),
            )
            .await;
            assert_eq!(status, 400, "{bad} -> {body}");
            schemas.assert_valid("Problem", &body);
        }
        assert_eq!(fake.subscriptions().len(), 2);

        // The cap.
        fake.set_subscription_cap(2);
        let (status, body) = call(
            &fake,
            post.clone(),
            "/2/activity/subscriptions",
            Some(sub_body("profile.update.bio", &user)),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(fake.subscriptions().len(), 2);

        // Listing pages through every subscription.
        let (status, page1) = call(
            &fake,
            reqwest::Method::GET,
            "/2/activity/subscriptions?max_results=1",
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_schema(&schemas, "GetActivitySubscriptionsResponse", &page1);
        assert_eq!(page1["data"].as_array().map(Vec::len), Some(1));
        assert_eq!(page1["meta"]["total_subscriptions"], 2);
        let token = page1["meta"]["next_token"]
            .as_str()
            .expect("a next token")
            .to_string();
        let (_, page2) = call(
            &fake,
            reqwest::Method::GET,
            &format!("/2/activity/subscriptions?max_results=1&pagination_token={token}"),
            None,
        )
        .await;
        assert_eq!(page2["data"][0]["event_type"], "post.delete");
        assert!(page2["meta"].get("next_token").is_none(), "{page2}");

        // Delete, then an unknown id is a 404 problem.
        let id = sub["subscription_id"].as_str().unwrap().to_string();
        let path = format!("/2/activity/subscriptions/{id}");
        let (status, deleted) = call(&fake, reqwest::Method::DELETE, &path, None).await;
        assert_eq!(status, 200);
        assert_schema(&schemas, "DeleteActivitySubscriptionResponse", &deleted);
        assert_eq!(deleted["data"]["deleted"], true);
        assert_eq!(deleted["meta"]["total_subscriptions"], 1);
        let (status, body) = call(&fake, reqwest::Method::DELETE, &path, None).await;
        assert_eq!(status, 404, "{body}");
        schemas.assert_valid("Problem", &body);
        assert_eq!(fake.subscriptions().len(), 1);
    }

    /// The next chunk of a streaming body, or `None` when it ended or `within` passed.
    async fn chunk(resp: &mut reqwest::Response, within: Duration) -> Result<Option<Bytes>, ()> {
        match tokio::time::timeout(within, resp.chunk()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(_)) => Ok(None),
            Err(_) => Err(()),
        }
    }

    async fn open_stream(fake: &FakeX, query: &str) -> reqwest::Response {
        client()
            .get(format!("{}/2/activity/stream{query}", fake.control_url()))
            .bearer_auth(fake.token())
            .send()
            .await
            .expect("the stream answers")
    }

    /// Reads lines until a non-empty one (skipping keep-alives); `None`: the body ended.
    async fn next_event(resp: &mut reqwest::Response, buf: &mut Vec<u8>) -> Option<Value> {
        let deadline = Duration::from_secs(30);
        loop {
            while let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = buf.drain(..end + 2).take(end).collect();
                if !line.is_empty() {
                    return Some(serde_json::from_slice(&line).expect("a JSON event line"));
                }
            }
            match chunk(resp, deadline)
                .await
                .expect("the stream sends within 30 s")
            {
                Some(c) => buf.extend_from_slice(&c),
                None => return None,
            }
        }
    }

    #[actix_rt::test]
    async fn the_stream_keeps_alive_delivers_matching_events_and_breaks_on_command() {
        let schemas = Schemas::load();
        let fake = fake();
        fake.set_keepalive(Duration::from_millis(50));
        let user = leader_id(&fake);
        let post = reqwest::Method::POST;
        for event_type in ["post.create", "post.delete"] {
            let (status, _) = call(
                &fake,
                post.clone(),
                "/2/activity/subscriptions",
                Some(sub_body(event_type, &user)),
            )
            .await;
            assert_eq!(status, 200);
        }
        let mut resp = open_stream(&fake, "").await;
        assert_eq!(resp.status().as_u16(), 200);
        // A bare keep-alive first.
        let first = chunk(&mut resp, Duration::from_secs(30))
            .await
            .expect("keep-alive")
            .expect("open");
        assert_eq!(&first[..], b"\r\n");
        assert_eq!(fake.activity_stats().open_streams, 1);

        let id = fake.post_ids(&crate::x_api::fake::username(0))[0].clone();
        let emitted = fake.emit_post_create(&id).expect("a live post");
        assert_eq!(
            emitted,
            Emitted {
                matched: true,
                delivered: 1
            }
        );
        let mut buf = Vec::new();
        let event = next_event(&mut resp, &mut buf).await.expect("an event");
        assert_answer(&schemas, "ActivityStreamResponse", &event, false);
        assert_eq!(event["data"]["event_type"], "post.create");
        assert_eq!(event["data"]["payload"]["id"], id.as_str());
        assert_eq!(event["data"]["tag"], "amber");

        // Another user's post matches no subscription: not delivered.
        let other = fake.post_ids(&crate::x_api::fake::username(1))[0].clone();
        assert_eq!(
            fake.emit_post_create(&other),
            Some(Emitted {
                matched: false,
                delivered: 0
            })
        );

        // post.delete deletes in the fake too (polling no longer sees it).
        let emitted = fake.emit_post_delete(&id).expect("a live post");
        assert!(emitted.matched);
        let event = next_event(&mut resp, &mut buf).await.expect("an event");
        // The document's payload `oneOf` cannot tell a deletion from other small payloads
        // (its discriminator is `../event_type`): the payload is checked on its own schema.
        schemas.assert_valid(
            "PostDeleteActivityResponsePayload",
            &event["data"]["payload"],
        );
        assert_eq!(event["data"]["event_type"], "post.delete");
        assert_eq!(
            event["data"]["payload"],
            json!({"id": id, "author_id": user})
        );
        assert!(!fake
            .post_ids(&crate::x_api::fake::username(0))
            .contains(&id));
        assert_eq!(fake.emit_post_delete(&id), None);

        // A cut mid-event: half a line, then the end of the body.
        assert_eq!(fake.disconnect_streams(true), 1);
        let mut tail = Vec::new();
        while let Some(c) = chunk(&mut resp, Duration::from_secs(30))
            .await
            .expect("the cut arrives")
        {
            tail.extend_from_slice(&c);
        }
        let tail: Vec<u8> = tail
            .into_iter()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect();
        assert!(!tail.is_empty() && serde_json::from_slice::<Value>(&tail).is_err());

        // Backfill replays the events of the last minutes on connect.
        let mut resp = open_stream(&fake, "?backfill_minutes=5").await;
        let mut buf = Vec::new();
        let replayed = next_event(&mut resp, &mut buf)
            .await
            .expect("a replayed event");
        assert_eq!(replayed["data"]["event_type"], "post.create");

        // A stall: once what was already sent is read, nothing more (no keep-alive for
        // many keep-alive periods).
        assert_eq!(fake.stall_streams(), 1);
        let started = Instant::now();
        loop {
            match chunk(&mut resp, Duration::from_millis(600)).await {
                Err(()) => break,
                Ok(Some(_)) => assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "a stalled stream kept sending"
                ),
                Ok(None) => panic!("a stalled stream must stay open"),
            }
        }
        drop(resp);

        // 429 on connect, with the reset; the next connect succeeds.
        fake.inject_stream_fault(
            StreamFault::RateLimited {
                reset_in: Duration::from_secs(7),
            },
            Some(1),
        );
        let resp = open_stream(&fake, "").await;
        assert_eq!(resp.status().as_u16(), 429);
        let reset: i64 = resp.headers()["x-rate-limit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset >= Utc::now().timestamp() + 5);
        let resp = open_stream(&fake, "").await;
        assert_eq!(resp.status().as_u16(), 200);
        let bad = open_stream(&fake, "?backfill_minutes=6").await;
        assert_eq!(bad.status().as_u16(), 400);
        let stats = fake.activity_stats();
        assert_eq!(stats.stream_faults_served, 1);
        assert!(stats.keepalives_sent >= 1);
    }

    #[actix_rt::test]
    async fn a_burst_adds_posts_and_sends_every_one_on_the_stream() {
        let fake = fake();
        let user = leader_id(&fake);
        let (status, _) = call(
            &fake,
            reqwest::Method::POST,
            "/2/activity/subscriptions",
            Some(sub_body("post.create", &user)),
        )
        .await;
        assert_eq!(status, 200);
        let mut resp = open_stream(&fake, "").await;
        let name = crate::x_api::fake::username(0);
        let before = fake.post_ids(&name).len();
        let (status, done) = call(
            &fake,
            reqwest::Method::POST,
            "/_fake/activity/burst",
            Some(json!({"username": name, "count": 300})),
        )
        .await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["emitted"], 300);
        assert_eq!(done["matched"], 300);
        assert_eq!(done["delivered"], 300);
        assert_eq!(fake.post_ids(&name).len(), before + 300);
        let mut buf = Vec::new();
        let mut ids = Vec::new();
        while ids.len() < 300 {
            let event = next_event(&mut resp, &mut buf).await.expect("an event");
            assert_eq!(event["data"]["event_type"], "post.create");
            ids.push(event["data"]["payload"]["id"].as_str().unwrap().to_string());
        }
        assert_eq!(ids[0], done["first"].as_str().unwrap());
        assert_eq!(ids[299], done["last"].as_str().unwrap());
        let (status, _) = call(
            &fake,
            reqwest::Method::POST,
            "/_fake/activity/burst",
            Some(json!({"username": name, "count": MAX_BURST + 1})),
        )
        .await;
        assert_eq!(status, 400);
    }
}
