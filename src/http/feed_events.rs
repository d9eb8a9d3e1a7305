//! `GET /api/feed/events`: the feed as Server-Sent Events. Every post stored for the first
//! time (`new`) and every post removed (`deleted`) that the feed's filters (`leaders=`,
//! `source=`, `kinds=`, parsed as `/api/feed` parses them) would show, as soon as it is on
//! disk (`crate::live`); `reset` when the client must reload (too much changed at once,
//! or it fell too far behind).
//!
//! - Each event carries `id: <sequence>.<high-water post id>`. A client that reconnects
//!   with `Last-Event-ID` gets what it missed: from the hub's ring (new and deleted posts)
//!   while the ring still holds the events after that id; otherwise (another run of the
//!   server, or too far behind) the posts stored since, read from the store (posts whose id
//!   is above the high-water mark, at most [`REPLAY_MAX`], else a `reset`). Deletions
//!   older than the ring cannot be replayed: the client is not told about those.
//! - A comment line (`: keep-alive`) after `SSE_KEEPALIVE_SECONDS` without an event, so
//!   proxies and clients see a live connection; a stream ends after
//!   `SSE_MAX_STREAM_SECONDS` (the client reconnects with `Last-Event-ID`, losing nothing).
//! - Opening a stream costs one token of the client's API bucket, like any request; at
//!   most `SSE_MAX_CONNECTIONS` streams are open at once (one more is a 503 JSON).
//! - At shutdown the hub is closed and every stream ends at once, so open streams never
//!   hold the server's graceful stop.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::LiveSettings;
use crate::domain::post::Post;
use crate::error::AppError;
use crate::http::feed::FeedFilter;
use crate::http::rate_limit::FEED_EVENTS_LIMIT;
use crate::http::AppState;
use crate::live::{Change, Hub, Lagged, LiveEvent};
use crate::shape::time::rfc3339;

/// Most posts a `Last-Event-ID` resume reads from the store; beyond, the client reloads.
pub const REPLAY_MAX: usize = 500;
/// Events read from the hub at a time.
const BATCH: usize = 256;
/// How long a browser waits before reconnecting a dropped stream (the `retry:` field).
const RETRY_MS: u64 = 3000;

/// The open event streams: the hub they read and the cap on how many.
pub struct Streams {
    hub: Arc<Hub>,
    open: Arc<AtomicUsize>,
    settings: LiveSettings,
}

impl Streams {
    /// Streams over `hub` under `settings` (`SSE_*`).
    pub fn new(hub: Arc<Hub>, settings: LiveSettings) -> Streams {
        Streams {
            hub,
            open: Arc::default(),
            settings,
        }
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The most streams open at once (`SSE_MAX_CONNECTIONS`).
    pub fn max(&self) -> usize {
        self.settings.max_streams
    }

    /// A slot for one more stream, if the cap allows.
    fn take_slot(&self) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.settings.max_streams).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.open.clone()))
    }
}

/// One open stream's place under the cap; freed when the stream is dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Registers the route (rate limited like the feed).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/feed/events").route(web::get().to(events).wrap(FEED_EVENTS_LIMIT)));
}

/// The query of the event stream: the feed's filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Comma list of 1 to 100 leader ids.
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}(,[0-9]{1,19}){0,99}$")]
    leaders: Option<String>,
    /// Only posts from this source (`twitter` is `x`).
    #[param(value_type = Option<crate::http::feed::SourceParam>, inline)]
    source: Option<String>,
    /// Only posts of these kinds: a comma list of `post`, `repost`, `quote`, `reply`
    /// (absent: every kind).
    #[param(value_type = Option<Vec<crate::shape::post::KindName>>, style = Form, explode = false, min_items = 1)]
    kinds: Option<String>,
}

/// Reads `Last-Event-ID`: `None` without one; `Some(None)` for an id this stream never
/// writes (the client is told to reload: a `reset` event, so nothing is lost and no
/// client is refused for an opaque value it echoed); else `<sequence>.<high-water post id>`.
fn parse_last_event_id(req: &HttpRequest) -> Option<Option<(u64, u64)>> {
    let raw = req.headers().get("last-event-id")?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    Some(
        raw.to_str()
            .ok()
            .and_then(|text| text.split_once('.'))
            .filter(|(seq, high)| digits(seq) && digits(high))
            .and_then(|(seq, high)| Some((seq.parse().ok()?, high.parse().ok()?))),
    )
}

