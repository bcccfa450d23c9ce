//! What asking dynamic schedules reads and writes: when each task was last
//! asked (kept apart from the task rows, so asking never invalidates a pulse's
//! cache of them), how each task's latest run ended, and which component to ask.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Nullable, Text, Timestamptz};

use super::schema::dynamic_asks;
use super::{StoreResult, Tx};

/// When each of `task_ids` was last asked its dynamic schedule.
pub fn asked_at(tx: &mut Tx<'_>, task_ids: &[i64]) -> StoreResult<Vec<(i64, DateTime<Utc>)>> {
    Ok(dynamic_asks::table
        .filter(dynamic_asks::task_id.eq_any(task_ids))
        .select((dynamic_asks::task_id, dynamic_asks::asked_at))
        .load(tx.c())?)
}

/// Notes that dynamic tasks were asked at `now` (never touching the task rows).
pub fn mark_asked(tx: &mut Tx<'_>, task_ids: &[i64], now: DateTime<Utc>) -> StoreResult<()> {
    if !task_ids.is_empty() {
        diesel::sql_query(
            "INSERT INTO dynamic_asks (task_id, asked_at) SELECT unnest($1::int8[]), $2 \
             ON CONFLICT (task_id) DO UPDATE SET asked_at = EXCLUDED.asked_at",
        )
        .bind::<Array<Int8>, _>(task_ids)
        .bind::<Timestamptz, _>(now)
        .execute(tx.c())?;
    }
    Ok(())
}

/// How a task's latest finished run ended.
#[derive(Debug, Clone, QueryableByName)]
pub struct LastOutcome {
    /// The task.
    #[diesel(sql_type = Int8)]
    pub task_id: i64,
    /// Its status.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// When it finished.
    #[diesel(sql_type = Timestamptz)]
    pub finished_at: DateTime<Utc>,
    /// Why it did not succeed.
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    /// The exit code of its last failing process.
    #[diesel(sql_type = Nullable<diesel::sql_types::Int4>)]
    pub exit_code: Option<i32>,
}

/// The latest finished run of each of `task_ids` that has one.
pub fn last_outcomes(tx: &mut Tx<'_>, task_ids: &[i64]) -> StoreResult<Vec<LastOutcome>> {
    Ok(diesel::sql_query(
        "SELECT t.id AS task_id, r.status, r.finished_at, r.error, \
             (SELECT s.exit_code FROM step_executions s WHERE s.run_id = r.id AND s.status <> 'succeeded' \
              ORDER BY s.id DESC LIMIT 1) AS exit_code \
         FROM unnest($1::int8[]) AS t (id) CROSS JOIN LATERAL ( \
             SELECT id, status, finished_at, error FROM runs \
             WHERE task_id = t.id AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1) r",
    )
    .bind::<Array<Int8>, _>(task_ids)
    .load(tx.c())?)
}

/// sha256 of each of `version_ids`' component.
pub fn version_shas(tx: &mut Tx<'_>, version_ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
    use super::schema::plugin_versions;
    Ok(plugin_versions::table
        .filter(plugin_versions::id.eq_any(version_ids))
        .select((plugin_versions::id, plugin_versions::sha256))
        .load(tx.c())?)
}
