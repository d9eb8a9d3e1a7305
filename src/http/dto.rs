//! JSON that only the HTTP API answers. The shapes the API shares with backups and
//! notifications (leader, post, review, times) are `crate::shape`'s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `{"success": true}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Success {
    pub success: bool,
}

/// One leader's failure in a run, as status shows it.
#[derive(Debug, Serialize)]
pub struct RunErrorJson<'a> {
    #[serde(rename = "leaderId")]
    pub leader_id: u64,
    pub handle: Option<&'a str>,
    pub kind: &'a str,
    pub message: &'a str,
}

/// An ingestion run record as status shows it (`last_run`, `current_run`): the field
/// names and RFC 3339 times the status endpoint has always used.
#[derive(Debug, Serialize)]
pub struct RunJson<'a> {
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub trigger: &'a str,
    pub backfill: bool,
    pub leaders: u64,
    pub posts_ingested: u64,
    pub posts_updated: u64,
    pub posts_refreshed: u64,
    pub duplicates: u64,
    pub posts_read: u64,
    pub users_read: u64,
    pub errors: Vec<RunErrorJson<'a>>,
    pub stopped_reason: Option<&'a str>,
    pub duration_ms: Option<u64>,
}

impl<'a> RunJson<'a> {
    pub fn of(r: &'a crate::domain::run::RunRecord) -> RunJson<'a> {
        RunJson {
            started_at: r.started_at,
            finished_at: r.finished_at,
            trigger: &r.trigger,
            backfill: r.backfill,
            leaders: r.leaders,
            posts_ingested: r.posts_ingested,
            posts_updated: r.posts_updated,
            posts_refreshed: r.posts_refreshed,
            duplicates: r.duplicates,
            posts_read: r.posts_read,
            users_read: r.users_read,
            errors: r
                .errors
                .iter()
                .map(|e| RunErrorJson {
                    leader_id: e.leader_id,
                    handle: e.handle.as_deref(),
                    kind: &e.kind,
                    message: &e.message,
                })
                .collect(),
            stopped_reason: r.stopped_reason.as_deref(),
            duration_ms: r.duration_ms,
        }
    }
}
