//! The ledger of exec-hook failures per task and hook type, and the pause it
//! triggers after too many in a row.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::models::{HookFailureRow, TaskRow};
use super::schema::{hook_failures, tasks};
use super::{StoreError, StoreResult};

/// Errors kept per task and hook.
const KEPT_ERRORS: usize = 5;

/// Records one hook outcome. A success resets the consecutive count; a failure
/// increments it and, at `pause_after`, pauses the task. Returns the pause
/// reason when this failure paused the task.
pub fn record(
    conn: &mut PgConnection,
    task_id: i64,
    hook: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
    pause_after: i32,
) -> StoreResult<Option<String>> {
    let Some(error) = error else {
        diesel::update(hook_failures::table.find((task_id, hook)))
            .set(hook_failures::consecutive.eq(0))
            .execute(conn)?;
        return Ok(None);
    };
    let existing: Option<HookFailureRow> = hook_failures::table
        .find((task_id, hook))
        .select(HookFailureRow::as_select())
        .for_update()
        .first(conn)
        .optional()?;
    let mut errors: Vec<serde_json::Value> = existing
        .as_ref()
        .and_then(|r| r.last_errors.as_array().cloned())
        .unwrap_or_default();
    errors.insert(0, serde_json::json!({ "at": now, "error": error }));
    errors.truncate(KEPT_ERRORS);
    let consecutive = existing.as_ref().map_or(0, |r| r.consecutive) + 1;
    let total = existing.as_ref().map_or(0, |r| r.total) + 1;
    diesel::insert_into(hook_failures::table)
        .values((
            hook_failures::task_id.eq(task_id),
            hook_failures::hook.eq(hook),
            hook_failures::consecutive.eq(consecutive),
            hook_failures::total.eq(total),
            hook_failures::last_failed_at.eq(now),
            hook_failures::last_errors.eq(serde_json::Value::Array(errors.clone())),
        ))
        .on_conflict((hook_failures::task_id, hook_failures::hook))
        .do_update()
        .set((
            hook_failures::consecutive.eq(consecutive),
            hook_failures::total.eq(total),
            hook_failures::last_failed_at.eq(now),
            hook_failures::last_errors.eq(serde_json::Value::Array(errors)),
        ))
        .execute(conn)?;
    if consecutive < pause_after {
        return Ok(None);
    }
    let reason = format!("{hook} hook failed {consecutive} times in a row; last error: {error}");
    let paused = diesel::update(tasks::table.find(task_id))
        .filter(tasks::paused_reason.is_null())
        .set((tasks::paused_reason.eq(&reason), tasks::updated_at.eq(now)))
        .execute(conn)?;
    Ok((paused > 0).then_some(reason))
}

/// Failures of every hook of `task_ids`.
pub fn for_tasks(conn: &mut PgConnection, task_ids: &[i64]) -> StoreResult<Vec<HookFailureRow>> {
    Ok(hook_failures::table
        .filter(hook_failures::task_id.eq_any(task_ids))
        .order((hook_failures::task_id, hook_failures::hook))
        .select(HookFailureRow::as_select())
        .load(conn)?)
}

/// Un-pauses a task and resets its consecutive hook-failure counts.
pub fn resume(conn: &mut PgConnection, task_id: i64, now: DateTime<Utc>) -> StoreResult<TaskRow> {
    let task = diesel::update(tasks::table.find(task_id))
        .set((tasks::paused_reason.eq(None::<String>), tasks::updated_at.eq(now)))
        .returning(TaskRow::as_returning())
        .get_result(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))?;
    diesel::update(hook_failures::table.filter(hook_failures::task_id.eq(task_id)))
        .set(hook_failures::consecutive.eq(0))
        .execute(conn)?;
    Ok(task)
}
