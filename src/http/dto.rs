//! Response and request JSON, kept apart from the domain types: this file is the
//! compatibility boundary with the original API's clients.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::leader::Leader;
use crate::domain::post::Post;
use crate::domain::review::ReviewItem;

/// RFC 3339 UTC with milliseconds, as every timestamp in the API.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 timestamp into unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn raw_metrics(json: &str) -> &RawValue {
    // Stored metrics were validated as JSON on the way in; an unreadable one shows as {}.
    serde_json::from_str::<&RawValue>(json).unwrap_or_else(|_| empty_object())
}

fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".to_string()).expect("{} is JSON"))
}

/// A leader as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderJson<'a> {
    #[serde(serialize_with = "crate::shape::id::string")]
    #[schema(value_type = String)]
    pub id: u64,
    pub name: &'a str,
    pub handles: &'a BTreeMap<String, String>,
    pub tracking_topics: &'a [String],
    pub created_at: String,
    pub avatar_url: Option<&'a str>,
}

impl<'a> LeaderJson<'a> {
    /// Borrows a leader for serialisation.
    pub fn from(l: &'a Leader) -> LeaderJson<'a> {
        LeaderJson {
            id: l.id,
            name: &l.name,
            handles: &l.handles,
            tracking_topics: &l.tracking_topics,
            created_at: rfc3339(l.created_at_ms),
            avatar_url: l.avatar_url.as_deref(),
        }
    }
}

/// A post as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostJson<'a> {
    #[serde(serialize_with = "crate::shape::id::string")]
    #[schema(value_type = String)]
    pub id: u64,
    #[serde(serialize_with = "crate::shape::id::string")]
    #[schema(value_type = String)]
    pub leader_id: u64,
    pub leader_name: Option<&'a str>,
    pub platform: &'static str,
    pub content: &'a str,
    pub timestamp: String,
    pub sentiment: &'static str,
    #[schema(value_type = Object)]
    pub metrics: &'a RawValue,
    pub platform_post_id: Option<&'a str>,
    pub verification_status: &'static str,
}

impl<'a> PostJson<'a> {
    /// Borrows a post (and its leader, when it still exists) for serialisation.
    pub fn from(p: &'a Post, leader: Option<&'a Leader>) -> PostJson<'a> {
        PostJson {
            id: p.id,
            leader_id: p.leader_id,
            leader_name: leader.map(|l| l.name.as_str()),
            platform: p.platform.as_str(),
            content: &p.content,
            timestamp: rfc3339(p.timestamp_ms),
            sentiment: p.sentiment.as_str(),
            metrics: raw_metrics(&p.metrics_json),
            platform_post_id: p.platform_post_id.as_deref(),
            verification_status: p.verification.as_str(),
        }
    }
}

/// The author block of a feed post.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthorJson<'a> {
    pub id: String,
    pub name: &'a str,
    pub handle: Option<&'a str>,
    pub display_name: &'a str,
}

/// A post in the feed: the post plus its permalink and author.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPostJson<'a> {
    #[serde(flatten)]
    pub post: PostJson<'a>,
    pub permalink: Option<String>,
    pub author: AuthorJson<'a>,
}

impl<'a> FeedPostJson<'a> {
    /// Builds the feed form of a post.
    pub fn from(p: &'a Post, leader: Option<&'a Leader>) -> FeedPostJson<'a> {
        let leader_handle = leader
            .and_then(|l| l.handles.get(&p.platform.as_str().to_ascii_lowercase()))
            .map(String::as_str);
        let leader_name = leader.map(|l| l.name.as_str()).unwrap_or("");
        let name = p.author.name.as_deref().unwrap_or(leader_name);
        FeedPostJson {
            post: PostJson::from(p, leader),
            permalink: p.permalink(leader.and_then(Leader::x_handle)),
            author: AuthorJson {
                id: p
                    .author
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("leader:{}", p.leader_id)),
                name,
                handle: p.author.handle.as_deref().or(leader_handle),
                display_name: name,
            },
        }
    }
}

/// A review item with its post.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewJson<'a> {
    #[serde(serialize_with = "crate::shape::id::string")]
    #[schema(value_type = String)]
    pub id: u64,
    #[serde(serialize_with = "crate::shape::id::string")]
    #[schema(value_type = String)]
    pub post_id: u64,
    pub state: &'static str,
    pub notes: Option<&'a str>,
    pub reviewed_by: Option<&'a str>,
    pub reviewed_at: Option<String>,
    pub updated_at: String,
    pub post: Option<PostJson<'a>>,
}

impl<'a> ReviewJson<'a> {
    /// Builds the API form of a review item.
    pub fn from(
        r: &'a ReviewItem,
        post: Option<&'a Post>,
        leader: Option<&'a Leader>,
    ) -> ReviewJson<'a> {
        ReviewJson {
            id: r.id,
            post_id: r.post_id,
            state: r.state.as_str(),
            notes: r.notes.as_deref(),
            reviewed_by: r.reviewed_by.as_deref(),
            reviewed_at: r.reviewed_at_ms.map(rfc3339),
            updated_at: rfc3339(r.updated_at_ms),
            post: post.map(|p| PostJson::from(p, leader)),
        }
    }
}

/// `{"success": true}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Success {
    pub success: bool,
}
