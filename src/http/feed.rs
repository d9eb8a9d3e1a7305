//! `GET /api/feed` (page or cursor paging, leader, source and kind filters) and
//! `GET /api/dashboard`.

use std::borrow::Cow;
use std::collections::HashMap;

use actix_web::http::header::HeaderValue;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::domain::cursor::Cursor;
use crate::domain::leader::Leader;
use crate::domain::post::{KindSet, Platform, Post, PostKind};
use crate::error::AppError;
use crate::http::rate_limit::FEED_LIMIT;
use crate::http::AppState;
use crate::shape::leader::LeaderJson;
use crate::shape::post::{FeedPostJson, KindName, PostJson};
use crate::storage::query::{PageStart, PostQuery};
use crate::storage::{PageInfo, StoreReader};

/// Default and largest page sizes of the feed.
pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;
/// Most leader ids one `leaders=` filter may name.
const MAX_LEADER_FILTER: usize = 100;
/// Posts on the dashboard.
const DASHBOARD_POSTS: usize = 100;

/// Most rendered pages kept at once.
const CACHE_ENTRIES: usize = 512;

/// Rendered dashboard answers, valid for one store generation: any write makes every
/// entry stale, so an answer is never older than the data. Bounded: when full, stale
/// entries go, then everything. (Feed pages are assembled from the store's rendered
/// posts instead, which any page can reuse.)
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
    cfg.service(web::resource("/feed").route(web::get().to(feed).wrap(FEED_LIMIT)))
        .service(web::resource("/dashboard").route(web::get().to(dashboard)));
}

/// Raw query of the feed; every field is checked by hand for a clear 400, by exactly the
/// rules its documentation states. The document's parameters; the handler reads them
/// with [`FeedParams::parse`], which a unit test holds to what `web::Query<FeedQuery>`
/// (`serde_urlencoded`) gives.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[cfg_attr(not(test), allow(dead_code))]
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

/// The feed's query parameters as `web::Query<FeedQuery>` reads them, borrowed from the
/// query string unless a value needs decoding. By hand rather than through
/// `serde_urlencoded` (~2.6k instructions and three allocations a page, BENCHMARKS.md
/// issue 14): the same pairs (split at `&`, empty pieces skipped, the name up to the
/// first `=`, `+` a space, `%XX` decoded, invalid UTF-8 replaced), unknown names ignored,
/// and a name given twice the same 400 with the same message.
#[derive(Debug, Default, PartialEq, Eq)]
struct FeedParams<'a> {
    page: Option<Cow<'a, str>>,
    page_size: Option<Cow<'a, str>>,
    before: Option<Cow<'a, str>>,
    leaders: Option<Cow<'a, str>>,
    source: Option<Cow<'a, str>>,
    kinds: Option<Cow<'a, str>>,
}

impl<'a> FeedParams<'a> {
    /// Reads a raw query string (without the `?`).
    fn parse(query: &'a str) -> Result<FeedParams<'a>, AppError> {
        let mut params = FeedParams::default();
        let bytes = query.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            // One pass over the piece for its end and its first `=` (both ASCII, so every
            // cut below falls between characters).
            let mut end = start;
            let mut equals = None;
            let mut coded = false;
            while end < bytes.len() && bytes[end] != b'&' {
                match bytes[end] {
                    b'=' if equals.is_none() => equals = Some(end),
                    b'+' | b'%' => coded = true,
                    _ => {}
                }
                end += 1;
            }
            let piece = start..end;
            start = end + 1;
            if piece.is_empty() {
                continue;
            }
            let (name, value) = match equals {
                Some(at) => (&query[piece.start..at], &query[at + 1..piece.end]),
                None => (&query[piece], ""),
            };
            // Nothing to decode in the usual piece: its slices as they are.
            let decode = |raw| {
                if coded {
                    form_decode(raw)
                } else {
                    Cow::Borrowed(raw)
                }
            };
            let name = decode(name);
            let (field, field_name) = match &*name {
                "page" => (&mut params.page, "page"),
                "page_size" => (&mut params.page_size, "page_size"),
                "before" => (&mut params.before, "before"),
                "leaders" => (&mut params.leaders, "leaders"),
                "source" => (&mut params.source, "source"),
                "kinds" => (&mut params.kinds, "kinds"),
                _ => continue,
            };
            if field.is_some() {
                // What serde's derive says of a field given twice, through `web::Query`
                // and `http::query_config`.
                return Err(AppError::bad_request(
                    "invalid_query",
                    format!("Query deserialize error: duplicate field `{field_name}`"),
                ));
            }
            *field = Some(decode(value));
        }
        Ok(params)
    }
}

