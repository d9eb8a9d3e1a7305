//! A leader: a public figure whose posts Amber follows.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

/// A stored leader. `handles` maps a platform name (`x`, `facebook`, ...) to the
/// handle on that platform; the X handle is kept without its leading `@`.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct Leader {
    /// Store-assigned id, never reused.
    pub id: u64,
    pub name: String,
    pub handles: BTreeMap<String, String>,
    pub tracking_topics: Vec<String>,
    /// Creation time, unix milliseconds.
    pub created_at_ms: i64,
    pub avatar_url: Option<String>,
}

/// The fields a client may set on a leader; validated by [`LeaderDraft::parse`].
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct LeaderDraft {
    pub name: String,
    pub handles: BTreeMap<String, String>,
    pub tracking_topics: Vec<String>,
    pub avatar_url: Option<String>,
}

/// Why a leader draft was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LeaderError {
    #[error("name must be 1 to 200 characters")]
    BadName,
    #[error("handle for {0} must be 1 to 100 characters without spaces")]
    BadHandle(String),
    #[error("at most 20 handles and 50 tracking topics of 200 characters each")]
    TooMany,
    #[error("avatarUrl must be an http or https URL")]
    BadAvatar,
}

impl LeaderDraft {
    /// Checks and normalises a draft: trims the name, strips `@` from the X handle,
    /// lower-cases platform names.
    pub fn parse(
        name: &str,
        handles: BTreeMap<String, String>,
        tracking_topics: Vec<String>,
        avatar_url: Option<String>,
    ) -> Result<LeaderDraft, LeaderError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(LeaderError::BadName);
        }
        if handles.len() > 20
            || tracking_topics.len() > 50
            || tracking_topics.iter().any(|t| t.chars().count() > 200)
        {
            return Err(LeaderError::TooMany);
        }
        let mut clean = BTreeMap::new();
        for (platform, handle) in handles {
            let platform = platform.trim().to_ascii_lowercase();
            let mut handle = handle.trim().to_string();
            if platform == "x" || platform == "twitter" {
                handle = handle.trim_start_matches('@').to_string();
            }
            if platform.is_empty()
                || handle.is_empty()
                || handle.chars().count() > 100
                || handle.contains(char::is_whitespace)
            {
                return Err(LeaderError::BadHandle(platform));
            }
            let platform = if platform == "twitter" {
                "x".to_string()
            } else {
                platform
            };
            clean.insert(platform, handle);
        }
        if let Some(url) = &avatar_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
                return Err(LeaderError::BadAvatar);
            }
        }
        Ok(LeaderDraft {
            name: name.to_string(),
            handles: clean,
            tracking_topics: tracking_topics
                .into_iter()
                .map(|t| t.trim().to_string())
                .collect(),
            avatar_url,
        })
    }
}

impl Leader {
    /// The leader's X handle, if it has one.
    pub fn x_handle(&self) -> Option<&str> {
        self.handles.get("x").map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_handle_loses_its_at_sign_and_twitter_becomes_x() {
        let mut handles = BTreeMap::new();
        handles.insert("Twitter".to_string(), "@someone".to_string());
        let draft = LeaderDraft::parse(" A ", handles, vec![], None).unwrap();
        assert_eq!(draft.name, "A");
        assert_eq!(draft.handles.get("x").map(String::as_str), Some("someone"));
    }

    #[test]
    fn empty_name_is_refused() {
        assert_eq!(
            LeaderDraft::parse("  ", BTreeMap::new(), vec![], None),
            Err(LeaderError::BadName)
        );
    }

    #[test]
    fn avatar_must_be_http() {
        let err = LeaderDraft::parse("A", BTreeMap::new(), vec![], Some("javascript:x".into()));
        assert_eq!(err, Err(LeaderError::BadAvatar));
    }
}
