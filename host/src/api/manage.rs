//! Operator actions: run a task now, resume a paused task, cancel a run.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{require, Role};
use super::{ApiError, AppState};
use crate::pulse;
use crate::store::runs::{self, CancelOutcome};

/// Queues a run of one task now.
pub async fn trigger(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let run = pulse::trigger(&state.db, id.into_inner(), chrono::Utc::now()).await?;
    state.runner.wake();
    Ok(HttpResponse::Accepted().json(run))
}

/// Un-pauses a task paused by hook failures.
pub async fn resume(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let id = id.into_inner();
    let task = state
        .db
        .run(move |c| crate::store::hooks::resume(c, id, chrono::Utc::now()))
        .await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "id": task.id, "name": task.name, "paused_reason": null })))
}

/// Cancels a queued run at once, or a running one (on whichever host runs it).
pub async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let id = id.into_inner();
    let outcome = state
        .db
        .run(move |c| runs::request_cancel(c, id, chrono::Utc::now()))
        .await?;
    match &outcome {
        CancelOutcome::AlreadyFinished { status } => {
            return Err(ApiError::new(
                actix_web::http::StatusCode::CONFLICT,
                "already_finished",
                format!("run {id} already finished as {status}; there is nothing to cancel"),
            ))
        }
        // On this host it stops now; elsewhere its host sees the request within a second.
        CancelOutcome::Requested { .. } => _ = state.runner.cancel_local(id),
        CancelOutcome::Cancelled => {}
    }
    Ok(HttpResponse::Accepted().json(outcome))
}
