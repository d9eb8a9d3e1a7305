//! `GET /feeds/all.{rss,atom,json}`, `GET /feeds/leaders/{id}.{rss,atom,json}` and
//! `GET /feeds/opml` (issue 13): the posts as syndication feeds, with conditional GET
//! answered from memory (`feeds::validators`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderValue, HttpDate};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;

use crate::domain::post::{KindSet, Platform, PostKind};
use crate::error::AppError;
use crate::feeds::render::{to_opml, Format, Outline};
use crate::feeds::validators::{not_modified, unix_now, Rendered};
use crate::feeds::{self, Feed};
use crate::http::feed::{parse_bounded, parse_kinds, parse_leader_ids};
use crate::http::ids;
use crate::http::rate_limit::{RateLimited, OPML_LIMIT};
use crate::http::AppState;
use crate::rate_limit::RateLimits;
use crate::storage::query::{PageStart, PostQuery};
use crate::storage::{Entity, StoreReader};

/// Items in a feed unless `size` says otherwise, and at most.
pub const DEFAULT_SIZE: usize = 50;
pub const MAX_SIZE: usize = 200;
/// With a keyword filter, how many of the newest posts (matching the other filters) are
/// looked through at most for the feed's items.
pub const KEYWORD_SCAN: usize = 5_000;
/// Longest `q` / `exclude`, in characters, and most words in each.
const MAX_KEYWORD_CHARS: usize = 200;
const MAX_KEYWORDS: usize = 10;
/// What a feed answer may be cached for, by the reader or a proxy.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// Registers the feed routes. Feeds are public and rate limited like the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/feeds/all.{format}")
            .route(web::get().to(all).wrap(RateLimited::conditional())),
    )
    .service(
        web::resource("/feeds/leaders/{id}.{format}")
            .route(web::get().to(leader).wrap(RateLimited::conditional())),
    )
    .service(web::resource("/feeds/opml").route(web::get().to(opml).wrap(OPML_LIMIT)));
}

/// The query of a feed; every field is checked by hand for a clear 400.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedsQuery {
    /// Items in the feed, 1..200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    size: Option<String>,
    /// Only posts from this source (`twitter` is `x`).
    #[param(value_type = Option<SourceName>, inline)]
    source: Option<String>,
    /// Only posts of these kinds: a comma list of `post`, `repost`, `quote`, `reply`,
    /// e.g. `kinds=post,quote` leaves reposts and replies out.
    #[param(value_type = Option<Vec<crate::shape::post::KindName>>, style = Form, explode = false, min_items = 1)]
    kinds: Option<String>,
    /// Keywords: only posts whose text (or quoted/reposted text) contains every word,
    /// case-insensitively; at most 200 characters, 10 words. With a keyword filter the
    /// newest 5,000 posts that pass the other filters are looked through.
    #[param(value_type = Option<String>, max_length = 200)]
    q: Option<String>,
    /// The negation of `q`: leaves out posts that contain any of these words.
    #[param(value_type = Option<String>, max_length = 200)]
    exclude: Option<String>,
}

/// The query of `/feeds/all.*`: the feed query plus the feed API's leader filter. The
/// OpenAPI document lists this and [`FeedsQuery`]'s parameters (IntoParams cannot
/// flatten), so the feed query's fields are written once.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AllQuery {
    /// Comma list of 1 to 100 leader ids.
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}(,[0-9]{1,19}){0,99}$")]
    leaders: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    feed: FeedsQuery,
}

/// `source=` of a feed (SPEC's spellings).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum SourceName {
    X,
    Twitter,
    Facebook,
    News,
}

/// `{format}` of a feed path.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum FormatName {
    Rss,
    Atom,
    Json,
}

/// A feed's filters, checked and normalised: the cache key and the canonical query.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    leaders: Vec<u64>,
    platform: Option<Platform>,
    kinds: KindSet,
    all: Vec<String>,
    none: Vec<String>,
    size: usize,
}

