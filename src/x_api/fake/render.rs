//! The X JSON the fake answers: posts, users and media rendered for the fields a request
//! asks (`tweet.fields`/`post.fields`, `expansions`, `media.fields`, `user.fields`), in
//! the spelling it asked in, the `includes` of a page, X's problem bodies, and the three
//! read endpoints (user lookup, user timeline, posts lookup by ids).
//!
//! Spelling: X's OpenAPI document (v2.167) names the fields the new way (`post.fields`,
//! `note_post`, `referenced_posts`, `repost_count`, `edit_history_post_ids`,
//! `includes.posts`); the data dictionary and Amber's client use the established way
//! (`tweet.fields`, `note_tweet`, `referenced_tweets`, `retweet_count`,
//! `edit_history_tweet_ids`, `includes.tweets`). A request with `post.fields` is answered
//! the new way, any other the established way; field names are accepted in either.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};

use crate::x_api::dto::User;
use crate::x_api::fake::script::{snowflake_ms, FakeLink, FakeMedia, FakePost, LONG_POST_CHARS};
use crate::x_api::fake::{gate, with_window, Shared, State};

/// X's problem type URIs.
const PROBLEMS: &str = "https://api.x.com/2/problems";
/// How many ids one posts lookup takes.
const MAX_LOOKUP_IDS: usize = 100;

/// What a request asks to see: fields per object and expansions, in canonical
/// (established) names, and the spelling to answer in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ask {
    /// Answer the new way (the request said `post.fields`).
    pub new_spelling: bool,
    pub post_fields: HashSet<String>,
    pub expansions: HashSet<String>,
    pub media_fields: HashSet<String>,
    pub user_fields: HashSet<String>,
}

fn canonical(name: &str) -> &str {
    match name {
        "note_post" => "note_tweet",
        "referenced_posts" => "referenced_tweets",
        "edit_history_post_ids" => "edit_history_tweet_ids",
        "referenced_posts.id" => "referenced_tweets.id",
        "referenced_posts.id.author_id" => "referenced_tweets.id.author_id",
        other => other,
    }
}

