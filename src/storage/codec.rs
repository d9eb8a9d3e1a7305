//! Record encoding: one version byte, then bincode 2. Each record type names the version it
//! writes ([`Versioned::VERSION`]) and keeps a decoder for every older one, so an old
//! database stays readable: a record is upgraded when it is read, and written back in the
//! current version only when something changes it.
//!
//! Versions of the post record (`P` values):
//! - 1 (before issue 9): the post with a pre-rendered `metrics_json` string.
//! - 2: the post with typed fields ([`PostDetails`]: kind, counts, media, referenced post,
//!   conversation, reply target, reposter) and the client's own `metrics`, if any.
//! - 3 (issue 10): version 2 plus the post's `revision` (how many times it changed);
//!   a version 2 record reads as revision 0.
//!
//! Leaders and review items are still at version 1.
//!
//! Since issue 11 every record is written inside a checksum envelope: [`CHECKED`], the
//! CRC-32 (little endian) of the rest, then the version byte and body. A record whose
//! checksum does not match is [`CodecError::Checksum`]: damaged on disk, never decoded.
//! Records written before the envelope (first byte a version) are read as before.

use bincode::{Decode, Encode};

use crate::domain::leader::Leader;
use crate::domain::post::{
    Counts, MediaItem, MediaKind, Platform, Post, PostDetails, PostKind, Verification,
};
use crate::domain::review::ReviewItem;
use crate::domain::sentiment::Sentiment;
use crate::storage::posts::StoredPost;

/// A record that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("record is empty")]
    Empty,
    #[error("record does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("record does not encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("record checksum does not match: the record is damaged")]
    Checksum,
}

/// The first byte of a record inside the checksum envelope. Never a format version (those
/// count up from 1), so an older record is told apart by its first byte.
pub const CHECKED: u8 = 0xC5;

/// Bytes before the version byte in an enveloped record: the tag and the CRC.
const ENVELOPE: usize = 5;

/// A record type with a format version.
pub trait Versioned: Encode + Decode<()> + Sized {
    /// The version written in front of every record of this type today.
    const VERSION: u8;

    /// Decodes the body of a record written in an older `version`.
    fn decode_older(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        let _ = body;
        Err(CodecError::UnknownVersion(version))
    }
}

impl Versioned for Leader {
    const VERSION: u8 = 1;
}

impl Versioned for ReviewItem {
    const VERSION: u8 = 1;
}

impl Versioned for StoredPost {
    const VERSION: u8 = 3;

    fn decode_older(version: u8, body: &[u8]) -> Result<StoredPost, CodecError> {
        match version {
            1 => Ok(body_of::<v1::StoredPost>(body)?.upgrade()),
            2 => Ok(body_of::<v2::StoredPost>(body)?.upgrade()),
            other => Err(CodecError::UnknownVersion(other)),
        }
    }
}

fn body_of<T: Decode<()>>(body: &[u8]) -> Result<T, CodecError> {
    let (value, _) = bincode::decode_from_slice(body, bincode::config::standard())?;
    Ok(value)
}

/// Encodes a record behind its type's current version byte, inside the checksum envelope.
pub fn encode<T: Versioned>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&[CHECKED, 0, 0, 0, 0, T::VERSION]);
    bincode::encode_into_std_write(value, &mut out, bincode::config::standard())?;
    let crc = crc32fast::hash(&out[ENVELOPE..]);
    out[1..ENVELOPE].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The version byte and body of a record: checked against its CRC when enveloped, as
/// stored when written before the envelope.
fn unwrap_envelope(bytes: &[u8]) -> Result<&[u8], CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&CHECKED) => {
            let (head, rest) = bytes
                .split_at_checked(ENVELOPE)
                .ok_or(CodecError::Checksum)?;
            let crc = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
            if crc32fast::hash(rest) == crc {
                Ok(rest)
            } else {
                Err(CodecError::Checksum)
            }
        }
        Some(_) => Ok(bytes),
    }
}

