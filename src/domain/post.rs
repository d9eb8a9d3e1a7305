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

/// A stored post.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Post {
    /// Store-assigned id, never reused.
    pub id: u64,
    pub leader_id: u64,
    pub platform: Platform,
    pub content: String,
    /// Publication time, unix milliseconds.
    pub timestamp_ms: i64,
    pub sentiment: Sentiment,
    pub sentiment_score: f64,
    /// The `metrics` object exactly as the API shows it, as JSON text. For X posts it
    /// carries `origin`, `externalId`, `author`, `mediaUrls`, counts and so on.
    pub metrics_json: String,
    /// The platform's id for the post (the X post id); the dedup key with `platform`.
    pub platform_post_id: Option<String>,
    pub verification: Verification,
    pub author: Author,
}

/// A post about to be stored: everything but the id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPost {
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
            metrics_json: self.metrics_json,
            platform_post_id: self.platform_post_id,
            verification: self.verification,
            author: self.author,
        }
    }
}

impl Post {
    /// The public link to the post: `https://x.com/<handle>/status/<id>` for X posts.
    pub fn permalink(&self, leader_x_handle: Option<&str>) -> Option<String> {
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
