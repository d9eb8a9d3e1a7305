//! Logging: one tracing subscriber, set up once, pretty or JSON lines on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
/// Pretty logs are coloured only when stderr is a terminal, so files, pipes and the
/// journal get plain text.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// A line the process writes outside the tracing subscriber (`amber listening on …`, a
/// fatal error): the text as is, or with `LOG_FORMAT=json` one JSON object shaped like the
/// subscriber's lines (`timestamp`, `level`, `message`), plus `event` and `fields`.
pub fn line(
    format: LogFormat,
    level: &str,
    event: &str,
    message: &str,
    fields: &[(&str, &str)],
) -> String {
    match format {
        LogFormat::Pretty => message.to_string(),
        LogFormat::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert(
                "timestamp".into(),
                chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .into(),
            );
            obj.insert("level".into(), level.into());
            obj.insert("event".into(), event.into());
            obj.insert("message".into(), message.into());
            for (k, v) in fields {
                obj.insert((*k).into(), (*v).into());
            }
            serde_json::Value::Object(obj).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_with_the_message_and_fields() {
        let text = line(
            LogFormat::Pretty,
            "INFO",
            "listening",
            "amber listening on http://a",
            &[],
        );
        assert_eq!(text, "amber listening on http://a");
        let json = line(
            LogFormat::Json,
            "INFO",
            "listening",
            "amber listening on http://a",
            &[("address", "http://a")],
        );
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["message"], "amber listening on http://a");
        assert_eq!(v["address"], "http://a");
        assert_eq!(v["event"], "listening");
        assert_eq!(v["level"], "INFO");
    }
}
