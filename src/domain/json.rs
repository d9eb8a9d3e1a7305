//! Client JSON that Amber keeps and serves back as it is (a post's `metrics` object).
//!
//! Such a value is accepted only if it can be served back as strict JSON (RFC 8259), so
//! nothing is ever stored that a strict parser would refuse later: numbers that do not
//! fit a double (`1e400` would be infinity), nesting deeper than [`MAX_DEPTH`], lone
//! surrogates and anything else `serde_json` refuses are errors before any write. What is
//! kept is the canonical compact text of the parsed value, never the client's bytes.

use serde_json::Value;

/// Deepest nesting accepted: the object itself is level 1. X's own metrics are 3 deep.
pub const MAX_DEPTH: usize = 32;

/// Why client JSON was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Larger than the caller's limit, in bytes of JSON text.
    #[error("is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Not strict JSON (includes numbers out of range and the parser's own depth limit).
    #[error("is not strict JSON: {0}")]
    Invalid(String),
    /// Valid JSON, but not an object.
    #[error("must be a JSON object")]
    NotAnObject,
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nests deeper than {limit} levels")]
    TooDeep { limit: usize },
}

/// A JSON object that passed [`JsonObject::parse`]: its canonical compact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonObject(String);

impl JsonObject {
    /// Parses `text` as a JSON object of at most `max_bytes` bytes and [`MAX_DEPTH`] levels.
    pub fn parse(text: &str, max_bytes: usize) -> Result<JsonObject, JsonError> {
        JsonObject::parse_read(text, max_bytes).map(|(object, _)| object)
    }

    /// [`JsonObject::parse`], with what [`JsonObject::platform_post_id`] and
    /// [`JsonObject::revision`] would read, from the one parse (a backup's post line).
    pub fn parse_read(text: &str, max_bytes: usize) -> Result<(JsonObject, ObjectIds), JsonError> {
        let (object, value) = JsonObject::parse_value(text, max_bytes)?;
        let ids = ObjectIds {
            platform_post_id: platform_post_id_of(&value),
            revision: revision_of(&value),
        };
        Ok((object, ids))
    }

    fn parse_value(text: &str, max_bytes: usize) -> Result<(JsonObject, Value), JsonError> {
        if text.len() > max_bytes {
            return Err(JsonError::TooLarge { limit: max_bytes });
        }
        // serde_json refuses what RFC 8259 refuses, numbers beyond f64 ("number out of
        // range") and nesting beyond 128 (before it could exhaust the stack).
        let value: Value =
            serde_json::from_str(text).map_err(|e| JsonError::Invalid(e.to_string()))?;
        if !value.is_object() {
            return Err(JsonError::NotAnObject);
        }
        if depth(&value) > MAX_DEPTH {
            return Err(JsonError::TooDeep { limit: MAX_DEPTH });
        }
        // A parsed Value always serialises: its numbers are finite and its strings UTF-8.
        serde_json::to_string(&value)
            .map(|text| (JsonObject(text), value))
            .map_err(|e| JsonError::Invalid(e.to_string()))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The platform's post id the object names, as the original system's clients send
    /// it: `platformPostId`, else `externalId`; a non-blank string (trimmed) or a whole
    /// number (X ids do not fit a double, so a number is read only when exact).
    pub fn platform_post_id(&self) -> Option<String> {
        platform_post_id_of(&serde_json::from_str(&self.0).ok()?)
    }

    /// The object's `revision`, when it is a whole number (a backup's post: the
    /// revision it had where it was exported).
    pub fn revision(&self) -> Option<u64> {
        revision_of(&serde_json::from_str(&self.0).ok()?)
    }
}

/// What [`JsonObject::parse_read`] reads besides the object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectIds {
    /// [`JsonObject::platform_post_id`].
    pub platform_post_id: Option<String>,
    /// [`JsonObject::revision`].
    pub revision: Option<u64>,
}

fn platform_post_id_of(value: &Value) -> Option<String> {
    ["platformPostId", "externalId"]
        .iter()
        .find_map(|k| match value.get(k)? {
            Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Value::Number(n) => n.as_u64().map(|n| n.to_string()),
            _ => None,
        })
}

