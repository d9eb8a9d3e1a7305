//! Backup and restore as JSON lines: `{"kind":"leader"|"post"|"review", ...}` with the
//! same fields as the API's JSON (posts keep their ids, `leaderId` and `platformPostId`).
//! The last line is the trailer, `{"kind":"trailer","records":N,"damagedSkipped":D}`: how
//! many record lines come before it, and how many damaged records the export skipped.
//! Import refuses a backup without it, or whose count disagrees (a truncated copy).

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::json::JsonObject;
use crate::domain::leader::Leader;
use crate::domain::post::{
    Author, Counts, MediaItem, MediaKind, MediaVariant, Platform, Post, PostDetails, PostKind,
    ReferencedPost, Relation, Verification,
};
use crate::domain::review::{ReviewItem, ReviewState};
use crate::domain::sentiment::Sentiment;
use crate::shape::id::IdRef;
use crate::shape::leader::LeaderJson;
use crate::shape::post::PostJson;
use crate::shape::review::ReviewJson;
use crate::shape::time::parse_rfc3339;
use crate::storage::{Imported, Record};

/// Largest `metrics` object restored from a backup. Generous: ingested X posts were never
/// held to the API's 16 KB, and a backup must restore what the server stored; only what
/// cannot be served back as strict JSON is refused.
const MAX_METRICS_BYTES: usize = 1 << 20;

/// A backup line that cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
    #[error("the backup ends after {records} records without its trailer line: it was cut short (an export that failed or a partial copy); nothing was imported. Export again, or pass --no-trailer for a backup written before trailers existed")]
    NoTrailer { records: usize },
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthorLine {
    id: Option<String>,
    handle: Option<String>,
    name: Option<String>,
    avatar_url: Option<String>,
}

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    kind: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PostLineOut<'a> {
    #[serde(flatten)]
    post: PostJson<'a>,
    sentiment_score: f64,
    author: AuthorLine,
}

/// A post line: the API's post JSON with `sentimentScore` and `author`, its `kind` (the
/// post kind) renamed `postKind`, as the line's own `kind` says what the line is.
fn post_line(p: &Post) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(PostLineOut {
        post: PostJson::from(p, None),
        sentiment_score: p.sentiment_score,
        author: AuthorLine {
            id: p.author.id.clone(),
            handle: p.author.handle.clone(),
            name: p.author.name.clone(),
            avatar_url: p.author.avatar_url.clone(),
        },
    })?;
    if let Some(obj) = value.as_object_mut() {
        if let Some(kind) = obj.remove("kind") {
            obj.insert("postKind".into(), kind);
        }
    }
    Ok(value)
}

/// Writes one record as a JSON line.
pub fn write_record(out: &mut impl Write, record: &Record) -> std::io::Result<()> {
    let line = match record {
        Record::Leader(l) => serde_json::to_string(&Tagged {
            kind: "leader",
            body: &LeaderJson::from(l),
        }),
        Record::Post(p) => post_line(p).and_then(|body| {
            serde_json::to_string(&Tagged {
                kind: "post",
                body: &body,
            })
        }),
        // The API's review JSON; its `post` is null here (the post has its own line).
        Record::Review(r) => serde_json::to_string(&Tagged {
            kind: "review",
            body: &ReviewJson::from(r, None, None),
        }),
    }
    .map_err(std::io::Error::other)?;
    writeln!(out, "{line}")
}

/// The backup's last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trailer {
    /// Record lines before the trailer.
    pub records: u64,
    /// Damaged records the export skipped (not in the backup).
    #[serde(default)]
    pub damaged_skipped: u64,
}

/// Writes the trailer line, after the last record.
pub fn write_trailer(out: &mut impl Write, trailer: Trailer) -> std::io::Result<()> {
    let line = serde_json::to_string(&Tagged {
        kind: "trailer",
        body: &trailer,
    })
    .map_err(std::io::Error::other)?;
    writeln!(out, "{line}")
}

