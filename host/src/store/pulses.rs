//! Pulses and slot claiming: the queries behind "work out what is due, claim
//! each slot once". The policies (which slots, overlap) live in `pulse/`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::models::{PulseRow, RunRow};
use super::schema::{plugin_versions, pulses, runs, slots, tasks};
use super::StoreResult;

/// What a pulse needs of a task: identity and policies, never the definition.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks, check_for_backend(diesel::pg::Pg))]
pub struct SchedulableTask {
    /// Identifier.
    pub id: i64,
    /// Owning plugin.
    pub plugin_id: i64,
    /// Version whose definition new runs execute.
    pub plugin_version_id: i64,
    /// Name.
    pub name: String,
    /// cron or dynamic.
    pub schedule_kind: String,
    /// Cron expression.
    pub cron_expression: Option<String>,
    /// Time zone.
    pub timezone: Option<String>,
    /// Queue priority.
    pub priority: i32,
    /// skip, allow, replace.
    pub overlap: String,
    /// latest, all, none.
    pub catch_up: String,
    /// Starting deadline.
    pub starting_deadline_ms: Option<i64>,
    /// Tasks this one waits for.
    pub depends_on: Vec<String>,
    /// Dynamic: seconds between questions.
    pub dynamic_interval_secs: Option<i32>,
    /// The schedule took effect then.
    pub schedule_since: DateTime<Utc>,
    /// Dynamic: last asked.
    pub last_asked_at: Option<DateTime<Utc>>,
}

/// A slot a pulse wants to claim.
#[derive(Debug, Clone)]
pub struct DueSlot {
    /// The task.
    pub task_id: i64,
    /// The occurrence.
    pub scheduled_for: DateTime<Utc>,
}

/// A slot this pulse won.
#[derive(Debug, Clone, Queryable)]
pub struct ClaimedSlot {
    /// Identifier passed to steps as `PULSEHOST_SLOT_ID`.
    pub slot_id: i64,
    /// The task.
    pub task_id: i64,
    /// The occurrence.
    pub scheduled_for: DateTime<Utc>,
}

/// A run to insert for a claimed slot.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = runs)]
pub struct NewRun {
    /// The slot.
    pub slot_id: i64,
    /// The task.
    pub task_id: i64,
    /// Definition to execute.
    pub plugin_version_id: i64,
    /// `queued`, `skipped` or `missed`.
    pub status: String,
    /// Queue priority.
    pub priority: i32,
    /// The occurrence.
    pub scheduled_for: DateTime<Utc>,
    /// Earliest start.
    pub not_before: DateTime<Utc>,
    /// Why it was skipped or missed.
    pub skip_reason: Option<String>,
    /// Set for runs that end at once (skipped, missed).
    pub finished_at: Option<DateTime<Utc>>,
}

/// The pulse that answered a delivery with this idempotency key, if any.
pub fn by_idempotency_key(conn: &mut PgConnection, key: &str) -> StoreResult<Option<PulseRow>> {
    Ok(pulses::table
        .filter(pulses::idempotency_key.eq(key))
        .select(PulseRow::as_select())
        .first(conn)
        .optional()?)
}

/// When the newest pulse before `before` arrived: the start of this pulse's window.
pub fn previous_pulse_at(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(pulses::table
        .filter(pulses::kind.eq("pulse"))
        .filter(pulses::received_at.lt(before))
        .select(diesel::dsl::max(pulses::received_at))
        .first(conn)?)
}

/// Tasks a pulse evaluates: active, enabled, not paused, cron or dynamic.
pub fn schedulable_tasks(conn: &mut PgConnection) -> StoreResult<Vec<SchedulableTask>> {
    Ok(tasks::table
        .filter(tasks::active.eq(true))
        .filter(tasks::enabled.eq(true))
        .filter(tasks::paused_reason.is_null())
        .filter(tasks::schedule_kind.eq_any(["cron", "dynamic"]))
        .select(SchedulableTask::as_select())
        .load(conn)?)
}

/// Records a pulse's arrival; None when another delivery holds `key`.
pub fn insert_pulse(
    conn: &mut PgConnection,
    kind: &str,
    source: Option<&str>,
    key: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    Ok(diesel::insert_into(pulses::table)
        .values((
            pulses::kind.eq(kind),
            pulses::received_at.eq(at),
            pulses::source.eq(source),
            pulses::idempotency_key.eq(key),
        ))
        .on_conflict_do_nothing()
        .returning(pulses::id)
        .get_result(conn)
        .optional()?)
}

