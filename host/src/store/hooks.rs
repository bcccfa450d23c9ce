//! The ledger of exec-hook failures per task and hook type, and pausing a task.
//! When to pause is the runner's rule (`runner::policy::pause_reason`).

use diesel::prelude::*;

use super::models::{HookFailureRow, TaskRow};
use super::schema::{hook_failures, tasks};
use super::{StoreError, StoreResult, Tx};

/// Errors kept per task and hook.
const KEPT_ERRORS: usize = 5;

/// Records one hook outcome: a success resets the consecutive count, a failure
/// increments it (in one statement, so hosts recording at once never lose a
/// count). Returns the consecutive failures now counted.
pub fn record(tx: &mut Tx<'_>, task_id: i64, hook: &str, error: Option<&str>) -> StoreResult<i32> {
    use diesel::sql_types::{Int4, Int8, Text};
    let Some(error) = error else {
        diesel::update(hook_failures::table.find((task_id, hook)))
            .set(hook_failures::consecutive.eq(0))
            .execute(tx.c())?;
        return Ok(0);
    };
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = Int4)]
        consecutive: i32,
    }
    let row: Count = diesel::sql_query(
        "INSERT INTO hook_failures AS f (task_id, hook, consecutive, total, last_failed_at, last_errors) \
         VALUES ($1, $2, 1, 1, now(), jsonb_build_array(jsonb_build_object('at', now(), 'error', $3::text))) \
         ON CONFLICT (task_id, hook) DO UPDATE SET \
             consecutive = f.consecutive + 1, total = f.total + 1, last_failed_at = now(), \
             last_errors = (SELECT jsonb_agg(e ORDER BY n) FROM jsonb_array_elements( \
                 jsonb_build_array(jsonb_build_object('at', now(), 'error', $3::text)) || f.last_errors) \
                 WITH ORDINALITY AS l (e, n) WHERE n <= $4) \
         RETURNING consecutive",
    )
    .bind::<Int8, _>(task_id)
    .bind::<Text, _>(hook)
    .bind::<Text, _>(super::runs::storable_text(error))
    .bind::<Int4, _>(KEPT_ERRORS as i32)
    .get_result(tx.c())?;
    Ok(row.consecutive)
}

/// Pauses a task with `reason` unless it is paused already; true if it was paused now.
pub fn pause(tx: &mut Tx<'_>, task_id: i64, reason: &str) -> StoreResult<bool> {
    let paused = diesel::update(tasks::table.find(task_id))
        .filter(tasks::paused_reason.is_null())
        .set((
            tasks::paused_reason.eq(reason),
            tasks::paused_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("now()")),
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
            tasks::paused_until.eq(None::<chrono::DateTime<chrono::Utc>>),
            tasks::paused_at.eq(None::<chrono::DateTime<chrono::Utc>>),
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
