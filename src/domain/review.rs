//! Review items: a post waiting for (or given) a human verdict.

use bincode::{Decode, Encode};

/// Where a review item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum ReviewState {
    Pending,
    Approved,
    Rejected,
}

impl ReviewState {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Approved => "approved",
            ReviewState::Rejected => "rejected",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<ReviewState> {
        match s {
            "pending" => Some(ReviewState::Pending),
            "approved" => Some(ReviewState::Approved),
            "rejected" => Some(ReviewState::Rejected),
            _ => None,
        }
    }
}

/// A stored review item.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct ReviewItem {
    pub id: u64,
    pub post_id: u64,
    pub state: ReviewState,
    pub notes: Option<String>,
    /// Subject of the token that approved or rejected it.
    pub reviewed_by: Option<String>,
    pub reviewed_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}
