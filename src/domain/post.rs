//! Posts: what Amber stores for each item a leader published.

use bincode::{Decode, Encode};

use crate::domain::sentiment::Sentiment;

/// Where a post came from. X posts are the ones ingested; the others are entered by admins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum Platform {
    X,
    Facebook,
    News,
}

impl Platform {
    /// Every platform, in code order.
    pub const ALL: [Platform; 3] = [Platform::X, Platform::Facebook, Platform::News];

    /// The spelling in API responses (`"X"`, `"Facebook"`, `"News"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::X => "X",
            Platform::Facebook => "Facebook",
            Platform::News => "News",
        }
    }

    /// A one-byte code used in storage keys. Stable: never renumber.
    pub fn code(self) -> u8 {
        match self {
            Platform::X => 1,
            Platform::Facebook => 2,
            Platform::News => 3,
        }
    }

    /// The inverse of [`Platform::code`].
    pub fn from_code(code: u8) -> Option<Platform> {
        match code {
            1 => Some(Platform::X),
            2 => Some(Platform::Facebook),
            3 => Some(Platform::News),
            _ => None,
        }
    }

    /// Parses a `source=` value or a post's `platform`: `x`/`twitter`, `facebook`, `news`,
    /// case-insensitively.
    pub fn parse(s: &str) -> Option<Platform> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x" | "twitter" => Some(Platform::X),
            "facebook" => Some(Platform::Facebook),
            "news" => Some(Platform::News),
            _ => None,
        }
    }
}

/// Review state of a post, shown as `verificationStatus` in the original system's
/// spellings: `"Needs Review"` (the default, also while a review item is pending),
/// `"Verified"` (approved) and `"Rejected"`. Stored as the variant's index: never
/// reorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Verification {
    /// Nobody has looked at it: `"Needs Review"`.
    Unverified,
    /// Its review item is pending: `"Needs Review"` too.
    Pending,
    /// `"Verified"`.
    Approved,
    Rejected,
}

impl Verification {
    /// Every spelling accepted on input: the original's, then Amber's earlier ones.
    pub const SPELLINGS: [&'static str; 6] = [
        "Needs Review",
        "Verified",
        "Rejected",
        "Unverified",
        "Pending",
        "Approved",
    ];

    /// The API spelling (the original system's).
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Unverified | Verification::Pending => "Needs Review",
            Verification::Approved => "Verified",
            Verification::Rejected => "Rejected",
        }
    }

    /// Parses a spelling, case-insensitively, with `_` or `-` for the space: the
    /// original's (`Needs Review`, `Verified`) and Amber's earlier ones (`Unverified`,
    /// `Pending`, `Approved`), as old backups and old clients send them.
    pub fn parse(s: &str) -> Option<Verification> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['_', '-'], " ")
            .as_str()
        {
            "needs review" | "unverified" => Some(Verification::Unverified),
            "pending" => Some(Verification::Pending),
            "verified" | "approved" => Some(Verification::Approved),
            "rejected" => Some(Verification::Rejected),
            _ => None,
        }
    }
}

/// Who wrote a post on its platform (for X: the account, as X reports it).
#[derive(Debug, Clone, PartialEq, Default, Encode, Decode)]
pub struct Author {
    /// The platform's user id (X user id), if known.
    pub id: Option<String>,
    pub handle: Option<String>,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

/// What a post is on X: the leader's own post, a repost of someone's post, a quote (the
/// leader's words around someone's post) or a reply. Posts entered by admins are `Post`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Encode, Decode)]
pub enum PostKind {
    #[default]
    Post,
    Repost,
    Quote,
    Reply,
}

impl PostKind {
    /// Every kind, in code order.
    pub const ALL: [PostKind; 4] = [
        PostKind::Post,
        PostKind::Repost,
        PostKind::Quote,
        PostKind::Reply,
    ];

    /// The API spelling (`post`, `repost`, `quote`, `reply`).
    pub fn as_str(self) -> &'static str {
        match self {
            PostKind::Post => "post",
            PostKind::Repost => "repost",
            PostKind::Quote => "quote",
            PostKind::Reply => "reply",
        }
    }

    /// A two-bit code used in the time index and the feed index. Stable: never renumber.
    pub fn code(self) -> u8 {
        match self {
            PostKind::Post => 0,
            PostKind::Repost => 1,
            PostKind::Quote => 2,
            PostKind::Reply => 3,
        }
    }

    /// The inverse of [`PostKind::code`] (only the two low bits count).
    pub fn from_code(code: u8) -> PostKind {
        PostKind::ALL[usize::from(code & 3)]
    }

