//! `GET /api/feed` (page or cursor paging, leader, source and kind filters) and
//! `GET /api/dashboard`.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::domain::cursor::Cursor;
use crate::domain::post::{KindSet, Platform, PostKind};
use crate::error::AppError;
use crate::http::dto::{FeedPostJson, KindName, LeaderJson, PostJson};
use crate::http::rate_limit::RateLimited;
use crate::http::AppState;
use crate::storage::query::{PageStart, PostQuery};
use crate::storage::StoreReader;

/// Default and largest page sizes of the feed.
pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;
/// Most leader ids one `leaders=` filter may name.
const MAX_LEADER_FILTER: usize = 100;
/// Posts on the dashboard.
const DASHBOARD_POSTS: usize = 100;

/// Most rendered pages kept at once.
const CACHE_ENTRIES: usize = 512;

/// Rendered feed and dashboard answers, keyed by normalised query and valid for one
/// store generation: any write makes every entry stale, so an answer is never older
/// than the data. Bounded: when full, stale entries go, then everything.
#[derive(Default)]
pub struct PageCache {
    pages: RwLock<HashMap<String, (u64, Bytes)>>,
}

impl PageCache {
    fn get(&self, key: &str, generation: u64) -> Option<Bytes> {
        match self.pages.read().get(key) {
            Some((g, body)) if *g == generation => Some(body.clone()),
            _ => None,
        }
    }

    fn put(&self, key: String, generation: u64, body: Bytes) {
        let mut pages = self.pages.write();
        if pages.len() >= CACHE_ENTRIES {
            pages.retain(|_, (g, _)| *g == generation);
            if pages.len() >= CACHE_ENTRIES {
                pages.clear();
            }
        }
        pages.insert(key, (generation, body));
    }
}

/// Answers from the cache, or renders with `render` off the executor and caches.
async fn cached(
    state: &AppState,
    key: String,
    render: impl FnOnce(&StoreReader) -> Result<Vec<u8>, AppError> + Send + 'static,
) -> Result<HttpResponse, AppError> {
    // Read the generation before rendering: a write that lands meanwhile bumps it, so
    // this entry is stale at once rather than wrongly fresh.
    let generation = state.reader.generation();
    let body = match state.page_cache.get(&key, generation) {
        Some(body) => body,
        None => {
            let reader = state.reader.clone();
            let body = Bytes::from(web::block(move || render(&reader)).await??);
            state.page_cache.put(key, generation, body.clone());
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// Registers the routes of this module. The feed is rate limited (SPEC).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/feed").route(web::get().to(feed).wrap(RateLimited::default())))
        .service(web::resource("/dashboard").route(web::get().to(dashboard)));
}

/// Raw query of the feed; every field is checked by hand for a clear 400, by exactly the
/// rules its documentation states.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Page number, from 1 (page paging; ignored with `before`).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1_000_000)]
    page: Option<String>,
    /// Posts per page, 1..100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    page_size: Option<String>,
    /// Cursor paging: the `next_cursor` of the previous page (`<timestamp_ms>-<post id>`).
    #[param(value_type = Option<String>, pattern = "^-?[0-9]{1,18}-[0-9]{1,19}$")]
    before: Option<String>,
    /// Comma list of 1 to 100 leader ids.
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}(,[0-9]{1,19}){0,99}$")]
    leaders: Option<String>,
    /// Only posts from this source (`twitter` is `x`).
    #[param(value_type = Option<SourceParam>, inline)]
    source: Option<String>,
    /// Only posts of these kinds: a comma list of `post`, `repost`, `quote`, `reply`
    /// (absent: every kind), e.g. `kinds=post,quote` leaves reposts and replies out.
    #[param(value_type = Option<Vec<KindName>>, style = Form, explode = false, min_items = 1)]
    kinds: Option<String>,
}

/// `source=` of the feed (SPEC's spellings).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum SourceParam {
    X,
    Twitter,
    Facebook,
    News,
}

/// True when `s` is 1 to `max` ASCII digits (no sign, no spaces): what the document
/// calls an integer or a digit run.
fn digits(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a whole number in `lo..=hi` for query parameter `name`.
pub fn parse_bounded(
    name: &str,
    raw: Option<&str>,
    default: usize,
    lo: usize,
    hi: usize,
) -> Result<usize, AppError> {
    match raw {
        None => Ok(default),
        Some(s) => Some(s)
            .filter(|s| digits(s, 20))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| {
                AppError::bad_request(
                    "invalid_query",
                    format!("{name} must be a whole number from {lo} to {hi}, got {s:?}"),
                )
            }),
    }
}

/// Parses a cursor parameter: `<timestamp_ms>-<post id>`, at most 18 and 19 digits (every
/// cursor the server hands out fits; the document states the same pattern).
pub fn parse_cursor(name: &str, raw: &str) -> Result<Cursor, AppError> {
    let shaped = raw
        .rsplit_once('-')
        .is_some_and(|(ts, id)| digits(ts.strip_prefix('-').unwrap_or(ts), 18) && digits(id, 19));
    let bad =
        |e: String| AppError::bad_request("invalid_cursor", format!("{name}: {e}, got {raw:?}"));
    if !shaped {
        return Err(bad(crate::domain::cursor::CursorError.to_string()));
    }
    raw.parse()
        .map_err(|e: crate::domain::cursor::CursorError| bad(e.to_string()))
}