fn field_set(query: &HashMap<String, String>, names: &[&str]) -> HashSet<String> {
    names
        .iter()
        .filter_map(|n| query.get(*n))
        .flat_map(|v| v.split(','))
        .map(|f| canonical(f.trim()).to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

impl Ask {
    /// The ask of a request's query string.
    pub fn from_query(query: &HashMap<String, String>) -> Ask {
        let mut expansions = field_set(query, &["expansions"]);
        // The new-way document names the post expansion `referenced_posts`.
        if expansions.remove("referenced_tweets") {
            expansions.insert("referenced_tweets.id".into());
        }
        Ask {
            new_spelling: query.contains_key("post.fields"),
            post_fields: field_set(query, &["tweet.fields", "post.fields"]),
            expansions,
            media_fields: field_set(query, &["media.fields"]),
            user_fields: field_set(query, &["user.fields"]),
        }
    }

    /// What Amber's client asks on a timeline (for tests and the Activity payloads).
    pub fn amber_client() -> Ask {
        use crate::x_api::client::{EXPANSIONS, MEDIA_FIELDS, TWEET_FIELDS, USER_FIELDS};
        let query = HashMap::from([
            ("tweet.fields".to_string(), TWEET_FIELDS.to_string()),
            ("expansions".to_string(), EXPANSIONS.to_string()),
            ("media.fields".to_string(), MEDIA_FIELDS.to_string()),
            ("user.fields".to_string(), USER_FIELDS.to_string()),
        ]);
        Ask::from_query(&query)
    }

    fn post(&self, field: &str) -> bool {
        self.post_fields.contains(field)
    }

    fn expands(&self, expansion: &str) -> bool {
        self.expansions.contains(expansion)
    }

    /// The wire name of a canonical post field in this ask's spelling.
    fn key<'a>(&self, name: &'a str) -> &'a str {
        if !self.new_spelling {
            return name;
        }
        match name {
            "note_tweet" => "note_post",
            "referenced_tweets" => "referenced_posts",
            "edit_history_tweet_ids" => "edit_history_post_ids",
            "retweet_count" => "repost_count",
            "tweets" => "posts",
            other => other,
        }
    }
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `entities.urls` of the links that appear in `text`, with code-point indices.
fn url_entities(text: &str, links: &[FakeLink]) -> Vec<Value> {
    links
        .iter()
        .filter_map(|l| {
            let byte = text.find(&l.url)?;
            let start = text[..byte].chars().count();
            let end = start + l.url.chars().count();
            Some(json!({
                "start": start, "end": end, "url": l.url,
                "expanded_url": l.expanded_url, "display_url": l.display_url,
            }))
        })
        .collect()
}

/// One post as X's JSON for `ask`: the default fields (`id`, `text`, the edit chain) and
/// each requested field the post has.
pub(super) fn post_json(post: &FakePost, ask: &Ask) -> Value {
    let long = post.text.chars().count() > LONG_POST_CHARS;
    let text: String = if long {
        post.text.chars().take(LONG_POST_CHARS).collect()
    } else {
        post.text.clone()
    };
    let mut o = Map::new();
    o.insert("id".into(), json!(post.id.to_string()));
    o.insert(
        ask.key("edit_history_tweet_ids").into(),
        json!(post.edit_history),
    );
    if ask.post("created_at") {
        o.insert("created_at".into(), json!(rfc3339(snowflake_ms(post.id))));
    }
    if ask.post("author_id") {
        o.insert("author_id".into(), json!(post.author_id));
    }
    if ask.post("lang") {
        o.insert("lang".into(), json!(post.lang));
    }
    if ask.post("conversation_id") {
        o.insert(
            "conversation_id".into(),
            json!(post.conversation_id.to_string()),
        );
    }
    if let (true, Some(user)) = (ask.post("in_reply_to_user_id"), &post.in_reply_to_user_id) {
        o.insert("in_reply_to_user_id".into(), json!(user));
    }
    if ask.post("public_metrics") {
        let c = post.counts;
        o.insert(
            "public_metrics".into(),
            json!({
                ask.key("retweet_count"): c.retweet_count,
                "reply_count": c.reply_count,
                "like_count": c.like_count,
                "quote_count": c.quote_count,
                "bookmark_count": c.bookmark_count,
                "impression_count": c.impression_count,
            }),
        );
    }
    if ask.post("referenced_tweets") && !post.referenced.is_empty() {
        let refs: Vec<Value> = post
            .referenced
            .iter()
            .map(|(kind, id)| json!({"type": kind.as_str(), "id": id.to_string()}))
            .collect();
        o.insert(ask.key("referenced_tweets").into(), json!(refs));
    }
    // X sends `attachments` when the post has media and the field or the expansion is asked.
    if (ask.post("attachments") || ask.expands("attachments.media_keys")) && !post.media.is_empty()
    {
        let keys: Vec<&str> = post.media.iter().map(|m| m.media_key.as_str()).collect();
        o.insert("attachments".into(), json!({ "media_keys": keys }));
    }
    if ask.post("entities") {
        let urls = url_entities(&text, &post.links);
        if !urls.is_empty() {
            o.insert("entities".into(), json!({ "urls": urls }));
        }
    }
    if long && ask.post("note_tweet") {
        let mut note = Map::new();
        note.insert("text".into(), json!(post.text));
        let urls = url_entities(&post.text, &post.links);
        if ask.post("entities") && !urls.is_empty() {
            note.insert("entities".into(), json!({ "urls": urls }));
        }
        o.insert(ask.key("note_tweet").into(), Value::Object(note));
    }
    o.insert("text".into(), json!(text));
    Value::Object(o)
}

/// A user as X's JSON for `ask` (`id`, `name`, `username` always).
pub(super) fn user_json(user: &User, ask: &Ask) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(user.id));
    o.insert("name".into(), json!(user.name));
    o.insert("username".into(), json!(user.username));
    if let (true, Some(url)) = (
        ask.user_fields.contains("profile_image_url"),
        &user.profile_image_url,
    ) {
        o.insert("profile_image_url".into(), json!(url));
    }
    Value::Object(o)
}