/// Decodes a record written by [`encode`] (or before the envelope) in any version this
/// build knows.
pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = unwrap_envelope(bytes)?
        .split_first()
        .ok_or(CodecError::Empty)?;
    if version == T::VERSION {
        body_of(body)
    } else {
        T::decode_older(version, body)
    }
}

/// The post record as version 1 wrote it. Frozen: never change these types.
mod v1 {
    use super::*;
    use crate::domain::post::Author;

    #[derive(Debug, Clone, Decode)]
    pub struct Post {
        pub id: u64,
        pub leader_id: u64,
        pub platform: Platform,
        pub content: String,
        pub timestamp_ms: i64,
        pub sentiment: Sentiment,
        pub sentiment_score: f64,
        pub metrics_json: String,
        pub platform_post_id: Option<String>,
        pub verification: Verification,
        pub author: Author,
    }

    #[derive(Debug, Clone, Decode)]
    pub struct StoredPost {
        pub post: Post,
        pub aliases: Vec<String>,
    }

    impl StoredPost {
        /// The same post in today's form. Its `metrics` object is kept as it was (so the
        /// API shows it as before); an ingested X post's counts, language and media are
        /// also read from it into the typed fields, so a re-read can update them.
        pub fn upgrade(self) -> super::StoredPost {
            let p = self.post;
            let metrics: Option<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_str(&p.metrics_json).ok();
            let details = metrics
                .as_ref()
                .filter(|m| m.get("origin").and_then(|o| o.as_str()) == Some("x"))
                .map(details_of_x_metrics)
                .unwrap_or_default();
            super::StoredPost {
                post: super::Post {
                    id: p.id,
                    leader_id: p.leader_id,
                    platform: p.platform,
                    content: p.content,
                    timestamp_ms: p.timestamp_ms,
                    sentiment: p.sentiment,
                    sentiment_score: p.sentiment_score,
                    platform_post_id: p.platform_post_id,
                    verification: p.verification,
                    author: p.author,
                    details,
                    client_metrics: Some(p.metrics_json),
                    revision: 0,
                },
                aliases: self.aliases,
            }
        }
    }

    /// The typed fields behind version 1's X metrics (`likes`, `comments`, `shares`,
    /// `quotes`, `language`, `mediaUrls`). Version 1 kept one URL per media item: the
    /// photo, or a video's or GIF's preview (told apart by X's URL paths).
    fn details_of_x_metrics(m: &serde_json::Map<String, serde_json::Value>) -> PostDetails {
        let count = |k: &str| m.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let media = m
            .get("mediaUrls")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str())
            .map(|url| {
                let kind = if url.contains("/tweet_video_thumb/") {
                    MediaKind::AnimatedGif
                } else if url.contains("video_thumb/") {
                    MediaKind::Video
                } else {
                    MediaKind::Photo
                };
                let (url, preview) = match kind {
                    MediaKind::Photo => (Some(url.to_string()), None),
                    _ => (None, Some(url.to_string())),
                };
                MediaItem {
                    kind,
                    url,
                    preview_image_url: preview,
                    width: None,
                    height: None,
                    duration_ms: None,
                    variants: Vec::new(),
                }
            })
            .collect();
        PostDetails {
            kind: PostKind::Post,
            counts: Some(Counts {
                likes: count("likes"),
                comments: count("comments"),
                shares: count("shares"),
                quotes: count("quotes"),
                bookmarks: None,
                impressions: None,
            }),
            language: m
                .get("language")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            media,
            ..PostDetails::default()
        }
    }
}

/// The post record as version 2 wrote it (issue 9 to issue 10): today's post without
/// `revision`. Frozen: never change these types (the nested `Author` and `PostDetails`
/// are shared with version 3; a change to them is a new version of both).
mod v2 {
    use super::*;
    use crate::domain::post::Author;

    #[derive(Debug, Clone, Decode)]
    pub struct Post {
        pub id: u64,
        pub leader_id: u64,
        pub platform: Platform,
        pub content: String,
        pub timestamp_ms: i64,
        pub sentiment: Sentiment,
        pub sentiment_score: f64,
        pub platform_post_id: Option<String>,
        pub verification: Verification,
        pub author: Author,
        pub details: PostDetails,
        pub client_metrics: Option<String>,
    }

