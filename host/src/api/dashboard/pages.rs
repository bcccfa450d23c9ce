//! Overview, tasks, pulses and plugins pages.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

use super::runs::took;
use super::{flashes, frame, html, signed_in, with};
use crate::api::AppState;
use crate::store::history::{self, RunFilter};
use crate::store::{health, plugins as plugin_store, pulses, stats, versions, StoreResult, Tx};

/// Runs shown in a task's history strip.
const STRIP: i64 = 20;
/// Tasks per page of the tasks page (its cost grows with them, not with all tasks').
const TASKS_PER_PAGE: usize = 50;

/// Renders `template` from what `read` gathers in one transaction, or says
/// the database is unavailable.
async fn show<F>(
    req: HttpRequest,
    state: web::Data<AppState>,
    template: &'static str,
    title: &'static str,
    read: F,
) -> HttpResponse
where
    F: FnOnce(&mut Tx<'_>) -> StoreResult<Value> + Send + 'static,
{
    let session = match signed_in(&req, &state) {
        Ok(s) => s,
        Err(refused) => return refused.answer(),
    };
    let page = frame(&state, &session, title, template.trim_end_matches(".html"));
    let query = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default();
    let messages = flashes(&state, &query);
    match state.db.run(read).await {
        Ok(body) => html(StatusCode::OK, template, with(with(page, body), messages)),
        Err(err) => {
            let shown = crate::api::ApiError::from(err).message;
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                template,
                with(page, json!({ "error": shown })),
            )
        }
    }
}

/// Overview: the last pulse against the expected interval, pulse lateness
/// over 24 h, runs running, queue depth, failures in 24 h, paused tasks.
pub async fn overview(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let expected = state.expected_pulse_interval.as_secs_f64();
    let now = state.db.clock().now();
    show(req, state, "overview.html", "Overview", move |tx| {
        let probe = health::probe(tx)?;
        let cluster = stats::cluster(tx)?;
        let day = stats::read(tx, None, 24, now)?;
        let running = history::list_runs(
            tx,
            &RunFilter {
                limit: 20,
                statuses: vec!["running".into()],
                ..Default::default()
            },
        )?;
        let failed = history::list_runs(
            tx,
            &RunFilter {
                limit: 10,
                statuses: vec!["failed".into(), "timed_out".into()],
                since: Some(now - Duration::hours(24)),
                ..Default::default()
            },
        )?;
        let paused: Vec<Value> = plugin_store::list_tasks(tx)?
            .into_iter()
            .filter(|(_, t)| t.paused_reason.is_some())
            .map(|(p, t)| json!({ "id": t.id, "plugin": p, "name": t.name, "reason": t.paused_reason }))
            .collect();
        let series = history::pulse_lateness(tx, now - Duration::hours(24))?;
        let age = probe.last_pulse_age_seconds;
        Ok(json!({
            "pulse": {
                "last_at": probe.last_pulse_at.map(|t| t.to_rfc3339()),
                "age": age.map(|a| took(Some(a * 1000.0))),
                "expected": took(Some(expected * 1000.0)),
                "late": age.is_some_and(|a| a > expected),
            },
            "chart": chart(&series, now),
            "queued": cluster.queued,
            "running": running.iter().map(run_row).collect::<Vec<_>>(),
            "failures": day.counts["failed"] + day.counts["timed_out"],
            "failed": failed.iter().map(run_row).collect::<Vec<_>>(),
            "paused": paused,
        }))
    })
    .await
}

fn run_row(r: &history::RunListing) -> Value {
    json!({ "id": r.run.id, "plugin": r.plugin, "task": r.task, "status": r.run.status,
            "started_at": r.run.started_at.map(|t| t.to_rfc3339()), "took": took(r.duration_ms), "error": r.run.error })
}