    /// Parses the API spelling exactly (lower case, as documented).
    pub fn parse(s: &str) -> Option<PostKind> {
        PostKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A set of [`PostKind`]s, as a `kinds=` filter names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindSet(u8);

impl KindSet {
    /// Every kind.
    pub const ALL: KindSet = KindSet(0b1111);

    /// The set of these kinds.
    pub fn of(kinds: impl IntoIterator<Item = PostKind>) -> KindSet {
        KindSet(kinds.into_iter().fold(0, |bits, k| bits | 1 << k.code()))
    }

    /// True when `kind` is in the set.
    pub fn contains(self, kind: PostKind) -> bool {
        self.0 & (1 << kind.code()) != 0
    }

    /// True when every kind is in the set (the filter filters nothing).
    pub fn is_all(self) -> bool {
        self == KindSet::ALL
    }

    /// The kinds in the set, in code order.
    pub fn iter(self) -> impl Iterator<Item = PostKind> {
        PostKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// The type of a media item, as X names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum MediaKind {
    Photo,
    Video,
    AnimatedGif,
}

impl MediaKind {
    /// X's and the API's spelling (`photo`, `video`, `animated_gif`).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
            MediaKind::AnimatedGif => "animated_gif",
        }
    }

    /// Parses X's spelling.
    pub fn parse(s: &str) -> Option<MediaKind> {
        match s {
            "photo" => Some(MediaKind::Photo),
            "video" => Some(MediaKind::Video),
            "animated_gif" => Some(MediaKind::AnimatedGif),
            _ => None,
        }
    }
}

/// One encoding of a video or GIF (X's `variants`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct MediaVariant {
    pub url: String,
    pub content_type: String,
    pub bit_rate: Option<u64>,
}

/// A photo, video or GIF attached to a post.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct MediaItem {
    pub kind: MediaKind,
    /// The image itself (photos).
    pub url: Option<String>,
    /// The still shown before playing (videos and GIFs).
    pub preview_image_url: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<u64>,
    pub variants: Vec<MediaVariant>,
}

impl MediaItem {
    /// The image to show: the photo itself, or the preview of a video.
    pub fn display_url(&self) -> Option<&str> {
        self.url.as_deref().or(self.preview_image_url.as_deref())
    }
}

/// How a post refers to another (X's `referenced_tweets[].type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum Relation {
    Reposted,
    Quoted,
    RepliedTo,
}

impl Relation {
    /// The API spelling (`reposted`, `quoted`, `replied_to`).
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Reposted => "reposted",
            Relation::Quoted => "quoted",
            Relation::RepliedTo => "replied_to",
        }
    }
}

/// The post a repost, quote or reply refers to, as X included it.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct ReferencedPost {
    /// The X id of the referenced post.
    pub id: String,
    pub relation: Relation,
    pub author: Author,
    /// Its full text (links expanded); `None` when X did not include the post.
    pub text: Option<String>,
    pub created_at_ms: Option<i64>,
    pub media: Vec<MediaItem>,
}

impl ReferencedPost {
    /// `https://x.com/<handle>/status/<id>`, when the author's handle is known.
    pub fn permalink(&self) -> Option<String> {
        let handle = self.author.handle.as_deref()?;
        Some(format!("https://x.com/{handle}/status/{}", self.id))
    }
}

/// Engagement counts as X last reported them (`public_metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
pub struct Counts {
    pub likes: u64,
    /// Replies.
    pub comments: u64,
    /// Reposts.
    pub shares: u64,
    pub quotes: u64,
    pub bookmarks: Option<u64>,
    pub impressions: Option<u64>,
}

/// What an X post carries beyond the common fields. Admin-entered posts leave it default.
#[derive(Debug, Clone, PartialEq, Default, Encode, Decode)]
pub struct PostDetails {
    pub kind: PostKind,
    /// Counts read from X (`None`: not an ingested post).
    pub counts: Option<Counts>,
    pub language: Option<String>,
    pub media: Vec<MediaItem>,
    /// The reposted or quoted post, or what a reply answers (when X included it).
    pub referenced: Option<Box<ReferencedPost>>,
    pub conversation_id: Option<String>,
    pub in_reply_to_user_id: Option<String>,
    /// For a repost: the leader's X account that reposted it (the post's `author` is the
    /// reposted post's author).
    pub reposted_by: Option<Box<Author>>,
}

