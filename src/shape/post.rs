//! A post as the API, backups and notifications show it: its media, referenced post,
//! reposter, `metrics` object, and the feed's form with permalink and author.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::domain::leader::Leader;
use crate::domain::post::{MediaItem, Platform, Post, PostKind, ReferencedPost};
use crate::shape::time::rfc3339;

/// A post's kind on the wire.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum KindName {
    Post,
    Repost,
    Quote,
    Reply,
}

/// One encoding of a video or GIF.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariantJson<'a> {
    pub url: &'a str,
    pub content_type: &'a str,
    pub bit_rate: Option<u64>,
}

/// A photo, video or GIF of a post.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaJson<'a> {
    /// `photo`, `video` or `animated_gif`.
    #[serde(rename = "type")]
    #[schema(value_type = MediaTypeName)]
    pub kind: &'static str,
    /// The image (photos).
    pub url: Option<&'a str>,
    /// The still shown before playing (videos and GIFs).
    pub preview_image_url: Option<&'a str>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<u64>,
    pub variants: Vec<VariantJson<'a>>,
}

/// `type` of a media item.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum MediaTypeName {
    Photo,
    Video,
    AnimatedGif,
}

impl<'a> MediaJson<'a> {
    fn from(m: &'a MediaItem) -> MediaJson<'a> {
        MediaJson {
            kind: m.kind.as_str(),
            url: m.url.as_deref(),
            preview_image_url: m.preview_image_url.as_deref(),
            width: m.width,
            height: m.height,
            duration_ms: m.duration_ms,
            variants: m
                .variants
                .iter()
                .map(|v| VariantJson {
                    url: &v.url,
                    content_type: &v.content_type,
                    bit_rate: v.bit_rate,
                })
                .collect(),
        }
    }

    fn list(media: &'a [MediaItem]) -> Vec<MediaJson<'a>> {
        media.iter().map(MediaJson::from).collect()
    }
}

/// `relation` of a referenced post.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RelationName {
    Reposted,
    Quoted,
    RepliedTo,
}

/// The post a repost, quote or reply refers to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferencedPostJson<'a> {
    /// The X id of the referenced post.
    pub id: &'a str,
    #[schema(value_type = RelationName)]
    pub relation: &'static str,
    pub author_id: Option<&'a str>,
    pub author_handle: Option<&'a str>,
    pub author_name: Option<&'a str>,
    /// Its full text, links expanded (null when X did not include the post).
    pub text: Option<&'a str>,
    /// RFC 3339.
    pub created_at: Option<String>,
    pub media: Vec<MediaJson<'a>>,
    pub permalink: Option<String>,
}

impl<'a> ReferencedPostJson<'a> {
    fn from(r: &'a ReferencedPost) -> ReferencedPostJson<'a> {
        ReferencedPostJson {
            id: &r.id,
            relation: r.relation.as_str(),
            author_id: r.author.id.as_deref(),
            author_handle: r.author.handle.as_deref(),
            author_name: r.author.name.as_deref(),
            text: r.text.as_deref(),
            created_at: r.created_at_ms.map(rfc3339),
            media: MediaJson::list(&r.media),
            permalink: r.permalink(),
        }
    }
}

/// Who reposted a `repost` entry: the leader.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepostedByJson<'a> {
    #[serde(serialize_with = "crate::shape::id::string")]
    #[schema(value_type = String)]
    pub leader_id: u64,
    pub name: Option<&'a str>,
    /// The leader's X handle, without `@`.
    pub handle: Option<&'a str>,
}

/// The `metrics` object of a post. A post entered by a client (admin API, backups) shows
/// the client's object as given. A post read from X shows `origin` (`"x"`),
/// `externalId`, `platformPostId` (the same X id, as the original system named it),
/// `link` (the permalink), `author` (handle), `authorName`, `avatarUrl`, `mediaUrl`,
/// `mediaUrls`, `likes`, `comments`, `shares`, `quotes`, `language`, `sentimentScore`, and
/// mirrors `kind`, `conversationId`, `inReplyToUserId`, `media`, `referencedPost` and
/// `repostedBy`. Every post's object carries Amber's `revision` (how many times the stored
/// post changed), and, when it has a platform id, `platformPostId` and `link` (when known).
pub struct MetricsJson<'a> {
    post: &'a Post,
    reposted_by: Option<RepostedByJson<'a>>,
    link: Option<String>,
}

impl std::fmt::Debug for MetricsJson<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsJson")
            .field("post", &self.post.id)
            .finish()
    }
}

