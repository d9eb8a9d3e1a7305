//! Serde mirror of the X API v2 JSON Amber reads (`GET /users/by/username/{handle}`,
//! `GET /users/{id}/tweets`) and its mapping to [`NewPost`].
//!
//! The same types serialize the fake server's answers, so the fake and the client agree
//! on one wire format by construction; the tests below pin it to literal X samples.

use std::collections::HashMap;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::domain::post::{
    Author, Counts, MediaItem, MediaKind, MediaVariant, NewPost, Platform, PostDetails, PostKind,
    ReferencedPost, Relation, Verification,
};
use crate::domain::sentiment::{self, Sentiment};

/// Milliseconds between the unix epoch and X's snowflake epoch (2010-11-04T01:42:54.657Z).
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;

/// One object of X's `errors` array (also the shape of a whole-response problem, such
/// as the body of a 401).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// What an entry of the `errors` array means for Amber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The user (or post) does not exist.
    NotFound,
    /// The user is suspended (X answers with title `Forbidden`).
    Suspended,
    /// Anything else (a bad parameter, a partial failure).
    Other,
}

impl ApiError {
    /// Classifies the error by its `type`, `title` and `detail`, as X documents them.
    pub fn classify(&self) -> ApiErrorKind {
        let detail = self.detail.as_deref().unwrap_or("").to_ascii_lowercase();
        let title = self.title.as_deref().unwrap_or("");
        let kind = self.kind.as_deref().unwrap_or("");
        if detail.contains("suspended") || title.eq_ignore_ascii_case("forbidden") {
            ApiErrorKind::Suspended
        } else if kind.ends_with("resource-not-found")
            || title.eq_ignore_ascii_case("not found error")
        {
            ApiErrorKind::NotFound
        } else {
            ApiErrorKind::Other
        }
    }

    /// A one-line description for logs and the run record (never contains the token).
    pub fn describe(&self) -> String {
        match (&self.title, &self.detail) {
            (Some(t), Some(d)) => format!("{t}: {d}"),
            (Some(t), None) => t.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => "unknown X API error".to_string(),
        }
    }
}

/// An X user (`user.fields=name,profile_image_url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_image_url: Option<String>,
}

/// `GET /users/by/username/{handle}`: `data` or an `errors` array (unknown, suspended).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UserResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<User>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ApiError>,
}

/// `public_metrics` of a post.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PublicMetrics {
    #[serde(default, alias = "repost_count")]
    pub retweet_count: u64,
    #[serde(default)]
    pub reply_count: u64,
    #[serde(default)]
    pub like_count: u64,
    #[serde(default)]
    pub quote_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impression_count: Option<u64>,
}

/// `attachments` of a post (`expansions=attachments.media_keys`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Attachments {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_keys: Vec<String>,
}

/// A post (X still calls it a tweet on the wire).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tweet {
    pub id: String,
    #[serde(default)]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_metrics: Option<PublicMetrics>,
    #[serde(
        default,
        alias = "edit_history_post_ids",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub edit_history_tweet_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Attachments>,
    /// The full text of a post longer than 280 characters (`text` is then cut).
    #[serde(default, alias = "note_post", skip_serializing_if = "Option::is_none")]
    pub note_tweet: Option<NoteTweet>,
    /// What the post reposts, quotes or answers.
    #[serde(
        default,
        alias = "referenced_posts",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub referenced_tweets: Vec<ReferencedTweet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to_user_id: Option<String>,
    /// Links (and other entities) of `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<Entities>,
}

/// `note_tweet` of a long post: the whole text and its entities.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NoteTweet {
    #[serde(default)]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<Entities>,
}

/// `entities` of a text; Amber reads the links.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Entities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<UrlEntity>,
}

/// One link of a text: `url` is the `https://t.co/...` form the text holds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UrlEntity {
    #[serde(default)]
    pub start: u64,
    #[serde(default)]
    pub end: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expanded_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_url: Option<String>,
}

