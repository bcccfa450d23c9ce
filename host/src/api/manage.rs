//! Operator actions: run a task now, resume a paused task, cancel a run.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{require, Role};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::pulse::{self, Triggered, PREVIOUS_INSTANCE_RUNNING};
use crate::runner::settle;
use crate::store::runs::{self, CancelOutcome};

/// Queues a run of one task now, obeying its overlap policy: with `skip` and
/// a run still going, a skipped run is recorded and the answer is 409.
#[utoipa::path(post, path = "/v1/tasks/{id}/run", tag = "tasks", security(("admin" = [])), params(("id" = i64, Path, description = "Task id")), responses((status = 202, description = "Queued", body = serde_json::Value), (status = 409, description = "Overlap skip: a run is still going", body = ErrorBody), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn trigger(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    Ok(HttpResponse::Accepted().json(queue_now(&state, id.into_inner()).await?))
}

/// What [`trigger`] does once the caller is admitted (the dashboard's too).
pub async fn queue_now(state: &AppState, id: i64) -> Result<serde_json::Value, ApiError> {
    match pulse::trigger(&state.db, id).await? {
        Triggered::Queued(run) => {
            state.runner.wake();
            Ok(serde_json::to_value(run).unwrap_or_default())
        }
        Triggered::Skipped { skipped, running } => {
            let listed: Vec<String> = running.iter().map(i64::to_string).collect();
            Err(ApiError::new(
                StatusCode::CONFLICT,
                PREVIOUS_INSTANCE_RUNNING,
                format!(
                    "task {:?} is still running (run {}) and its overlap policy is skip: run {} was recorded \
                     as skipped; wait for the running one to finish, or cancel it first",
                    skipped.task,
                    listed.join(", "),
                    skipped.run_id
                ),
            ))
        }
    }
}

/// Un-pauses a task paused by hook failures.
#[utoipa::path(post, path = "/v1/tasks/{id}/resume", tag = "tasks", security(("admin" = [])), params(("id" = i64, Path, description = "Task id")), responses((status = 200, description = "Resumed", body = serde_json::Value), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn resume(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    Ok(HttpResponse::Ok().json(unpause(&state, id.into_inner()).await?))
}

/// What [`resume`] does once the caller is admitted.
pub async fn unpause(state: &AppState, id: i64) -> Result<serde_json::Value, ApiError> {
    let task = state
        .db
        .run(move |tx| crate::store::hooks::resume(tx, id))
        .await?;
    Ok(serde_json::json!({ "id": task.id, "name": task.name, "paused_reason": null }))
}

/// Cancels a queued run at once (skipping what waited for it), or a running
/// one (on whichever host runs it).
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", security(("admin" = [])), params(("id" = i64, Path, description = "Run id")), responses((status = 202, description = "Cancelled, or cancel requested", body = serde_json::Value), (status = 409, description = "Already finished", body = ErrorBody), (status = 404, description = "No such run", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    Ok(HttpResponse::Accepted().json(stop(&state, id.into_inner()).await?))
}

/// What [`cancel`] does once the caller is admitted.
pub async fn stop(state: &AppState, id: i64) -> Result<CancelOutcome, ApiError> {
    let outcome = state
        .db
        .run(move |tx| {
            let outcome = runs::request_cancel(tx, id)?;
            if let CancelOutcome::Cancelled = outcome {
                settle::cascade(tx, &[id])?;
            }
            Ok(outcome)
        })
        .await?;
    match &outcome {
        CancelOutcome::AlreadyFinished { status } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_finished",
                format!("run {id} already finished as {status}; there is nothing to cancel"),
            ))
        }
        // On this host it stops now; elsewhere its host sees the request within a second.
        CancelOutcome::Requested { .. } => _ = state.runner.cancel_local(id),
        CancelOutcome::Cancelled => {}
    }
    Ok(outcome)
}
