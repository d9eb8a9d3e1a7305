//! `AppError`: every failure an HTTP handler can report, mapped to a status and the
//! SPEC's JSON error body in one place. A 500 is opaque to the client; its cause is logged.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::storage::StoreError;

/// An error as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed or a value is out of range.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no token, or a token that does not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token with the wrong role (or a forbidden network).
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0} not found")]
    NotFound(String),
    /// 409.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 503: a part of the server is not available (for example the store actor).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// 507: the disk is full; nothing was written.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 500: something that should not happen. The cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub message: String,
}

impl AppError {
    /// A 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> AppError {
        AppError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The snake_case code in the body.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { code, .. } => code,
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict { code, .. } => code,
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::Unavailable { code, .. } => code,
            AppError::InsufficientStorage(_) => "insufficient_storage",
            AppError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::Internal(cause) = self {
            tracing::error!(error = ?cause, "internal error");
        }
        let mut res = HttpResponse::build(self.status_code());
        if let AppError::Unauthorized(_) = self {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> AppError {
        match err {
            StoreError::NotFound(what) => AppError::NotFound(what.to_string()),
            StoreError::Conflict(message) => AppError::Conflict {
                code: "conflict",
                message,
            },
            err @ StoreError::DiskFull { .. } => AppError::InsufficientStorage(err.to_string()),
            StoreError::Unavailable(message) => AppError::Unavailable {
                code: "database_unavailable",
                message,
            },
            StoreError::Replication(message) => AppError::Unavailable {
                code: "replication_unavailable",
                message,
            },
            other => AppError::Internal(anyhow::Error::new(other).context("store")),
        }
    }
}

impl From<actix::MailboxError> for AppError {
    fn from(err: actix::MailboxError) -> AppError {
        tracing::error!(error = %err, "actor mailbox");
        AppError::Unavailable {
            code: "store_unavailable",
            message: "the store is not accepting writes right now".into(),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(_: actix_web::error::BlockingError) -> AppError {
        AppError::Unavailable {
            code: "busy",
            message: "the server is shutting down or overloaded".into(),
        }
    }
}