/// The `kind` of a line, read first; the line is then read again as that kind (an
/// internally tagged enum would buffer the line and lose the raw `metrics` JSON).
#[derive(Deserialize)]
struct KindIn {
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaderIn {
    id: IdRef,
    name: String,
    #[serde(default)]
    handles: BTreeMap<String, String>,
    #[serde(default)]
    tracking_topics: Vec<String>,
    created_at: String,
    avatar_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostIn {
    id: IdRef,
    leader_id: IdRef,
    platform: String,
    content: String,
    timestamp: String,
    sentiment: String,
    #[serde(default)]
    sentiment_score: f64,
    metrics: Option<Box<RawValue>>,
    platform_post_id: Option<String>,
    verification_status: String,
    #[serde(default)]
    author: AuthorLine,
    /// The post kind (absent in backups written before kinds existed: `post`).
    post_kind: Option<String>,
    // What an X post carries beyond the common fields (absent in older backups).
    conversation_id: Option<String>,
    in_reply_to_user_id: Option<String>,
    #[serde(default)]
    media: Vec<MediaIn>,
    referenced_post: Option<ReferencedIn>,
    reposted_by: Option<RepostedByIn>,
}

/// A media item of a post line (the API's media JSON).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaIn {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    preview_image_url: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration_ms: Option<u64>,
    #[serde(default)]
    variants: Vec<VariantIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariantIn {
    url: String,
    content_type: String,
    bit_rate: Option<u64>,
}

/// The referenced post of a post line (the API's `referencedPost`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferencedIn {
    id: String,
    relation: String,
    author_id: Option<String>,
    author_handle: Option<String>,
    author_name: Option<String>,
    text: Option<String>,
    created_at: Option<String>,
    #[serde(default)]
    media: Vec<MediaIn>,
}

/// `repostedBy` of a repost line: the leader's X account.
#[derive(Deserialize)]
struct RepostedByIn {
    name: Option<String>,
    handle: Option<String>,
}

/// The X fields of a post line's `metrics` (an X post's counts and language).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct XMetricsIn {
    origin: Option<String>,
    likes: Option<u64>,
    comments: Option<u64>,
    shares: Option<u64>,
    quotes: Option<u64>,
    bookmarks: Option<u64>,
    impressions: Option<u64>,
    language: Option<String>,
}

