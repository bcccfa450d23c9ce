//! The runs page (filters, keyset pages) and one run's page (attempts,
//! processes with their output, live output while it runs, events).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{flashes, frame, html, signed_in, with};
use crate::api::{filters, AppState};
use crate::store::history::{self, STATUSES};
use crate::store::models::StepExecutionRow;
use crate::store::plugins as plugin_store;
use crate::store::runs::LiveOutputRow;

/// Milliseconds for people (`850 ms`, `12.3 s`).
pub fn took(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1_000.0 => format!("{ms:.0} ms"),
        Some(ms) if ms < 60_000.0 => format!("{:.1} s", ms / 1_000.0),
        Some(ms) => format!("{:.1} min", ms / 60_000.0),
    }
}

/// Runs, filtered like `GET /v1/runs` (same parameters), newest first.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let session = match signed_in(&req, &state) {
        Ok(s) => s,
        Err(refused) => return refused.answer(),
    };
    let page = frame(&state, &session, "Runs", "runs");
    let pairs = filter_pairs(&q);
    let filter = match filters::run_filter(&pairs, state.db.clock().now()) {
        Ok(f) => f,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                "runs.html",
                with(page, json!({ "error": e.message, "statuses": checkboxes(&[]) })),
            )
        }
    };
    let limit = filter.limit;
    let listed = state
        .db
        .run(move |tx| {
            Ok((
                history::list_runs(tx, &filter)?,
                plugin_store::list_tasks(tx)?,
                filter,
            ))
        })
        .await;
    let (runs, tasks, filter) = match listed {
        Ok(found) => found,
        Err(e) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                "runs.html",
                with(page, json!({ "error": crate::api::ApiError::from(e).message })),
            )
        }
    };
    let next = (runs.len() as i64 == limit)
        .then(|| runs.last().map(|r| r.run.id))
        .flatten()
        .map(|last| next_page(pairs, last));
    let rows: Vec<Value> = runs.iter().map(run_row).collect();
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|(p, t)| json!({ "id": t.id, "plugin": p, "name": t.name }))
        .collect();
    let body = json!({
        "runs": rows, "tasks": tasks, "filter": form_values(&q, filter.task_id, filter.tag.as_deref()),
        "statuses": checkboxes(&picked(&q)), "next": next,
    });
    html(
        StatusCode::OK,
        "runs.html",
        with(with(page, flashes(&state, &q)), body),
    )
}

/// The query's filter parameters: an empty form field means "any", and the
/// page's messages are not filters.
fn filter_pairs(q: &[(String, String)]) -> Vec<(String, String)> {
    q.iter()
        .filter(|(k, v)| !v.is_empty() && !matches!(k.as_str(), "notice" | "error" | "seal"))
        .cloned()
        .collect()
}

/// The link to the page after run `last`, with the same filters.
fn next_page(pairs: Vec<(String, String)>, last: i64) -> String {
    let mut kept: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "before").collect();
    kept.push(("before".into(), last.to_string()));
    format!(
        "/ui/runs?{}",
        serde_urlencoded::to_string(&kept).unwrap_or_default()
    )
}

/// One row of the runs table.
fn run_row(r: &history::RunListing) -> Value {
    json!({
        "id": r.run.id, "plugin": r.plugin, "task": r.task, "status": r.run.status,
        "attempt": r.run.attempt, "scheduled_for": r.run.scheduled_for.to_rfc3339(),
        "took": took(r.duration_ms), "late": took(r.run.lateness_ms.map(|v| v as f64)), "error": r.run.error,
    })
}

/// What the filter form shows filled in.
fn form_values(q: &[(String, String)], task_id: Option<i64>, tag: Option<&str>) -> Value {
    let value = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    json!({
        "task_id": task_id, "tag": tag, "since": value("since"), "until": value("until"),
        "hide_missed": q.iter().any(|(k, v)| k == "hide_missed" && v == "true"),
    })
}

/// The statuses asked for, repeated or comma-separated.
fn picked(q: &[(String, String)]) -> Vec<&str> {
    q.iter()
        .filter(|(k, _)| k == "status")
        .flat_map(|(_, v)| v.split(','))
        .collect()
}

fn checkboxes(picked: &[&str]) -> Vec<Value> {
    STATUSES
        .iter()
        .map(|s| json!({ "name": s, "checked": picked.contains(s) }))
        .collect()
}

/// One run: attempts, every process with its output, events. While the run
/// is queued or running the page reloads itself every two seconds.
pub async fn detail(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let session = match signed_in(&req, &state) {
        Ok(s) => s,
        Err(refused) => return refused.answer(),
    };
    let id = id.into_inner();
    let page = frame(&state, &session, &format!("Run {id}"), "runs");
    let detail = match state.db.run(move |tx| history::get_run(tx, id)).await {
        Ok(found) => found,
        Err(e) => {
            let status = if matches!(e, crate::store::StoreError::NotFound(_)) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return html(
                status,
                "run.html",
                with(
                    page,
                    json!({ "error": crate::api::ApiError::from(e).message, "run": { "id": id } }),
                ),
            );
        }
    };
    let body = run_body(detail);
    html(
        StatusCode::OK,
        "run.html",
        with(with(page, flashes(&state, &q)), body),
    )
}

/// What the run page shows of one run.
fn run_body(detail: history::RunDetail) -> Value {
    let listing = detail.listing;
    let running = matches!(listing.run.status.as_str(), "queued" | "running");
    let mut processes: Vec<Value> = detail.steps.into_iter().map(finished_process).collect();
    processes.extend(detail.live.into_iter().map(live_process));
    let events: Vec<Value> = detail
        .events
        .iter()
        .map(|e| json!({ "at": e.at.to_rfc3339(), "kind": e.kind, "detail": e.detail.to_string() }))
        .collect();
    let attempts = detail.attempts;
    let mut run = serde_json::to_value(&listing.run).unwrap_or_default();
    run["plugin"] = json!(listing.plugin);
    run["task"] = json!(listing.task);
    json!({
        "run": run,
        "took": took(listing.duration_ms), "late": took(listing.run.lateness_ms.map(|v| v as f64)),
        "processes": processes, "attempts": attempts, "events": events,
        "chosen": listing.run.overrides.as_ref().map(Value::to_string),
        "refresh": running.then_some(2),
    })
}

fn stream(name: &str, bytes: Vec<u8>, total: i64, truncated: bool) -> Value {
    let (text, binary) = match String::from_utf8(bytes) {
        Ok(text) => (text, false),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
    };
    json!({ "name": name, "text": text, "bytes": total, "truncated": truncated, "binary": binary })
}

fn finished_process(s: StepExecutionRow) -> Value {
    json!({
        "phase": s.phase, "index": s.step_index, "name": s.name, "status": s.status, "exit_code": s.exit_code,
        "signal": s.signal, "took": took(Some(s.duration_ms)), "error": s.error, "live": false,
        "streams": [stream("stdout", s.stdout, s.stdout_bytes, s.stdout_truncated), stream("stderr", s.stderr, s.stderr_bytes, s.stderr_truncated)],
    })
}

fn live_process(l: LiveOutputRow) -> Value {
    let truncated = |kept: usize, total: i64| (kept as i64) < total;
    let (out_t, err_t) = (
        truncated(l.stdout.len(), l.stdout_bytes),
        truncated(l.stderr.len(), l.stderr_bytes),
    );
    json!({
        "phase": l.phase, "index": l.step_index, "name": l.name, "live": true,
        "streams": [stream("stdout", l.stdout, l.stdout_bytes, out_t), stream("stderr", l.stderr, l.stderr_bytes, err_t)],
    })
}