/// A media object as X's JSON for `ask` (`media_key`, `type` always).
pub(super) fn media_json(m: &FakeMedia, ask: &Ask) -> Value {
    let has = |f: &str| ask.media_fields.contains(f);
    let mut o = Map::new();
    o.insert("media_key".into(), json!(m.media_key));
    o.insert("type".into(), json!(m.kind));
    if let (true, Some(url)) = (has("url"), &m.url) {
        o.insert("url".into(), json!(url));
    }
    if let (true, Some(url)) = (has("preview_image_url"), &m.preview_image_url) {
        o.insert("preview_image_url".into(), json!(url));
    }
    if has("width") {
        o.insert("width".into(), json!(m.width));
    }
    if has("height") {
        o.insert("height".into(), json!(m.height));
    }
    if let (true, Some(ms)) = (has("duration_ms"), m.duration_ms) {
        o.insert("duration_ms".into(), json!(ms));
    }
    if has("variants") && !m.variants.is_empty() {
        let variants: Vec<Value> = m
            .variants
            .iter()
            .map(|v| {
                let mut o = Map::new();
                if let Some(b) = v.bit_rate {
                    o.insert("bit_rate".into(), json!(b));
                }
                o.insert("content_type".into(), json!(v.content_type));
                o.insert("url".into(), json!(v.url));
                Value::Object(o)
            })
            .collect();
        o.insert("variants".into(), json!(variants));
    }
    Value::Object(o)
}

/// X's `resource-not-found` problem for a post id asked through `parameter`.
fn post_not_found(id: &str, parameter: &str) -> Value {
    json!({
        "value": id,
        "detail": format!("Could not find tweet with {parameter}: [{id}]."),
        "title": "Not Found Error",
        "resource_type": "tweet",
        "parameter": parameter,
        "resource_id": id,
        "type": format!("{PROBLEMS}/resource-not-found"),
    })
}

/// The problem for a post withheld in the viewer's country.
fn post_withheld(id: &str) -> Value {
    json!({
        "detail": format!("Post [{id}] is withheld in the requester's country."),
        "title": "Resource Unavailable",
        "resource_type": "tweet",
        "resource_id": id,
        "type": format!("{PROBLEMS}/resource-unavailable"),
    })
}

/// Rendered posts with their `includes` and `errors`, as one answer carries them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    pub data: Vec<Value>,
    /// `None` when nothing was expanded.
    pub includes: Option<Value>,
    pub errors: Vec<Value>,
    /// Resources in `includes` (X bills them as it bills `data`).
    pub includes_count: usize,
}

impl State {
    /// A post a reader can see: live and not withheld.
    pub(super) fn visible(&self, id: u64) -> Option<&FakePost> {
        self.post(id).filter(|_| !self.withheld.contains_key(&id))
    }

    /// `posts` as X renders them for `ask`, with the `includes` their expansions bring
    /// (referenced posts, authors, media) and an error per referenced post X cannot
    /// include (deleted or withheld). The Activity API's `post.create` carries the same.
    pub fn render_posts(&self, posts: &[&FakePost], ask: &Ask) -> Rendered {
        let data = posts.iter().map(|p| post_json(p, ask)).collect();
        let mut errors = Vec::new();
        let mut included: Vec<&FakePost> = Vec::new();
        if ask.expands("referenced_tweets.id") {
            let mut seen = HashSet::new();
            for (_, id) in posts.iter().flat_map(|p| p.referenced.iter()) {
                if !seen.insert(*id) {
                    continue;
                }
                match self.visible(*id) {
                    Some(p) => included.push(p),
                    None if self.withheld.contains_key(id) => {
                        errors.push(post_withheld(&id.to_string()))
                    }
                    None => errors.push(post_not_found(&id.to_string(), "referenced_tweets.id")),
                }
            }
        }
        let mut user_ids: Vec<&str> = Vec::new();
        if ask.expands("author_id") {
            user_ids.extend(posts.iter().map(|p| p.author_id.as_str()));
        }
        if ask.expands("in_reply_to_user_id") {
            user_ids.extend(
                posts
                    .iter()
                    .filter_map(|p| p.in_reply_to_user_id.as_deref()),
            );
        }
        if ask.expands("referenced_tweets.id.author_id") {
            user_ids.extend(included.iter().map(|p| p.author_id.as_str()));
        }
        let mut seen_users = HashSet::new();
        let users: Vec<Value> = user_ids
            .into_iter()
            .filter(|id| seen_users.insert(*id))
            .filter_map(|id| self.by_id.get(id).map(|pos| &self.users[*pos].user))
            .map(|u| user_json(u, ask))
            .collect();
        let mut media = Vec::new();
        if ask.expands("attachments.media_keys") {
            let mut seen = HashSet::new();
            for m in posts
                .iter()
                .chain(included.iter())
                .flat_map(|p| p.media.iter())
            {
                if seen.insert(m.media_key.as_str()) {
                    media.push(media_json(m, ask));
                }
            }
        }
        let included: Vec<Value> = included.iter().map(|p| post_json(p, ask)).collect();
        let includes_count = users.len() + media.len() + included.len();
        let mut inc = Map::new();
        if !media.is_empty() {
            inc.insert("media".into(), Value::Array(media));
        }
        if !users.is_empty() {
            inc.insert("users".into(), Value::Array(users));
        }
        if !included.is_empty() {
            inc.insert(ask.key("tweets").into(), Value::Array(included));
        }
        Rendered {
            data,
            includes: (!inc.is_empty()).then_some(Value::Object(inc)),
            errors,
            includes_count,
        }
    }
}