fn keywords(name: &str, raw: Option<&str>) -> Result<Vec<String>, AppError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.chars().count() > MAX_KEYWORD_CHARS {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("{name} is at most {MAX_KEYWORD_CHARS} characters"),
        ));
    }
    let mut words: Vec<String> = raw.split_whitespace().map(str::to_lowercase).collect();
    words.sort();
    words.dedup();
    if words.len() > MAX_KEYWORDS {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("{name} names at most {MAX_KEYWORDS} words"),
        ));
    }
    Ok(words)
}

impl Filter {
    fn parse(q: &FeedsQuery, leaders: Vec<u64>) -> Result<Filter, AppError> {
        let size = parse_bounded("size", q.size.as_deref(), DEFAULT_SIZE, 1, MAX_SIZE)?;
        let platform = match q.source.as_deref() {
            Some(s) => Some(
                matches!(s, "x" | "twitter" | "facebook" | "news")
                    .then(|| Platform::parse(s))
                    .flatten()
                    .ok_or_else(|| {
                        AppError::bad_request(
                            "invalid_query",
                            format!("source must be x, twitter, facebook or news, got {s:?}"),
                        )
                    })?,
            ),
            None => None,
        };
        let kinds = match q.kinds.as_deref() {
            Some(raw) => parse_kinds(raw)?,
            None => KindSet::ALL,
        };
        let mut leaders = leaders;
        leaders.sort_unstable();
        leaders.dedup();
        Ok(Filter {
            leaders,
            platform,
            kinds,
            all: keywords("q", q.q.as_deref())?,
            none: keywords("exclude", q.exclude.as_deref())?,
            size,
        })
    }

    /// The canonical query string (empty when every filter is the default), the same for
    /// every spelling of the same filters.
    fn query_string(&self, with_leaders: bool) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if with_leaders && !self.leaders.is_empty() {
            let ids: Vec<String> = self.leaders.iter().map(u64::to_string).collect();
            pairs.push(("leaders", ids.join(",")));
        }
        if let Some(p) = self.platform {
            pairs.push(("source", p.as_str().to_ascii_lowercase()));
        }
        if !self.kinds.is_all() {
            let kinds: Vec<&str> = self.kinds.iter().map(PostKind::as_str).collect();
            pairs.push(("kinds", kinds.join(",")));
        }
        if !self.all.is_empty() {
            pairs.push(("q", self.all.join(" ")));
        }
        if !self.none.is_empty() {
            pairs.push(("exclude", self.none.join(" ")));
        }
        if self.size != DEFAULT_SIZE {
            pairs.push(("size", self.size.to_string()));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }

    fn query(&self, limit: usize) -> PostQuery {
        PostQuery::newest(limit)
            .leaders(self.leaders.iter().copied())
            .platform(self.platform)
            .kinds(self.kinds)
    }
}

/// `http://host` or `https://host` of the request: the `Host` header (when it is a plain
/// host name or address, else `localhost`), `https` when a trusted proxy says so.
fn base_url(req: &HttpRequest) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let trusted = req
        .app_data::<web::Data<RateLimits>>()
        .zip(req.peer_addr())
        .is_some_and(|(limits, peer)| limits.trusts(peer.ip()));
    let https = trusted
        && req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// Reads the feed's posts and builds it. Reads sled: runs on the blocking pool.
fn build(reader: &StoreReader, filter: &Filter, meta: Feed) -> Result<Feed, AppError> {
    let keyword = !filter.all.is_empty() || !filter.none.is_empty();
    let chunk = if keyword { MAX_SIZE } else { filter.size };
    let mut items = Vec::with_capacity(filter.size);
    let mut start = PageStart::Offset(0);
    let mut scanned = 0;
    loop {
        let (posts, info) = reader.page_with_history(&filter.query(chunk).starting(start))?;
        scanned += chunk;
        reader.with_leaders(|leaders| {
            for (post, older) in &posts {
                if items.len() < filter.size
                    && feeds::keywords_match(post, &filter.all, &filter.none)
                {
                    items.push(feeds::item(post, leaders.get(&post.leader_id), older));
                }
            }
        });
        match info.next_cursor {
            Some(c) if keyword && items.len() < filter.size && scanned < KEYWORD_SCAN => {
                start = PageStart::Before(c)
            }
            _ => break,
        }
    }
    Ok(Feed { items, ..meta })
}

