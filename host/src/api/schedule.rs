//! A task's schedule as operators steer it: preview its occurrences, backfill
//! a past range, pause it (until a time, or until unpaused) and unpause it.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::auth::{require, Role};
use super::filters;
use super::openapi::ErrorBody;
use super::{ApiError, AppState};
use crate::pulse::backfill::{self, BackfillError};
use crate::pulse::cron::CronSchedule;
use crate::pulse::preview::{self, PREVIEW_MAX};
use crate::store::plugins as plugin_store;

/// How far a preview may reach.
const PREVIEW_SPAN_DAYS: i64 = 366;
/// How long a pause reason may be.
const REASON_MAX: usize = 500;

/// The occurrences of a cron task between `from` (default now) and `to`
/// (default seven days later), at most 1000, with its zone's clock changes.
#[utoipa::path(get, path = "/v1/tasks/{id}/schedule", tag = "tasks", security(("read" = [])), params(("id" = i64, Path, description = "Task id"), ("from" = Option<String>, Query, description = "RFC 3339 instant or a duration before now; default now"), ("to" = Option<String>, Query, description = "RFC 3339 instant; default seven days after from")), responses((status = 200, description = "Occurrences (UTC and local, clock changes marked) and the clock changes", body = serde_json::Value), (status = 422, description = "Not a cron task", body = ErrorBody), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn preview(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let now = state.db.clock().now();
    let value = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let from = value("from").map_or(Ok(now), |v| filters::instant("from", &v, now))?;
    let to = match value("to") {
        Some(v) => filters::instant("to", &v, now)?,
        None => from + Duration::days(7),
    };
    if let Some((key, _)) = q.iter().find(|(k, _)| k != "from" && k != "to") {
        return Err(ApiError::bad_request(format!(
            "unknown parameter {key}: use from and to"
        )));
    }
    check_range(from, to)?;
    if to - from > Duration::days(PREVIEW_SPAN_DAYS) {
        return Err(ApiError::bad_request(format!(
            "from and to are more than {PREVIEW_SPAN_DAYS} days apart: preview a year at a time"
        )));
    }
    let id = id.into_inner();
    let (plugin, task, _) = state.db.run(move |tx| plugin_store::get_task(tx, id)).await?;
    let Some(expression) = task
        .cron_expression
        .as_deref()
        .filter(|_| task.schedule_kind == "cron")
    else {
        return Err(unprocessable(format!(
            "task {} has a {} schedule: only a cron schedule can be previewed",
            task.name, task.schedule_kind
        )));
    };
    let identity = crate::pulse::cron::task_identity(&plugin, &task.name);
    let timezone = task.timezone.as_deref();
    let schedule =
        CronSchedule::for_task(expression, timezone, &identity).map_err(|e| unprocessable(e.to_string()))?;
    let preview = preview::preview(&schedule, timezone, from, to, PREVIEW_MAX);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "task_id": task.id,
        "task": task.name,
        "cron": expression,
        "timezone": timezone.unwrap_or("UTC"),
        "from": from,
        "to": to,
        "occurrences": preview.occurrences,
        "clock_changes": preview.clock_changes,
        "truncated": preview.truncated,
    })))
}

/// What a backfill asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillRequest {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    #[serde(default)]
    dry_run: bool,
}

/// Creates the slots of a past range of a cron task once (slots that exist
/// are left as they are) and runs them under the task's overlap policy; a
/// dry run only lists them.
#[utoipa::path(post, path = "/v1/tasks/{id}/backfill", tag = "tasks", security(("admin" = [])), params(("id" = i64, Path, description = "Task id")), request_body(content = serde_json::Value, description = "{\"from\": RFC 3339, \"to\": RFC 3339 (not later than now), \"dry_run\": false}", content_type = "application/json"), responses((status = 200, description = "Every occurrence in the range: created, exists or would_create", body = serde_json::Value), (status = 422, description = "Not a cron task, a range reaching into the future, or more than 1000 occurrences", body = ErrorBody), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn backfill(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let request: BackfillRequest = json_body(
        &body,
        "invalid_backfill",
        r#"{"from": RFC 3339, "to": RFC 3339, "dry_run": bool}"#,
    )?;
    check_range(request.from, request.to)?;
    let done = backfill::backfill(
        &state.db,
        id.into_inner(),
        request.from,
        request.to,
        request.dry_run,
    )
    .await;
    match done {
        Ok(report) => {
            if !report.dry_run && report.slots.iter().any(|s| s.status.as_deref() == Some("queued")) {
                state.runner.wake();
            }
            Ok(HttpResponse::Ok().json(report))
        }
        Err(BackfillError::Refused(message)) => Err(unprocessable(message)),
        Err(BackfillError::Store(e)) => Err(e.into()),
    }
}

/// What a pause asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseRequest {
    reason: String,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

/// Pauses a task: no occurrence is due while it is paused, and none of the
/// paused span is caught up afterwards. With `until`, the pause ends then by
/// itself; otherwise at `unpause`.
#[utoipa::path(post, path = "/v1/tasks/{id}/pause", tag = "tasks", security(("admin" = [])), params(("id" = i64, Path, description = "Task id")), request_body(content = serde_json::Value, description = "{\"reason\": \"why\", \"until\": RFC 3339 (optional)}", content_type = "application/json"), responses((status = 200, description = "Paused", body = serde_json::Value), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn pause(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    let request: PauseRequest = json_body(
        &body,
        "invalid_pause",
        r#"{"reason": "why", "until": RFC 3339 (optional)}"#,
    )?;
    let reason = request.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > REASON_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pause",
            format!("reason must say why the task is paused, in 1 to {REASON_MAX} characters"),
        ));
    }
    let now = state.db.clock().now();
    if let Some(until) = request.until.filter(|until| *until <= now) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pause",
            format!(
                "until ({until}) has passed: give a later instant, or leave it out to pause until unpaused"
            ),
        ));
    }
    let (id, until) = (id.into_inner(), request.until);
    let task = state
        .db
        .run(move |tx| crate::store::pauses::pause(tx, id, &reason, until))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": task.id,
        "name": task.name,
        "paused_reason": task.paused_reason,
        "paused_until": task.paused_until,
    })))
}

/// Unpauses a task (paused by an operator or by hook failures): its schedule
/// takes effect from now, the paused span is not caught up.
#[utoipa::path(post, path = "/v1/tasks/{id}/unpause", tag = "tasks", security(("admin" = [])), params(("id" = i64, Path, description = "Task id")), responses((status = 200, description = "Unpaused", body = serde_json::Value), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn unpause(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Admin)?;
    Ok(HttpResponse::Ok().json(super::manage::unpause(&state, id.into_inner()).await?))
}

/// `body` read as `T`; a 400 with `code` saying what it must look like otherwise.
fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    code: &'static str,
    shape: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("the body must be {shape}: {e}"),
        )
    })
}

fn check_range(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), ApiError> {
    if from >= to {
        return Err(ApiError::bad_request(format!(
            "from ({from}) must be earlier than to ({to})"
        )));
    }
    Ok(())
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
}