fn revision_of(value: &Value) -> Option<u64> {
    value.get("revision")?.as_u64()
}

/// Nesting depth: scalars are 0, `{}` and `[]` are 1.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_clients_x_id_is_read_from_platform_post_id_or_external_id() {
        let id = |text: &str| JsonObject::parse(text, 1000).unwrap().platform_post_id();
        assert_eq!(
            id(r#"{"platformPostId":" 19 ","externalId":"20"}"#).as_deref(),
            Some("19")
        );
        assert_eq!(id(r#"{"externalId":"20"}"#).as_deref(), Some("20"));
        assert_eq!(
            id(r#"{"externalId":1890000000000000001}"#).as_deref(),
            Some("1890000000000000001")
        );
        assert_eq!(
            id(r#"{"platformPostId":"  ","externalId":"7"}"#).as_deref(),
            Some("7")
        );
        for text in [
            r#"{}"#,
            r#"{"externalId":1.5}"#,
            r#"{"externalId":null}"#,
            r#"{"externalId":-3}"#,
        ] {
            assert_eq!(id(text), None, "{text}");
        }
        let rev = |text: &str| JsonObject::parse(text, 1000).unwrap().revision();
        assert_eq!(rev(r#"{"revision":3}"#), Some(3));
        assert_eq!(rev(r#"{"revision":"3"}"#), None);
    }

    fn nested(levels: usize) -> String {
        format!(
            "{}{}{}",
            "{\"a\":".repeat(levels - 1),
            "{}",
            "}".repeat(levels - 1)
        )
    }

    #[test]
    fn a_number_beyond_a_double_is_refused() {
        for text in [
            r#"{"likes": 1e400}"#,
            r#"{"x": -1e309}"#,
            r#"{"x": [1E400]}"#,
        ] {
            assert!(
                matches!(JsonObject::parse(text, 1000), Err(JsonError::Invalid(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn nesting_is_accepted_up_to_the_limit_and_refused_beyond() {
        assert!(JsonObject::parse(&nested(MAX_DEPTH), 100_000).is_ok());
        assert_eq!(
            JsonObject::parse(&nested(MAX_DEPTH + 1), 100_000),
            Err(JsonError::TooDeep { limit: MAX_DEPTH })
        );
        // Far beyond serde_json's own limit: an error, not a stack overflow.
        assert!(matches!(
            JsonObject::parse(&nested(127), 100_000),
            Err(JsonError::TooDeep { .. })
        ));
        assert!(matches!(
            JsonObject::parse(&nested(5000), 100_000),
            Err(JsonError::Invalid(_))
        ));
    }

    #[test]
    fn what_is_not_strict_json_or_not_an_object_is_refused() {
        for text in [
            r#"{"a": NaN}"#,
            r#"{"a": Infinity}"#,
            r#"{"a": 1,}"#,
            r#"{"a": "\ud800"}"#,
            "{'a': 1}",
            r#"{"a": 1} trailing"#,
        ] {
            assert!(
                matches!(JsonObject::parse(text, 1000), Err(JsonError::Invalid(_))),
                "{text}"
            );
        }
        for text in ["[]", "1", "\"x\"", "null"] {
            assert_eq!(
                JsonObject::parse(text, 1000),
                Err(JsonError::NotAnObject),
                "{text}"
            );
        }
        assert_eq!(
            JsonObject::parse(r#"{"a": "long"}"#, 5),
            Err(JsonError::TooLarge { limit: 5 })
        );
    }

    #[test]
    fn what_is_kept_is_canonical_and_parses_back_to_the_same_value() {
        let text = r#"{ "b": [1, 2.5, -0, 1e300, 123456789012345678901234567890],
                       "a": {"nested": "é \u00e9 \ud83d\ude00"}, "a": "last wins" }"#;
        let kept = JsonObject::parse(text, 1000).unwrap();
        let back: Value = serde_json::from_str(kept.as_str()).unwrap();
        assert_eq!(back["a"], "last wins");
        assert_eq!(back["b"][3], 1e300);
        assert!(!kept.as_str().contains('\n'));
        // Canonical text is a fixed point.
        assert_eq!(JsonObject::parse(kept.as_str(), 1000).unwrap(), kept);
    }
}
