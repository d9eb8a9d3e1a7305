//! `POST /api/sentiment/batch`: VADER scores for up to 100 texts of up to 10 KB each.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::domain::sentiment;
use crate::error::AppError;
use crate::http::{json_config, SENTIMENT_JSON_LIMIT};

/// Most texts in one batch.
pub const MAX_TEXTS: usize = 100;
/// Largest text, in bytes.
pub const MAX_TEXT_BYTES: usize = 10 * 1024;

/// Registers the routes of this module (rate limited, SPEC).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/sentiment/batch")
            .app_data(json_config(SENTIMENT_JSON_LIMIT))
            .route(web::post().to(batch)),
    );
}

/// Body of the batch.
#[derive(Debug, Deserialize)]
pub struct BatchBody {
    texts: Vec<String>,
}

#[derive(Serialize)]
struct ResultJson {
    text: String,
    sentiment: &'static str,
    score: f64,
}

/// `POST /api/sentiment/batch`.
pub async fn batch(body: web::Json<BatchBody>) -> Result<HttpResponse, AppError> {
    let texts = body.into_inner().texts;
    if texts.len() > MAX_TEXTS {
        return Err(AppError::bad_request(
            "too_many_texts",
            format!("at most {MAX_TEXTS} texts, got {}", texts.len()),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.len() > MAX_TEXT_BYTES) {
        return Err(AppError::bad_request(
            "text_too_long",
            format!("texts[{i}] is longer than {MAX_TEXT_BYTES} bytes"),
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