impl<'a> MetricsJson<'a> {
    /// The keys an ingested X post's metrics carry, in order.
    fn x_entries(&self) -> Vec<(&'static str, serde_json::Value)> {
        use serde_json::json;
        let p = self.post;
        let Some(counts) = p.details.counts.filter(|_| p.platform == Platform::X) else {
            return Vec::new();
        };
        let urls: Vec<&str> = p
            .details
            .media
            .iter()
            .filter_map(MediaItem::display_url)
            .collect();
        let mut out = vec![
            ("origin", json!("x")),
            ("externalId", json!(p.platform_post_id)),
            ("platformPostId", json!(p.platform_post_id)),
            ("link", json!(self.link)),
            ("author", json!(p.author.handle)),
            ("authorName", json!(p.author.name)),
            ("avatarUrl", json!(p.author.avatar_url)),
            ("mediaUrl", json!(urls.first())),
            ("mediaUrls", json!(urls)),
            ("likes", json!(counts.likes)),
            ("comments", json!(counts.comments)),
            ("shares", json!(counts.shares)),
            ("quotes", json!(counts.quotes)),
            ("language", json!(p.details.language)),
            ("sentimentScore", json!(p.sentiment_score)),
        ];
        if let Some(n) = counts.bookmarks {
            out.push(("bookmarks", json!(n)));
        }
        if let Some(n) = counts.impressions {
            out.push(("impressions", json!(n)));
        }
        out.push(("revision", json!(p.revision)));
        out
    }

    /// What Amber adds to a client's own object: `revision`, and the post's
    /// `platformPostId` and `link` when it has them.
    fn amber_entries(&self) -> Vec<(&'static str, serde_json::Value)> {
        let p = self.post;
        let mut out = Vec::with_capacity(3);
        if let Some(ext) = &p.platform_post_id {
            out.push(("platformPostId", ext.as_str().into()));
        }
        if let Some(link) = &self.link {
            out.push(("link", link.as_str().into()));
        }
        out.push(("revision", p.revision.into()));
        out
    }

    /// The typed fields every post mirrors into `metrics`.
    fn mirrored(&self) -> Vec<(&'static str, serde_json::Value)> {
        let p = self.post;
        let d = &p.details;
        let value = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
        vec![
            ("kind", d.kind.as_str().into()),
            ("conversationId", d.conversation_id.clone().into()),
            ("inReplyToUserId", d.in_reply_to_user_id.clone().into()),
            (
                "media",
                value(serde_json::to_value(MediaJson::list(&d.media))),
            ),
            (
                "referencedPost",
                value(serde_json::to_value(
                    d.referenced.as_deref().map(ReferencedPostJson::from),
                )),
            ),
            ("repostedBy", value(serde_json::to_value(&self.reposted_by))),
        ]
    }
}

