//! Runs: the durable queue (claimed with `FOR UPDATE SKIP LOCKED`, so replicas
//! never take the same run), leases, step results, and history queries.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use serde::Serialize;

use super::models::{NewStepExecution, RunEventRow, RunRow, StepExecutionRow};
use super::schema::{plugin_versions, plugins, run_events, runs, step_executions, tasks};
use super::{StoreError, StoreResult};
use crate::spec::{Manifest, TaskSpec};

/// A run this host took from the queue, with what it needs to execute it.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    /// The run, now `running`.
    pub run: RunRow,
    /// Plugin name.
    pub plugin: String,
    /// The task definition of the run's plugin version.
    pub task: TaskSpec,
}

/// Takes the next queued run that may start (its `not_before` has come and every
/// run it depends on succeeded), marks it running under a lease held by
/// `host_id`, and returns it; None when nothing is waiting.
pub fn claim_next(
    conn: &mut PgConnection,
    host_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> StoreResult<Option<ClaimedRun>> {
    let next: Option<RunRow> = runs::table
        .filter(runs::status.eq("queued"))
        .filter(runs::not_before.le(now))
        // The OR keeps PostgreSQL from turning the NOT EXISTS into an anti-join
        // over every unfinished run: it is a subplan, asked only of runs with
        // dependencies.
        .filter(sql::<Bool>(
            "(runs.depends_on_runs = '{}' OR NOT EXISTS (SELECT 1 FROM runs d \
             WHERE d.id = ANY(runs.depends_on_runs) AND d.status <> 'succeeded'))",
        ))
        .order((runs::priority.desc(), runs::not_before, runs::id))
        .select(RunRow::as_select())
        .for_update()
        .skip_locked()
        .first(conn)
        .optional()?;
    let Some(next) = next else { return Ok(None) };
    let lateness = (now - next.scheduled_for).num_milliseconds().max(0);
    let run: RunRow = diesel::update(runs::table.find(next.id))
        .set((
            runs::status.eq("running"),
            runs::started_at.eq(now),
            runs::lateness_ms.eq(lateness),
            runs::host_id.eq(host_id),
            runs::lease_expires_at.eq(lease_until),
        ))
        .returning(RunRow::as_returning())
        .get_result(conn)?;
    add_event(
        conn,
        run.id,
        "started",
        serde_json::json!({ "host": host_id, "lateness_ms": lateness, "attempt": run.attempt }),
    )?;
    let (plugin, task) = task_of(conn, &run)?;
    Ok(Some(ClaimedRun { run, plugin, task }))
}

/// The plugin name and the task definition a run executes, from the manifest of
/// the run's plugin version.
pub fn task_of(conn: &mut PgConnection, run: &RunRow) -> StoreResult<(String, TaskSpec)> {
    let (plugin, manifest): (String, serde_json::Value) = plugin_versions::table
        .inner_join(plugins::table)
        .filter(plugin_versions::id.eq(run.plugin_version_id))
        .select((plugins::name, plugin_versions::manifest))
        .first(conn)?;
    let task_name: String = tasks::table.find(run.task_id).select(tasks::name).first(conn)?;
    let manifest: Manifest = serde_json::from_value(manifest)
        .map_err(|e| StoreError::Encoding(format!("stored manifest of run {}: {e}", run.id)))?;
    let task = manifest.task(&task_name).cloned().ok_or_else(|| {
        StoreError::NotFound(format!(
            "task {task_name} in plugin version {}",
            run.plugin_version_id
        ))
    })?;
    Ok((plugin, task))
}

/// Extends the lease of a run this host is executing; false when the run is no
/// longer running under this host (its lease expired and another host
/// finished it as `host_lost`).
pub fn renew_lease(
    conn: &mut PgConnection,
    run_id: i64,
    host_id: &str,
    until: DateTime<Utc>,
) -> StoreResult<bool> {
    let renewed = diesel::update(runs::table.find(run_id))
        .filter(runs::host_id.eq(host_id))
        .filter(runs::status.eq("running"))
        .set(runs::lease_expires_at.eq(until))
        .execute(conn)?;
    Ok(renewed == 1)
}

/// Records the process group a running run is executing (None between processes).
pub fn set_process_group(conn: &mut PgConnection, run_id: i64, group: Option<i32>) -> StoreResult<()> {
    diesel::update(runs::table.find(run_id))
        .filter(runs::status.eq("running"))
        .set(runs::process_group.eq(group))
        .execute(conn)?;
    Ok(())
}

/// Records one finished process.
pub fn record_step(conn: &mut PgConnection, step: &NewStepExecution) -> StoreResult<i64> {
    Ok(diesel::insert_into(step_executions::table)
        .values(step)
        .returning(step_executions::id)
        .get_result(conn)?)
}

/// How a run ended (see [`super::finish::finish_run`]).
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// succeeded, failed, timed_out or cancelled.
    pub status: String,
    /// Which part failed.
    pub failure_type: Option<String>,
    /// Why.
    pub error: Option<String>,
    /// When.
    pub finished_at: DateTime<Utc>,
}

