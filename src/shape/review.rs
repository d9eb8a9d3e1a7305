//! A review item as the API and backups show it.

use serde::Serialize;

use crate::domain::leader::Leader;
use crate::domain::post::Post;
use crate::domain::review::ReviewItem;
use crate::shape::post::PostJson;
use crate::shape::time::rfc3339;

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