fn http_date(unix: i64) -> HttpDate {
    HttpDate::from(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
}

/// The answer: 304 when the request's validators match, else the body.
fn respond(req: &HttpRequest, content_type: &'static str, rendered: &Rendered) -> HttpResponse {
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let if_modified_since = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<HttpDate>().ok())
        .and_then(|d| SystemTime::from(d).duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    let fresh = not_modified(if_none_match, if_modified_since, rendered);
    let mut builder = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    builder
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ))
        .insert_header((header::ETAG, &*rendered.etag))
        .insert_header((header::LAST_MODIFIED, http_date(rendered.last_modified)));
    if fresh {
        return builder.finish();
    }
    builder
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .body(rendered.body.clone())
}

/// Serves the feed `path_and_query` of `filter` in `format`, from the cache while the
/// store is unchanged.
async fn serve(
    req: &HttpRequest,
    state: &AppState,
    format: Format,
    filter: Filter,
    meta: Feed,
) -> Result<HttpResponse, AppError> {
    let key = format!("{} {}", format.extension(), meta.self_url);
    // Read the generation before reading posts: a write meanwhile makes this stale.
    let generation = state.reader.generation();
    let rendered = match state.feed_cache.fresh(&key, generation) {
        Some(r) => r,
        None => {
            let reader = state.reader.clone();
            let (body, newest) = web::block(move || {
                let feed = build(&reader, &filter, meta)?;
                Ok::<_, AppError>((format.render(&feed), feed.newest_ms()))
            })
            .await??;
            state
                .feed_cache
                .store(&key, generation, Bytes::from(body), newest, unix_now())
        }
    };
    Ok(respond(req, format.content_type(), &rendered))
}

fn format_of(raw: &str) -> Result<Format, AppError> {
    Format::from_extension(raw)
        .ok_or_else(|| AppError::NotFound(format!("feed format {raw:?} (rss, atom or json)")))
}

/// `GET /feeds/all.{format}`.
#[utoipa::path(get, path = "/feeds/all.{format}", operation_id = "getAllFeed", tag = "feeds",
    params(("format" = FormatName, Path, description = "rss (RSS 2.0), atom (Atom 1.0) or json (JSON Feed 1.1)"), AllQuery, FeedsQuery),
    responses(
        (status = 200, description = "The newest posts of every leader as a feed", content(("application/rss+xml"), ("application/atom+xml"), ("application/feed+json"))),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)"),
        (status = 400, description = "Bad input", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown format", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)))]
pub async fn all(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<AllQuery>,
) -> Result<HttpResponse, AppError> {
    let format = format_of(&path)?;
    let AllQuery { leaders, feed } = query.into_inner();
    let leaders = match leaders.as_deref() {
        Some(raw) => parse_leader_ids(raw)?,
        None => Vec::new(),
    };
    let filter = Filter::parse(&feed, leaders)?;
    let base = base_url(&req);
    let qs = filter.query_string(true);
    let meta = Feed {
        title: "Amber: all leaders".into(),
        description: "The newest posts of every leader Amber follows".into(),
        home_url: format!("{base}/"),
        self_url: with_query(format!("{base}/feeds/all.{}", format.extension()), &qs),
        items: Vec::new(),
    };
    serve(&req, &state, format, filter, meta).await
}

fn with_query(url: String, qs: &str) -> String {
    if qs.is_empty() {
        url
    } else {
        format!("{url}?{qs}")
    }
}

/// `GET /feeds/leaders/{id}.{format}`.
#[utoipa::path(get, path = "/feeds/leaders/{id}.{format}", operation_id = "getLeaderFeed", tag = "feeds",
    params(("id" = String, Path, description = "Leader id (a string or number)"),
        ("format" = FormatName, Path, description = "rss (RSS 2.0), atom (Atom 1.0) or json (JSON Feed 1.1)"), FeedsQuery),
    responses(
        (status = 200, description = "The newest posts of one leader as a feed", content(("application/rss+xml"), ("application/atom+xml"), ("application/feed+json"))),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)"),
        (status = 400, description = "Bad input", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown leader or format", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)))]
pub async fn leader(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<FeedsQuery>,
) -> Result<HttpResponse, AppError> {
    let (raw_id, raw_format) = path.into_inner();
    let format = format_of(&raw_format)?;
    let id = ids::path_id(&state.reader, &raw_id, Entity::Leader)?;
    let leader = state
        .reader
        .leader(id)
        .ok_or_else(|| AppError::NotFound(format!("leader {raw_id:?}")))?;
    let filter = Filter::parse(&query, vec![id])?;
    let base = base_url(&req);
    let qs = filter.query_string(false);
    let meta = Feed {
        title: format!("Amber: {}", feeds::xml_text(&leader.name)),
        description: format!("The newest posts of {}", feeds::xml_text(&leader.name)),
        home_url: format!("{base}/?leader={id}"),
        self_url: with_query(
            format!("{base}/feeds/leaders/{id}.{}", format.extension()),
            &qs,
        ),
        items: Vec::new(),
    };
    serve(&req, &state, format, filter, meta).await
}

/// `GET /feeds/opml`.
#[utoipa::path(get, path = "/feeds/opml", operation_id = "getFeedsOpml", tag = "feeds",
    responses(
        (status = 200, description = "OPML 2.0: the combined feed and every leader's RSS feed", content_type = "text/x-opml"),
        (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)))]