/// One entry of `referenced_tweets`: `type` is `retweeted`, `quoted` or `replied_to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferencedTweet {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl Tweet {
    /// The whole text: `note_tweet.text` when X sent it, else `text`.
    pub fn full_text(&self) -> &str {
        match &self.note_tweet {
            Some(n) if !n.text.is_empty() => &n.text,
            _ => &self.text,
        }
    }

    /// The post's kind from `referenced_tweets` (a repost wins over a quote over a reply).
    pub fn kind(&self) -> PostKind {
        let has = |k: &str| self.referenced_tweets.iter().any(|r| r.kind == k);
        if has("retweeted") {
            PostKind::Repost
        } else if has("quoted") {
            PostKind::Quote
        } else if has("replied_to") {
            PostKind::Reply
        } else {
            PostKind::Post
        }
    }
}

/// An expanded media object (`media.fields=url,preview_image_url,type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    pub media_key: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Set for photos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Set for videos and animated GIFs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Playback files of a video or GIF.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
}

/// One playback file of a video or GIF (`bit_rate` is absent for a playlist).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Variant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_rate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Media {
    /// The image to show: the photo itself, or the preview of a video.
    pub fn display_url(&self) -> Option<&str> {
        self.url.as_deref().or(self.preview_image_url.as_deref())
    }

    /// The media item Amber stores; `None` for a type X may add that Amber cannot show.
    pub fn to_item(&self) -> Option<MediaItem> {
        Some(MediaItem {
            kind: MediaKind::parse(&self.kind)?,
            url: self.url.clone(),
            preview_image_url: self.preview_image_url.clone(),
            width: self.width,
            height: self.height,
            duration_ms: self.duration_ms,
            variants: self
                .variants
                .iter()
                .filter_map(|v| {
                    Some(MediaVariant {
                        url: v.url.clone()?,
                        content_type: v.content_type.clone().unwrap_or_default(),
                        bit_rate: v.bit_rate,
                    })
                })
                .collect(),
        })
    }
}

/// The `includes` object: the expanded media, users and referenced posts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Includes {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    /// Referenced posts (`expansions=referenced_tweets.id`; `posts` the new way).
    #[serde(default, alias = "posts", skip_serializing_if = "Vec::is_empty")]
    pub tweets: Vec<Tweet>,
}

impl Includes {
    /// How many resources the includes hold (X bills each like a post in `data`).
    pub fn count(&self) -> usize {
        self.media.len() + self.users.len() + self.tweets.len()
    }
}

/// The `meta` object of a timeline page.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub result_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_token: Option<String>,
}

/// `GET /users/{id}/tweets`. With no new posts X sends only `meta` (`result_count: 0`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimelineResponse {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<Tweet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Includes>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ApiError>,
}

/// Who a timeline belongs to, as Amber shows it on each post.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthorProfile {
    pub user_id: String,
    /// The X handle, without `@`.
    pub handle: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

impl AuthorProfile {
    /// The profile of a resolved X user.
    pub fn from_user(user: &User) -> AuthorProfile {
        AuthorProfile {
            user_id: user.id.clone(),
            handle: user.username.clone(),
            name: Some(user.name.clone()).filter(|n| !n.is_empty()),
            avatar_url: user.profile_image_url.clone(),
        }
    }
}

impl TimelineResponse {
    /// The `includes.media` objects by `media_key`, for joining onto posts.
    pub fn media_by_key(&self) -> HashMap<&str, &Media> {
        self.includes
            .iter()
            .flat_map(|i| i.media.iter())
            .map(|m| (m.media_key.as_str(), m))
            .collect()
    }

    /// Every post of the page as a [`NewPost`] for `leader_id`.
    pub fn to_new_posts(&self, leader_id: u64, author: &AuthorProfile) -> Vec<NewPost> {
        let index = self.index();
        self.data
            .iter()
            .map(|t| map_tweet(t, &index, leader_id, author))
            .collect()
    }
}

/// Publication time of a post in unix milliseconds: `created_at` (RFC 3339), or when that
/// is missing or unreadable, the time encoded in the post's snowflake id.
pub fn timestamp_ms(tweet: &Tweet) -> Option<i64> {
    if let Some(ts) = tweet.created_at.as_deref() {
        if let Ok(t) = DateTime::parse_from_rfc3339(ts) {
            return Some(t.timestamp_millis());
        }
    }
    let id: u64 = tweet.id.parse().ok()?;
    i64::try_from(id >> 22)
        .ok()
        .and_then(|ms| ms.checked_add(SNOWFLAKE_EPOCH_MS))
}