impl Serialize for MetricsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = self.post;
        let client = p
            .client_metrics
            .as_deref()
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
        let client =
            client.and_then(|raw| serde_json::from_str::<serde_json::Map<_, _>>(raw.get()).ok());
        if p.details.counts.is_none() {
            // Not read from X: the client's object as given (`{}` without one), with
            // Amber's entries.
            let mut object = client.unwrap_or_default();
            for (k, v) in self.amber_entries() {
                object.insert(k.to_string(), v);
            }
            return object.serialize(serializer);
        }
        let x = self.x_entries();
        let mirrored = self.mirrored();
        match client {
            // Read from X by this build: the typed fields, in order.
            None => {
                let mut map = serializer.serialize_map(Some(x.len() + mirrored.len()))?;
                for (k, v) in x.iter().chain(mirrored.iter()) {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            // Stored by an older build with its metrics object, or entered through the
            // API under its X id and since delivered by X: that object, with X's fields
            // from the typed values (counts move) and the mirrored fields added. A typed
            // field X left empty (null, `[]`) does not hide what the client's object says.
            Some(mut object) => {
                for (k, v) in x.into_iter().chain(mirrored) {
                    let empty = v.is_null() || v.as_array().is_some_and(Vec::is_empty);
                    if !(empty && object.contains_key(k)) {
                        object.insert(k.to_string(), v);
                    }
                }
                object.serialize(serializer)
            }
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
    /// The full text (for a repost: the reposted post's), `t.co` links expanded.
    pub content: &'a str,
    /// RFC 3339 (for a repost: when the leader reposted).
    pub timestamp: String,
    pub sentiment: &'static str,
    /// A client's own object as given, or for a post read from X its counts (`likes`,
    /// `comments`, `shares`, `quotes`) with `origin`, `externalId`, `author`, ... Every
    /// post's object also carries `revision` (how many times the stored post changed: an
    /// X edit, a re-delivery whose counts moved, a `PUT`), and, for a post with a
    /// platform id, `platformPostId` and `link` (its permalink, when known), as the
    /// original system's clients read them.
    #[schema(value_type = Object)]
    pub metrics: MetricsJson<'a>,
    pub platform_post_id: Option<&'a str>,
    pub verification_status: &'static str,
    #[schema(value_type = KindName)]
    pub kind: &'static str,
    /// X's conversation id: the id of the post that started the thread.
    pub conversation_id: Option<&'a str>,
    /// For a reply: the X user id it answers.
    pub in_reply_to_user_id: Option<&'a str>,
    pub media: Vec<MediaJson<'a>>,
    /// The reposted or quoted post, or what a reply answers (when X included it).
    pub referenced_post: Option<ReferencedPostJson<'a>>,
    /// Set for `kind: "repost"`: the entry shows the reposted post, credited to the leader.
    pub reposted_by: Option<RepostedByJson<'a>>,
}

impl<'a> PostJson<'a> {
    /// Borrows a post (and its leader, when it still exists) for serialisation.
    pub fn from(p: &'a Post, leader: Option<&'a Leader>) -> PostJson<'a> {
        let d = &p.details;
        let reposted_by = || {
            (d.kind == PostKind::Repost).then(|| RepostedByJson {
                leader_id: p.leader_id,
                name: leader
                    .map(|l| l.name.as_str())
                    .or(d.reposted_by.as_ref().and_then(|a| a.name.as_deref())),
                handle: d
                    .reposted_by
                    .as_ref()
                    .and_then(|a| a.handle.as_deref())
                    .or(leader.and_then(Leader::x_handle)),
            })
        };
        PostJson {
            id: p.id,
            leader_id: p.leader_id,
            leader_name: leader.map(|l| l.name.as_str()),
            platform: p.platform.as_str(),
            content: &p.content,
            timestamp: rfc3339(p.timestamp_ms),
            sentiment: p.sentiment.as_str(),
            metrics: MetricsJson {
                post: p,
                reposted_by: reposted_by(),
                link: p.permalink(leader.and_then(Leader::x_handle)),
            },
            platform_post_id: p.platform_post_id.as_deref(),
            verification_status: p.verification.as_str(),
            kind: d.kind.as_str(),
            conversation_id: d.conversation_id.as_deref(),
            in_reply_to_user_id: d.in_reply_to_user_id.as_deref(),
            media: MediaJson::list(&d.media),
            referenced_post: d.referenced.as_deref().map(ReferencedPostJson::from),
            reposted_by: reposted_by(),
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::storage::codec;
    use crate::storage::posts::StoredPost;

    /// Posts stored by the build before record version 2 show the same `metrics` as they
    /// did then, with the mirrored fields added beside them.
    #[test]
    fn a_version_1_post_shows_its_metrics_as_before() {
        for bytes in codec::v1_post_records() {
            let stored: StoredPost = codec::decode(&bytes).unwrap();
            let p = &stored.post;
            let before: Value = serde_json::from_str(p.client_metrics.as_deref().unwrap()).unwrap();
            let json = serde_json::to_value(PostJson::from(p, None)).unwrap();
            assert_eq!(json["kind"], "post");
            assert_eq!(json["content"], p.content.as_str());
            let mut metrics = json["metrics"].as_object().unwrap().clone();
            assert_eq!(metrics.remove("revision"), Some(json!(0)));
            if p.platform != Platform::X {
                assert_eq!(
                    Value::Object(metrics),
                    before,
                    "a client's object, as given"
                );
                continue;
            }
            assert_eq!(
                metrics.remove("platformPostId"),
                Some(json!(p.platform_post_id))
            );
            assert_eq!(metrics.remove("link"), Some(json!(p.permalink(None))));
            for (k, v) in [
                ("kind", json!("post")),
                ("conversationId", Value::Null),
                ("inReplyToUserId", Value::Null),
                ("referencedPost", Value::Null),
                ("repostedBy", Value::Null),
            ] {
                assert_eq!(metrics.remove(k), Some(v), "{k}");
            }
            assert_eq!(metrics.remove("media"), Some(json["media"].clone()));
            assert_eq!(Value::Object(metrics), before);
        }
    }
}