/// One SSE event: `id`, `event` and one `data` line of JSON.
fn frame(id: (u64, u64), change: Change, post: Option<(u64, u64, &str, &str, i64)>) -> Bytes {
    let mut out = Vec::with_capacity(192);
    // Writing into a Vec cannot fail; every value is digits or a fixed ASCII word.
    let _ = write!(
        out,
        "id: {}.{}\nevent: {}\ndata: ",
        id.0,
        id.1,
        change.as_str()
    );
    let _ = match post {
        Some((post_id, leader_id, platform, kind, ts)) => write!(
            out,
            "{{\"type\":\"{}\",\"id\":\"{post_id}\",\"leaderId\":\"{leader_id}\",\"platform\":\"{platform}\",\"kind\":\"{kind}\",\"timestamp\":\"{}\"}}\n\n",
            change.as_str(),
            rfc3339(ts)
        ),
        None => write!(out, "{{\"type\":\"{}\"}}\n\n", change.as_str()),
    };
    Bytes::from(out)
}

fn event_frame(e: &LiveEvent) -> Bytes {
    frame(
        (e.seq, e.high_water),
        e.change,
        e.post.map(|p| {
            (
                p.post_id,
                p.leader_id,
                p.platform.as_str(),
                p.kind.as_str(),
                p.timestamp_ms,
            )
        }),
    )
}

fn post_frame(at: u64, post: &Post) -> Bytes {
    frame(
        (at, post.id),
        Change::New,
        Some((
            post.id,
            post.leader_id,
            post.platform.as_str(),
            post.details.kind.as_str(),
            post.timestamp_ms,
        )),
    )
}

/// One open stream.
struct Subscription {
    hub: Arc<Hub>,
    rx: watch::Receiver<u64>,
    /// The last hub event read.
    cursor: u64,
    filter: FeedFilter,
    /// Frames ready to send.
    queue: VecDeque<Bytes>,
    /// `new` events of posts up to this id were replayed from the store already.
    replayed_up_to: u64,
    keepalive: Duration,
    ends: Instant,
    _slot: Slot,
}

impl Subscription {
    /// Reads what the hub published after the cursor into the queue; true if it read any.
    fn drain(&mut self) -> bool {
        self.rx.borrow_and_update();
        match self.hub.after(self.cursor, BATCH) {
            Ok(events) => {
                for e in &events {
                    self.cursor = e.seq;
                    let shown = match e.post {
                        Some(p) => {
                            self.filter.shows(p.leader_id, p.platform, p.kind)
                                && !(e.change == Change::New && p.post_id <= self.replayed_up_to)
                        }
                        None => true,
                    };
                    if shown {
                        self.queue.push_back(event_frame(e));
                    }
                }
                !events.is_empty()
            }
            Err(Lagged) => {
                // Too far behind to say what changed: the client reloads, then follows on.
                let (seq, high) = self.hub.position();
                self.cursor = seq;
                self.queue
                    .push_back(frame((seq, high), Change::Reset, None));
                true
            }
        }
    }

    /// The next frame, or `None` once the stream ends (shutdown or its time is up).
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Subscription)> {
        loop {
            if let Some(frame) = self.queue.pop_front() {
                return Some((Ok(frame), self));
            }
            if self.hub.is_closed() {
                return None;
            }
            if self.drain() {
                continue;
            }
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep(self.keepalive) => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
                () = tokio::time::sleep_until(self.ends) => return None,
            }
        }
    }
}

