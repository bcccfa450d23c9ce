//! Pulses and slot claiming: the queries behind "work out what is due, claim
//! each slot once". The policies (which slots, overlap) live in `pulse/`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::models::{PulseRow, TaskRow};
use super::schema::{pulses, runs, slots, tasks};
use super::StoreResult;

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

/// A run to queue (or record as skipped) for a claimed slot.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = runs)]
pub struct NewRun {
    /// The slot.
    pub slot_id: i64,
    /// The task.
    pub task_id: i64,
    /// Definition to execute.
    pub plugin_version_id: i64,
    /// `queued` or `skipped`.
    pub status: String,
    /// Queue priority.
    pub priority: i32,
    /// The occurrence.
    pub scheduled_for: DateTime<Utc>,
    /// Earliest start.
    pub not_before: DateTime<Utc>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// Set for runs that end at once (skipped).
    pub finished_at: Option<DateTime<Utc>>,
}

/// Records a pulse's arrival and returns its id.
pub fn create_pulse(conn: &mut PgConnection, source: Option<&str>, at: DateTime<Utc>) -> StoreResult<i64> {
    Ok(diesel::insert_into(pulses::table)
        .values((pulses::received_at.eq(at), pulses::source.eq(source)))
        .returning(pulses::id)
        .get_result(conn)?)
}

/// Tasks a pulse evaluates by their cron schedule: active, enabled, not paused.
pub fn cron_tasks(conn: &mut PgConnection) -> StoreResult<Vec<TaskRow>> {
    Ok(tasks::table
        .filter(tasks::active.eq(true))
        .filter(tasks::enabled.eq(true))
        .filter(tasks::paused_reason.is_null())
        .filter(tasks::schedule_kind.eq("cron"))
        .select(TaskRow::as_select())
        .load(conn)?)
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

/// Of `task_ids`, those with a queued or running run.
pub fn tasks_with_active_runs(conn: &mut PgConnection, task_ids: &[i64]) -> StoreResult<Vec<i64>> {
    Ok(runs::table
        .filter(runs::task_id.eq_any(task_ids))
        .filter(runs::status.eq_any(["queued", "running"]))
        .select(runs::task_id)
        .distinct()
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

/// Counts of what a pulse did.
#[derive(Debug, Clone, Copy, Default)]
pub struct PulseCounts {
    /// Slots that were due.
    pub due: i32,
    /// Slots claimed by this pulse.
    pub claimed: i32,
    /// Runs recorded as skipped.
    pub skipped: i32,
    /// Slots recorded as missed.
    pub missed: i32,
}

/// Stores a pulse's counts and duration.
pub fn finish_pulse(
    conn: &mut PgConnection,
    pulse_id: i64,
    counts: PulseCounts,
    duration_ms: f64,
) -> StoreResult<PulseRow> {
    Ok(diesel::update(pulses::table.find(pulse_id))
        .set((
            pulses::due.eq(counts.due),
            pulses::claimed.eq(counts.claimed),
            pulses::skipped.eq(counts.skipped),
            pulses::missed.eq(counts.missed),
            pulses::duration_ms.eq(duration_ms),
        ))
        .returning(PulseRow::as_returning())
        .get_result(conn)?)
}
