//! Bodies as HTML forms send them. The original system's clients post forms as well as
//! JSON; a form's values are all strings (`leaderId=1`), so [`JsonOrForm`] turns an
//! `application/x-www-form-urlencoded` body into the JSON object the handler reads:
//! - every field is a string (ids accept strings, so `leaderId=1` is leader 1);
//! - `true` / `false` (also `on`, `1` / `off`, `0`) become booleans for the boolean
//!   fields (`requiresReview`);
//! - `metrics` and `handles` are JSON text (`metrics={"likes":3}`), and `handles.x=name`
//!   (or `handles[x]=name`) sets one handle;
//! - `trackingTopics` may repeat (also as `trackingTopics[]`), one topic each.
//!
//! Any other body goes to actix's JSON extractor with the app's JSON config.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, web, FromRequest, HttpMessage, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::AppError;
use crate::http::{ObjectBody, JSON_LIMIT};

/// Form fields that are booleans.
const BOOLEANS: [&str; 1] = ["requiresReview"];
/// Form fields whose value is JSON text.
const JSON_FIELDS: [&str; 2] = ["metrics", "handles"];
/// Form fields that may repeat, one array element each.
const LISTS: [&str; 1] = ["trackingTopics"];

/// A JSON object body, or the same fields as an HTML form.
#[derive(Debug)]
pub struct JsonOrForm<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonOrForm<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_form = req.content_type() == "application/x-www-form-urlencoded";
        if !is_form {
            let json = web::Json::<ObjectBody<T>>::from_request(req, payload);
            return Box::pin(async move { Ok(JsonOrForm(json.await?.into_inner().0)) });
        }
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await?;
            if bytes.len() > JSON_LIMIT {
                return Err(AppError::PayloadTooLarge { limit: JSON_LIMIT }.into());
            }
            let object = form_object(&bytes)?;
            serde_json::from_value::<ObjectBody<T>>(Value::Object(object))
                .map(|b| JsonOrForm(b.0))
                .map_err(|e| AppError::bad_request("invalid_body", e.to_string()).into())
        })
    }
}

/// The JSON object a form body stands for (see the module comment).
pub fn form_object(bytes: &[u8]) -> Result<Map<String, Value>, AppError> {
    let bad = |m: String| AppError::bad_request("invalid_body", m);
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(bytes).map_err(|e| bad(format!("form body: {e}")))?;
    let mut object = Map::new();
    for (key, value) in pairs {
        let key = key.strip_suffix("[]").unwrap_or(&key).to_string();
        if let Some(platform) = key.strip_prefix("handles.").or_else(|| {
            key.strip_prefix("handles[")
                .and_then(|k| k.strip_suffix(']'))
        }) {
            let handles = object
                .entry("handles")
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(handles) = handles else {
                return Err(bad("handles given both as JSON and field by field".into()));
            };
            handles.insert(platform.to_string(), Value::String(value));
            continue;
        }
        let parsed = if BOOLEANS.contains(&key.as_str()) {
            match value.as_str() {
                "true" | "on" | "1" => Value::Bool(true),
                "false" | "off" | "0" | "" => Value::Bool(false),
                other => return Err(bad(format!("{key} must be true or false, got {other:?}"))),
            }
        } else if JSON_FIELDS.contains(&key.as_str()) {
            serde_json::from_str(&value).map_err(|e| bad(format!("{key} must be JSON: {e}")))?
        } else {
            Value::String(value)
        };
        if LISTS.contains(&key.as_str()) {
            match object
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(items) => items.push(parsed),
                _ => unreachable!("list fields are only ever arrays"),
            }
        } else {
            object.insert(key, parsed);
        }
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_is_the_json_object_its_fields_stand_for() {
        let body = b"leaderId=1&platform=x&content=hi+there&requiresReview=on&metrics=%7B%22likes%22%3A3%7D\
            &trackingTopics=a&trackingTopics[]=b&handles.x=%40someone&handles[facebook]=fb";
        let object = form_object(body).unwrap();
        assert_eq!(
            Value::Object(object),
            serde_json::json!({
                "leaderId": "1", "platform": "x", "content": "hi there", "requiresReview": true,
                "metrics": {"likes": 3}, "trackingTopics": ["a", "b"],
                "handles": {"x": "@someone", "facebook": "fb"},
            })
        );
    }

    #[test]
    fn a_bad_form_is_a_400() {
        assert!(form_object(b"requiresReview=maybe").is_err());
        assert!(form_object(b"metrics=%7Bnot").is_err());
        assert!(form_object(b"handles=%5B%5D&handles.x=a").is_err());
    }
}
