//! A leader as the API and backups show it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::leader::Leader;
use crate::shape::time::rfc3339;

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