fn media_of(items: Vec<MediaIn>) -> Result<Vec<MediaItem>, String> {
    items
        .into_iter()
        .map(|m| {
            Ok(MediaItem {
                kind: MediaKind::parse(&m.kind)
                    .ok_or_else(|| format!("unknown media type {:?}", m.kind))?,
                url: m.url,
                preview_image_url: m.preview_image_url,
                width: m.width,
                height: m.height,
                duration_ms: m.duration_ms,
                variants: m
                    .variants
                    .into_iter()
                    .map(|v| MediaVariant {
                        url: v.url,
                        content_type: v.content_type,
                        bit_rate: v.bit_rate,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The typed X fields of a post line: counts and language from an X post's `metrics`
/// (`origin: "x"`), media, the referenced post, the conversation, the reposter.
fn x_details(
    metrics: Option<&RawValue>,
    kind: PostKind,
    p: &mut PostIn,
) -> Result<PostDetails, String> {
    let x = metrics
        .and_then(|m| serde_json::from_str::<XMetricsIn>(m.get()).ok())
        .filter(|m| m.origin.as_deref() == Some("x"));
    let (counts, language) = match x {
        Some(m) => (
            Some(Counts {
                likes: m.likes.unwrap_or(0),
                comments: m.comments.unwrap_or(0),
                shares: m.shares.unwrap_or(0),
                quotes: m.quotes.unwrap_or(0),
                bookmarks: m.bookmarks,
                impressions: m.impressions,
            }),
            m.language,
        ),
        None => (None, None),
    };
    let referenced =
        match p.referenced_post.take() {
            None => None,
            Some(r) => Some(Box::new(ReferencedPost {
                relation: match r.relation.as_str() {
                    "reposted" => Relation::Reposted,
                    "quoted" => Relation::Quoted,
                    "replied_to" => Relation::RepliedTo,
                    other => return Err(format!("unknown referencedPost relation {other:?}")),
                },
                id: r.id,
                author: Author {
                    id: r.author_id,
                    handle: r.author_handle,
                    name: r.author_name,
                    avatar_url: None,
                },
                text: r.text,
                created_at_ms: match r.created_at.as_deref() {
                    None => None,
                    Some(t) => Some(parse_rfc3339(t).ok_or_else(|| {
                        format!("referencedPost.createdAt is not RFC 3339: {t:?}")
                    })?),
                },
                media: media_of(r.media)?,
            })),
        };
    Ok(PostDetails {
        kind,
        counts,
        language,
        media: media_of(std::mem::take(&mut p.media))?,
        referenced,
        conversation_id: p.conversation_id.take(),
        in_reply_to_user_id: p.in_reply_to_user_id.take(),
        reposted_by: p
            .reposted_by
            .take()
            .filter(|_| kind == PostKind::Repost)
            .map(|r| {
                Box::new(Author {
                    id: None,
                    handle: r.handle,
                    name: r.name,
                    avatar_url: None,
                })
            }),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    id: IdRef,
    post_id: IdRef,
    state: String,
    notes: Option<String>,
    reviewed_by: Option<String>,
    reviewed_at: Option<String>,
    updated_at: String,
}

fn time(line: usize, field: &str, s: &str) -> Result<i64, BackupError> {
    parse_rfc3339(s).ok_or_else(|| BackupError::Line {
        line,
        message: format!("{field} is not RFC 3339: {s:?}"),
    })
}

/// Amber's id, or a placeholder and the foreign id (the import gives the record a fresh
/// id and remembers the foreign one).
fn split(id: IdRef) -> (u64, Option<String>) {
    match id {
        IdRef::Local(n) => (n, None),
        IdRef::Foreign(s) => (0, Some(s)),
    }
}

/// Parses one backup line. Its ids may be foreign (the original system's UUIDs): they
/// travel beside the record, which the import gives fresh ids.
pub fn parse_line(line_no: usize, text: &str) -> Result<Imported, BackupError> {
    let kind: KindIn = serde_json::from_str(text).map_err(|e| BackupError::Line {
        line: line_no,
        message: e.to_string(),
    })?;
    parse_record(line_no, text, kind)
}

/// [`parse_line`] once the line's `kind` is read.
fn parse_record(line_no: usize, text: &str, kind: KindIn) -> Result<Imported, BackupError> {
    let err = |message: String| BackupError::Line {
        line: line_no,
        message,
    };
    let foreign_id;
    let mut foreign_parent = None;
    let record = match kind.kind.as_str() {
        "leader" => {
            let l: LeaderIn = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
            let id;
            (id, foreign_id) = split(l.id);
            Record::Leader(Leader {
                id,
                name: l.name,
                handles: l.handles,
                tracking_topics: l.tracking_topics,
                created_at_ms: time(line_no, "createdAt", &l.created_at)?,
                avatar_url: l.avatar_url,
            })
        }
        "post" => {
            let mut p: PostIn = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
            let kind = match p.post_kind.as_deref() {
                None => PostKind::Post,
                Some(k) => {
                    PostKind::parse(k).ok_or_else(|| err(format!("unknown postKind {k:?}")))?
                }
            };
            let raw_metrics = p.metrics.take();
            let details = x_details(raw_metrics.as_deref(), kind, &mut p).map_err(err)?;
            // One parse of `metrics`: the canonical text and the ids it names.
            let (metrics, metrics_ids) = match raw_metrics {
                Some(m) => {
                    let (object, ids) = JsonObject::parse_read(m.get(), MAX_METRICS_BYTES)
                        .map_err(|e| err(format!("metrics {e}")))?;
                    (Some(object), ids)
                }
                None => (None, Default::default()),
            };
            let (id, leader_id);
            (id, foreign_id) = split(p.id);
            (leader_id, foreign_parent) = split(p.leader_id);
            Record::Post(Box::new(Post {
                id,
                leader_id,
                platform: Platform::parse(&p.platform)
                    .ok_or_else(|| err(format!("unknown platform {:?}", p.platform)))?,
                content: p.content,
                timestamp_ms: time(line_no, "timestamp", &p.timestamp)?,
                sentiment: Sentiment::parse(&p.sentiment)
                    .ok_or_else(|| err(format!("unknown sentiment {:?}", p.sentiment)))?,
                sentiment_score: p.sentiment_score,
                // The revision it had where it was exported; the original's rows name
                // their X id only in `metrics`.
                revision: metrics_ids.revision.unwrap_or(0),
                platform_post_id: p.platform_post_id.or(metrics_ids.platform_post_id),
                client_metrics: metrics.map(JsonObject::into_string),
                details,
                verification: Verification::parse(&p.verification_status).ok_or_else(|| {
                    err(format!(
                        "unknown verificationStatus {:?}",
                        p.verification_status
                    ))
                })?,
                author: Author {
                    id: p.author.id,
                    handle: p.author.handle,
                    name: p.author.name,
                    avatar_url: p.author.avatar_url,
                },
            }))
        }
        "review" => {
            let r: ReviewIn = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
            let (id, post_id);
            (id, foreign_id) = split(r.id);
            (post_id, foreign_parent) = split(r.post_id);
            Record::Review(ReviewItem {
                id,
                post_id,
                state: ReviewState::parse(&r.state)
                    .ok_or_else(|| err(format!("unknown state {:?}", r.state)))?,
                notes: r.notes,
                reviewed_by: r.reviewed_by,
                reviewed_at_ms: r
                    .reviewed_at
                    .as_deref()
                    .map(|t| time(line_no, "reviewedAt", t))
                    .transpose()?,
                updated_at_ms: time(line_no, "updatedAt", &r.updated_at)?,
            })
        }
        other => {
            return Err(err(format!(
                "unknown kind {other:?} (expected leader, post or review)"
            )))
        }
    };
    Ok(Imported {
        record,
        foreign_id,
        foreign_parent,
    })
}

/// How [`read_all`] treats a backup without a trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerRule {
    /// Refuse it (the default: a backup cut short looks exactly like that).
    Required,
    /// Accept it (a backup written before the trailer existed, by `--no-trailer`).
    Optional,
}

/// The `kind` of a line as Amber's export writes it, `{"kind":"post",…` first, read
/// without parsing the line; `None` for any other line, or one cut short (which is then
/// parsed for it). A record line is parsed whole as its kind right after, so what this
/// skips is one of two JSON passes over every line of the first pass.
fn leading_kind(text: &str) -> Option<&str> {
    // A line cut short is parsed whole, so its error says where it ends.
    if !text.ends_with('}') {
        return None;
    }
    let rest = text.strip_prefix("{\"kind\":\"")?;
    let kind = &rest[..rest.find('"')?];
    (!kind.contains('\\') && rest[kind.len() + 1..].starts_with(',')).then_some(kind)
}

/// The trailer of `line`, if it is one; else the `kind` it names.
fn trailer_of(line_no: usize, text: &str) -> Result<Result<Trailer, KindIn>, BackupError> {
    let kind: KindIn = match leading_kind(text) {
        Some(kind) if kind != "trailer" => {
            return Ok(Err(KindIn {
                kind: kind.to_string(),
            }))
        }
        _ => serde_json::from_str(text).map_err(|e| BackupError::Line {
            line: line_no,
            message: e.to_string(),
        })?,
    };
    if kind.kind != "trailer" {
        return Ok(Err(kind));
    }
    serde_json::from_str(text)
        .map(Ok)
        .map_err(|e| BackupError::Line {
            line: line_no,
            message: format!("trailer: {e}"),
        })
}

/// Longest line a backup may hold: a post with the largest `metrics` restored
/// ([`MAX_METRICS_BYTES`]) and room for its content. A longer line is refused rather
/// than read into memory.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// What one pass over a backup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Record lines (not counting the trailer).
    pub records: u64,
    /// The trailer, if the backup has one.
    pub trailer: Option<Trailer>,
}

/// Reads a backup in one pass, holding one line at a time: each record goes to `each`
/// with the length of its line in bytes, as soon as it is read. Blank lines are skipped;
/// a bad line (not UTF-8, longer than [`MAX_LINE_BYTES`], or not a record) is an error
/// naming its number, and so is a missing trailer (under [`TrailerRule::Required`]), a
/// trailer whose count disagrees, or a line after it — reported once the pass reaches
/// them, so a caller that must write nothing from a bad file makes one pass with an
/// `each` that keeps nothing, then a second that imports.
pub fn scan<E: From<BackupError>>(
    mut input: impl BufRead,
    rule: TrailerRule,
    mut each: impl FnMut(Imported, usize) -> Result<(), E>,
) -> Result<Scanned, E> {
    let mut records = 0u64;
    let mut trailer: Option<(usize, Trailer)> = None;
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        line_no += 1;
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(BackupError::Io)?;
        if read == 0 {
            break;
        }
        let bytes = buf.len();
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        } else if bytes > MAX_LINE_BYTES {
            return Err(BackupError::Line {
                line: line_no,
                message: format!("longer than {MAX_LINE_BYTES} bytes: not a backup line"),
            }
            .into());
        }
        let text = std::str::from_utf8(&buf).map_err(|e| BackupError::Line {
            line: line_no,
            message: format!("not UTF-8 text ({e})"),
        })?;
        if text.trim().is_empty() {
            continue;
        }
        if let Some((at, _)) = trailer {
            return Err(BackupError::Line {
                line: line_no,
                message: format!(
                    "a line after the trailer (line {at}): two backups joined, or a damaged file"
                ),
            }
            .into());
        }
        match trailer_of(line_no, text)? {
            Ok(t) => trailer = Some((line_no, t)),
            Err(kind) => {
                let record = parse_record(line_no, text, kind)?;
                records += 1;
                each(record, bytes)?;
            }
        }
    }
    match trailer {
        Some((line, t)) if t.records != records => Err(BackupError::Line {
            line,
            message: format!(
                "the trailer counts {} records but the backup holds {records}: the file is damaged or cut short",
                t.records,
            ),
        }
        .into()),
        Some((_, t)) => Ok(Scanned {
            records,
            trailer: Some(t),
        }),
        None if rule == TrailerRule::Optional => Ok(Scanned {
            records,
            trailer: None,
        }),
        None => Err(BackupError::NoTrailer {
            records: records as usize,
        }
        .into()),
    }
}

/// Reads every record of a backup into memory and checks its trailer, as [`scan`] does
/// (for small backups and tests; `amber import` streams). Returns the records and the
/// trailer, if any.
pub fn read_all(
    input: impl BufRead,
    rule: TrailerRule,
) -> Result<(Vec<Imported>, Option<Trailer>), BackupError> {
    let mut records = Vec::new();
    let scanned = scan(input, rule, |r, _| {
        records.push(r);
        Ok::<_, BackupError>(())
    })?;
    Ok((records, scanned.trailer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post_line(metrics: &str) -> String {
        format!(
            r#"{{"kind":"post","id":7,"leaderId":1,"platform":"X","content":"hi","timestamp":"2026-01-01T00:00:00.000Z","sentiment":"Neutral","metrics":{metrics},"platformPostId":"9","verificationStatus":"Unverified"}}"#
        )
    }

    /// Issue 9: a backup carries the post as X published it: kind, referenced post,
    /// media, conversation, reply target, reposter, counts and language.
    #[test]
    fn an_x_posts_typed_fields_survive_export_and_import() {
        let video = MediaItem {
            kind: MediaKind::Video,
            url: None,
            preview_image_url: Some("https://pbs.twimg.com/media/v.jpg".into()),
            width: Some(1280),
            height: Some(720),
            duration_ms: Some(30_000),
            variants: vec![MediaVariant {
                url: "https://video.twimg.com/v.mp4".into(),
                content_type: "video/mp4".into(),
                bit_rate: Some(832_000),
            }],
        };
        let post = |kind: PostKind, relation: Relation| Post {
            id: 7,
            leader_id: 1,
            platform: Platform::X,
            content: "what they said".into(),
            timestamp_ms: 1_767_225_600_000,
            sentiment: Sentiment::Neutral,
            sentiment_score: 0.0,
            revision: 0,
            platform_post_id: Some("19".into()),
            verification: Verification::Unverified,
            author: Author {
                id: Some("2000000".into()),
                handle: Some("leader0000".into()),
                name: Some("Leader 0".into()),
                avatar_url: None,
            },
            details: PostDetails {
                kind,
                counts: Some(Counts {
                    likes: 5,
                    comments: 4,
                    shares: 3,
                    quotes: 2,
                    bookmarks: Some(1),
                    impressions: Some(900),
                }),
                language: Some("en".into()),
                media: vec![video.clone()],
                referenced: Some(Box::new(ReferencedPost {
                    id: "11".into(),
                    relation,
                    author: Author {
                        id: Some("77".into()),
                        handle: Some("someone".into()),
                        name: Some("Some One".into()),
                        avatar_url: None,
                    },
                    text: Some("the original words".into()),
                    created_at_ms: Some(1_767_225_000_000),
                    media: vec![video.clone()],
                })),
                conversation_id: Some("11".into()),
                in_reply_to_user_id: Some("77".into()),
                reposted_by: (kind == PostKind::Repost).then(|| {
                    Box::new(Author {
                        id: None,
                        handle: Some("leader0000".into()),
                        name: Some("Leader 0".into()),
                        avatar_url: None,
                    })
                }),
            },
            client_metrics: None,
        };
        for (kind, relation) in [
            (PostKind::Quote, Relation::Quoted),
            (PostKind::Repost, Relation::Reposted),
            (PostKind::Reply, Relation::RepliedTo),
        ] {
            let original = post(kind, relation);
            let mut out = Vec::new();
            write_record(&mut out, &Record::Post(Box::new(original.clone()))).unwrap();
            let line = String::from_utf8(out).unwrap();
            let Record::Post(back) = parse_line(1, line.trim()).unwrap().record else {
                panic!("not a post: {line}");
            };
            assert_eq!(back.details, original.details, "{line}");
            assert_eq!(back.content, original.content);
            // Served as before: the same post JSON.
            let served = |p: &Post| serde_json::to_value(PostJson::from(p, None)).unwrap();
            assert_eq!(served(&back), served(&original), "{line}");
        }
    }

    #[test]
    fn a_post_line_whose_metrics_cannot_be_served_as_strict_json_is_refused() {
        let err = parse_line(3, &post_line(r#"{"likes":1e400}"#)).unwrap_err();
        assert!(err.to_string().starts_with("line 3: metrics"), "{err}");
        let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
        assert!(parse_line(4, &post_line(&deep)).is_err());
    }

    #[test]
    fn foreign_ids_travel_beside_the_record_and_amber_ids_stay_in_it() {
        let line = r#"{"kind":"review","id":"r-uuid","postId":"p-uuid","state":"pending","updatedAt":"2026-01-01T00:00:00Z"}"#;
        let review = parse_line(1, line).unwrap();
        assert_eq!(review.foreign_id.as_deref(), Some("r-uuid"));
        assert_eq!(review.foreign_parent.as_deref(), Some("p-uuid"));
        let post = parse_line(2, &post_line("{}")).unwrap();
        assert_eq!((post.foreign_id, post.foreign_parent), (None, None));
        match post.record {
            Record::Post(p) => assert_eq!((p.id, p.leader_id), (7, 1)),
            _ => panic!("expected a post"),
        }
    }

    const LEADER: &str =
        r#"{"kind":"leader","id":1,"name":"A","createdAt":"2026-01-01T00:00:00.000Z"}"#;

    fn backup(lines: &[&str]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    #[test]
    fn a_backup_is_read_only_with_a_trailer_that_counts_its_records() {
        let mut trailer = Vec::new();
        write_trailer(
            &mut trailer,
            Trailer {
                records: 2,
                damaged_skipped: 1,
            },
        )
        .unwrap();
        let trailer = String::from_utf8(trailer).unwrap();
        let post = post_line("{}");
        let whole = backup(&[LEADER, &post, trailer.trim()]);
        let (records, t) = read_all(&whole[..], TrailerRule::Required).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            t,
            Some(Trailer {
                records: 2,
                damaged_skipped: 1
            })
        );

        // Cut short: no trailer, or a trailer counting more than is there.
        let cut = backup(&[LEADER, &post]);
        let err = read_all(&cut[..], TrailerRule::Required).unwrap_err();
        assert!(
            matches!(err, BackupError::NoTrailer { records: 2 }),
            "{err}"
        );
        assert!(err.to_string().contains("cut short"), "{err}");
        let short = backup(&[LEADER, trailer.trim()]);
        let err = read_all(&short[..], TrailerRule::Required).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("line 2: the trailer counts 2 records but the backup holds 1"),
            "{err}"
        );
        let joined = backup(&[LEADER, &post, trailer.trim(), LEADER]);
        let err = read_all(&joined[..], TrailerRule::Required).unwrap_err();
        assert!(err.to_string().contains("after the trailer"), "{err}");
        // A backup from before trailers, when asked for.
        let (records, t) = read_all(&cut[..], TrailerRule::Optional).unwrap();
        assert_eq!((records.len(), t), (2, None));
    }

    #[test]
    fn the_kind_an_export_writes_first_is_read_without_a_parse_and_any_other_line_is_parsed() {
        assert_eq!(leading_kind(r#"{"kind":"post","id":1}"#), Some("post"));
        assert_eq!(leading_kind(r#"{"id":1,"kind":"post"}"#), None);
        assert_eq!(leading_kind(r#"{"kind":"post"}"#), None);
        assert_eq!(leading_kind(r#"{"kind":"post","id":"#), None);
        assert_eq!(leading_kind(r#"{"kind":"po\"st","id":1}"#), None);
        // A line whose kind is not first still reads as that kind, or names what is wrong.
        let moved = r#"{"id":1,"name":"A","createdAt":"2026-01-01T00:00:00.000Z","kind":"leader"}"#;
        assert!(matches!(
            parse_line(1, moved).unwrap().record,
            Record::Leader(_)
        ));
        let (_, t) = read_all(
            &backup(&[LEADER, r#"{"records":1,"kind":"trailer"}"#])[..],
            TrailerRule::Required,
        )
        .unwrap();
        assert_eq!(t.map(|t| t.records), Some(1));
        let err = read_all(
            &backup(&[r#"{"kind":"post","id":}"#])[..],
            TrailerRule::Optional,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("line 1: "), "{err}");
    }

    #[test]
    fn a_post_line_keeps_its_metrics_as_canonical_json() {
        match parse_line(1, &post_line(r#"{ "likes" : 3 }"#))
            .unwrap()
            .record
        {
            Record::Post(p) => assert_eq!(p.client_metrics.as_deref(), Some(r#"{"likes":3}"#)),
            _ => panic!("expected a post"),
        }
    }
}