/// A stored post. Its bincode form is the current post record (`storage::codec`).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Post {
    /// Store-assigned id, never reused.
    pub id: u64,
    pub leader_id: u64,
    pub platform: Platform,
    /// The full text (for a repost: the reposted post's), links expanded.
    pub content: String,
    /// Publication time, unix milliseconds (for a repost: when the leader reposted).
    pub timestamp_ms: i64,
    pub sentiment: Sentiment,
    pub sentiment_score: f64,
    /// The platform's id for the post (the X post id); the dedup key with `platform`.
    pub platform_post_id: Option<String>,
    pub verification: Verification,
    pub author: Author,
    pub details: PostDetails,
    /// A `metrics` object given by a client (admin API, backup) or stored by an older
    /// build, as canonical JSON text: served back with the typed fields beside it.
    pub client_metrics: Option<String>,
    /// How many times the stored post changed after it was first stored (an X edit, a
    /// re-delivery whose counts moved, `PUT /api/posts/{id}`): `metrics.revision`, which
    /// the original system's clients read. 0 for a post never changed.
    pub revision: u64,
}

/// A post about to be stored: everything but the id.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct NewPost {
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
    /// Earlier ids of the same post (X's `edit_history_tweet_ids`). When one of them is
    /// already stored, the stored post is updated instead of adding a second one.
    pub edit_history: Vec<String>,
}

impl NewPost {
    /// The post this draft becomes once it has an id.
    pub fn into_post(self, id: u64) -> Post {
        Post {
            id,
            leader_id: self.leader_id,
            platform: self.platform,
            content: self.content,
            timestamp_ms: self.timestamp_ms,
            sentiment: self.sentiment,
            sentiment_score: self.sentiment_score,
            platform_post_id: self.platform_post_id,
            verification: self.verification,
            author: self.author,
            details: self.details,
            client_metrics: self.client_metrics,
            revision: 0,
        }
    }
}

impl Post {
    /// The post's kind.
    pub fn kind(&self) -> PostKind {
        self.details.kind
    }

    /// The public link to the post: `https://x.com/<handle>/status/<id>` for X posts; for
    /// a repost, the link to the reposted post.
    pub fn permalink(&self, leader_x_handle: Option<&str>) -> Option<String> {
        if let (PostKind::Repost, Some(r)) = (self.details.kind, &self.details.referenced) {
            if let Some(link) = r.permalink() {
                return Some(link);
            }
        }
        match (self.platform, &self.platform_post_id) {
            (Platform::X, Some(ext)) => {
                let handle = self.author.handle.as_deref().or(leader_x_handle)?;
                Some(format!("https://x.com/{handle}/status/{ext}"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_codes_round_trip() {
        for p in Platform::ALL {
            assert_eq!(Platform::from_code(p.code()), Some(p));
        }
        assert_eq!(Platform::from_code(0), None);
    }

    #[test]
    fn kind_codes_and_spellings_round_trip() {
        for k in PostKind::ALL {
            assert_eq!(PostKind::from_code(k.code()), k);
            assert_eq!(PostKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(PostKind::parse("Repost"), None);
        assert_eq!(PostKind::default(), PostKind::Post);
        let set = KindSet::of([PostKind::Post, PostKind::Quote]);
        assert!(set.contains(PostKind::Quote) && !set.contains(PostKind::Repost));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [PostKind::Post, PostKind::Quote]
        );
        assert!(KindSet::of(PostKind::ALL).is_all());
    }

    #[test]
    fn verification_speaks_the_original_vocabulary_and_reads_the_old_one() {
        assert_eq!(Verification::Unverified.as_str(), "Needs Review");
        assert_eq!(Verification::Approved.as_str(), "Verified");
        for (s, v) in [
            ("Needs Review", Verification::Unverified),
            ("needs_review", Verification::Unverified),
            ("Verified", Verification::Approved),
            ("Unverified", Verification::Unverified),
            ("Pending", Verification::Pending),
            ("Approved", Verification::Approved),
            ("Rejected", Verification::Rejected),
        ] {
            assert_eq!(Verification::parse(s), Some(v), "{s}");
        }
        for s in Verification::SPELLINGS {
            assert!(Verification::parse(s).is_some(), "{s}");
        }
        assert_eq!(Verification::parse("maybe"), None);
    }

    #[test]
    fn twitter_is_an_alias_for_x() {
        assert_eq!(Platform::parse("Twitter"), Some(Platform::X));
        assert_eq!(Platform::parse("x"), Some(Platform::X));
        assert_eq!(Platform::parse("myspace"), None);
    }
}