    #[derive(Debug, Clone, Decode)]
    pub struct StoredPost {
        pub post: Post,
        pub aliases: Vec<String>,
    }

    impl StoredPost {
        /// The same post at revision 0.
        pub fn upgrade(self) -> super::StoredPost {
            let p = self.post;
            super::StoredPost {
                post: super::Post {
                    id: p.id,
                    leader_id: p.leader_id,
                    platform: p.platform,
                    content: p.content,
                    timestamp_ms: p.timestamp_ms,
                    sentiment: p.sentiment,
                    sentiment_score: p.sentiment_score,
                    platform_post_id: p.platform_post_id,
                    verification: p.verification,
                    author: p.author,
                    details: p.details,
                    client_metrics: p.client_metrics,
                    revision: 0,
                },
                aliases: self.aliases,
            }
        }
    }
}

/// Two post records written by the build before issue 9 (version 1): an ingested X post
/// with a photo and a video, and an admin-entered News post (`testdata/posts_v1.hex`).
#[cfg(test)]
pub(crate) fn v1_post_records() -> Vec<Vec<u8>> {
    include_str!("testdata/posts_v1.hex")
        .lines()
        .map(|line| {
            (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::post::Author;

    #[test]
    fn a_record_round_trips_behind_its_version_byte() {
        let leader = Leader {
            id: 3,
            name: "A".into(),
            handles: [("x".to_string(), "a".to_string())].into_iter().collect(),
            tracking_topics: vec!["t".into()],
            created_at_ms: 5,
            avatar_url: None,
        };
        let bytes = encode(&leader).unwrap();
        assert_eq!((bytes[0], bytes[5]), (CHECKED, 1));
        assert_eq!(decode::<Leader>(&bytes).unwrap(), leader);
        // The same record as written before the envelope still reads.
        assert_eq!(decode::<Leader>(&bytes[5..]).unwrap(), leader);
    }

    #[test]
    fn a_damaged_record_is_a_checksum_error_never_a_wrong_value() {
        let leader = Leader {
            id: 3,
            name: "Ada".into(),
            handles: Default::default(),
            tracking_topics: vec![],
            created_at_ms: 5,
            avatar_url: None,
        };
        let bytes = encode(&leader).unwrap();
        for i in 1..bytes.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                assert!(
                    matches!(decode::<Leader>(&damaged), Err(CodecError::Checksum)),
                    "byte {i} flipped by {flip:#x}"
                );
            }
        }
        let mut zeroed = bytes.clone();
        zeroed[1..].fill(0);
        assert!(decode::<Leader>(&zeroed).is_err());
        assert!(matches!(
            decode::<Leader>(&bytes[..3]),
            Err(CodecError::Checksum)
        ));
        assert!(decode::<Leader>(&[0; 40]).is_err(), "a zeroed record");
    }

    #[test]
    fn unknown_version_is_an_error_not_a_panic() {
        assert!(matches!(
            decode::<Leader>(&[9, 1, 2]),
            Err(CodecError::UnknownVersion(9))
        ));
        assert!(matches!(decode::<Leader>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<Leader>(&[1, 255, 255]),
            Err(CodecError::Decode(_))
        ));
        assert!(matches!(
            decode::<StoredPost>(&[4, 0]),
            Err(CodecError::UnknownVersion(4))
        ));
        assert!(matches!(
            decode::<StoredPost>(&[1, 255]),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn version_1_post_records_read_as_before_with_typed_counts_and_media() {
        let mut records = v1_post_records().into_iter();
        let x = decode::<StoredPost>(&records.next().unwrap()).unwrap();
        let p = &x.post;
        assert_eq!((p.id, p.leader_id, p.platform), (42, 3, Platform::X));
        assert_eq!(p.content, "Proud of our wonderful volunteers (#7)");
        assert_eq!(p.timestamp_ms, 1_767_225_607_000);
        assert_eq!(
            (p.sentiment, p.sentiment_score),
            (Sentiment::Positive, 0.8126)
        );
        assert_eq!(p.platform_post_id.as_deref(), Some("2007000000000000007"));
        assert_eq!(p.verification, Verification::Approved);
        assert_eq!(p.author.handle.as_deref(), Some("leader0000"));
        assert_eq!(x.aliases, vec!["2006999999999999999"]);
        let metrics: serde_json::Value =
            serde_json::from_str(p.client_metrics.as_deref().unwrap()).unwrap();
        assert_eq!(metrics["likes"], 259);
        assert_eq!(metrics["externalId"], "2007000000000000007");
        let d = &p.details;
        assert_eq!(d.kind, PostKind::Post);
        assert_eq!(
            d.counts,
            Some(Counts {
                likes: 259,
                comments: 35,
                shares: 21,
                quotes: 7,
                bookmarks: None,
                impressions: None
            })
        );
        assert_eq!(d.language.as_deref(), Some("en"));
        assert_eq!(d.media.len(), 2);
        assert_eq!(d.media[0].kind, MediaKind::Photo);
        assert_eq!(
            d.media[0].url.as_deref(),
            Some("https://pbs.twimg.com/media/2007000000000000007.jpg")
        );
        assert_eq!(d.media[1].kind, MediaKind::Video);
        assert_eq!(
            d.media[1].preview_image_url.as_deref(),
            Some("https://pbs.twimg.com/ext_tw_video_thumb/2007000000000000007.jpg")
        );
        assert!(d.referenced.is_none() && d.reposted_by.is_none());

        let admin = decode::<StoredPost>(&records.next().unwrap()).unwrap();
        let p = &admin.post;
        assert_eq!((p.id, p.platform), (43, Platform::News));
        assert_eq!(p.verification, Verification::Pending);
        assert_eq!(p.author, Author::default());
        assert_eq!(
            p.client_metrics.as_deref(),
            Some(r#"{"likes":3,"source":"gazette"}"#)
        );
        assert_eq!(p.details, PostDetails::default(), "not an X post");
        assert!(admin.aliases.is_empty());
    }

    #[test]
    fn a_version_2_record_reads_at_revision_0_and_is_written_back_as_version_3() {
        let mut old = decode::<StoredPost>(&v1_post_records()[0]).unwrap();
        old.post.revision = 0;
        // What version 2 wrote: the post without `revision`, behind version byte 2.
        let v2_body = {
            let p = &old.post;
            let mut body = Vec::new();
            let tuple = (
                (p.id, p.leader_id, p.platform, p.content.clone()),
                (p.timestamp_ms, p.sentiment, p.sentiment_score),
                (p.platform_post_id.clone(), p.verification, p.author.clone()),
                (p.details.clone(), p.client_metrics.clone()),
                old.aliases.clone(),
            );
            body.push(2u8);
            bincode::encode_into_std_write(&tuple, &mut body, bincode::config::standard()).unwrap();
            body
        };
        let read = decode::<StoredPost>(&v2_body).unwrap();
        assert_eq!(read.post, old.post);
        assert_eq!(read.aliases, old.aliases);
        let bytes = encode(&read).unwrap();
        assert_eq!((bytes[0], bytes[5]), (CHECKED, 3));
        let mut changed = read.clone();
        changed.post.revision = 7;
        assert_eq!(
            decode::<StoredPost>(&encode(&changed).unwrap())
                .unwrap()
                .post
                .revision,
            7
        );
    }

    #[test]
    fn an_upgraded_record_is_written_back_in_the_current_version() {
        let old = decode::<StoredPost>(&v1_post_records()[0]).unwrap();
        let bytes = encode(&old).unwrap();
        assert_eq!((bytes[0], bytes[5]), (CHECKED, StoredPost::VERSION));
        let again = decode::<StoredPost>(&bytes).unwrap();
        assert_eq!(again.post, old.post);
        assert_eq!(again.aliases, old.aliases);
    }
}
