//! Admin bootstrap: `POST /api/admin/token` trades the bootstrap secret for a JWT;
//! `GET /api/admin/ping` echoes a valid token's subject.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::http::auth::{Admin, AnyUser, Role};
use crate::http::rate_limit::RateLimited;
use crate::http::AppState;

/// Registers the routes of this module. The token route gets its own strict limit.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/token")
            .route(web::post().to(token).wrap(RateLimited::token_endpoint())),
    )
    .service(web::resource("/admin/export").route(web::get().to(export)))
    .service(web::resource("/admin/ping").route(web::get().to(ping)));
}

/// Body of `POST /api/admin/token`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenBody {
    /// Who the token is for: 1 to 64 printable characters, not blank.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 64
    )]
    admin_id: String,
    /// `ADMIN_BOOTSTRAP_SECRET`.
    secret: String,
    /// Default `admin`.
    #[schema(value_type = Option<crate::http::auth::Role>)]
    role: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenJson {
    token: String,
    expires_in: u64,
}

/// Compares two secrets in time that depends only on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /api/admin/token`: `{"adminId","secret","role"?}` → `{"token","expiresIn"}`.
#[utoipa::path(post, path = "/api/admin/token", operation_id = "createAdminToken", tag = "admin", request_body = TokenBody, responses((status = 200, description = "A signed JWT", body = TokenJson), (status = 400, description = "Bad input", body = crate::error::ErrorBody), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody), (status = 429, description = "Rate limited: wait `Retry-After` seconds", body = crate::error::ErrorBody)))]
pub async fn token(
    state: web::Data<AppState>,
    body: web::Json<crate::http::ObjectBody<TokenBody>>,
) -> Result<HttpResponse, AppError> {
    let b = body.into_inner().0;
    if !crate::http::text::printable_not_blank(&b.admin_id) || b.admin_id.chars().count() > 64 {
        return Err(AppError::bad_request(
            "invalid_body",
            "adminId must be 1 to 64 printable characters",
        ));
    }
    let admin_id = b.admin_id.trim();
    let role = match b.role.as_deref() {
        None => Role::Admin,
        Some(r) => Role::parse(r).ok_or_else(|| {
            AppError::bad_request(
                "invalid_body",
                format!("role must be admin or reviewer, got {r:?}"),
            )
        })?,
    };
    if !same_secret(
        b.secret.as_bytes(),
        state.settings.auth.bootstrap_secret.expose().as_bytes(),
    ) {
        tracing::warn!(admin_id, "admin token refused: wrong bootstrap secret");
        return Err(AppError::Unauthorized("adminId or secret is wrong".into()));
    }
    let ttl = state.jwt.ttl_seconds();
    let token = state.jwt.issue(admin_id, role, ttl)?;
    Ok(HttpResponse::Ok().json(TokenJson {
        token,
        expires_in: ttl,
    }))
}

/// `GET /api/admin/ping` with any valid token.
#[utoipa::path(get, path = "/api/admin/ping", operation_id = "adminPing", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "The token's subject and role", body = Object), (status = 401, description = "No or invalid token", body = crate::error::ErrorBody)))]
pub async fn ping(user: AnyUser) -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({"status": "ok", "admin": user.0.sub, "role": user.0.role}))
}

/// Bytes gathered before a chunk of the export is sent.
const EXPORT_CHUNK: usize = 64 * 1024;

/// `GET /api/admin/export` (admin): the same JSON lines as `amber export`, streamed from
/// the running server, so a backup needs no downtime. Records are read on a blocking
/// thread and sent in chunks; a client that goes away stops the reading.
#[utoipa::path(get, path = "/api/admin/export", operation_id = "exportBackup", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every leader, post and review item, one JSON object a line (as `amber export`), then the trailer line `{\"kind\":\"trailer\",\"records\":N,\"damagedSkipped\":D}`; a failure mid-stream ends the body without its final chunk", content_type = "application/x-ndjson", body = String),
        (status = 401, description = "No or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Wrong role", body = crate::error::ErrorBody)))]
pub async fn export(_admin: Admin, state: web::Data<AppState>) -> HttpResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let reader = state.reader.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(EXPORT_CHUNK * 2);
        let skipped = std::cell::Cell::new(0);
        let mut records = 0u64;
        for record in reader.export(&skipped) {
            let written = record
                .map_err(std::io::Error::other)
                .and_then(|r| crate::backup::write_record(&mut buf, &r));
            // A failure ends the body without its last chunk (a broken chunked stream,
            // which curl reports), and the backup has no trailer: import refuses it.
            if let Err(err) = written {
                tracing::error!(error = %err, records, "export failed");
                let _ = tx.blocking_send(Err(err));
                return;
            }
            records += 1;
            if buf.len() >= EXPORT_CHUNK
                && tx
                    .blocking_send(Ok(std::mem::take(&mut buf).into()))
                    .is_err()
            {
                return;
            }
        }
        let damaged_skipped = skipped.get();
        if damaged_skipped > 0 {
            tracing::error!(records, damaged_skipped, "export skipped damaged records");
        }
        let trailer = crate::backup::Trailer {
            records,
            damaged_skipped,
        };
        if let Err(err) = crate::backup::write_trailer(&mut buf, trailer) {
            let _ = tx.blocking_send(Err(err));
            return;
        }
        let _ = tx.blocking_send(Ok(buf.into()));
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body)
}
