//! Reading history: tasks, runs (newest first, keyset-paginated), one run with
//! every process it executed.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::auth::{require, Role};
use super::openapi::{ErrorBody, StatsBody, TaskStatsBody};
use super::{filters, ApiError, AppState};
use crate::store::history::{self, RunListing};
use crate::store::models::{RunEventRow, StepExecutionRow};
use crate::store::plugins as plugin_store;
use crate::store::stats;

/// Active tasks of every plugin.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", security(("read" = [])), responses((status = 200, description = "Active tasks", body = serde_json::Value), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn tasks(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let (rows, failures) = state
        .db
        .run(|tx| {
            let rows = plugin_store::list_tasks(tx)?;
            let ids: Vec<i64> = rows.iter().map(|(_, t)| t.id).collect();
            Ok((rows, crate::store::hooks::for_tasks(tx, &ids)?))
        })
        .await?;
    let tasks: Vec<_> = rows
        .into_iter()
        .map(|(plugin, t)| {
            let id = t.id;
            let mut json = task_json(&plugin, t);
            json["hook_failures"] =
                serde_json::json!(failures.iter().filter(|f| f.task_id == id).collect::<Vec<_>>());
            json
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "tasks": tasks })))
}

/// One task with its full definition.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", security(("read" = [])), params(("id" = i64, Path, description = "Task id")), responses((status = 200, description = "One task: definition, next fire times in UTC and in its zone", body = serde_json::Value), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn task(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let id = id.into_inner();
    let (plugin, t, definition) = state.db.run(move |tx| plugin_store::get_task(tx, id)).await?;
    let next = match &t.cron_expression {
        Some(expression) => crate::pulse::Pulser::next_fire_times(
            expression,
            t.timezone.as_deref(),
            &crate::pulse::cron::task_identity(&plugin, &t.name),
            state.db.clock().now(),
            5,
        ),
        None => Vec::new(),
    };
    let local: Vec<String> = next
        .iter()
        .map(|at| crate::pulse::cron::local_time(*at, t.timezone.as_deref()))
        .collect();
    let mut body = task_json(&plugin, t);
    body["definition"] = definition;
    body["next_fire_times"] = serde_json::json!(next);
    body["next_fire_times_local"] = serde_json::json!(local);
    Ok(HttpResponse::Ok().json(body))
}

fn task_json(plugin: &str, t: crate::store::models::TaskRow) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "plugin": plugin,
        "name": t.name,
        "schedule": t.schedule_kind,
        "cron": t.cron_expression,
        "schedule_words": t.cron_expression.as_deref().and_then(crate::pulse::cron::in_words),
        "dynamic_interval_secs": t.dynamic_interval_secs,
        "tags": t.tags,
        "timezone": t.timezone,
        "enabled": t.enabled,
        "paused_reason": t.paused_reason,
        "paused_until": t.paused_until,
        "priority": t.priority,
        "plugin_version_id": t.plugin_version_id,
        "updated_at": t.updated_at,
    })
}

/// Runs, newest first, filtered (see [`super::filters::run_filter`]).
/// `next_before` is the cursor of the next page.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", security(("read" = [])), params(
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 500 (default 50)"),
        ("before" = Option<i64>, Query, description = "Runs listed after this run id (the previous page's next_before)"),
        ("task_id" = Option<i64>, Query, description = "Only this task"),
        ("status" = Option<String>, Query, description = "Only these statuses: repeat it or separate with commas"),
        ("tag" = Option<String>, Query, description = "Only tasks with this tag"),
        ("since" = Option<String>, Query, description = "Created at or after: RFC 3339, or a duration before now (1h, 7d)"),
        ("until" = Option<String>, Query, description = "Created before: RFC 3339, or a duration before now"),
        ("hide_missed" = Option<bool>, Query, description = "Leave out missed and skipped runs")),
    responses((status = 200, description = "Runs newest first, with next_before", body = serde_json::Value), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn runs(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let filter = filters::run_filter(&q, state.db.clock().now())?;
    let limit = filter.limit;
    let runs: Vec<RunListing> = state.db.run(move |tx| history::list_runs(tx, &filter)).await?;
    let next_before = (runs.len() as i64 == limit)
        .then(|| runs.last().map(|r| r.run.id))
        .flatten();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "runs": runs, "next_before": next_before })))
}

/// Query of the statistics endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    window: Option<String>,
}

/// Statistics of one task over a window (default 24h).
#[utoipa::path(get, path = "/v1/tasks/{id}/stats", tag = "stats", security(("read" = [])), params(("id" = i64, Path, description = "Task id"), ("window" = Option<String>, Query, description = "1h to 366d, whole hours (default 24h)")), responses((status = 200, description = "Statistics of one task", body = TaskStatsBody), (status = 404, description = "No such task", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn task_stats(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let hours = filters::window_hours(q.window.as_deref())?;
    let (id, now) = (id.into_inner(), state.db.clock().now());
    let (plugin, stats) = state
        .db
        .run(move |tx| {
            let (plugin, task, _) = plugin_store::get_task(tx, id)?;
            Ok(((plugin, task.name), stats::read(tx, Some(id), hours, now)?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "task_id": id, "plugin": plugin.0, "task": plugin.1, "window_hours": hours, "stats": stats,
    })))
}

