//! `GET /api/admin/replication/snapshot` (admin, `REPLICATION=redis`): this instance's
//! replication snapshot, streamed (`storage::replica`: the replicated key spaces and the
//! stream position they include). A bootstrapping instance of the same cluster fetches it
//! (`replication::bootstrap`); an operator may save it to a file and point a new instance
//! at it (`REPLICATION_SNAPSHOT`).

use actix_web::{web, HttpResponse};

use crate::actors::store::FinishSnapshot;
use crate::error::AppError;
use crate::http::auth::Admin;
use crate::http::AppState;
use crate::storage::replica::Encoder;

/// Bytes gathered before a chunk is sent.
const CHUNK: usize = 64 * 1024;

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/replication/snapshot").route(web::get().to(replication_snapshot)),
    );
}

/// `GET /api/admin/replication/snapshot`.
#[utoipa::path(get, path = "/api/admin/replication/snapshot", operation_id = "replicationSnapshot", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "This instance's replication snapshot (Amber's binary snapshot format: the replicated data and the stream position it includes, checksummed); a failure mid-stream ends the body without its trailer", content_type = "application/octet-stream", body = String),
        (status = 401, description = "No or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Wrong role", body = crate::error::ErrorBody),
        (status = 409, description = "Replication is off, or a snapshot is being taken already", body = crate::error::ErrorBody),
        (status = 503, description = "This instance is bootstrapping itself", body = crate::error::ErrorBody)))]
pub async fn replication_snapshot(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let Some(repl) = state.writes.replicator() else {
        return Err(AppError::Conflict {
            code: "replication_off",
            message: "replication is off on this instance (REPLICATION=redis serves snapshots)"
                .into(),
        });
    };
    if repl.state().bootstrap.is_some() {
        return Err(AppError::Unavailable {
            code: "replication_unavailable",
            message: "this instance is bootstrapping from a snapshot itself".into(),
        });
    }
    let cluster = repl.cluster().to_string();
    state.reader.begin_capture()?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let (reader, store) = (state.reader.clone(), state.store.clone());
    actix_web::rt::spawn(async move {
        let scan = {
            let (reader, tx, cluster) = (reader.clone(), tx.clone(), cluster.clone());
            actix_web::rt::task::spawn_blocking(move || -> Result<Option<Encoder>, String> {
                let mut enc = Encoder::new(&cluster);
                for kv in reader.snapshot_scan().map_err(|e| e.to_string())? {
                    let (k, v) = kv.map_err(|e| e.to_string())?;
                    enc.put(&k, &v);
                    if enc.buffered() >= CHUNK && tx.blocking_send(Ok(enc.take().into())).is_err() {
                        return Ok(None);
                    }
                }
                Ok(Some(enc))
            })
            .await
        };
        let mut enc = match scan {
            Ok(Ok(Some(enc))) => enc,
            // The client went away.
            Ok(Ok(None)) => {
                reader.abort_capture();
                return;
            }
            Ok(Err(err)) => {
                reader.abort_capture();
                tracing::error!(error = %err, "replication snapshot failed");
                let _ = tx.send(Err(std::io::Error::other(err))).await;
                return;
            }
            Err(err) => {
                reader.abort_capture();
                let _ = tx.send(Err(std::io::Error::other(err.to_string()))).await;
                return;
            }
        };
        match store.send(FinishSnapshot).await {
            Ok(Ok(fix)) => {
                for (k, v) in &fix.writes {
                    match v {
                        Some(v) => enc.put(k, v),
                        None => enc.remove(k),
                    }
                }
                tracing::info!(position = %fix.position.0, n = fix.position.1, fixed_up = fix.writes.len(), "replication snapshot served");
                let last = enc.finish(&cluster, fix.position);
                let _ = tx.send(Ok(last.into())).await;
            }
            other => {
                reader.abort_capture();
                let why = match other {
                    Ok(Err(err)) => err.to_string(),
                    Err(err) => err.to_string(),
                    Ok(Ok(_)) => unreachable!("matched above"),
                };
                tracing::error!(error = %why, "replication snapshot failed");
                let _ = tx.send(Err(std::io::Error::other(why))).await;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .streaming(body))
}