/// Claims slots with one batched `INSERT … ON CONFLICT DO NOTHING`: only the
/// rows this call inserted come back, so a slot is won by exactly one pulse.
pub fn claim_slots(
    conn: &mut PgConnection,
    pulse_id: i64,
    due: &[DueSlot],
    trigger: &str,
) -> StoreResult<Vec<ClaimedSlot>> {
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<_> = due
        .iter()
        .map(|d| {
            (
                slots::task_id.eq(d.task_id),
                slots::scheduled_for.eq(d.scheduled_for),
                slots::pulse_id.eq(pulse_id),
                slots::trigger.eq(trigger),
            )
        })
        .collect();
    Ok(diesel::insert_into(slots::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .returning((slots::id, slots::task_id, slots::scheduled_for))
        .get_results(conn)?)
}

/// Queued or running runs of `task_ids`: (run id, task id, status).
pub fn active_runs(conn: &mut PgConnection, task_ids: &[i64]) -> StoreResult<Vec<(i64, i64, String)>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(runs::table
        .filter(runs::task_id.eq_any(task_ids))
        .filter(runs::status.eq_any(["queued", "running"]))
        .select((runs::id, runs::task_id, runs::status))
        .load(conn)?)
}

/// Inserts runs in one statement and returns their ids in order.
pub fn insert_runs(conn: &mut PgConnection, new: &[NewRun]) -> StoreResult<Vec<i64>> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    Ok(diesel::insert_into(runs::table)
        .values(new)
        .returning(runs::id)
        .get_results(conn)?)
}

/// Makes a queued run wait for `depends_on` (runs of the same pulse).
pub fn set_dependencies(conn: &mut PgConnection, run_id: i64, depends_on: &[i64]) -> StoreResult<()> {
    diesel::update(runs::table.find(run_id))
        .set(runs::depends_on_runs.eq(depends_on))
        .execute(conn)?;
    Ok(())
}

/// Turns queued runs into skipped ones with `reason`.
pub fn skip_runs(conn: &mut PgConnection, ids: &[i64], reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
    diesel::update(
        runs::table
            .filter(runs::id.eq_any(ids))
            .filter(runs::status.eq("queued")),
    )
    .set((
        runs::status.eq("skipped"),
        runs::skip_reason.eq(reason),
        runs::finished_at.eq(now),
    ))
    .execute(conn)?;
    Ok(())
}

/// Notes that dynamic tasks were asked at `now`.
pub fn mark_asked(conn: &mut PgConnection, task_ids: &[i64], now: DateTime<Utc>) -> StoreResult<()> {
    if !task_ids.is_empty() {
        diesel::update(tasks::table.filter(tasks::id.eq_any(task_ids)))
            .set(tasks::last_asked_at.eq(now))
            .execute(conn)?;
    }
    Ok(())
}

/// The task's most recent finished run.
pub fn last_outcome(conn: &mut PgConnection, task_id: i64) -> StoreResult<Option<RunRow>> {
    Ok(runs::table
        .filter(runs::task_id.eq(task_id))
        .filter(runs::finished_at.is_not_null())
        .order(runs::finished_at.desc())
        .select(RunRow::as_select())
        .first(conn)
        .optional()?)
}

/// sha256 of a plugin version's component.
pub fn version_sha(conn: &mut PgConnection, version_id: i64) -> StoreResult<String> {
    Ok(plugin_versions::table
        .find(version_id)
        .select(plugin_versions::sha256)
        .first(conn)?)
}

/// What a pulse did, stored with it.
#[derive(Debug, Clone, Default)]
pub struct PulseSummary {
    /// Slots that were due.
    pub due: i32,
    /// Slots claimed and queued.
    pub claimed: i32,
    /// Runs recorded as skipped.
    pub skipped: i32,
    /// Slots recorded (or counted) as missed.
    pub missed: i32,
    /// Server-side time to evaluate and claim.
    pub duration_ms: f64,
    /// Lateness of the latest-due slot claimed.
    pub max_lateness_ms: Option<i64>,
    /// Problems met.
    pub errors: serde_json::Value,
    /// The answer, replayed for retried deliveries.
    pub response: Option<serde_json::Value>,
}

/// Stores what a pulse did.
pub fn finish_pulse(conn: &mut PgConnection, pulse_id: i64, s: &PulseSummary) -> StoreResult<()> {
    diesel::update(pulses::table.find(pulse_id))
        .set((
            pulses::due.eq(s.due),
            pulses::claimed.eq(s.claimed),
            pulses::skipped.eq(s.skipped),
            pulses::missed.eq(s.missed),
            pulses::duration_ms.eq(s.duration_ms),
            pulses::max_lateness_ms.eq(s.max_lateness_ms),
            pulses::errors.eq(&s.errors),
            pulses::response.eq(&s.response),
        ))
        .execute(conn)?;
    Ok(())
}

/// Recent pulses, newest first.
pub fn list_pulses(conn: &mut PgConnection, limit: i64, before: Option<i64>) -> StoreResult<Vec<PulseRow>> {
    let mut query = pulses::table
        .order(pulses::id.desc())
        .limit(limit)
        .select(PulseRow::as_select())
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(pulses::id.lt(before));
    }
    Ok(query.load(conn)?)
}

/// Current status of each of `ids`.
pub fn run_statuses(conn: &mut PgConnection, ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
    Ok(runs::table
        .filter(runs::id.eq_any(ids))
        .select((runs::id, runs::status))
        .load(conn)?)
}