/// Statistics of every task together over a window (default 24h).
#[utoipa::path(get, path = "/v1/stats", tag = "stats", security(("read" = [])), params(("window" = Option<String>, Query, description = "1h to 366d, whole hours (default 24h)")), responses((status = 200, description = "Statistics of every task together", body = StatsBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn all_stats(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let hours = filters::window_hours(q.window.as_deref())?;
    let now = state.db.clock().now();
    let stats = state.db.run(move |tx| stats::read(tx, None, hours, now)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "window_hours": hours, "stats": stats })))
}

/// One run with its steps and events.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", security(("read" = [])), params(("id" = i64, Path, description = "Run id")), responses((status = 200, description = "The run with its processes, live output, attempts and events", body = serde_json::Value), (status = 404, description = "No such run", body = ErrorBody), (status = 400, description = "Malformed request", body = ErrorBody), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn run(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let id = id.into_inner();
    let detail = state.db.run(move |tx| history::get_run(tx, id)).await?;
    let steps: Vec<StepView> = detail.steps.into_iter().map(StepView::from).collect();
    let live = detail
        .live
        .into_iter()
        .map(|l| {
            let (stdout, stdout_encoding) = text(l.stdout);
            let (stderr, stderr_encoding) = text(l.stderr);
            serde_json::json!({
                "phase": l.phase, "index": l.step_index, "name": l.name,
                "stdout": stdout, "stdout_encoding": stdout_encoding, "stdout_bytes": l.stdout_bytes,
                "stderr": stderr, "stderr_encoding": stderr_encoding, "stderr_bytes": l.stderr_bytes,
                "started_at": l.started_at,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(RunView {
        run: detail.listing,
        steps,
        live,
        attempts: detail.attempts,
        events: detail.events,
    }))
}

#[derive(Serialize)]
struct RunView {
    #[serde(flatten)]
    run: RunListing,
    steps: Vec<StepView>,
    /// Output of processes still running, flushed every second.
    live: Vec<serde_json::Value>,
    /// Every attempt of this run's slot, oldest first.
    attempts: Vec<history::Attempt>,
    events: Vec<RunEventRow>,
}

/// A step as the API shows it: output as text when it is UTF-8, else base64.
#[derive(Serialize)]
struct StepView {
    id: i64,
    phase: String,
    index: i32,
    name: String,
    kind: String,
    status: String,
    exit_code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stdout_encoding: &'static str,
    stdout_bytes: i64,
    stdout_truncated: bool,
    stdout_json: Option<serde_json::Value>,
    stderr: String,
    stderr_encoding: &'static str,
    stderr_bytes: i64,
    stderr_truncated: bool,
    error: Option<String>,
    started_at: chrono::DateTime<chrono::Utc>,
    finished_at: chrono::DateTime<chrono::Utc>,
    duration_ms: f64,
    /// What protected it: `{applied: [...], missing: [{protection, reason}]}`.
    plan: Option<serde_json::Value>,
    /// What it used (null where this host could not measure it).
    usage: UsageView,
    /// How its stdin or stdout broke its JSON Schema: `[{at, message}]`.
    schema_errors: Option<serde_json::Value>,
}

/// A process's resource use.
#[derive(Serialize)]
struct UsageView {
    cpu_user_ms: Option<f64>,
    cpu_system_ms: Option<f64>,
    peak_memory_bytes: Option<i64>,
    peak_processes: Option<i32>,
}

impl From<StepExecutionRow> for StepView {
    fn from(s: StepExecutionRow) -> Self {
        let (stdout, stdout_encoding) = text(s.stdout);
        let (stderr, stderr_encoding) = text(s.stderr);
        StepView {
            id: s.id,
            phase: s.phase,
            index: s.step_index,
            name: s.name,
            kind: s.kind,
            status: s.status,
            exit_code: s.exit_code,
            signal: s.signal,
            stdout,
            stdout_encoding,
            stdout_bytes: s.stdout_bytes,
            stdout_truncated: s.stdout_truncated,
            stdout_json: s.stdout_json,
            stderr,
            stderr_encoding,
            stderr_bytes: s.stderr_bytes,
            stderr_truncated: s.stderr_truncated,
            error: s.error,
            started_at: s.started_at,
            finished_at: s.finished_at,
            duration_ms: s.duration_ms,
            plan: s.plan,
            usage: UsageView {
                cpu_user_ms: s.cpu_user_ms,
                cpu_system_ms: s.cpu_system_ms,
                peak_memory_bytes: s.peak_memory_bytes,
                peak_processes: s.peak_processes,
            },
            schema_errors: s.schema_errors,
        }
    }
}

/// Output is kept as bytes; shown as text when valid UTF-8, losslessly as base64 otherwise.
fn text(bytes: Vec<u8>) -> (String, &'static str) {
    match String::from_utf8(bytes) {
        Ok(s) => (s, "utf-8"),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            "base64",
        ),
    }
}
