//! `POST /api/sentiment/batch`: VADER scores for up to 100 texts of up to 10 KB each.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::domain::sentiment;
use crate::error::AppError;
use crate::http::rate_limit::RateLimited;
use crate::http::{json_config, SENTIMENT_JSON_LIMIT};

/// Most texts in one batch.
pub const MAX_TEXTS: usize = 100;
/// Longest text, in characters (SPEC's "10 KB" counted as JSON Schema counts length).
pub const MAX_TEXT_CHARS: usize = 10 * 1024;

/// Registers the routes of this module (rate limited, SPEC).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/sentiment/batch")
            .app_data(json_config(SENTIMENT_JSON_LIMIT))
            .route(web::post().to(batch).wrap(RateLimited::default())),
    );
}

/// Body of the batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BatchBody {
    /// At most 100 texts of at most 10,240 characters.
    #[schema(schema_with = texts_schema)]
    texts: Vec<String>,
}

fn texts_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_TEXT_CHARS)),
        )
        .max_items(Some(MAX_TEXTS))
        .build()
}

#[derive(Serialize)]
struct ResultJson {
    text: String,
    sentiment: &'static str,
    score: f64,
}

/// `POST /api/sentiment/batch`.
#[utoipa::path(post, path = "/api/sentiment/batch", operation_id = "sentimentBatch", tag = "sentiment", request_body = BatchBody, responses((status = 200, description = "`{\"results\":[{text,sentiment,score}]}`", body = Object), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 413, description = "Body too large", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)))]
pub async fn batch(
    body: web::Json<crate::http::ObjectBody<BatchBody>>,
) -> Result<HttpResponse, AppError> {
    let texts = body.into_inner().0.texts;
    if texts.len() > MAX_TEXTS {
        return Err(AppError::bad_request(
            "too_many_texts",
            format!("at most {MAX_TEXTS} texts, got {}", texts.len()),
        ));
    }
    if let Some(i) = texts
        .iter()
        .position(|t| t.chars().count() > MAX_TEXT_CHARS)
    {
        return Err(AppError::bad_request(
            "text_too_long",
            format!("texts[{i}] is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    // VADER is CPU work: keep it off the async executor.
    let results = web::block(move || {
        texts
            .into_iter()
            .map(|text| {
                let (score, label) = sentiment::analyze(&text);
                ResultJson {
                    text,
                    sentiment: label.as_str(),
                    score,
                }
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "results": results })))
}
