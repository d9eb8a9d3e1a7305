//! X's Activity API (XAA) on the wire, as Amber uses it: subscriptions (one event type
//! and one `filter.user_id` each) and the lines of `GET /2/activity/stream`. Pure: the
//! calls are `XClient`'s, the stream's state is `actors::stream`'s.
//!
//! The create answer comes in two shapes: `data.subscription` (X's OpenAPI document) and
//! `data` as the subscription itself (X's quickstart page); [`CreateResponse::subscription`]
//! reads both.

use serde::Deserialize;
use serde_json::Value;

use crate::x_api::dto::{ApiError, Includes, Tweet};

/// The event types Amber subscribes to, one subscription each per leader.
pub const POST_CREATE: &str = "post.create";
/// See [`POST_CREATE`].
pub const POST_DELETE: &str = "post.delete";
/// The event types Amber keeps a subscription of for every leader.
pub const EVENT_TYPES: [&str; 2] = [POST_CREATE, POST_DELETE];
/// The tag Amber puts on its subscriptions: only subscriptions with it are Amber's to
/// delete (an app's token may serve other tools too).
pub const TAG: &str = "amber";

/// A subscription's filter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub user_id: Option<String>,
}

/// One subscription as X lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Subscription {
    pub subscription_id: String,
    pub event_type: String,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default)]
    pub tag: Option<String>,
}

impl Subscription {
    /// The user the subscription follows ("" when it has none).
    pub fn user_id(&self) -> &str {
        self.filter.user_id.as_deref().unwrap_or("")
    }

    /// Whether Amber made it (its tag).
    pub fn is_ambers(&self) -> bool {
        self.tag.as_deref() == Some(TAG)
    }
}

/// `meta` of the subscription answers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SubscriptionsMeta {
    #[serde(default)]
    pub total_subscriptions: Option<u64>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// `GET /2/activity/subscriptions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ListResponse {
    #[serde(default)]
    pub data: Vec<Subscription>,
    #[serde(default)]
    pub meta: SubscriptionsMeta,
}

/// `POST /2/activity/subscriptions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreateResponse {
    pub data: Value,
    #[serde(default)]
    pub meta: SubscriptionsMeta,
}

impl CreateResponse {
    /// The subscription made, from either shape (`data.subscription` or `data`).
    pub fn subscription(&self) -> Option<Subscription> {
        let inner = self.data.get("subscription").unwrap_or(&self.data);
        serde_json::from_value(inner.clone()).ok()
    }
}

/// The `payload` of a `post.delete` event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeletedPost {
    pub id: String,
    #[serde(default)]
    pub author_id: Option<String>,
}

/// One event of the stream (the line's `data`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventData {
    pub event_type: String,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub includes: Option<Includes>,
    #[serde(default)]
    pub event_uuid: Option<String>,
}

/// A line of the stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StreamLine {
    #[serde(default)]
    pub data: Option<EventData>,
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// What one line of the stream says.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A bare `\r\n`: X's keep-alive.
    KeepAlive,
    /// A new post by the filtered user, with the event's `includes`.
    Created {
        user_id: String,
        tweet: Box<Tweet>,
        includes: Option<Includes>,
    },
    /// A post the filtered user deleted.
    Deleted { user_id: String, post_id: String },
    /// Another event type (Amber subscribes to none, but X may send them).
    Other(String),
    /// An error object X wrote on the stream (an operational disconnect notice).
    Errors(String),
    /// Not an event X documents: counted and skipped.
    Malformed(String),
}

/// Reads one line of the stream (without its line end).
pub fn parse_line(line: &[u8]) -> StreamItem {
    let line = line.trim_ascii();
    if line.is_empty() {
        return StreamItem::KeepAlive;
    }
    let parsed: StreamLine = match serde_json::from_slice(line) {
        Ok(p) => p,
        Err(e) => return StreamItem::Malformed(e.to_string()),
    };
    let Some(data) = parsed.data else {
        if parsed.errors.is_empty() {
            return StreamItem::Malformed("a line with neither data nor errors".into());
        }
        let text: Vec<String> = parsed.errors.iter().map(ApiError::describe).collect();
        return StreamItem::Errors(text.join("; "));
    };
    let user_id = data.filter.user_id.clone().unwrap_or_default();
    match data.event_type.as_str() {
        POST_CREATE => match serde_json::from_value::<Tweet>(data.payload) {
            Ok(tweet) => StreamItem::Created {
                user_id,
                tweet: Box::new(tweet),
                includes: data.includes,
            },
            Err(e) => StreamItem::Malformed(format!("post.create payload: {e}")),
        },
        POST_DELETE => match serde_json::from_value::<DeletedPost>(data.payload) {
            Ok(d) => StreamItem::Deleted {
                user_id,
                post_id: d.id,
            },
            Err(e) => StreamItem::Malformed(format!("post.delete payload: {e}")),
        },
        other => StreamItem::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_create_shapes_are_read() {
        let sub = json!({"subscription_id": "7", "event_type": "post.create",
            "filter": {"user_id": "42"}, "tag": "amber"});
        for data in [json!({ "subscription": sub }), sub.clone()] {
            let resp: CreateResponse =
                serde_json::from_value(json!({"data": data, "meta": {"total_subscriptions": 3}}))
                    .unwrap();
            let got = resp.subscription().expect("a subscription");
            assert_eq!(got.subscription_id, "7");
            assert_eq!(got.user_id(), "42");
            assert!(got.is_ambers());
            assert_eq!(resp.meta.total_subscriptions, Some(3));
        }
    }

    #[test]
    fn stream_lines_are_keep_alives_events_errors_or_malformed() {
        assert_eq!(parse_line(b""), StreamItem::KeepAlive);
        assert_eq!(parse_line(b"\r"), StreamItem::KeepAlive);
        let create = json!({"data": {"event_type": "post.create", "filter": {"user_id": "42"},
            "payload": {"id": "100", "text": "hi", "author_id": "42"}}});
        match parse_line(create.to_string().as_bytes()) {
            StreamItem::Created { user_id, tweet, .. } => {
                assert_eq!((user_id.as_str(), tweet.id.as_str()), ("42", "100"));
            }
            other => panic!("{other:?}"),
        }
        let delete = json!({"data": {"event_type": "post.delete", "filter": {"user_id": "42"},
            "payload": {"id": "100", "author_id": "42"}}});
        assert_eq!(
            parse_line(delete.to_string().as_bytes()),
            StreamItem::Deleted {
                user_id: "42".into(),
                post_id: "100".into()
            }
        );
        let other = json!({"data": {"event_type": "like.create", "payload": {}}});
        assert_eq!(
            parse_line(other.to_string().as_bytes()),
            StreamItem::Other("like.create".into())
        );
        assert!(matches!(
            parse_line(br#"{"data":{"event_uuid":"1","filter":{"user_id":"#),
            StreamItem::Malformed(_)
        ));
        assert!(matches!(
            parse_line(br#"{"data":{"event_type":"post.delete","payload":{"x":1}}}"#),
            StreamItem::Malformed(_)
        ));
        assert!(matches!(
            parse_line(br#"{"errors":[{"title":"ConnectionException","detail":"bye"}]}"#),
            StreamItem::Errors(_)
        ));
    }
}