/// An SVG polyline of pulse lateness over the last 24 h (x: time, y: ms).
fn chart(series: &[(chrono::DateTime<Utc>, Option<i64>)], now: chrono::DateTime<Utc>) -> Value {
    let (width, height) = (600.0, 80.0);
    let top = series.iter().filter_map(|(_, l)| *l).max().unwrap_or(0).max(1) as f64;
    let points: Vec<String> = series
        .iter()
        .map(|(at, late)| {
            let x = width * (1.0 - (now - *at).num_seconds() as f64 / 86_400.0);
            let y = height - height * late.unwrap_or(0) as f64 / top;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    json!({ "points": points.join(" "), "max": took(Some(top)), "pulses": series.len(), "width": width, "height": height })
}

/// Tasks: schedule in words and as written, zone, next fires (local and UTC),
/// 24 h success rate and p50/p95, a strip of the last runs, paused reason.
pub async fn tasks(req: HttpRequest, state: web::Data<AppState>, q: web::Query<TasksPage>) -> HttpResponse {
    let now = state.db.clock().now();
    let page = q.page.unwrap_or(0);
    show(req, state, "tasks.html", "Tasks", move |tx| {
        let all = plugin_store::list_tasks(tx)?;
        let pages = all.len().div_ceil(TASKS_PER_PAGE).max(1);
        let tasks: Vec<_> = all.into_iter().skip(page.saturating_mul(TASKS_PER_PAGE)).take(TASKS_PER_PAGE).collect();
        let ids: Vec<i64> = tasks.iter().map(|(_, t)| t.id).collect();
        let day = stats::read_many(tx, &ids, 24, now)?;
        let strips = history::recent_statuses(tx, &ids, STRIP)?;
        let rows: Vec<Value> = tasks
            .iter()
            .map(|(plugin, t)| {
                let next = t.cron_expression.as_deref().map(|e| crate::pulse::Pulser::next_fire_times(e, t.timezone.as_deref(), &crate::pulse::cron::task_identity(plugin, &t.name), now, 1)).unwrap_or_default();
                let st = day.get(&t.id);
                let strip: Vec<Value> = strips.iter().filter(|s| s.0 == t.id).rev().map(|s| json!({ "id": s.1, "status": s.2 })).collect();
                json!({
                    "id": t.id, "plugin": plugin, "name": t.name, "kind": t.schedule_kind, "cron": t.cron_expression,
                    "words": t.cron_expression.as_deref().and_then(crate::pulse::cron::in_words),
                    "zone": t.timezone.clone().unwrap_or_else(|| "UTC".into()),
                    "next_local": next.first().map(|at| crate::pulse::cron::local_time(*at, t.timezone.as_deref())),
                    "next_utc": next.first().map(|at| at.to_rfc3339()),
                    "last_status": strip.last().map(|s| s["status"].clone()),
                    "rate": st.and_then(|s| s.success_rate).map(|r| format!("{:.0}%", r * 100.0)),
                    "p50": took(st.and_then(|s| s.duration.p50_ms)), "p95": took(st.and_then(|s| s.duration.p95_ms)),
                    "strip": strip, "paused": t.paused_reason, "enabled": t.enabled,
                })
            })
            .collect();
        let link = |n: usize| format!("/ui/tasks?page={n}");
        Ok(json!({
            "tasks": rows, "page": page.saturating_add(1), "pages": pages,
            "previous": (page > 0).then(|| link(page - 1)),
            "next": (page.saturating_add(1) < pages).then(|| link(page + 1)),
        }))
    })
    .await
}

/// Query of the tasks page.
#[derive(serde::Deserialize)]
pub struct TasksPage {
    /// Page number, from 0.
    page: Option<usize>,
}

/// Pulses with the gap since the one before.
pub async fn pulses(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    show(req, state, "pulses.html", "Pulses", |tx| {
        let rows = pulses::list_pulses(tx, 100, None)?;
        let listed: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let gap = rows[i + 1..].iter().find(|e| e.kind == p.kind).map(|e| (p.received_at - e.received_at).num_milliseconds() as f64);
                json!({ "id": p.id, "kind": p.kind, "at": p.received_at.to_rfc3339(), "gap": took(gap), "due": p.due, "claimed": p.claimed,
                        "missed": p.missed, "late": took(p.max_lateness_ms.map(|v| v as f64)), "took": took(p.duration_ms),
                        "errors": p.errors.as_array().map_or(0, Vec::len) })
            })
            .collect();
        Ok(json!({ "pulses": listed }))
    })
    .await
}

/// Services: state, where and since when, restarts, last exit, and the tail
/// of each one's rolling log.
pub async fn services(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    show(req, state, "services.html", "Services", |tx| {
        let mut rows = Vec::new();
        for s in crate::store::services::list(tx)? {
            let log = crate::store::services::log(tx, s.id)?
                .map(|l| String::from_utf8_lossy(tail(&l.stdout, 2048)).into_owned())
                .unwrap_or_default();
            let mut row = serde_json::to_value(&s).unwrap_or_default();
            row["log"] = json!(log);
            rows.push(row);
        }
        Ok(json!({ "services": rows }))
    })
    .await
}

/// The last `n` bytes of `bytes`.
fn tail(bytes: &[u8], n: usize) -> &[u8] {
    &bytes[bytes.len().saturating_sub(n)..]
}

/// Plugins with every version and a rollback button on each inactive one.
pub async fn plugins(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    show(req, state, "plugins.html", "Plugins", |tx| {
        let listed = plugin_store::list_plugins(tx)?;
        let mut rows = Vec::new();
        for p in serde_json::to_value(&listed)
            .unwrap_or_default()
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            let versions = serde_json::to_value(versions::list(tx, &name)?).unwrap_or_default();
            rows.push(json!({ "name": name, "description": p["description"], "versions": versions }));
        }
        Ok(json!({ "plugins": rows }))
    })
    .await
}
