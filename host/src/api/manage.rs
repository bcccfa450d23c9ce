//! Operator actions: run a task now, resume a paused task, cancel a run.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{require, Role};
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::plugin::Problem;
use crate::pulse::{self, Triggered, PREVIOUS_INSTANCE_RUNNING};
use crate::runner::settle;
use crate::schemas::{self, Schema};
use crate::spec::{RunOverrides, TaskSpec, DEFINITION_FORMAT};
use crate::store::runs::{self, CancelOutcome};

/// Queues a run of one task now, obeying its overlap policy: with `skip` and
/// a run still going, a skipped run is recorded and the answer is 409. An
/// optional body chooses the run's input: `{"stdin_json": <JSON>, "envs":
/// {"NAME": "value"}}` (stdin for its first step, variables for every
/// process), recorded with the run.
#[utoipa::path(post, path = "/v1/tasks/{id}/run", tag = "tasks", security(("admin" = [])), params(("id" = i64, Path, description = "Task id")), request_body(content = Option<serde_json::Value>, description = "Optional: {\"stdin_json\": <any JSON>, \"envs\": {\"NAME\": \"value\"}}", content_type = "application/json"), responses((status = 202, description = "Queued", body = serde_json::Value), (status = 409, description = "Overlap skip: a run is still going", body = ErrorBody), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request or overrides", body = ErrorBody), (status = 422, description = "stdin_json does not satisfy the first step's stdin-schema, or the task is a service", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn trigger(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let overrides = overrides(&body)?;
    let id = id.into_inner();
    refuse_service(&state, id).await?;
    if let Some(stdin) = &overrides.stdin_json {
        check_first_stdin(&state, id, stdin).await?;
    }
    let overrides = (!overrides.is_empty()).then_some(overrides);
    Ok(HttpResponse::Accepted().json(queue_now(&state, id, overrides).await?))
}

/// A service is never run on request: it runs by itself, on one host.
async fn refuse_service(state: &AppState, id: i64) -> Result<(), ApiError> {
    let (_, task, _) = state
        .db
        .run(move |tx| crate::store::plugins::get_task(tx, id))
        .await?;
    if task.schedule_kind != "service" {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "service",
        format!(
            "task {:?} is a service: it runs by itself on one host and is never run on request; \
             see its state in GET /v1/services, restart it by cancelling its current run, stop it by pausing it",
            task.name
        ),
    ))
}

/// The body of a run request: empty, or [`RunOverrides`] that make sense.
fn overrides(body: &[u8]) -> Result<RunOverrides, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RunOverrides::default());
    }
    let parsed: RunOverrides = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_overrides",
            format!(
                "the body must be {{\"stdin_json\": <any JSON>, \"envs\": {{\"NAME\": \"value\"}}}} (both optional): {e}"
            ),
        )
    })?;
    match parsed.problem() {
        None => Ok(parsed),
        Some((field, message)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_overrides",
            format!("{field} {message}"),
        )),
    }
}

/// Refuses, before anything is recorded, a chosen stdin that the task's
/// first step would refuse by its `stdin-schema` (422 naming each violation).
async fn check_first_stdin(state: &AppState, id: i64, stdin: &serde_json::Value) -> Result<(), ApiError> {
    let (_, _, definition) = state
        .db
        .run(move |tx| crate::store::plugins::get_task(tx, id))
        .await?;
    let Ok(task) = TaskSpec::decode(DEFINITION_FORMAT, definition) else {
        return Ok(());
    };
    let Some(first) = task.steps.first() else {
        return Ok(());
    };
    let Some(Ok(schema)) = first.exec.stdin_schema.as_deref().map(Schema::compile) else {
        return Ok(());
    };
    let violations = schema.violations(stdin);
    if violations.is_empty() {
        return Ok(());
    }
    let mut error = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "schema",
        format!(
            "step {:?}: {}: change stdin_json to satisfy it",
            first.name,
            schemas::summary("stdin_json", &violations)
        ),
    );
    error.problems = violations
        .into_iter()
        .map(|v| Problem {
            field: format!("stdin_json{}", v.at),
            message: v.message,
        })
        .collect();
    Err(error)
}

/// What [`trigger`] does once the caller is admitted (the dashboard's too).
pub async fn queue_now(
    state: &AppState,
    id: i64,
    overrides: Option<RunOverrides>,
) -> Result<serde_json::Value, ApiError> {
    match pulse::trigger(&state.db, id, overrides).await? {
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