/// Parses `leaders=1,2,3`: 1 to 100 ids of at most 19 digits, comma-separated.
pub fn parse_leader_ids(raw: &str) -> Result<Vec<u64>, AppError> {
    let ids: Option<Vec<u64>> = raw
        .split(',')
        .map(|s| {
            Some(s)
                .filter(|s| digits(s, 19))
                .and_then(|s| s.parse().ok())
        })
        .collect();
    let ids = ids.ok_or_else(|| {
        AppError::bad_request(
            "invalid_query",
            format!("leaders must be a comma list of leader ids, got {raw:?}"),
        )
    })?;
    if ids.len() > MAX_LEADER_FILTER {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("leaders names at most {MAX_LEADER_FILTER} ids"),
        ));
    }
    Ok(ids)
}

/// Parses `kinds=post,quote`: a comma list of 1 or more kinds, each spelled exactly.
pub fn parse_kinds(raw: &str) -> Result<KindSet, AppError> {
    let kinds: Option<Vec<PostKind>> = raw.split(',').map(PostKind::parse).collect();
    kinds.map(KindSet::of).ok_or_else(|| {
        AppError::bad_request(
            "invalid_query",
            format!("kinds must be a comma list of post, repost, quote and reply, got {raw:?}"),
        )
    })
}

/// `source=`: exactly `x`, `twitter`, `facebook` or `news`.
fn source_param(s: &str) -> Option<Platform> {
    matches!(s, "x" | "twitter" | "facebook" | "news")
        .then(|| Platform::parse(s))
        .flatten()
}

#[derive(Serialize, utoipa::ToSchema)]
struct FeedJson<'a> {
    posts: Vec<FeedPostJson<'a>>,
    page: Option<usize>,
    page_size: usize,
    total: usize,
    has_next: bool,
    next_cursor: Option<String>,
}

/// The work of a feed request, off the async executor: read the page, render it.
pub fn render_feed(
    reader: &StoreReader,
    query: &PostQuery,
    page: Option<usize>,
) -> Result<Vec<u8>, AppError> {
    let result = reader.page(query)?;
    reader.with_leaders(|leaders| {
        let body = FeedJson {
            posts: result
                .posts
                .iter()
                .map(|p| FeedPostJson::from(p, leaders.get(&p.leader_id)))
                .collect(),
            page,
            page_size: query.limit(),
            total: result.total,
            has_next: result.has_next,
            next_cursor: result.next_cursor.map(|c| c.to_string()),
        };
        serde_json::to_vec(&body).map_err(|e| AppError::Internal(e.into()))
    })
}

/// `GET /api/feed`.
#[utoipa::path(get, path = "/api/feed", operation_id = "getFeed", tag = "feed", params(FeedQuery), responses((status = 200, description = "A page of the feed, newest first", body = FeedJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)))]
pub async fn feed(
    state: web::Data<AppState>,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner();
    let page_size = parse_bounded(
        "page_size",
        q.page_size.as_deref(),
        DEFAULT_PAGE_SIZE,
        1,
        MAX_PAGE_SIZE,
    )?;
    // With a cursor, `page` is checked but plays no part (the page is then null).
    let page = parse_bounded("page", q.page.as_deref(), 1, 1, 1_000_000)?;
    let (start, page) = match &q.before {
        Some(c) => (PageStart::Before(parse_cursor("before", c)?), None),
        None => (
            PageStart::Offset((page - 1).saturating_mul(page_size)),
            Some(page),
        ),
    };
    let leaders = match q.leaders.as_deref() {
        Some(raw) => parse_leader_ids(raw)?,
        None => Vec::new(),
    };
    let platform = match q.source.as_deref() {
        Some(s) => Some(source_param(s).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                format!("source must be x, twitter, facebook or news, got {s:?}"),
            )
        })?),
        None => None,
    };
    let kinds = match q.kinds.as_deref() {
        Some(raw) => parse_kinds(raw)?,
        None => KindSet::ALL,
    };
    let posts_query = PostQuery::newest(page_size)
        .leaders(leaders)
        .platform(platform)
        .kinds(kinds)
        .starting(start);
    // The normalised query names the page (and its size); `page` only labels it.
    let key = format!("feed|{posts_query:?}|{page:?}");
    cached(&state, key, move |reader| {
        render_feed(reader, &posts_query, page)
    })
    .await
}

#[derive(Serialize, utoipa::ToSchema)]
struct DashboardJson<'a> {
    leaders: Vec<LeaderJson<'a>>,
    posts: Vec<PostJson<'a>>,
}

/// `GET /api/dashboard`: every leader and the newest posts.
#[utoipa::path(get, path = "/api/dashboard", operation_id = "getDashboard", tag = "feed", responses((status = 200, description = "Every leader and the newest 100 posts", body = DashboardJson)))]
pub async fn dashboard(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    cached(&state, "dashboard".to_string(), move |reader| {
        let page = reader.page(&PostQuery::newest(DASHBOARD_POSTS))?;
        reader.with_leaders(|leaders| {
            let body = DashboardJson {
                leaders: leaders.values().map(LeaderJson::from).collect(),
                posts: page
                    .posts
                    .iter()
                    .map(|p| PostJson::from(p, leaders.get(&p.leader_id)))
                    .collect(),
            };
            serde_json::to_vec(&body).map_err(|e| AppError::Internal(e.into()))
        })
    })
    .await
}
