//! Runs: what hosts write while they execute them (processes, process groups,
//! events) and cancel requests. Reading history is `history.rs`.

use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Jsonb, Text};
use serde::Serialize;

use super::models::{NewStepExecution, RunRow};
use super::schema::{runs, step_executions, step_output_live};
use super::{StoreError, StoreResult, Tx};

/// Appends the same event to the lifecycle log of each of `run_ids`.
pub fn add_events(
    tx: &mut Tx<'_>,
    run_ids: &[i64],
    kind: &str,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    if run_ids.is_empty() {
        return Ok(());
    }
    diesel::sql_query("INSERT INTO run_events (run_id, kind, detail) SELECT unnest($1::int8[]), $2, $3")
        .bind::<Array<Int8>, _>(run_ids)
        .bind::<Text, _>(kind)
        .bind::<Jsonb, _>(detail)
        .execute(tx.c())?;
    Ok(())
}

/// Appends one event per run, each with its own detail.
pub fn add_each_event(tx: &mut Tx<'_>, events: &[(i64, &str, serde_json::Value)]) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO run_events (run_id, kind, detail) \
         SELECT * FROM unnest($1::int8[], $2::text[], $3::jsonb[])",
    )
    .bind::<Array<Int8>, _>(events.iter().map(|e| e.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(events.iter().map(|e| e.1).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(events.iter().map(|e| e.2.clone()).collect::<Vec<_>>())
    .execute(tx.c())?;
    Ok(())
}

/// Records finished processes, many runs' at once. What PostgreSQL cannot
/// store is made storable first: NUL characters in text are replaced, and
/// JSON output holding one is kept as raw bytes only.
pub fn record_steps(tx: &mut Tx<'_>, steps: &[NewStepExecution]) -> StoreResult<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let storable: Vec<NewStepExecution> = steps
        .iter()
        .map(|s| NewStepExecution {
            name: storable_text(&s.name),
            error: s.error.as_deref().map(storable_text),
            stdout_json: s.stdout_json.clone().filter(json_is_storable),
            schema_errors: s.schema_errors.clone().map(storable_json),
            ..s.clone()
        })
        .collect();
    diesel::insert_into(step_executions::table)
        .values(&storable)
        .execute(tx.c())?;
    diesel::sql_query(
        "DELETE FROM step_output_live l USING unnest($1::int8[], $2::text[], $3::int4[]) AS d (run_id, phase, i) \
         WHERE l.run_id = d.run_id AND l.phase = d.phase AND l.step_index = d.i",
    )
    .bind::<Array<Int8>, _>(steps.iter().map(|s| s.run_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(steps.iter().map(|s| s.phase.as_str()).collect::<Vec<_>>())
    .bind::<Array<diesel::sql_types::Int4>, _>(steps.iter().map(|s| s.step_index).collect::<Vec<_>>())
    .execute(tx.c())?;
    add_each_event(tx, &degraded_events(steps))
}

/// A `degraded` event for each process that ran without a protection it
/// asked for, naming what was missing and why.
fn degraded_events(steps: &[NewStepExecution]) -> Vec<(i64, &'static str, serde_json::Value)> {
    steps
        .iter()
        .filter_map(|s| {
            let missing = s.plan.as_ref()?.get("missing")?;
            let listed = missing.as_array().is_some_and(|m| !m.is_empty());
            listed.then(|| {
                let detail = serde_json::json!({
                    "phase": s.phase,
                    "step_index": s.step_index,
                    "name": s.name,
                    "missing": missing,
                });
                (s.run_id, "degraded", detail)
            })
        })
        .collect()
}

/// Output of a process still running.
#[derive(Debug, Clone, Insertable, Queryable, Selectable, Serialize)]
#[diesel(table_name = step_output_live, check_for_backend(diesel::pg::Pg))]
pub struct LiveOutputRow {
    /// The run.
    pub run_id: i64,
    /// provision, background, step or cleanup.
    pub phase: String,
    /// Position among the steps.
    pub step_index: i32,
    /// Step name.
    pub name: String,
    /// Captured so far (up to the cap).
    pub stdout: Vec<u8>,
    /// Captured so far (up to the cap).
    pub stderr: Vec<u8>,
    /// Bytes written so far, kept or not.
    pub stdout_bytes: i64,
    /// Bytes written so far, kept or not.
    pub stderr_bytes: i64,
    /// When the process started.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// Replaces the live output of one running process.
pub fn write_live(tx: &mut Tx<'_>, row: &LiveOutputRow) -> StoreResult<()> {
    diesel::insert_into(step_output_live::table)
        .values(row)
        .on_conflict((
            step_output_live::run_id,
            step_output_live::phase,
            step_output_live::step_index,
        ))
        .do_update()
        .set((
            step_output_live::stdout.eq(&row.stdout),
            step_output_live::stderr.eq(&row.stderr),
            step_output_live::stdout_bytes.eq(row.stdout_bytes),
            step_output_live::stderr_bytes.eq(row.stderr_bytes),
            step_output_live::updated_at.eq(diesel::dsl::now),
        ))
        .execute(tx.c())?;
    Ok(())
}

/// The live output of `run_id`'s processes that have no final record yet.
pub fn live_of(tx: &mut Tx<'_>, run_id: i64) -> StoreResult<Vec<LiveOutputRow>> {
    Ok(step_output_live::table
        .filter(step_output_live::run_id.eq(run_id))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            step_executions::table
                .filter(step_executions::run_id.eq(step_output_live::run_id))
                .filter(step_executions::phase.eq(step_output_live::phase))
                .filter(step_executions::step_index.eq(step_output_live::step_index)),
        )))
        .order((step_output_live::started_at, step_output_live::step_index))
        .select(LiveOutputRow::as_select())
        .load(tx.c())?)
}

/// `text` with every NUL character (which a PostgreSQL text cannot hold) replaced.
pub fn storable_text(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// False for JSON with a NUL character in a string or key, which `jsonb` refuses.
fn json_is_storable(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => !s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().all(json_is_storable),
        serde_json::Value::Object(map) => map.iter().all(|(k, v)| !k.contains('\0') && json_is_storable(v)),
        _ => true,
    }
}

/// Records a manual run's chosen input with it.
pub fn set_overrides(tx: &mut Tx<'_>, run_id: i64, overrides: &crate::spec::RunOverrides) -> StoreResult<()> {
    let value = storable_json(serde_json::to_value(overrides).unwrap_or_default());
    diesel::update(runs::table.find(run_id))
        .set(runs::overrides.eq(value))
        .execute(tx.c())?;
    Ok(())
}

/// `value` with every NUL character in its strings and keys replaced.
pub fn storable_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(storable_text(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(storable_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (storable_text(&k), storable_json(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Records the live process groups of running runs, many at once.
pub fn set_process_groups(tx: &mut Tx<'_>, groups: &[(i64, Vec<i32>)]) -> StoreResult<()> {
    if groups.is_empty() {
        return Ok(());
    }
    // Arrays of arrays cannot be unnested row by row, so each set travels as text.
    let literal = |g: &Vec<i32>| {
        format!(
            "{{{}}}",
            g.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
        )
    };
    diesel::sql_query(
        "UPDATE runs r SET process_groups = v.groups::int4[] \
         FROM unnest($1::int8[], $2::text[]) AS v (id, groups) \
         WHERE r.id = v.id AND r.status = 'running'",
    )
    .bind::<Array<Int8>, _>(groups.iter().map(|g| g.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(groups.iter().map(|g| literal(&g.1)).collect::<Vec<_>>())
    .execute(tx.c())?;
    Ok(())
}

/// Runs `host_id` executes that someone asked to cancel.
pub fn cancel_requests(tx: &mut Tx<'_>, host_id: &str) -> StoreResult<Vec<i64>> {
    Ok(runs::table
        .filter(runs::host_id.eq(host_id))
        .filter(runs::status.eq("running"))
        .filter(runs::cancel_requested_at.is_not_null())
        .select(runs::id)
        .load(tx.c())?)
}

/// Runs recorded as running on `host_id` that started at least `settle_ms`
/// ago (by the database's clock).
pub fn running_on(tx: &mut Tx<'_>, host_id: &str, settle_ms: i64) -> StoreResult<Vec<i64>> {
    Ok(diesel::sql_query(
        "SELECT id FROM runs WHERE host_id = $1 AND status = 'running' \
         AND started_at < now() - $2 * interval '1 millisecond'",
    )
    .bind::<Text, _>(host_id)
    .bind::<Int8, _>(settle_ms)
    .load::<Id>(tx.c())?
    .into_iter()
    .map(|r| r.id)
    .collect())
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Int8)]
    id: i64,
}

/// How many runs have `status`.
pub fn count_with_status(tx: &mut Tx<'_>, status: &str) -> StoreResult<i64> {
    Ok(runs::table
        .filter(runs::status.eq(status))
        .count()
        .get_result(tx.c())?)
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

/// Cancels a queued run at once, or flags a running one for its host. The
/// caller settles the runs that depended on a run cancelled here.
pub fn request_cancel(tx: &mut Tx<'_>, run_id: i64) -> StoreResult<CancelOutcome> {
    let run: RunRow = runs::table
        .find(run_id)
        .select(RunRow::as_select())
        .for_update()
        .first(tx.c())
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("run {run_id}")))?;
    match run.status.as_str() {
        "queued" => {
            diesel::update(runs::table.find(run_id))
                .set((
                    runs::status.eq("cancelled"),
                    runs::cancel_requested_at.eq(diesel::dsl::now),
                    runs::finished_at.eq(diesel::dsl::now),
                    runs::error.eq("cancelled before it started"),
                ))
                .execute(tx.c())?;
            add_events(
                tx,
                &[run_id],
                "cancelled",
                &serde_json::json!({ "while": "queued" }),
            )?;
            Ok(CancelOutcome::Cancelled)
        }
        "running" => {
            diesel::update(runs::table.find(run_id))
                .set(runs::cancel_requested_at.eq(diesel::dsl::now))
                .execute(tx.c())?;
            add_events(
                tx,
                &[run_id],
                "cancel_requested",
                &serde_json::json!({ "host": run.host_id }),
            )?;
            Ok(CancelOutcome::Requested { host_id: run.host_id })
        }
        _ => Ok(CancelOutcome::AlreadyFinished { status: run.status }),
    }
}
