//! Feed cursors: a position in the newest-first time order, `<timestamp_ms>-<post_id>`.

use std::fmt;
use std::str::FromStr;

/// A position in the newest-first order. A page "before" a cursor holds the posts that
/// sort strictly after it (older, or same time with a lower id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub timestamp_ms: i64,
    pub post_id: u64,
}

/// A cursor string that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("cursor must look like <timestamp_ms>-<post_id>")]
pub struct CursorError;

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.timestamp_ms, self.post_id)
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Cursor, CursorError> {
        // Timestamps may be negative (before 1970), so split at the last '-'.
        let (ts, id) = s.rsplit_once('-').ok_or(CursorError)?;
        if ts.is_empty() || id.is_empty() || id.starts_with('+') || ts.starts_with('+') {
            return Err(CursorError);
        }
        Ok(Cursor {
            timestamp_ms: ts.parse().map_err(|_| CursorError)?,
            post_id: id.parse().map_err(|_| CursorError)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn cursor_round_trips(ts in any::<i64>(), id in any::<u64>()) {
            let c = Cursor { timestamp_ms: ts, post_id: id };
            prop_assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Cursor>();
        }
    }

    #[test]
    fn garbage_is_refused() {
        for s in ["", "-", "12", "a-b", "12-", "-5", "1-2-3x", "+1-2"] {
            assert_eq!(s.parse::<Cursor>(), Err(CursorError), "{s}");
        }
    }
}
