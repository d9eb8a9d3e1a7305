//! The stored form of an ingestion run record (meta `ingestion_last_run`): versioned
//! bincode in the checksum envelope (`storage::codec`), version 1. Records written before
//! it (issue 4 to issue 9) are the JSON of the record; [`decode_run`] reads both, so the
//! last run of an existing `DATA_DIR` still shows after an upgrade.

use bincode::{Decode, Encode};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::run::{RunError, RunRecord};
use crate::storage::codec::{self, CodecError, Versioned};

/// One leader's failure, as stored.
#[derive(Debug, Clone, PartialEq, Encode, Decode, Deserialize)]
struct StoredRunError {
    #[serde(rename = "leaderId")]
    leader_id: u64,
    handle: Option<String>,
    kind: String,
    message: String,
}

/// A run record as stored (times as unix milliseconds). Frozen at version 1: a change
/// is a version 2 with a decoder for this one.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct StoredRun {
    started_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    trigger: String,
    backfill: bool,
    leaders: u64,
    posts_ingested: u64,
    posts_updated: u64,
    posts_refreshed: u64,
    duplicates: u64,
    posts_read: u64,
    users_read: u64,
    errors: Vec<StoredRunError>,
    stopped_reason: Option<String>,
    duration_ms: Option<u64>,
}

impl Versioned for StoredRun {
    const VERSION: u8 = 1;
}

/// The record as JSON, the way builds before the stored form wrote it.
#[derive(Debug, Deserialize)]
struct LegacyJson {
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    trigger: String,
    #[serde(default)]
    backfill: bool,
    #[serde(default)]
    leaders: u64,
    #[serde(default)]
    posts_ingested: u64,
    #[serde(default)]
    posts_updated: u64,
    #[serde(default)]
    posts_refreshed: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    posts_read: u64,
    #[serde(default)]
    users_read: u64,
    #[serde(default)]
    errors: Vec<StoredRunError>,
    stopped_reason: Option<String>,
    duration_ms: Option<u64>,
}

fn ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

fn time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
}

fn error_of(e: StoredRunError) -> RunError {
    RunError {
        leader_id: e.leader_id,
        handle: e.handle,
        kind: e.kind,
        message: e.message,
    }
}

/// The stored bytes of `record`.
pub fn encode_run(record: &RunRecord) -> Result<Vec<u8>, CodecError> {
    let stored = StoredRun {
        started_at_ms: ms(record.started_at),
        finished_at_ms: ms(record.finished_at),
        trigger: record.trigger.clone(),
        backfill: record.backfill,
        leaders: record.leaders,
        posts_ingested: record.posts_ingested,
        posts_updated: record.posts_updated,
        posts_refreshed: record.posts_refreshed,
        duplicates: record.duplicates,
        posts_read: record.posts_read,
        users_read: record.users_read,
        errors: record
            .errors
            .iter()
            .map(|e| StoredRunError {
                leader_id: e.leader_id,
                handle: e.handle.clone(),
                kind: e.kind.clone(),
                message: e.message.clone(),
            })
            .collect(),
        stopped_reason: record.stopped_reason.clone(),
        duration_ms: record.duration_ms,
    };
    codec::encode(&stored)
}

/// A stored run record, in the stored form or the older JSON.
pub fn decode_run(bytes: &[u8]) -> Result<RunRecord, CodecError> {
    if bytes.first() == Some(&b'{') {
        let j: LegacyJson =
            serde_json::from_slice(bytes).map_err(|_| CodecError::UnknownVersion(b'{'))?;
        return Ok(RunRecord {
            started_at: j.started_at,
            finished_at: j.finished_at,
            trigger: j.trigger,
            backfill: j.backfill,
            leaders: j.leaders,
            posts_ingested: j.posts_ingested,
            posts_updated: j.posts_updated,
            posts_refreshed: j.posts_refreshed,
            duplicates: j.duplicates,
            posts_read: j.posts_read,
            users_read: j.users_read,
            errors: j.errors.into_iter().map(error_of).collect(),
            stopped_reason: j.stopped_reason,
            duration_ms: j.duration_ms,
        });
    }
    let s: StoredRun = codec::decode(bytes)?;
    Ok(RunRecord {
        started_at: time(s.started_at_ms),
        finished_at: time(s.finished_at_ms),
        trigger: s.trigger,
        backfill: s.backfill,
        leaders: s.leaders,
        posts_ingested: s.posts_ingested,
        posts_updated: s.posts_updated,
        posts_refreshed: s.posts_refreshed,
        duplicates: s.duplicates,
        posts_read: s.posts_read,
        users_read: s.users_read,
        errors: s.errors.into_iter().map(error_of).collect(),
        stopped_reason: s.stopped_reason,
        duration_ms: s.duration_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record() -> RunRecord {
        RunRecord {
            started_at: Some(Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap()),
            finished_at: Some(Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 3).unwrap()),
            trigger: "schedule".into(),
            backfill: false,
            leaders: 3,
            posts_ingested: 12,
            posts_updated: 1,
            posts_refreshed: 4,
            duplicates: 2,
            posts_read: 19,
            users_read: 1,
            errors: vec![RunError {
                leader_id: 2,
                handle: Some("gone".into()),
                kind: "not_found".into(),
                message: "X user not found: gone".into(),
            }],
            stopped_reason: Some("stopped by an admin".into()),
            duration_ms: Some(3000),
        }
    }

    #[test]
    fn a_run_record_round_trips_through_its_stored_form() {
        let bytes = encode_run(&record()).unwrap();
        assert_eq!(bytes[0], codec::CHECKED);
        assert_eq!(decode_run(&bytes).unwrap(), record());
    }

    #[test]
    fn a_record_stored_as_json_by_an_older_build_reads_as_before() {
        // Exactly what the issue-4 build wrote (serde_json of its RunRecord).
        let old = br#"{"started_at":"2026-12-02T10:00:00Z","finished_at":"2026-12-02T10:00:03Z","trigger":"schedule","backfill":false,"leaders":3,"posts_ingested":12,"posts_updated":1,"duplicates":2,"posts_read":19,"users_read":1,"errors":[{"leaderId":2,"handle":"gone","kind":"not_found","message":"X user not found: gone"}],"stopped_reason":"stopped by an admin","duration_ms":3000}"#;
        let read = decode_run(old).unwrap();
        assert_eq!(
            read,
            RunRecord {
                posts_refreshed: 0,
                ..record()
            }
        );
        assert!(decode_run(b"{not json").is_err());
        let mut damaged = encode_run(&record()).unwrap();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        assert!(decode_run(&damaged).is_err());
    }
}