/// The `includes` of a page by key, for joining onto its posts.
#[derive(Debug, Clone, Default)]
pub struct PageIndex<'a> {
    pub media: HashMap<&'a str, &'a Media>,
    pub users: HashMap<&'a str, &'a User>,
    pub tweets: HashMap<&'a str, &'a Tweet>,
}

impl TimelineResponse {
    /// The page's `includes` by media key, user id and post id.
    pub fn index(&self) -> PageIndex<'_> {
        let mut index = PageIndex {
            media: self.media_by_key(),
            ..PageIndex::default()
        };
        if let Some(inc) = &self.includes {
            index.users = inc.users.iter().map(|u| (u.id.as_str(), u)).collect();
            index.tweets = inc.tweets.iter().map(|t| (t.id.as_str(), t)).collect();
        }
        index
    }
}

/// The text of `tweet` as a person reads it: the whole text (`note_tweet` when sent),
/// each `t.co` link replaced by where it goes, and the link to a quoted post (which X
/// appends) left out because the quoted post is shown with it.
pub fn readable_text(tweet: &Tweet) -> String {
    let (text, entities) = match &tweet.note_tweet {
        Some(n) if !n.text.is_empty() => (n.text.as_str(), n.entities.as_ref()),
        _ => (tweet.text.as_str(), tweet.entities.as_ref()),
    };
    let quoted: Vec<&str> = tweet
        .referenced_tweets
        .iter()
        .filter(|r| r.kind == "quoted")
        .map(|r| r.id.as_str())
        .collect();
    let mut out = text.to_string();
    for u in entities.iter().flat_map(|e| e.urls.iter()) {
        let (Some(short), Some(long)) = (u.url.as_deref(), u.expanded_url.as_deref()) else {
            continue;
        };
        let is_quote_link = quoted.iter().any(|id| {
            long.trim_end_matches('/')
                .ends_with(&format!("/status/{id}"))
        });
        let replacement = if is_quote_link { "" } else { long };
        out = out.replace(short, replacement);
    }
    if quoted.is_empty() {
        out
    } else {
        out.trim_end().to_string()
    }
}

fn media_items(tweet: &Tweet, index: &PageIndex<'_>) -> Vec<MediaItem> {
    tweet
        .attachments
        .iter()
        .flat_map(|a| a.media_keys.iter())
        .filter_map(|k| index.media.get(k.as_str()))
        .filter_map(|m| m.to_item())
        .collect()
}

fn author_of(user_id: Option<&str>, index: &PageIndex<'_>) -> Author {
    let user = user_id.and_then(|id| index.users.get(id));
    Author {
        id: user_id.map(str::to_string),
        handle: user.map(|u| u.username.clone()),
        name: user.map(|u| u.name.clone()).filter(|n| !n.is_empty()),
        avatar_url: user.and_then(|u| u.profile_image_url.clone()),
    }
}

/// The counts Amber keeps for `tweet` as stored: a repost is stored as the reposted post,
/// so it carries that post's counts when X included it (as [`map_tweet`] does).
pub fn stored_counts(tweet: &Tweet, index: &PageIndex<'_>) -> Counts {
    let original = tweet
        .referenced_tweets
        .iter()
        .find(|r| r.kind == "retweeted")
        .and_then(|r| index.tweets.get(r.id.as_str()));
    match original {
        Some(original) if tweet.kind() == PostKind::Repost => tweet_counts(original),
        _ => tweet_counts(tweet),
    }
}

/// A post's counts as Amber stores them (`public_metrics`; zeros when X sent none).
pub fn tweet_counts(tweet: &Tweet) -> Counts {
    let c = tweet.public_metrics.unwrap_or_default();
    Counts {
        likes: c.like_count,
        comments: c.reply_count,
        shares: c.retweet_count,
        quotes: c.quote_count,
        bookmarks: c.bookmark_count,
        impressions: c.impression_count,
    }
}

