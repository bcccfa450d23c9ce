//! Reading history: tasks, runs (newest first, keyset-paginated), one run with
//! every process it executed.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::auth::{require, Role};
use super::{ApiError, AppState};
use crate::store::models::{RunEventRow, StepExecutionRow};
use crate::store::plugins as plugin_store;
use crate::store::runs::{self, RunFilter, RunListing};

/// Largest page of runs.
const MAX_PAGE: i64 = 500;
/// Page size when none is asked for.
const DEFAULT_PAGE: i64 = 50;

/// Active tasks of every plugin.
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
            state.db.clock().now(),
            5,
        ),
        None => Vec::new(),
    };
    let mut body = task_json(&plugin, t);
    body["definition"] = definition;
    body["next_fire_times"] = serde_json::json!(next);
    Ok(HttpResponse::Ok().json(body))
}

fn task_json(plugin: &str, t: crate::store::models::TaskRow) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "plugin": plugin,
        "name": t.name,
        "schedule": t.schedule_kind,
        "cron": t.cron_expression,
        "timezone": t.timezone,
        "enabled": t.enabled,
        "paused_reason": t.paused_reason,
        "priority": t.priority,
        "plugin_version_id": t.plugin_version_id,
        "updated_at": t.updated_at,
    })
}

/// Query of `GET /v1/runs`.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    limit: Option<i64>,
    before: Option<i64>,
    task_id: Option<i64>,
    status: Option<String>,
}

/// Runs, newest first. `next_before` is the cursor of the next page.
pub async fn runs(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<RunsQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let filter = RunFilter {
        before: q.before,
        limit,
        task_id: q.task_id,
        status: q.status,
    };
    let runs: Vec<RunListing> = state.db.run(move |tx| runs::list_runs(tx, &filter)).await?;
    let next_before = (runs.len() as i64 == limit)
        .then(|| runs.last().map(|r| r.run.id))
        .flatten();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "runs": runs, "next_before": next_before })))
}

/// One run with its steps and events.
pub async fn run(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    require(&req, &state.tokens, Role::Read)?;
    let id = id.into_inner();
    let (listing, steps, events) = state.db.run(move |tx| runs::get_run(tx, id)).await?;
    let steps: Vec<StepView> = steps.into_iter().map(StepView::from).collect();
    Ok(HttpResponse::Ok().json(RunView {
        run: listing,
        steps,
        events,
    }))
}

#[derive(Serialize)]
struct RunView {
    #[serde(flatten)]
    run: RunListing,
    steps: Vec<StepView>,
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
