//! Times on the wire: RFC 3339 UTC with milliseconds, in the API, backups and feeds.

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 UTC with milliseconds, as every timestamp in the API.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 timestamp into unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}