/// The post `tweet` refers to (a repost's original wins over a quoted post over what a
/// reply answers), with its text, author and media when the page includes it.
fn referenced_post<'a>(
    tweet: &Tweet,
    index: &PageIndex<'a>,
) -> Option<(ReferencedPost, Option<&'a Tweet>)> {
    let order = [
        ("retweeted", Relation::Reposted),
        ("quoted", Relation::Quoted),
        ("replied_to", Relation::RepliedTo),
    ];
    let (id, relation) = order.iter().find_map(|(kind, relation)| {
        tweet
            .referenced_tweets
            .iter()
            .find(|r| r.kind == *kind)
            .map(|r| (r.id.as_str(), *relation))
    })?;
    let included = index.tweets.get(id).copied();
    let author_id = match (included, relation) {
        (Some(t), _) => t.author_id.as_deref(),
        (None, Relation::RepliedTo) => tweet.in_reply_to_user_id.as_deref(),
        (None, _) => None,
    };
    let post = ReferencedPost {
        id: id.to_string(),
        relation,
        author: author_of(author_id, index),
        text: included.map(readable_text),
        created_at_ms: included.and_then(timestamp_ms),
        media: included.map(|t| media_items(t, index)).unwrap_or_default(),
    };
    Some((post, included))
}

/// Maps one post to what Amber stores: platform X, the X id as `platformPostId`, the
/// whole text with links expanded, the kind and the referenced post, counts, language
/// and media as typed fields, and VADER sentiment of the leader's own words.
///
/// A repost is stored as the reposted post: its text, author, media and counts, credited
/// `reposted_by` the leader and dated when the leader reposted it; the leader wrote no
/// words of their own, so its sentiment is neutral (score 0). When X did not include the
/// original (deleted, withheld), the repost keeps X's `RT @handle: ...` text.
pub fn map_tweet(
    tweet: &Tweet,
    index: &PageIndex<'_>,
    leader_id: u64,
    author: &AuthorProfile,
) -> NewPost {
    let leader = Author {
        id: Some(author.user_id.clone()),
        handle: Some(author.handle.clone()),
        name: author.name.clone(),
        avatar_url: author.avatar_url.clone(),
    };
    let kind = tweet.kind();
    let referenced = referenced_post(tweet, index);
    let own_text = readable_text(tweet);
    let mut post_author = leader.clone();
    let mut reposted_by = None;
    let mut content = own_text.clone();
    let mut media = media_items(tweet, index);
    let mut counts = tweet_counts(tweet);
    let (score, label) = match (&referenced, kind) {
        (Some((original, Some(included))), PostKind::Repost) => {
            content = original.text.clone().unwrap_or_default();
            post_author = original.author.clone();
            reposted_by = Some(Box::new(leader));
            media = original.media.clone();
            counts = tweet_counts(included);
            (0.0, Sentiment::Neutral)
        }
        (_, PostKind::Repost) => (0.0, Sentiment::Neutral),
        _ => sentiment::analyze(&own_text),
    };
    NewPost {
        leader_id,
        platform: Platform::X,
        content,
        timestamp_ms: timestamp_ms(tweet).unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
        sentiment: label,
        sentiment_score: score,
        platform_post_id: Some(tweet.id.clone()),
        verification: Verification::Unverified,
        author: post_author,
        details: PostDetails {
            kind,
            counts: Some(counts),
            language: tweet.lang.clone(),
            media,
            referenced: referenced.map(|(r, _)| Box::new(r)),
            conversation_id: tweet.conversation_id.clone(),
            in_reply_to_user_id: tweet.in_reply_to_user_id.clone(),
            reposted_by,
        },
        client_metrics: None,
        edit_history: tweet.edit_history_tweet_ids.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // Shaped after the samples in X's API v2 documentation.
    const TIMELINE: &str = r#"{
      "data": [
        {"id": "1460323737035677698", "text": "What a wonderful, great day!",
         "created_at": "2021-11-15T19:08:05.000Z", "author_id": "2244994945", "lang": "en",
         "edit_history_tweet_ids": ["1460323737035677698"],
         "public_metrics": {"retweet_count": 7, "reply_count": 3, "like_count": 42, "quote_count": 1},
         "attachments": {"media_keys": ["3_1", "7_2"]}},
        {"id": "1460323737035677700", "text": "Edited text",
         "created_at": "2021-11-15T19:09:05.000Z", "author_id": "2244994945",
         "edit_history_tweet_ids": ["1460323737035677699", "1460323737035677700"]}
      ],
      "includes": {"media": [
        {"media_key": "3_1", "type": "photo", "url": "https://pbs.twimg.com/media/a.jpg"},
        {"media_key": "7_2", "type": "video", "preview_image_url": "https://pbs.twimg.com/b.jpg"}
      ]},
      "meta": {"result_count": 2, "newest_id": "1460323737035677700",
               "oldest_id": "1460323737035677698", "next_token": "7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i"}
    }"#;

    fn author() -> AuthorProfile {
        AuthorProfile {
            user_id: "2244994945".into(),
            handle: "XDevelopers".into(),
            name: Some("Developers".into()),
            avatar_url: Some("https://pbs.twimg.com/profile.jpg".into()),
        }
    }

    /// The `metrics` object the API shows for the post once stored.
    fn metrics(post: &NewPost) -> serde_json::Value {
        let stored = post.clone().into_post(1);
        serde_json::to_value(crate::shape::post::PostJson::from(&stored, None)).unwrap()["metrics"]
            .clone()
    }

    #[test]
    fn a_timeline_page_maps_to_posts_with_every_spec_field() {
        let page: TimelineResponse = serde_json::from_str(TIMELINE).unwrap();
        assert_eq!(
            page.meta.next_token.as_deref(),
            Some("7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i")
        );
        let posts = page.to_new_posts(9, &author());
        assert_eq!(posts.len(), 2);
        let first = &posts[0];
        assert_eq!(first.leader_id, 9);
        assert_eq!(first.platform, Platform::X);
        assert_eq!(
            first.platform_post_id.as_deref(),
            Some("1460323737035677698")
        );
        assert_eq!(first.timestamp_ms, 1_637_003_285_000);
        assert_eq!(first.sentiment, Sentiment::Positive);
        assert_eq!(first.author.handle.as_deref(), Some("XDevelopers"));
        let m = metrics(first);
        assert_eq!(m["origin"], "x");
        assert_eq!(m["externalId"], "1460323737035677698");
        assert_eq!(m["author"], "XDevelopers");
        assert_eq!(m["authorName"], "Developers");
        assert_eq!(m["avatarUrl"], "https://pbs.twimg.com/profile.jpg");
        assert_eq!(m["mediaUrl"], "https://pbs.twimg.com/media/a.jpg");
        assert_eq!(
            m["mediaUrls"],
            json!([
                "https://pbs.twimg.com/media/a.jpg",
                "https://pbs.twimg.com/b.jpg"
            ])
        );
        assert_eq!(m["likes"], 42);
        assert_eq!(m["comments"], 3);
        assert_eq!(m["shares"], 7);
        assert_eq!(m["language"], "en");
        assert_eq!(m["sentimentScore"].as_f64(), Some(first.sentiment_score));
    }

    #[test]
    fn an_edited_post_carries_its_edit_chain() {
        let page: TimelineResponse = serde_json::from_str(TIMELINE).unwrap();
        let posts = page.to_new_posts(1, &author());
        assert_eq!(
            posts[1].edit_history,
            vec!["1460323737035677699", "1460323737035677700"]
        );
        let m = metrics(&posts[1]);
        assert_eq!(m["mediaUrls"], json!([]));
        assert_eq!(m["mediaUrl"], serde_json::Value::Null);
        assert_eq!(m["likes"], 0);
    }

    #[test]
    fn a_response_with_only_meta_has_no_posts() {
        let page: TimelineResponse =
            serde_json::from_str(r#"{"meta":{"result_count":0}}"#).unwrap();
        assert!(page.data.is_empty());
        assert_eq!(page.meta.next_token, None);
        assert!(page.to_new_posts(1, &author()).is_empty());
    }

    #[test]
    fn unknown_and_suspended_users_are_told_apart() {
        let body = r#"{"errors":[
          {"value":"nobody","detail":"Could not find user with username: [nobody].","title":"Not Found Error",
           "resource_type":"user","parameter":"username","resource_id":"nobody",
           "type":"https://api.twitter.com/2/problems/resource-not-found"},
          {"value":"banned","detail":"User has been suspended: [banned].","title":"Forbidden",
           "resource_type":"user","parameter":"username","resource_id":"banned",
           "type":"https://api.twitter.com/2/problems/resource-not-found"}]}"#;
        let resp: UserResponse = serde_json::from_str(body).unwrap();
        assert_eq!(resp.data, None);
        assert_eq!(resp.errors[0].classify(), ApiErrorKind::NotFound);
        assert_eq!(resp.errors[1].classify(), ApiErrorKind::Suspended);
        assert!(resp.errors[0].describe().contains("nobody"));
    }

    #[test]
    fn a_missing_created_at_falls_back_to_the_snowflake_time() {
        let tweet = Tweet {
            id: "1460323737035677698".into(),
            text: String::new(),
            created_at: Some("yesterday".into()),
            author_id: None,
            lang: None,
            public_metrics: None,
            edit_history_tweet_ids: vec![],
            ..Tweet::default()
        };
        // The snowflake carries the same second as created_at in the sample above.
        let ms = timestamp_ms(&tweet).unwrap();
        assert_eq!(ms / 1000, 1_637_003_285);
        let junk = Tweet {
            id: "not-a-number".into(),
            created_at: None,
            ..tweet
        };
        assert_eq!(timestamp_ms(&junk), None);
    }

    #[test]
    fn a_long_post_keeps_its_whole_text_and_references_give_the_kind() {
        let full = "word ".repeat(240);
        let page: TimelineResponse = serde_json::from_value(json!({
            "data": [
                {"id": "1800000000000000001", "text": format!("{}…", &full[..270]),
                 "note_tweet": {"text": full.clone()},
                 "conversation_id": "1800000000000000001"},
                {"id": "1800000000000000002", "text": "RT @other: hi",
                 "referenced_tweets": [{"type": "retweeted", "id": "17"}]},
                {"id": "1800000000000000003", "text": "look",
                 "referenced_tweets": [{"type": "quoted", "id": "18"}]},
                {"id": "1800000000000000004", "text": "@other yes",
                 "referenced_tweets": [{"type": "replied_to", "id": "19"}],
                 "conversation_id": "19", "in_reply_to_user_id": "99"}
            ],
            "meta": {"result_count": 4}
        }))
        .unwrap();
        let author = AuthorProfile::default();
        let posts = page.to_new_posts(1, &author);
        assert_eq!(posts[0].content, full);
        assert_eq!(posts[0].content.chars().count(), 1200);
        assert_eq!(posts[0].details.kind, PostKind::Post);
        assert_eq!(
            posts[0].details.conversation_id.as_deref(),
            Some("1800000000000000001")
        );
        assert_eq!(posts[1].details.kind, PostKind::Repost);
        assert_eq!(posts[2].details.kind, PostKind::Quote);
        assert_eq!(posts[3].details.kind, PostKind::Reply);
        assert_eq!(posts[3].details.conversation_id.as_deref(), Some("19"));
        assert_eq!(posts[3].details.in_reply_to_user_id.as_deref(), Some("99"));
        // A short post has no note_tweet: its text is the whole text.
        assert_eq!(page.data[1].full_text(), "RT @other: hi");
    }

    #[test]
    fn serializing_and_parsing_a_page_round_trips() {
        let page: TimelineResponse = serde_json::from_str(TIMELINE).unwrap();
        let text = serde_json::to_string(&page).unwrap();
        let again: TimelineResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(page, again);
        // Empty parts stay off the wire, as with X.
        let empty = serde_json::to_value(TimelineResponse::default()).unwrap();
        assert_eq!(empty, json!({"meta": {"result_count": 0}}));
    }
}
