//! An operator's pause of a task, which may end by itself, and the slots a
//! backfill finds already claimed.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::models::TaskRow;
use super::schema::{hook_failures, slots, tasks};
use super::{StoreError, StoreResult, Tx};

/// Pauses a task with `reason` until `until` (None: until unpaused); a task
/// already paused (by an operator or by hook failures) takes the new reason
/// and end.
pub fn pause(
    tx: &mut Tx<'_>,
    task_id: i64,
    reason: &str,
    until: Option<DateTime<Utc>>,
) -> StoreResult<TaskRow> {
    diesel::update(tasks::table.find(task_id))
        .set((
            tasks::paused_reason.eq(reason),
            tasks::paused_until.eq(until),
            tasks::paused_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("COALESCE(paused_at, now())")),
            tasks::updated_at.eq(diesel::dsl::now),
        ))
        .returning(TaskRow::as_returning())
        .get_result(tx.c())
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))
}

/// Ends every pause whose end has come by `now`; the schedule takes effect
/// from the pause's end, so the paused span is never caught up. Returns how
/// many tasks it resumed.
pub fn expire(tx: &mut Tx<'_>, now: DateTime<Utc>) -> StoreResult<usize> {
    let ending: Vec<i64> = tasks::table
        .filter(tasks::paused_until.is_not_null())
        .filter(tasks::paused_until.le(now))
        .select(tasks::id)
        .load(tx.c())?;
    if ending.is_empty() {
        return Ok(0);
    }
    // As an unpause does: the hooks start counting failures afresh.
    diesel::update(hook_failures::table.filter(hook_failures::task_id.eq_any(&ending)))
        .set(hook_failures::consecutive.eq(0))
        .execute(tx.c())?;
    // The end is checked again, row by row, as the update takes each: a task
    // paused anew meanwhile keeps its new pause.
    Ok(diesel::update(
        tasks::table
            .filter(tasks::paused_until.is_not_null())
            .filter(tasks::paused_until.le(now)),
    )
    .set((
        tasks::paused_reason.eq(None::<String>),
        tasks::schedule_since.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
            // An occurrence at the pause's end is due (the window opens just before it).
            "GREATEST(schedule_since, paused_until - interval '1 millisecond')",
        )),
        tasks::paused_until.eq(None::<DateTime<Utc>>),
        tasks::paused_at.eq(None::<DateTime<Utc>>),
        tasks::updated_at.eq(diesel::dsl::now),
    ))
    .execute(tx.c())?)
}

/// Which of `instants` already have a slot of `task_id` (looked up by the
/// instants, never by scanning the range between them).
pub fn claimed_at(
    tx: &mut Tx<'_>,
    task_id: i64,
    instants: &[DateTime<Utc>],
) -> StoreResult<Vec<DateTime<Utc>>> {
    Ok(slots::table
        .filter(slots::task_id.eq(task_id))
        .filter(slots::scheduled_for.eq_any(instants))
        .select(slots::scheduled_for)
        .load(tx.c())?)
}
