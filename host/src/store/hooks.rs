//! The ledger of exec-hook failures per task and hook type, and pausing a task.
//! When to pause is the runner's rule (`runner::policy::pause_reason`).

use diesel::prelude::*;

use super::models::{HookFailureRow, TaskRow};
use super::schema::{hook_failures, tasks};
use super::{StoreError, StoreResult, Tx};

/// Errors kept per task and hook.
const KEPT_ERRORS: usize = 5;

/// Records one hook outcome: a success resets the consecutive count, a failure
/// increments it. Returns the consecutive failures now counted.
pub fn record(tx: &mut Tx<'_>, task_id: i64, hook: &str, error: Option<&str>) -> StoreResult<i32> {
    let Some(error) = error else {
        diesel::update(hook_failures::table.find((task_id, hook)))
            .set(hook_failures::consecutive.eq(0))
            .execute(tx.c())?;
        return Ok(0);
    };
    let existing: Option<HookFailureRow> = hook_failures::table
        .find((task_id, hook))
        .select(HookFailureRow::as_select())
        .for_update()
        .first(tx.c())
        .optional()?;
    let now = super::plugins::database_now(tx)?;
    let mut errors: Vec<serde_json::Value> = existing
        .as_ref()
        .and_then(|r| r.last_errors.as_array().cloned())
        .unwrap_or_default();
    errors.insert(0, serde_json::json!({ "at": now, "error": error }));
    errors.truncate(KEPT_ERRORS);
    let consecutive = existing.as_ref().map_or(0, |r| r.consecutive) + 1;
    let total = existing.as_ref().map_or(0, |r| r.total) + 1;
    let values = (
        hook_failures::consecutive.eq(consecutive),
        hook_failures::total.eq(total),
        hook_failures::last_failed_at.eq(now),
        hook_failures::last_errors.eq(serde_json::Value::Array(errors)),
    );
    diesel::insert_into(hook_failures::table)
        .values((
            hook_failures::task_id.eq(task_id),
            hook_failures::hook.eq(hook),
            values.clone(),
        ))
        .on_conflict((hook_failures::task_id, hook_failures::hook))
        .do_update()
        .set(values)
        .execute(tx.c())?;
    Ok(consecutive)
}

/// Pauses a task with `reason` unless it is paused already; true if it was paused now.
pub fn pause(tx: &mut Tx<'_>, task_id: i64, reason: &str) -> StoreResult<bool> {
    let paused = diesel::update(tasks::table.find(task_id))
        .filter(tasks::paused_reason.is_null())
        .set((
            tasks::paused_reason.eq(reason),
            tasks::updated_at.eq(diesel::dsl::now),
        ))
        .execute(tx.c())?;
    Ok(paused > 0)
}

/// Failures of every hook of `task_ids`.
pub fn for_tasks(tx: &mut Tx<'_>, task_ids: &[i64]) -> StoreResult<Vec<HookFailureRow>> {
    Ok(hook_failures::table
        .filter(hook_failures::task_id.eq_any(task_ids))
        .order((hook_failures::task_id, hook_failures::hook))
        .select(HookFailureRow::as_select())
        .load(tx.c())?)
}

/// Un-pauses a task, resets its consecutive hook-failure counts, and lets the
/// schedule of a paused task take effect from now (occurrences while it was
/// paused never fire).
pub fn resume(tx: &mut Tx<'_>, task_id: i64) -> StoreResult<TaskRow> {
    let task = diesel::update(tasks::table.find(task_id))
        .set((
            tasks::paused_reason.eq(None::<String>),
            // Only a task that was paused starts its schedule afresh.
            tasks::schedule_since.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
                "CASE WHEN paused_reason IS NULL THEN schedule_since ELSE now() END",
            )),
            tasks::updated_at.eq(diesel::dsl::now),
        ))
        .returning(TaskRow::as_returning())
        .get_result(tx.c())
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))?;
    diesel::update(hook_failures::table.filter(hook_failures::task_id.eq(task_id)))
        .set(hook_failures::consecutive.eq(0))
        .execute(tx.c())?;
    Ok(task)
}
