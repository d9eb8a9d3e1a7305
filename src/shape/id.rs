//! Ids on the wire. Amber's ids are `u64`s; the original system's are strings (UUIDs),
//! and its clients type every `id`, `leaderId` and `postId` as `string`. So every id goes
//! out as a JSON string of its digits, and comes in as a string or a number. A string
//! that is not Amber's (a UUID of the original's rows) is a *foreign* id, looked up in
//! storage's `F` keys ([`IdRef::Foreign`]). The import (`storage/import.rs`) writes
//! them: a backup record with a foreign id gets a fresh id, its `leaderId` / `postId`
//! references are remapped, and the foreign id is kept, so the record still answers at
//! it. A foreign id nothing was imported under resolves to nothing (a 404).

use std::fmt;

use serde::{Deserialize, Deserializer, Serializer};

/// Longest id accepted on input, in bytes (a UUID is 36).
pub const MAX_ID_LEN: usize = 128;

/// Largest id accepted as a JSON number: 2^53, beyond which a double loses digits.
const MAX_NUMBER: u64 = 1 << 53;

/// Serialises an id as a JSON string: `#[serde(serialize_with = "crate::shape::id::string")]`.
pub fn string<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// As [`string`], for an optional id.
pub fn optional_string<S: Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// An id as a client or a backup names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdRef {
    /// One of Amber's ids (digits, or a JSON number).
    Local(u64),
    /// Any other string: the id a record had in the system it was imported from.
    Foreign(String),
}

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("an id must not be empty")]
    Empty,
    #[error("an id must be at most {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("an id given as a number must be a whole number from 0 to 2^53, got {0}")]
    BadNumber(String),
}

impl IdRef {
    /// Reads an id from text (a path segment, a query value, a JSON string): digits that
    /// fit a `u64` are Amber's, anything else of 1 to [`MAX_ID_LEN`] bytes is foreign.
    pub fn parse(raw: &str) -> Result<IdRef, IdError> {
        if raw.is_empty() {
            return Err(IdError::Empty);
        }
        if raw.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        if raw.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = raw.parse::<u64>() {
                return Ok(IdRef::Local(n));
            }
        }
        Ok(IdRef::Foreign(raw.to_string()))
    }

    /// Amber's id, if this is one.
    pub fn local(&self) -> Option<u64> {
        match self {
            IdRef::Local(n) => Some(*n),
            IdRef::Foreign(_) => None,
        }
    }

    fn from_number(n: &serde_json::Number) -> Result<IdRef, IdError> {
        if let Some(v) = n.as_u64() {
            return (v <= MAX_NUMBER)
                .then_some(IdRef::Local(v))
                .ok_or_else(|| IdError::BadNumber(n.to_string()));
        }
        // JSON Schema calls `7.0` an integer too.
        match n.as_f64().filter(|_| !n.is_i64()) {
            Some(f) if f.fract() == 0.0 && (0.0..=MAX_NUMBER as f64).contains(&f) => {
                Ok(IdRef::Local(f as u64))
            }
            _ => Err(IdError::BadNumber(n.to_string())),
        }
    }
}

impl fmt::Display for IdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRef::Local(n) => write!(f, "{n}"),
            IdRef::Foreign(s) => write!(f, "{s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for IdRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IdRef, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Number(serde_json::Number),
            #[serde(borrow)]
            Text(std::borrow::Cow<'a, str>),
        }
        let parsed = match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected an id (a string or a whole number)"))?
        {
            Raw::Number(n) => IdRef::from_number(&n),
            Raw::Text(s) => IdRef::parse(&s),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for IdRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .description(Some(
                "An id: a string (Amber's digits, or the id an imported record had in the original system) or a whole number",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(MAX_ID_LEN)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(MAX_NUMBER as f64)),
            )
            .into()
    }
}

impl utoipa::ToSchema for IdRef {}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(text: &str) -> Result<IdRef, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn strings_and_numbers_name_the_same_id() {
        assert_eq!(from_json("7").unwrap(), IdRef::Local(7));
        assert_eq!(from_json("7.0").unwrap(), IdRef::Local(7));
        assert_eq!(from_json(r#""7""#).unwrap(), IdRef::Local(7));
        assert_eq!(IdRef::parse("7").unwrap(), IdRef::Local(7));
    }

    #[test]
    fn any_other_string_is_foreign() {
        let uuid = "3f2a9c3e-8a52-4c1b-9d7e-2b1f0c8a9e11";
        assert_eq!(
            from_json(&format!("{uuid:?}")).unwrap(),
            IdRef::Foreign(uuid.into())
        );
        // Beyond u64: not one of Amber's.
        assert!(matches!(
            IdRef::parse("99999999999999999999").unwrap(),
            IdRef::Foreign(_)
        ));
    }

    #[test]
    fn bad_ids_are_refused() {
        for text in [
            r#""""#,
            "-1",
            "1.5",
            "1e400",
            "9007199254740993",
            "null",
            "[1]",
        ] {
            assert!(from_json(text).is_err(), "{text}");
        }
        assert_eq!(IdRef::parse(&"a".repeat(129)), Err(IdError::TooLong));
    }

    #[test]
    fn ids_go_out_as_strings() {
        #[derive(serde::Serialize)]
        struct S {
            #[serde(serialize_with = "string")]
            id: u64,
            #[serde(serialize_with = "optional_string")]
            other: Option<u64>,
        }
        let json = serde_json::to_string(&S {
            id: 42,
            other: None,
        })
        .unwrap();
        assert_eq!(json, r#"{"id":"42","other":null}"#);
    }
}
