//! The X JSON the fake answers: user lookups, user timelines, X's problem bodies.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::x_api::dto::{ApiError, Includes, Media, Meta, TimelineResponse, Tweet, UserResponse};
use crate::x_api::fake::{gate, with_window, Shared};

pub(super) fn problem(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status).json(ApiError {
        title: Some(title.to_string()),
        detail: Some(detail.to_string()),
        kind: Some("about:blank".to_string()),
        status: Some(status.as_u16()),
        ..ApiError::default()
    })
}

pub(super) fn invalid_request(detail: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "errors": [{"message": detail}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request"
    }))
}

fn user_error(value: &str, parameter: &str, suspended: bool) -> ApiError {
    ApiError {
        title: Some(
            if suspended {
                "Forbidden"
            } else {
                "Not Found Error"
            }
            .to_string(),
        ),
        detail: Some(if suspended {
            format!("User has been suspended: [{value}].")
        } else {
            format!("Could not find user with {parameter}: [{value}].")
        }),
        kind: Some("https://api.twitter.com/2/problems/resource-not-found".to_string()),
        resource_type: Some("user".to_string()),
        resource_id: Some(value.to_string()),
        parameter: Some(parameter.to_string()),
        value: Some(json!(value)),
        status: None,
    }
}

pub(super) async fn lookup_user(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    shared.counters.user_lookups.fetch_add(1, Ordering::Relaxed);
    let username = path.into_inner();
    let state = shared.state.lock();
    let body = match state.by_name.get(&username.to_ascii_lowercase()) {
        Some(pos) if !state.users[*pos].suspended => UserResponse {
            data: Some(state.users[*pos].user.clone()),
            errors: Vec::new(),
        },
        Some(_) => UserResponse {
            data: None,
            errors: vec![user_error(&username, "username", true)],
        },
        None => UserResponse {
            data: None,
            errors: vec![user_error(&username, "username", false)],
        },
    };
    with_window(HttpResponse::Ok().json(body), window)
}

const PAGE_TOKEN_PREFIX: &str = "pt";

pub(super) fn parse_page_token(token: &str) -> Option<u64> {
    u64::from_str_radix(token.strip_prefix(PAGE_TOKEN_PREFIX)?, 36).ok()
}

pub(super) fn page_token(until_id: u64) -> String {
    let mut digits = Vec::new();
    let mut n = until_id;
    loop {
        let d = (n % 36) as u32;
        digits.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.reverse();
    format!(
        "{PAGE_TOKEN_PREFIX}{}",
        digits.into_iter().collect::<String>()
    )
}

pub(super) async fn user_timeline(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let window = match gate(&shared, &req).await {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    shared
        .counters
        .timeline_calls
        .fetch_add(1, Ordering::Relaxed);
    let max_results = match query.get("max_results").map(|v| v.parse::<u32>()) {
        None => 10,
        Some(Ok(n)) if (5..=100).contains(&n) => n,
        Some(_) => {
            return invalid_request(format!(
                "The `max_results` query parameter value [{}] is not between 5 and 100",
                query.get("max_results").map(String::as_str).unwrap_or("")
            ))
        }
    };
    let since_id = match query.get("since_id").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return invalid_request("The `since_id` query parameter is invalid".into()),
    };
    let until = match query.get("pagination_token").map(|t| parse_page_token(t)) {
        None => u64::MAX,
        Some(Some(n)) => n,
        Some(None) => {
            return invalid_request("The `pagination_token` query parameter is invalid".into())
        }
    };
    let user_id = path.into_inner();
    let state = shared.state.lock();
    let user = match state.by_id.get(&user_id) {
        Some(pos) if !state.users[*pos].suspended => &state.users[*pos],
        other => {
            let body = UserResponse {
                data: None,
                errors: vec![user_error(&user_id, "id", other.is_some())],
            };
            return with_window(HttpResponse::Ok().json(body), window);
        }
    };
    // A since_id at or past the page's end selects nothing (BTreeMap::range would panic).
    let start = since_id.saturating_add(1).min(until);
    let mut selected = user
        .tweets
        .range(start..until)
        .rev()
        .take(max_results as usize + 1)
        .map(|(_, t)| t)
        .collect::<Vec<_>>();
    let more = selected.len() > max_results as usize;
    selected.truncate(max_results as usize);
    let media: Vec<Media> = selected
        .iter()
        .flat_map(|t| t.media.iter().cloned())
        .collect();
    let data: Vec<Tweet> = selected.iter().map(|t| t.tweet.clone()).collect();
    let oldest = selected.last().and_then(|t| t.tweet.id.parse::<u64>().ok());
    let meta = Meta {
        result_count: data.len() as u32,
        newest_id: data.first().map(|t| t.id.clone()),
        oldest_id: data.last().map(|t| t.id.clone()),
        next_token: if more { oldest.map(page_token) } else { None },
        previous_token: None,
    };
    drop(state);
    shared
        .counters
        .posts_served
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    let body = TimelineResponse {
        data,
        includes: (!media.is_empty()).then(|| Includes {
            media,
            users: Vec::new(),
        }),
        meta,
        errors: Vec::new(),
    };
    with_window(HttpResponse::Ok().json(body), window)
}
