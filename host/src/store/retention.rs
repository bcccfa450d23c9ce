//! Retention: history older than the configured days is deleted in small
//! batches, each its own short transaction that first takes a transaction
//! advisory lock, so one replica at a time deletes and no hot table is locked
//! for long. A batch removes finished runs with their processes and events,
//! then slots no run refers to, then pulses and statistics rows; what is kept
//! always includes each task's newest slot and the newest pulse, which the
//! pulse's window and exactly-once claims rest on, and every run a queued run
//! still waits for (its verdict decides whether the queued run may start).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int8, Timestamptz};

use super::{StoreResult, Tx};

/// Key of the advisory lock retention batches take ("pulseret").
const RETENTION_LOCK_KEY: i64 = 0x7075_6c73_6572_6574;

/// Rows one batch deletes at most, per table.
pub const BATCH: i64 = 1_000;

/// Rows deleted by one batch, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Runs.
    pub runs: usize,
    /// Their recorded processes.
    pub step_executions: usize,
    /// Their lifecycle events.
    pub run_events: usize,
    /// Slots no run refers to any more.
    pub slots: usize,
    /// Pulses.
    pub pulses: usize,
    /// Hourly statistics rows.
    pub run_stats: usize,
}

impl Deleted {
    /// Rows of every table together.
    pub fn total(&self) -> usize {
        self.runs + self.step_executions + self.run_events + self.slots + self.pulses + self.run_stats
    }

    /// Per-table counts with the table names.
    pub fn by_table(&self) -> [(&'static str, usize); 6] {
        [
            ("runs", self.runs),
            ("step_executions", self.step_executions),
            ("run_events", self.run_events),
            ("slots", self.slots),
            ("pulses", self.pulses),
            ("run_stats", self.run_stats),
        ]
    }
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Int8)]
    id: i64,
}

/// One batch: runs created before `cutoff` (`missed` ones before
/// `missed_cutoff`) and what hangs off them. None when another replica holds
/// the lock; an all-zero result means nothing is left to delete.
pub fn delete_batch(
    tx: &mut Tx<'_>,
    cutoff: DateTime<Utc>,
    missed_cutoff: DateTime<Utc>,
) -> StoreResult<Option<Deleted>> {
    let lock: Locked = diesel::sql_query(format!(
        "SELECT pg_try_advisory_xact_lock({RETENTION_LOCK_KEY}) AS locked"
    ))
    .get_result(tx.c())?;
    if !lock.locked {
        return Ok(None);
    }
    let doomed = doomed_runs(tx, cutoff, missed_cutoff)?;
    let mut deleted = delete_runs(tx, &doomed)?;
    let (slots, pulses, run_stats) = delete_unreferenced(tx, cutoff)?;
    deleted.slots = slots;
    deleted.pulses = pulses;
    deleted.run_stats = run_stats;
    Ok(Some(deleted))
}

/// Up to [`BATCH`] finished runs past their retention that no queued run waits for.
fn doomed_runs(
    tx: &mut Tx<'_>,
    cutoff: DateTime<Utc>,
    missed_cutoff: DateTime<Utc>,
) -> StoreResult<Vec<i64>> {
    Ok(diesel::sql_query(
        "SELECT id FROM ( \
             (SELECT id FROM runs WHERE created_at < $1 AND status NOT IN ('queued', 'running') LIMIT $3) \
             UNION ALL \
             (SELECT id FROM runs WHERE status = 'missed' AND created_at < $2 LIMIT $3)) d \
         WHERE NOT EXISTS (SELECT 1 FROM runs q WHERE q.status = 'queued' AND q.depends_on_runs <> '{}' \
             AND q.depends_on_runs @> ARRAY[d.id]) \
         LIMIT $3",
    )
    .bind::<Timestamptz, _>(cutoff)
    .bind::<Timestamptz, _>(missed_cutoff)
    .bind::<Int8, _>(BATCH)
    .load::<Id>(tx.c())?
    .into_iter()
    .map(|r| r.id)
    .collect())
}

/// Deletes `doomed` runs with their processes, events and live output.
fn delete_runs(tx: &mut Tx<'_>, doomed: &[i64]) -> StoreResult<Deleted> {
    let mut deleted = Deleted::default();
    if doomed.is_empty() {
        return Ok(deleted);
    }
    let by_run = |tx: &mut Tx<'_>, sql: &str| {
        diesel::sql_query(sql)
            .bind::<Array<Int8>, _>(doomed)
            .execute(tx.c())
    };
    deleted.step_executions = by_run(tx, "DELETE FROM step_executions WHERE run_id = ANY ($1)")?;
    deleted.run_events = by_run(tx, "DELETE FROM run_events WHERE run_id = ANY ($1)")?;
    by_run(tx, "DELETE FROM step_output_live WHERE run_id = ANY ($1)")?;
    by_run(tx, "UPDATE runs SET retry_of = NULL WHERE retry_of = ANY ($1)")?;
    deleted.runs = by_run(tx, "DELETE FROM runs WHERE id = ANY ($1)")?;
    Ok(deleted)
}

/// Deletes old slots no run refers to (never a task's newest), old pulses
/// (never the newest complete one) and old hourly statistics; their counts.
fn delete_unreferenced(tx: &mut Tx<'_>, cutoff: DateTime<Utc>) -> StoreResult<(usize, usize, usize)> {
    let older = |tx: &mut Tx<'_>, sql: &str| {
        diesel::sql_query(sql)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<Int8, _>(BATCH)
            .execute(tx.c())
    };
    let slots = older(
        tx,
        "DELETE FROM slots WHERE id IN ( \
             SELECT s.id FROM slots s WHERE s.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.slot_id = s.id) \
             AND s.scheduled_for < (SELECT max(n.scheduled_for) FROM slots n WHERE n.task_id = s.task_id) \
             LIMIT $2)",
    )?;
    let pulses = older(
        tx,
        "DELETE FROM pulses WHERE id IN ( \
             SELECT id FROM pulses WHERE received_at < $1 \
             AND id <> (SELECT coalesce(max(id), 0) FROM pulses WHERE kind = 'pulse' AND complete) \
             ORDER BY received_at LIMIT $2)",
    )?;
    let run_stats = older(
        tx,
        "DELETE FROM run_stats WHERE (task_id, hour, status) IN ( \
             SELECT task_id, hour, status FROM run_stats WHERE hour < date_trunc('hour', $1) LIMIT $2)",
    )?;
    Ok((slots, pulses, run_stats))
}
