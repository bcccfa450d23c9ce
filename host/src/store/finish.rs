//! How runs end: finishing many at once (only runs still running on the host
//! the caller names, so a host that lost a run never overwrites its verdict),
//! queueing the next attempts the caller decided on, and finding the runs of
//! hosts that were declared lost. Whether to retry, and after how long, is the
//! runner's decision; this module records it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int4, Int8, Jsonb, Nullable, Text, Timestamptz};
use serde::Serialize;

use super::models::RunRow;
use super::runs::add_each_event;
use super::{StoreResult, Tx};

/// How a run ended, to be recorded.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// The run.
    pub run_id: i64,
    /// The host expected to hold it; nothing is written otherwise.
    pub host_id: String,
    /// succeeded, failed, timed_out or cancelled.
    pub status: String,
    /// Which part failed.
    pub failure_type: Option<String>,
    /// Why.
    pub error: Option<String>,
    /// When, by the database's clock.
    pub finished_at: DateTime<Utc>,
}

/// A run that [`finish_runs`] finished.
#[derive(Debug, Clone, QueryableByName)]
pub struct FinishedRun {
    /// The run.
    #[diesel(sql_type = Int8)]
    pub id: i64,
    /// Its task.
    #[diesel(sql_type = Int8)]
    pub task_id: i64,
    /// Its final status.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// Its attempt number.
    #[diesel(sql_type = Int4)]
    pub attempt: i32,
    /// Milliseconds from its start to its finish.
    #[diesel(sql_type = Nullable<diesel::sql_types::Float8>)]
    pub duration_ms: Option<f64>,
}

