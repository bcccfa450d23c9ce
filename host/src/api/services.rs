//! Services: where each runs, since when, its restarts and last exit, and
//! its rolling log.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{require, Role};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::store::services;

/// Every service with its state: `waiting` (no host holds it), `starting`,
/// `running` (where, since when), `backoff` (until when) or `stopped`; its restarts, last exit and whether it is flapping.
#[utoipa::path(get, path = "/v1/services", tag = "services", security(("read" = [])), responses((status = 200, description = "Services and their state", body = serde_json::Value), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let rows = state.db.run(services::list).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "services": rows,
        "runs_services": state.runner.runs_services(),
    })))
}

/// The rolling log of a service: the last bytes of stdout and stderr of its
/// current incarnation (flushed every second) or of its last one.
#[utoipa::path(get, path = "/v1/services/{id}/log", tag = "services", security(("read" = [])), params(("id" = i64, Path, description = "Service id")), responses((status = 200, description = "The rolling log", body = serde_json::Value), (status = 404, description = "No such service, or it never started", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn log(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let id = id.into_inner();
    let log = state
        .db
        .run(move |tx| services::log(tx, id))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("service {id} does not exist or has not started yet; see GET /v1/services"),
            )
        })?;
    let text = |b: &[u8]| crate::store::runs::storable_text(&String::from_utf8_lossy(b));
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "service_id": id,
        "run_id": log.run_id,
        "running": log.running,
        "stdout": text(&log.stdout),
        "stderr": text(&log.stderr),
        "stdout_bytes": log.stdout_bytes,
        "stderr_bytes": log.stderr_bytes,
    })))
}