/// Appends to a run's lifecycle log.
pub fn add_event(
    conn: &mut PgConnection,
    run_id: i64,
    kind: &str,
    detail: serde_json::Value,
) -> StoreResult<()> {
    diesel::insert_into(run_events::table)
        .values((
            run_events::run_id.eq(run_id),
            run_events::kind.eq(kind),
            run_events::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs with an id below this (keyset pagination, newest first).
    pub before: Option<i64>,
    /// Page size.
    pub limit: i64,
    /// Only this task.
    pub task_id: Option<i64>,
    /// Only this status.
    pub status: Option<String>,
}

/// A run with the names it belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct RunListing {
    /// Plugin name.
    pub plugin: String,
    /// Task name.
    pub task: String,
    /// The run.
    #[serde(flatten)]
    pub run: RunRow,
}

/// Runs, newest first.
pub fn list_runs(conn: &mut PgConnection, filter: &RunFilter) -> StoreResult<Vec<RunListing>> {
    let mut query = runs::table
        .inner_join(tasks::table.inner_join(plugins::table))
        .select((plugins::name, tasks::name, RunRow::as_select()))
        .order(runs::id.desc())
        .limit(filter.limit)
        .into_boxed();
    if let Some(before) = filter.before {
        query = query.filter(runs::id.lt(before));
    }
    if let Some(task_id) = filter.task_id {
        query = query.filter(runs::task_id.eq(task_id));
    }
    if let Some(status) = &filter.status {
        query = query.filter(runs::status.eq(status.clone()));
    }
    let rows: Vec<(String, String, RunRow)> = query.load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(plugin, task, run)| RunListing { plugin, task, run })
        .collect())
}

/// One run with every process it executed and its lifecycle log.
pub fn get_run(
    conn: &mut PgConnection,
    id: i64,
) -> StoreResult<(RunListing, Vec<StepExecutionRow>, Vec<RunEventRow>)> {
    let (plugin, task, run): (String, String, RunRow) = runs::table
        .inner_join(tasks::table.inner_join(plugins::table))
        .filter(runs::id.eq(id))
        .select((plugins::name, tasks::name, RunRow::as_select()))
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
    let steps = step_executions::table
        .filter(step_executions::run_id.eq(id))
        .order(step_executions::id)
        .select(StepExecutionRow::as_select())
        .load(conn)?;
    let events = run_events::table
        .filter(run_events::run_id.eq(id))
        .order(run_events::id)
        .select(RunEventRow::as_select())
        .load(conn)?;
    Ok((RunListing { plugin, task, run }, steps, events))
}

/// What a cancel request did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The run had not started: it is now cancelled.
    Cancelled,
    /// The run is executing: its host was asked to stop it.
    Requested {
        /// The host executing it.
        host_id: Option<String>,
    },
    /// Nothing to cancel.
    AlreadyFinished {
        /// Its final status.
        status: String,
    },
}

/// Cancels a queued run at once, or flags a running one for its host.
pub fn request_cancel(
    conn: &mut PgConnection,
    run_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<CancelOutcome> {
    let run: RunRow = runs::table
        .find(run_id)
        .select(RunRow::as_select())
        .for_update()
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("run {run_id}")))?;
    match run.status.as_str() {
        "queued" => {
            diesel::update(runs::table.find(run_id))
                .set((
                    runs::status.eq("cancelled"),
                    runs::cancel_requested_at.eq(now),
                    runs::finished_at.eq(now),
                    runs::error.eq("cancelled before it started"),
                ))
                .execute(conn)?;
            add_event(
                conn,
                run_id,
                "cancelled",
                serde_json::json!({ "while": "queued" }),
            )?;
            super::finish::skip_dependents(conn, run_id, now)?;
            Ok(CancelOutcome::Cancelled)
        }
        "running" => {
            diesel::update(runs::table.find(run_id))
                .set(runs::cancel_requested_at.eq(now))
                .execute(conn)?;
            add_event(
                conn,
                run_id,
                "cancel_requested",
                serde_json::json!({ "host": run.host_id }),
            )?;
            Ok(CancelOutcome::Requested { host_id: run.host_id })
        }
        _ => Ok(CancelOutcome::AlreadyFinished { status: run.status }),
    }
}

/// Whether someone asked to cancel a run.
pub fn cancel_requested(conn: &mut PgConnection, run_id: i64) -> StoreResult<bool> {
    Ok(runs::table
        .find(run_id)
        .select(runs::cancel_requested_at.is_not_null())
        .first(conn)
        .optional()?
        .unwrap_or(false))
}