/// Finishes every run of `ends` that is still running on its expected host and
/// logs a `finished` event for each; returns those. A run missing from the
/// result had already been finished elsewhere (its host was declared lost).
pub fn finish_runs(tx: &mut Tx<'_>, ends: &[RunEnd]) -> StoreResult<Vec<FinishedRun>> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let finished: Vec<FinishedRun> = diesel::sql_query(
        "UPDATE runs r SET status = e.status, failure_type = e.failure_type, error = e.error, \
             finished_at = e.finished_at, process_groups = '{}' \
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) \
             AS e (id, host, status, failure_type, error, finished_at) \
         WHERE r.id = e.id AND r.status = 'running' AND r.host_id = e.host \
         RETURNING r.id, r.task_id, r.status, r.attempt, \
             extract(epoch FROM r.finished_at - r.started_at)::float8 * 1000 AS duration_ms",
    )
    .bind::<Array<Int8>, _>(ends.iter().map(|e| e.run_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(ends.iter().map(|e| e.host_id.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(ends.iter().map(|e| e.status.as_str()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(ends.iter().map(|e| e.failure_type.as_deref()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(
        ends.iter()
            .map(|e| e.error.as_deref().map(super::runs::storable_text))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Timestamptz>, _>(ends.iter().map(|e| e.finished_at).collect::<Vec<_>>())
    .load(tx.c())?;
    let events: Vec<(i64, &str, serde_json::Value)> = finished
        .iter()
        .map(|f| {
            let end = ends.iter().find(|e| e.run_id == f.id);
            let detail = serde_json::json!({
                "status": f.status,
                "failure_type": end.and_then(|e| e.failure_type.clone()),
                "attempt": f.attempt,
            });
            (f.id, "finished", detail)
        })
        .collect();
    add_each_event(tx, &events)?;
    Ok(finished)
}

/// The next attempt of a failed run, as decided by the runner.
#[derive(Debug, Clone)]
pub struct RetryRequest {
    /// The failed run.
    pub failed: i64,
    /// How long after now (the database's) the attempt may start.
    pub delay_ms: i64,
    /// Why the failed run failed, for the new run's log.
    pub reason: Option<String>,
}

/// A queued next attempt of a failed run.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct ScheduledRetry {
    /// The failed run.
    #[diesel(sql_type = Int8)]
    pub retry_of: i64,
    /// The new run.
    #[diesel(sql_type = Int8)]
    pub run_id: i64,
    /// Its attempt number.
    #[diesel(sql_type = Int4)]
    pub attempt: i32,
    /// When it may start, by the database's clock.
    #[diesel(sql_type = Timestamptz)]
    pub not_before: DateTime<Utc>,
}

/// Queues attempt `n + 1` of each failed run's slot, `delay_ms` after the
/// database's now, and points the queued runs that waited for a failed run at
/// its next attempt. An attempt that already exists is not queued twice.
pub fn queue_retries(tx: &mut Tx<'_>, retries: &[RetryRequest]) -> StoreResult<Vec<ScheduledRetry>> {
    if retries.is_empty() {
        return Ok(Vec::new());
    }
    let queued: Vec<ScheduledRetry> = diesel::sql_query(
        "INSERT INTO runs (slot_id, task_id, plugin_version_id, definition_id, attempt, status, priority, \
             scheduled_for, not_before, retry_of, overrides) \
         SELECT f.slot_id, f.task_id, f.plugin_version_id, f.definition_id, f.attempt + 1, 'queued', \
             f.priority, f.scheduled_for, now() + i.delay * interval '1 millisecond', f.id, f.overrides \
         FROM unnest($1::int8[], $2::int8[]) AS i (id, delay) JOIN runs f ON f.id = i.id \
         ON CONFLICT DO NOTHING \
         RETURNING retry_of, id AS run_id, attempt, not_before",
    )
    .bind::<Array<Int8>, _>(retries.iter().map(|r| r.failed).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(retries.iter().map(|r| r.delay_ms).collect::<Vec<_>>())
    .load(tx.c())?;
    if queued.is_empty() {
        return Ok(queued);
    }
    let (old, new): (Vec<i64>, Vec<i64>) = queued.iter().map(|q| (q.retry_of, q.run_id)).unzip();
    diesel::sql_query(
        "UPDATE runs r SET depends_on_runs = ARRAY( \
             SELECT COALESCE(m.new, d.id) FROM unnest(r.depends_on_runs) WITH ORDINALITY AS d (id, n) \
             LEFT JOIN unnest($1::int8[], $2::int8[]) AS m (old, new) ON m.old = d.id ORDER BY d.n) \
         WHERE r.status = 'queued' AND r.depends_on_runs <> '{}' AND r.depends_on_runs && $1::int8[]",
    )
    .bind::<Array<Int8>, _>(&old)
    .bind::<Array<Int8>, _>(&new)
    .execute(tx.c())?;
    let mut events = Vec::with_capacity(queued.len() * 2);
    for q in &queued {
        let reason = retries
            .iter()
            .find(|r| r.failed == q.retry_of)
            .and_then(|r| r.reason.clone());
        let delay = retries
            .iter()
            .find(|r| r.failed == q.retry_of)
            .map(|r| r.delay_ms);
        events.push((
            q.retry_of,
            "retry_scheduled",
            serde_json::json!({ "next_run_id": q.run_id, "attempt": q.attempt, "not_before": q.not_before, "delay_ms": delay }),
        ));
        events.push((
            q.run_id,
            "queued",
            serde_json::json!({ "retry_of": q.retry_of, "attempt": q.attempt, "reason": reason, "not_before": q.not_before }),
        ));
    }
    add_each_event(tx, &events)?;
    Ok(queued)
}

/// A running run whose host was declared lost, stopped, or never registered.
#[derive(Debug, Clone)]
pub struct LostRun {
    /// The run, still `running`.
    pub run: RunRow,
    /// The machine its host ran on, when known.
    pub machine: Option<String>,
    /// The stored definition's format and JSON, for its retry policy.
    pub definition: Option<(i32, serde_json::Value)>,
}

/// Locks and returns the runs of `ids` that are still running, with their
/// stored definitions.
pub fn running_with_definitions(tx: &mut Tx<'_>, ids: &[i64]) -> StoreResult<Vec<LostRun>> {
    stranded(tx, "WHERE r.status = 'running' AND r.id = ANY($1::int8[])", |q| {
        q.bind::<Array<Int8>, _>(ids.to_vec())
    })
}

/// Locks and returns every running run whose host is no longer alive (declared
/// lost, stopped, or unknown), except `me`'s own. Replicas may call this at
/// once: each run is returned to one of them.
pub fn lost_runs(tx: &mut Tx<'_>, me: &str) -> StoreResult<Vec<LostRun>> {
    let me = me.to_string();
    stranded(
        tx,
        "WHERE r.status = 'running' AND r.host_id IS NOT NULL AND r.host_id <> $1 \
           AND (h.id IS NULL OR h.lost_at IS NOT NULL OR h.stopped_at IS NOT NULL)",
        |q| q.bind::<Text, _>(me),
    )
}

#[derive(QueryableByName)]
struct StrandedRow {
    #[diesel(embed)]
    run: RunRow,
    #[diesel(sql_type = Nullable<Text>)]
    machine: Option<String>,
    #[diesel(sql_type = Nullable<Int4>)]
    format: Option<i32>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    definition: Option<serde_json::Value>,
}

/// Running runs matching `condition` (over `r`, its host `h`), locked, with
/// their hosts' machines and stored definitions.
fn stranded<Q>(
    tx: &mut Tx<'_>,
    condition: &str,
    bind: impl FnOnce(diesel::query_builder::SqlQuery) -> Q,
) -> StoreResult<Vec<LostRun>>
where
    Q: diesel::query_dsl::LoadQuery<'static, diesel::PgConnection, StrandedRow>,
{
    let query = diesel::sql_query(format!(
        "SELECT r.*, h.machine, d.format, d.definition \
         FROM runs r LEFT JOIN hosts h ON h.id = r.host_id \
         LEFT JOIN task_definitions d ON d.id = r.definition_id \
         {condition} ORDER BY r.id FOR UPDATE OF r SKIP LOCKED"
    ));
    let rows: Vec<StrandedRow> = bind(query).load(tx.c())?;
    Ok(rows
        .into_iter()
        .map(|row| LostRun {
            definition: row.format.zip(row.definition),
            machine: row.machine,
            run: row.run,
        })
        .collect())
}
