//! Crontab expressions as people write them (5 fields, Sunday = 0 or 7), translated for
//! the `cron` crate (which wants a seconds field and numbers weekdays from Sunday = 1).

use std::str::FromStr;

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A crontab expression that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CrontabError {
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), got {0}")]
    FieldCount(usize),
    #[error("bad day-of-week {0:?}")]
    DayOfWeek(String),
    #[error("{0}")]
    Cron(String),
}

/// Parses a 5-field crontab expression (`*/30 * * * *`, `0 9 * * 1-5`, `0 0 * * 0,7`).
pub fn parse(expr: &str) -> Result<cron::Schedule, CrontabError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CrontabError::FieldCount(fields.len()));
    }
    let dow = day_of_week(fields[4])?;
    let six = format!(
        "0 {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], dow
    );
    cron::Schedule::from_str(&six).map_err(|e| {
        CrontabError::Cron(
            e.to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string(),
        )
    })
}

/// Turns a crontab day-of-week field into the set of days it names, written as the
/// `cron` crate's day names, so no numbering convention has to be translated.
fn day_of_week(field: &str) -> Result<String, CrontabError> {
    let bad = || CrontabError::DayOfWeek(field.to_string());
    if field == "*" || field == "?" {
        return Ok("*".to_string());
    }
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>().ok().filter(|s| *s > 0).ok_or_else(bad)?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                day_number(a).ok_or_else(bad)?,
                day_number(b).ok_or_else(bad)?,
            )
        } else {
            let d = day_number(range).ok_or_else(bad)?;
            (d, if step > 1 { 6 } else { d })
        };
        // crontab allows 7 for Sunday at the end of a range (5-7 = Fri..Sun).
        if lo > hi {
            return Err(bad());
        }
        for d in (lo..=hi).step_by(step) {
            days[d % 7] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".to_string());
    }
    Ok(days
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(i, _)| DAY_NAMES[i])
        .collect::<Vec<_>>()
        .join(","))
}

/// 0..=7 (0 and 7 are Sunday) or a three-letter name.
fn day_number(s: &str) -> Option<usize> {
    if let Ok(n) = s.parse::<usize>() {
        return (n <= 7).then_some(n);
    }
    DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, TimeZone, Utc, Weekday};

    use super::*;

    fn next_weekdays(expr: &str, n: usize) -> Vec<Weekday> {
        let from = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap(); // a Friday
        parse(expr)
            .unwrap()
            .after(&from)
            .take(n)
            .map(|t| t.weekday())
            .collect()
    }

    #[test]
    fn sunday_is_zero_or_seven() {
        assert_eq!(next_weekdays("0 9 * * 0", 1), vec![Weekday::Sun]);
        assert_eq!(next_weekdays("0 9 * * 7", 1), vec![Weekday::Sun]);
        assert_eq!(next_weekdays("0 9 * * 1", 1), vec![Weekday::Mon]);
    }

    #[test]
    fn ranges_lists_and_names_work() {
        assert_eq!(
            next_weekdays("0 9 * * 5-7", 3),
            vec![Weekday::Fri, Weekday::Sat, Weekday::Sun]
        );
        assert_eq!(
            next_weekdays("0 9 * * mon-fri", 3),
            vec![Weekday::Fri, Weekday::Mon, Weekday::Tue]
        );
        assert_eq!(
            next_weekdays("0 9 * * 0,3", 2),
            vec![Weekday::Sun, Weekday::Wed]
        );
    }

    #[test]
    fn every_thirty_minutes_runs_twice_an_hour() {
        let from = Utc.with_ymd_and_hms(2026, 11, 27, 10, 5, 0).unwrap();
        let next: Vec<_> = parse("*/30 * * * *")
            .unwrap()
            .after(&from)
            .take(2)
            .collect();
        assert_eq!(
            next[0],
            Utc.with_ymd_and_hms(2026, 11, 27, 10, 30, 0).unwrap()
        );
        assert_eq!(
            next[1],
            Utc.with_ymd_and_hms(2026, 11, 27, 11, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_expressions_are_errors() {
        assert_eq!(parse("* * * *"), Err(CrontabError::FieldCount(4)));
        assert!(matches!(
            parse("* * * * 8"),
            Err(CrontabError::DayOfWeek(_))
        ));
        assert!(matches!(parse("61 * * * *"), Err(CrontabError::Cron(_))));
        assert!(matches!(
            parse("* * * * 6-2"),
            Err(CrontabError::DayOfWeek(_))
        ));
    }
}
