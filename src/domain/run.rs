//! What an ingestion run did: the run record status shows as `last_run` / `current_run`.
//! A plain type: its stored form is `storage::runs`, its HTTP form `http::dto::RunJson`.

use chrono::{DateTime, Utc};

/// One leader's failure in a run, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    pub leader_id: u64,
    pub handle: Option<String>,
    /// A stable snake_case name (`server`, `not_found`, `rate_limited`, ...).
    pub kind: String,
    pub message: String,
}

/// What a run did (persisted, so the last run survives restarts).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunRecord {
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `schedule`, `manual`, `startup` or `cli`.
    pub trigger: String,
    pub backfill: bool,
    /// Leaders fetched (successfully or not).
    pub leaders: u64,
    pub posts_ingested: u64,
    pub posts_updated: u64,
    /// Stored posts read again (today's) whose counts moved.
    pub posts_refreshed: u64,
    pub duplicates: u64,
    pub posts_read: u64,
    pub users_read: u64,
    pub errors: Vec<RunError>,
    /// Why the run ended early or did not run (breaker open, rate limit, budget, stop,
    /// shutdown, lease held elsewhere); None when it went through every leader.
    pub stopped_reason: Option<String>,
    pub duration_ms: Option<u64>,
}