fn answer_body(rendered: Rendered, meta: Option<Value>) -> Value {
    let mut o = Map::new();
    if !rendered.data.is_empty() {
        o.insert("data".into(), Value::Array(rendered.data));
    }
    if let Some(inc) = rendered.includes {
        o.insert("includes".into(), inc);
    }
    if !rendered.errors.is_empty() {
        o.insert("errors".into(), Value::Array(rendered.errors));
    }
    if let Some(meta) = meta {
        o.insert("meta".into(), meta);
    }
    Value::Object(o)
}

/// An `application/problem+json` answer (X's `Problem` schema).
fn problem_body(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(body)
}

/// X's 500 answer: an `internal-error` problem.
pub(super) fn internal_error() -> HttpResponse {
    problem_body(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({
            "title": "Internal Server Error",
            "detail": "Something went wrong. Please try again later.",
            "type": format!("{PROBLEMS}/internal-error"),
            "status": 500,
        }),
    )
}

/// An `application/json` answer in X's `Error` schema (`code`, `message`): the 401 of a
/// bad token and the 429 of a spent window.
pub(super) fn coded_error(status: StatusCode, code: u32, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message}))
}

pub(super) fn invalid_request(parameter: &str, value: &str, detail: String) -> HttpResponse {
    problem_body(
        StatusCode::BAD_REQUEST,
        json!({
            "title": "Invalid Request",
            "detail": detail,
            "type": format!("{PROBLEMS}/invalid-request"),
            "parameter": parameter,
            "value": value,
            "status": 400,
        }),
    )
}

fn user_error(value: &str, parameter: &str, suspended: bool) -> Value {
    let (title, detail) = if suspended {
        ("Forbidden", format!("User has been suspended: [{value}]."))
    } else {
        (
            "Not Found Error",
            format!("Could not find user with {parameter}: [{value}]."),
        )
    };
    json!({
        "title": title,
        "detail": detail,
        "type": format!("{PROBLEMS}/resource-not-found"),
        "resource_type": "user",
        "resource_id": value,
        "parameter": parameter,
        "value": value,
    })
}

fn ok(body: Value, window: (u64, i64)) -> HttpResponse {
    with_window(HttpResponse::Ok().json(body), window)
}

pub(super) async fn lookup_user(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    shared.counters.user_lookups.fetch_add(1, Ordering::Relaxed);
    let ask = Ask::from_query(&query);
    let username = path.into_inner();
    let state = shared.state.lock();
    let body = match state.by_name.get(&username.to_ascii_lowercase()) {
        Some(pos) if !state.users[*pos].suspended => {
            json!({ "data": user_json(&state.users[*pos].user, &ask) })
        }
        found => json!({ "errors": [user_error(&username, "username", found.is_some())] }),
    };
    ok(body, window)
}

const PAGE_TOKEN_PREFIX: &str = "pt";

pub(super) fn parse_page_token(token: &str) -> Option<u64> {
    u64::from_str_radix(token.strip_prefix(PAGE_TOKEN_PREFIX)?, 36).ok()
}