/// One name or value of an `application/x-www-form-urlencoded` string, decoded as
/// `form_urlencoded` (under `serde_urlencoded`) decodes it: `+` is a space, `%` and two
/// hex digits the byte they spell (any other `%` stays), then UTF-8 with invalid
/// sequences replaced. Borrowed when there is nothing to decode.
fn form_decode(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'+' || b == b'%') {
        return Cow::Borrowed(raw);
    }
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).map(|d| d as u8)
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' => {
                let high = bytes.get(at + 1).copied().and_then(hex);
                let low = bytes.get(at + 2).copied().and_then(hex);
                match (high, low) {
                    (Some(high), Some(low)) => {
                        out.push(high * 16 + low);
                        at += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        at += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `source=` of the feed (SPEC's spellings).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum SourceParam {
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

/// The feed's filters (`leaders=`, `source=`, `kinds=`), shared by `GET /api/feed` and
/// its event stream `GET /api/feed/events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFilter {
    /// Empty: every leader.
    pub leaders: Vec<u64>,
    pub platform: Option<Platform>,
    pub kinds: KindSet,
}

impl FeedFilter {
    /// Parses the three parameters by the rules the document states (a clear 400 each).
    pub fn parse(
        leaders: Option<&str>,
        source: Option<&str>,
        kinds: Option<&str>,
    ) -> Result<FeedFilter, AppError> {
        let leaders = match leaders {
            Some(raw) => parse_leader_ids(raw)?,
            None => Vec::new(),
        };
        let platform = match source {
            Some(s) => Some(source_param(s).ok_or_else(|| {
                AppError::bad_request(
                    "invalid_query",
                    format!("source must be x, twitter, facebook or news, got {s:?}"),
                )
            })?),
            None => None,
        };
        let kinds = match kinds {
            Some(raw) => parse_kinds(raw)?,
            None => KindSet::ALL,
        };
        Ok(FeedFilter {
            leaders,
            platform,
            kinds,
        })
    }

    /// True when the feed with these filters shows a post of this leader, platform and kind.
    pub fn shows(&self, leader_id: u64, platform: Platform, kind: PostKind) -> bool {
        (self.leaders.is_empty() || self.leaders.contains(&leader_id))
            && self.platform.is_none_or(|p| p == platform)
            && self.kinds.contains(kind)
    }
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

/// One post of the feed as JSON: what the store keeps per post and pages are made of.
pub fn render_feed_post(post: &Post, leader: Option<&Leader>) -> Result<Vec<u8>, AppError> {
    serde_json::to_vec(&FeedPostJson::from(post, leader)).map_err(|e| AppError::Internal(e.into()))
}

/// `Content-Type: application/json`, checked once at compile time (a `&str` is checked
/// and copied into a fresh allocation on every answer).
const JSON_TYPE: HeaderValue = HeaderValue::from_static("application/json");

/// The start of a feed answer, up to its posts.
const FEED_HEAD: &[u8] = b"{\"posts\":[";

/// Completes a feed answer after its rendered posts: byte for byte what serialising
/// [`FeedJson`] gives (a unit test holds the two together).
pub fn finish_feed_body(
    body: &mut Vec<u8>,
    info: &PageInfo,
    page_number: Option<usize>,
    page_size: usize,
) {
    // By hand with `itoa` rather than `write!` (its formatting machinery was ~1.8k
    // instructions a page, issue 14). A cursor is digits and dashes: nothing to escape.
    let mut digits = itoa::Buffer::new();
    body.extend_from_slice(b"],\"page\":");
    match page_number {
        Some(n) => body.extend_from_slice(digits.format(n).as_bytes()),
        None => body.extend_from_slice(b"null"),
    }
    body.extend_from_slice(b",\"page_size\":");
    body.extend_from_slice(digits.format(page_size).as_bytes());
    body.extend_from_slice(b",\"total\":");
    body.extend_from_slice(digits.format(info.total).as_bytes());
    body.extend_from_slice(if info.has_next {
        &b",\"has_next\":true,\"next_cursor\":"[..]
    } else {
        &b",\"has_next\":false,\"next_cursor\":"[..]
    });
    match info.next_cursor {
        Some(c) => {
            body.push(b'"');
            body.extend_from_slice(digits.format(c.timestamp_ms).as_bytes());
            body.push(b'-');
            body.extend_from_slice(digits.format(c.post_id).as_bytes());
            body.extend_from_slice(b"\"}");
        }
        None => body.extend_from_slice(b"null}"),
    }
}

/// `GET /api/feed`.
#[utoipa::path(get, path = "/api/feed", operation_id = "getFeed", tag = "feed", params(FeedQuery), responses((status = 200, description = "A page of the feed, newest first", body = FeedJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)))]
pub async fn feed(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let q = FeedParams::parse(req.query_string()).inspect_err(|_| {
        // The line `web::Query` logs for a query it cannot read.
        log::debug!(
            target: "actix_web::types::query",
            "Failed during Query extractor deserialization. Request path: {:?}",
            req.path()
        );
    })?;
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
    let filter = FeedFilter::parse(
        q.leaders.as_deref(),
        q.source.as_deref(),
        q.kinds.as_deref(),
    )?;
    let posts_query = PostQuery::newest(page_size)
        .leaders(filter.leaders)
        .platform(filter.platform)
        .kinds(filter.kinds)
        .starting(start);
    // Every post on the page rendered already (the usual case): assembled right here,
    // in microseconds. Otherwise the page is read and its missing posts rendered on the
    // blocking pool, and kept for the next pages that show them.
    // Small: storage reserves the page's exact size once it knows it (a larger guess
    // here would be copied whole by that reserve).
    let mut body = Vec::with_capacity(FEED_HEAD.len());
    body.extend_from_slice(FEED_HEAD);
    let (info, mut body) = match state
        .reader
        .rendered_page_without_waiting(&posts_query, &mut body)
    {
        Some(info) => (info, body),
        None => {
            let reader = state.reader.clone();
            web::block(move || {
                let info = reader.rendered_page(&posts_query, render_feed_post, &mut body)?;
                Ok::<_, AppError>((info, body))
            })
            .await??
        }
    };
    finish_feed_body(&mut body, &info, page, page_size);
    Ok(HttpResponse::Ok().content_type(JSON_TYPE).body(body))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::post::{
        Author, Counts, MediaItem, MediaKind, MediaVariant, PostDetails, ReferencedPost, Relation,
        Verification,
    };
    use crate::domain::sentiment::Sentiment;

    fn post(id: u64, text: &str) -> Post {
        Post {
            id,
            leader_id: 7,
            platform: Platform::X,
            content: text.to_string(),
            timestamp_ms: 1_735_689_600_000 + id as i64,
            sentiment: Sentiment::Neutral,
            sentiment_score: 0.0,
            platform_post_id: Some(format!("18{id}")),
            verification: Verification::Unverified,
            author: Author::default(),
            details: PostDetails::default(),
            client_metrics: Some(r#"{"likes":3,"nested":{"a":[1,2]}}"#.to_string()),
            revision: 0,
        }
    }

    /// A repost with counts, a video and the reposted post: every typed field set.
    fn repost(id: u64) -> Post {
        let video = MediaItem {
            kind: MediaKind::Video,
            url: None,
            preview_image_url: Some("https://pbs.twimg.com/v.jpg".into()),
            width: Some(640),
            height: Some(360),
            duration_ms: Some(1500),
            variants: vec![MediaVariant {
                url: "https://video.twimg.com/v.mp4".into(),
                content_type: "video/mp4".into(),
                bit_rate: Some(832_000),
            }],
        };
        let author = Author {
            id: Some("99".into()),
            handle: Some("bob".into()),
            name: Some("Bob \"B\"".into()),
            ..Author::default()
        };
        Post {
            client_metrics: None,
            author: author.clone(),
            details: PostDetails {
                kind: PostKind::Repost,
                counts: Some(Counts {
                    likes: 5,
                    comments: 1,
                    shares: 2,
                    quotes: 0,
                    bookmarks: Some(3),
                    impressions: None,
                }),
                language: Some("en".into()),
                media: vec![video.clone()],
                referenced: Some(Box::new(ReferencedPost {
                    id: "1777".into(),
                    relation: Relation::Reposted,
                    author,
                    text: Some("the original \u{e9}".into()),
                    created_at_ms: Some(1_735_689_000_000),
                    media: vec![video],
                })),
                conversation_id: Some("1777".into()),
                in_reply_to_user_id: None,
                reposted_by: Some(Box::new(Author {
                    handle: Some("ann".into()),
                    ..Author::default()
                })),
            },
            ..post(id, "the original \u{e9}")
        }
    }

    #[test]
    fn a_filter_shows_what_the_feed_with_it_shows() {
        let all = FeedFilter::parse(None, None, None).unwrap();
        assert!(all.shows(9, Platform::News, PostKind::Reply));
        let f = FeedFilter::parse(Some("1,3"), Some("twitter"), Some("post,quote")).unwrap();
        assert!(f.shows(3, Platform::X, PostKind::Quote));
        assert!(!f.shows(2, Platform::X, PostKind::Post));
        assert!(!f.shows(1, Platform::News, PostKind::Post));
        assert!(!f.shows(1, Platform::X, PostKind::Reply));
        assert!(FeedFilter::parse(None, Some("X"), None).is_err());
    }

    #[test]
    fn an_assembled_page_is_what_serialising_the_page_gives() {
        let leader = Leader {
            id: 7,
            name: "Ann \"A\" Lee".into(),
            handles: BTreeMap::from([("x".to_string(), "ann".to_string())]),
            tracking_topics: vec![],
            created_at_ms: 0,
            avatar_url: None,
        };
        let posts = [
            post(1, "plain"),
            post(2, "quote \" and \\ and \u{1F600}\n"),
            repost(3),
        ];
        for (page_number, next_cursor, leader) in [
            (
                Some(3),
                Some(Cursor {
                    timestamp_ms: -5,
                    post_id: 9,
                }),
                Some(&leader),
            ),
            (None, None, None),
        ] {
            for shown in [&posts[..], &posts[..0]] {
                let want = serde_json::to_vec(&FeedJson {
                    posts: shown
                        .iter()
                        .map(|p| FeedPostJson::from(p, leader))
                        .collect(),
                    page: page_number,
                    page_size: 20,
                    total: 41,
                    has_next: next_cursor.is_some(),
                    next_cursor: next_cursor.map(|c| c.to_string()),
                })
                .unwrap();
                let info = PageInfo {
                    total: 41,
                    has_next: next_cursor.is_some(),
                    next_cursor,
                };
                let mut got = FEED_HEAD.to_vec();
                let rendered: Vec<Vec<u8>> = shown
                    .iter()
                    .map(|p| render_feed_post(p, leader).unwrap())
                    .collect();
                got.extend_from_slice(&rendered.join(&b","[..]));
                finish_feed_body(&mut got, &info, page_number, 20);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }

    /// Queries of every kind `web::Query<FeedQuery>` has to read: plain, escaped, `+`,
    /// empty values and pieces, unknown and repeated names, bad escapes, invalid UTF-8.
    const QUERIES: [&str; 34] = [
        "",
        "page=2",
        "page_size=20&page=3",
        "page_size=20&leaders=1,2,3&page=7",
        "before=1735689600000-42&source=x&kinds=post,quote",
        "page=",
        "page",
        "=3",
        "&&page=2&&",
        "page=2&page=3",
        "page_size=1&page=1&page_size=2",
        "kinds=post&kinds=post",
        "leaders=1&source=x&leaders=2",
        "before=1-1&before=1-1",
        "source=&source=",
        "unknown=1&page=2&unknown=2",
        "pag%65=2",
        "page=2&pag%65=3",
        "page=%32",
        "page=+2",
        "page=%2B2",
        "kinds=post%20",
        "kinds=post%2Cquote",
        "leaders=1%2C2",
        "page=%",
        "page=%4",
        "page=%zz1",
        "page=%%32",
        "page=%ff",
        "page=%C3%A9",
        "page=%C3",
        "source=x=y",
        "page_size=a+b+%2b",
        "Page=2&PAGE=3&page=4",
    ];

    /// `FeedParams::parse(q)` against `web::Query<FeedQuery>`'s reading of `q`: the same
    /// values, or the same 400.
    fn reads_as_web_query(q: &str) -> Result<(), String> {
        let want = serde_urlencoded::from_str::<FeedQuery>(q);
        let got = FeedParams::parse(q);
        match (want, got) {
            (Ok(want), Ok(got)) => {
                let owned = |v: &Option<Cow<'_, str>>| v.as_deref().map(str::to_string);
                let got = [
                    owned(&got.page),
                    owned(&got.page_size),
                    owned(&got.before),
                    owned(&got.leaders),
                    owned(&got.source),
                    owned(&got.kinds),
                ];
                let want = [
                    want.page,
                    want.page_size,
                    want.before,
                    want.leaders,
                    want.source,
                    want.kinds,
                ];
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{q:?}: {got:?}, want {want:?}"))
                }
            }
            (Err(want), Err(got)) => {
                let want = actix_web::error::QueryPayloadError::Deserialize(want).to_string();
                if matches!(&got, AppError::BadRequest { code: "invalid_query", message } if *message == want)
                {
                    Ok(())
                } else {
                    Err(format!("{q:?}: {got:?}, want {want:?}"))
                }
            }
            (want, got) => Err(format!(
                "{q:?}: web::Query gives {want:?}, the parser {got:?}"
            )),
        }
    }

    #[test]
    fn the_query_reads_as_web_query_reads_it() {
        for q in QUERIES {
            reads_as_web_query(q).unwrap();
        }
    }

    proptest::proptest! {
        /// Any query made of the feed's names (and near misses), separators, escapes
        /// (good, short, non-hex, of invalid UTF-8) and plain characters reads the same.
        #[test]
        fn any_query_reads_as_web_query_reads_it(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "page", "page_size", "before", "leaders", "source", "kinds", "pag", "Page",
                    "pag%65", "%70age", "=", "&", "+", "%", "%2", "%2B", "%2b", "%20", "%3D",
                    "%26", "%ff", "%C3", "%A9", "%zz", "1", "20", "x", ",", "-", "a", "%00",
                ]),
                0..14,
            ),
        ) {
            let q = pieces.concat();
            if let Err(e) = reads_as_web_query(&q) {
                proptest::prop_assert!(false, "{}", e);
            }
        }
    }
}