/// `GET /api/feed/events`.
#[utoipa::path(
    get,
    path = "/api/feed/events",
    operation_id = "getFeedEvents",
    tag = "feed",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received: the events (or, from another run of the server, the posts) missed since are sent first; an id this server never sent gets a `reset` event first (reload the feed)"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `new` and `deleted` (data: the post's `id`, `leaderId`, `platform`, `kind`, `timestamp`) and `reset` (reload the feed), each with an `id`; `: keep-alive` comments in between. The stream ends after `SSE_MAX_STREAM_SECONDS` or at shutdown; reconnect with `Last-Event-ID`.", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad input", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody),
        (status = 503, description = "Too many event streams are open (`SSE_MAX_CONNECTIONS`), or the server is stopping", body = crate::error::ErrorBody),
    )
)]
pub async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let filter = FeedFilter::parse(
        q.leaders.as_deref(),
        q.source.as_deref(),
        q.kinds.as_deref(),
    )?;
    let last = parse_last_event_id(&req);
    let streams = &state.live;
    let hub = streams.hub.clone();
    if hub.is_closed() {
        return Err(AppError::Unavailable {
            code: "shutting_down",
            message: "the server is stopping; reconnect in a moment".into(),
        });
    }
    let slot = streams.take_slot().ok_or_else(|| AppError::Unavailable {
        code: "too_many_streams",
        message: format!(
            "{} event streams are open, the most this server allows (SSE_MAX_CONNECTIONS); try again shortly",
            streams.settings.max_streams
        ),
    })?;
    // Subscribed before the position is read: nothing published in between is missed.
    let rx = hub.subscribe();
    let mut queue = VecDeque::new();
    queue.push_back(Bytes::from(format!("retry: {RETRY_MS}\n: connected\n\n")));
    let mut replayed_up_to = 0;
    let cursor = match last {
        Some(None) => {
            let (seq, now_high) = hub.position();
            queue.push_back(frame((seq, now_high), Change::Reset, None));
            seq
        }
        Some(Some((seq, _))) if hub.covers(seq) => seq,
        Some(Some((_, high))) => {
            let (seq, now_high) = hub.position();
            let reader = state.reader.clone();
            match web::block(move || reader.posts_after(high, REPLAY_MAX)).await?? {
                Some(posts) => {
                    for post in &posts {
                        replayed_up_to = replayed_up_to.max(post.id);
                        if filter.shows(post.leader_id, post.platform, post.details.kind) {
                            queue.push_back(post_frame(seq, post));
                        }
                    }
                }
                None => queue.push_back(frame((seq, now_high), Change::Reset, None)),
            }
            seq
        }
        None => hub.position().0,
    };
    let settings = &streams.settings;
    let subscription = Subscription {
        hub,
        rx,
        cursor,
        filter,
        queue,
        replayed_up_to,
        keepalive: Duration::from_secs(settings.keepalive_seconds),
        ends: Instant::now() + Duration::from_secs(settings.max_stream_seconds),
        _slot: slot,
    };
    let body = futures_util::stream::unfold(subscription, Subscription::next);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx and similar proxies: pass events on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::post::{Platform, PostKind};
    use crate::live::PostRef;

    #[test]
    fn an_event_is_one_sse_frame_with_its_id_and_the_posts_json() {
        let e = LiveEvent {
            seq: 17,
            high_water: 40,
            change: Change::Deleted,
            post: Some(PostRef {
                post_id: 39,
                leader_id: 2,
                platform: Platform::X,
                kind: PostKind::Quote,
                timestamp_ms: 0,
            }),
        };
        let text = String::from_utf8(event_frame(&e).to_vec()).unwrap();
        let (head, data) = text.split_once("data: ").unwrap();
        assert_eq!(head, "id: 17.40\nevent: deleted\n");
        assert!(data.ends_with("\n\n") && !data.trim_end().contains('\n'));
        let json: serde_json::Value = serde_json::from_str(data.trim_end()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "deleted", "id": "39", "leaderId": "2", "platform": "X", "kind": "quote", "timestamp": "1970-01-01T00:00:00.000Z"})
        );
        let reset = String::from_utf8(frame((1, 2), Change::Reset, None).to_vec()).unwrap();
        assert_eq!(
            reset,
            "id: 1.2\nevent: reset\ndata: {\"type\":\"reset\"}\n\n"
        );
    }

    #[test]
    fn the_stream_cap_is_held_and_freed() {
        let streams = Streams::new(
            Arc::new(Hub::starting_at(1)),
            LiveSettings {
                max_streams: 2,
                keepalive_seconds: 15,
                max_stream_seconds: 60,
            },
        );
        let a = streams.take_slot().unwrap();
        let _b = streams.take_slot().unwrap();
        assert!(streams.take_slot().is_none());
        assert_eq!(streams.open(), 2);
        drop(a);
        assert!(streams.take_slot().is_some());
    }
}