pub async fn opml(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let base = base_url(&req);
    let mut outlines = vec![Outline {
        title: "Amber: all leaders".into(),
        feed_url: format!("{base}/feeds/all.rss"),
        html_url: format!("{base}/"),
    }];
    state.reader.with_leaders(|leaders| {
        outlines.extend(leaders.values().map(|l| Outline {
            title: format!("Amber: {}", l.name),
            feed_url: format!("{base}/feeds/leaders/{}.rss", l.id),
            html_url: format!("{base}/?leader={}", l.id),
        }))
    });
    HttpResponse::Ok()
        .content_type("text/x-opml; charset=utf-8")
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ))
        .body(to_opml("Amber feeds", &outlines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &str) -> FeedsQuery {
        serde_urlencoded::from_str(pairs).unwrap()
    }

    #[test]
    fn every_spelling_of_the_same_filters_is_one_canonical_query() {
        let a = Filter::parse(
            &query("kinds=quote,post&q=Rust%20feeds&source=twitter"),
            vec![3, 1, 3],
        )
        .unwrap();
        let b = Filter::parse(
            &query("q=feeds+RUST&kinds=post,quote&source=x&size=50"),
            vec![1, 3],
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.query_string(true),
            "leaders=1%2C3&source=x&kinds=post%2Cquote&q=feeds+rust"
        );
        assert_eq!(
            Filter::parse(&query(""), vec![])
                .unwrap()
                .query_string(true),
            ""
        );
    }

    #[test]
    fn the_combined_feeds_query_is_the_leader_filter_and_the_feed_query() {
        let all: AllQuery =
            serde_urlencoded::from_str("leaders=3,1&size=10&q=Rust&exclude=go&kinds=post&source=x")
                .unwrap();
        assert_eq!(all.leaders.as_deref(), Some("3,1"));
        let filter = Filter::parse(&all.feed, vec![3, 1]).unwrap();
        assert_eq!(
            filter.query_string(true),
            "leaders=1%2C3&source=x&kinds=post&q=rust&exclude=go&size=10"
        );
        let none: AllQuery = serde_urlencoded::from_str("").unwrap();
        assert!(none.leaders.is_none() && none.feed.size.is_none());
    }

    #[test]
    fn bad_values_are_400s() {
        for bad in [
            "size=0",
            "size=201",
            "size=ten",
            "source=mastodon",
            "kinds=posts",
            "kinds=",
            "q=a%20b%20c%20d%20e%20f%20g%20h%20i%20j%20k",
        ] {
            let err = Filter::parse(&query(bad), vec![]).unwrap_err();
            assert!(matches!(err, AppError::BadRequest { .. }), "{bad}: {err:?}");
        }
        let long = format!("exclude={}", "a".repeat(201));
        assert!(Filter::parse(&query(&long), vec![]).is_err());
    }
}