pub(super) fn page_token(until_id: u64) -> String {
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

pub(super) async fn user_timeline(
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
    let raw = |name: &str| query.get(name).map(String::as_str).unwrap_or("");
    let max_results = match query.get("max_results").map(|v| v.parse::<u32>()) {
        None => 10,
        Some(Ok(n)) if (5..=100).contains(&n) => n,
        Some(_) => {
            return invalid_request(
                "max_results",
                raw("max_results"),
                format!(
                    "The `max_results` query parameter value [{}] is not between 5 and 100",
                    raw("max_results")
                ),
            )
        }
    };
    let since_id = match query.get("since_id").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return invalid_request(
                "since_id",
                raw("since_id"),
                "The `since_id` query parameter is invalid".into(),
            )
        }
    };
    let until = match query.get("pagination_token").map(|t| parse_page_token(t)) {
        None => u64::MAX,
        Some(Some(n)) => n,
        Some(None) => {
            return invalid_request(
                "pagination_token",
                raw("pagination_token"),
                "The `pagination_token` query parameter is invalid".into(),
            )
        }
    };
    let ask = Ask::from_query(&query);
    let user_id = path.into_inner();
    let state = shared.state.lock();
    let user = match state.by_id.get(&user_id) {
        Some(pos) if !state.users[*pos].suspended => &state.users[*pos],
        other => {
            let body = json!({ "errors": [user_error(&user_id, "id", other.is_some())] });
            return ok(body, window);
        }
    };
    // A since_id at or past the page's end selects nothing (BTreeMap::range would panic).
    let start = since_id.saturating_add(1).min(until);
    let mut selected = user
        .tweets
        .range(start..until)
        .rev()
        .filter(|(id, _)| !state.withheld.contains_key(id))
        .take(max_results as usize + 1)
        .map(|(_, t)| t)
        .collect::<Vec<_>>();
    let more = selected.len() > max_results as usize;
    selected.truncate(max_results as usize);
    let mut meta = Map::new();
    meta.insert("result_count".into(), json!(selected.len()));
    if let (Some(newest), Some(oldest)) = (selected.first(), selected.last()) {
        meta.insert("newest_id".into(), json!(newest.id.to_string()));
        meta.insert("oldest_id".into(), json!(oldest.id.to_string()));
        if more {
            meta.insert("next_token".into(), json!(page_token(oldest.id)));
        }
    }
    let rendered = state.render_posts(&selected, &ask);
    drop(state);
    shared
        .counters
        .posts_served
        .fetch_add(rendered.data.len() as u64, Ordering::Relaxed);
    ok(answer_body(rendered, Some(Value::Object(meta))), window)
}

/// `GET /2/tweets?ids=...`: the posts found in `data` (in the order asked, an earlier
/// version of an edited post as it was), one problem per deleted, unknown or withheld id
/// in `errors` beside them.
pub(super) async fn lookup_posts(
    shared: web::Data<Shared>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    shared.counters.post_lookups.fetch_add(1, Ordering::Relaxed);
    let raw = query.get("ids").map(String::as_str).unwrap_or("");
    let ids: Vec<&str> = raw.split(',').map(str::trim).collect();
    if raw.is_empty() || ids.len() > MAX_LOOKUP_IDS || ids.iter().any(|i| i.parse::<u64>().is_err())
    {
        return invalid_request(
            "ids",
            raw,
            format!("The `ids` query parameter value [{raw}] must be 1 to {MAX_LOOKUP_IDS} comma-separated post ids"),
        );
    }
    let ask = Ask::from_query(&query);
    let state = shared.state.lock();
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for id in &ids {
        let n: u64 = id.parse().unwrap_or_default();
        if state.withheld.contains_key(&n) {
            errors.push(post_withheld(id));
        } else if let Some(p) = state.post(n).or_else(|| state.old_versions.get(&n)) {
            found.push(p);
        } else {
            errors.push(post_not_found(id, "ids"));
        }
    }
    let mut rendered = state.render_posts(&found, &ask);
    drop(state);
    errors.append(&mut rendered.errors);
    rendered.errors = errors;
    shared
        .counters
        .posts_served
        .fetch_add(rendered.data.len() as u64, Ordering::Relaxed);
    ok(answer_body(rendered, None), window)
}
