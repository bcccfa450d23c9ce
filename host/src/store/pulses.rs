//! Pulses and slot claiming: the queries behind "work out what is due, claim
//! each slot once". The policies (which slots, overlap) live in `pulse/`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Nullable, Text, Timestamptz};

use super::models::PulseRow;
use super::schema::{plugins, pulses, runs, tasks};
use super::{StoreResult, Tx};

/// What a pulse needs of a task: identity and policies, never the definition.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks, check_for_backend(diesel::pg::Pg))]
pub struct SchedulableTask {
    /// Identifier.
    pub id: i64,
    /// Owning plugin.
    pub plugin_id: i64,
    /// Its name (with the task's, what `H` in a schedule spreads by).
    #[diesel(select_expression = plugins::name)]
    pub plugin_name: String,
    /// Version whose definition new runs execute.
    pub plugin_version_id: i64,
    /// That definition.
    pub definition_id: i64,
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
    /// Each occurrence starts up to this late, by an amount fixed per slot.
    pub jitter_ms: Option<i64>,
    /// Tasks this one waits for.
    pub depends_on: Vec<String>,
    /// Dynamic: seconds between questions.
    pub dynamic_interval_secs: Option<i32>,
    /// The schedule took effect then.
    pub schedule_since: DateTime<Utc>,
}

/// What a pulse reads before it decides anything.
#[derive(Debug, Clone)]
pub struct PulseRead {
    /// The database's clock: the pulse's instant.
    pub now: DateTime<Utc>,
    /// When the previous pulse arrived: the start of this pulse's window.
    pub previous: Option<DateTime<Utc>>,
    /// The snapshot the tasks were (or would have been) read under.
    pub snapshot: String,
    /// The schedulable tasks, when they changed since `known` (or no snapshot was known).
    pub tasks: Option<Vec<SchedulableTask>>,
}

/// Reads the pulse's instant (`at`, or the database's clock), its window's
/// start and, unless nothing changed since the snapshot `known`, the
/// schedulable tasks. The snapshot is taken before the tasks are read, so a
/// change it cannot see is always caught by the next pulse's check, whatever
/// order writers commit in.
pub fn read(tx: &mut Tx<'_>, known: Option<&str>, at: Option<DateTime<Utc>>) -> StoreResult<PulseRead> {
    #[derive(QueryableByName)]
    struct Head {
        #[diesel(sql_type = Timestamptz)]
        now: DateTime<Utc>,
        #[diesel(sql_type = Text)]
        snapshot: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        changed: bool,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        previous: Option<DateTime<Utc>>,
    }
    let head: Head = diesel::sql_query(
        "WITH head AS (SELECT COALESCE($2, clock_timestamp()) AS now) \
         SELECT head.now, pg_current_snapshot()::text AS snapshot, \
             $1::text IS NULL OR EXISTS (SELECT 1 FROM tasks \
                 WHERE changed_xid >= pg_snapshot_xmin($1::pg_snapshot) \
                 AND NOT pg_visible_in_snapshot(changed_xid, $1::pg_snapshot)) AS changed, \
             (SELECT max(received_at) FROM pulses \
              WHERE kind = 'pulse' AND complete AND received_at < head.now) AS previous \
         FROM head",
    )
    .bind::<Nullable<Text>, _>(known)
    .bind::<Nullable<Timestamptz>, _>(at)
    .get_result(tx.c())?;
    // Pauses that have ended resume their tasks before the tasks are read.
    let resumed = super::pauses::expire(tx, head.now)? > 0;
    let tasks = (head.changed || resumed)
        .then(|| schedulable_tasks(tx))
        .transpose()?;
    Ok(PulseRead {
        now: head.now,
        previous: head.previous,
        snapshot: head.snapshot,
        tasks,
    })
}

/// The pulse that answered a delivery with this idempotency key within the
/// last `window_ms`, if any.
pub fn by_idempotency_key(tx: &mut Tx<'_>, key: &str, window_ms: i64) -> StoreResult<Option<PulseRow>> {
    Ok(diesel::sql_query(
        "SELECT * FROM pulses WHERE idempotency_key = $1 \
         AND received_at > now() - $2 * interval '1 millisecond'",
    )
    .bind::<Text, _>(key)
    .bind::<Int8, _>(window_ms)
    .get_result(tx.c())
    .optional()?)
}

/// Tasks a pulse evaluates: active, enabled, not paused, cron or dynamic.
fn schedulable_tasks(tx: &mut Tx<'_>) -> StoreResult<Vec<SchedulableTask>> {
    Ok(tasks::table
        .inner_join(plugins::table)
        .filter(tasks::active.eq(true))
        .filter(tasks::enabled.eq(true))
        .filter(tasks::paused_reason.is_null())
        .filter(tasks::schedule_kind.eq_any(["cron", "dynamic"]))
        .select(SchedulableTask::as_select())
        .load(tx.c())?)
}

/// Records a pulse's arrival; None when another delivery holds `key` within
/// the last `window_ms` (an older holder gives the key up). A pulse that is
/// not `complete` yet does not bound the next pulse's window until
/// [`finish_pulse`] completes it.
pub fn insert_pulse(
    tx: &mut Tx<'_>,
    kind: &str,
    source: Option<&str>,
    key: Option<&str>,
    at: DateTime<Utc>,
    window_ms: i64,
    complete: bool,
) -> StoreResult<Option<i64>> {
    if let Some(key) = key {
        diesel::sql_query(
            "UPDATE pulses SET idempotency_key = NULL WHERE idempotency_key = $1 \
             AND received_at <= now() - $2 * interval '1 millisecond'",
        )
        .bind::<Text, _>(key)
        .bind::<Int8, _>(window_ms)
        .execute(tx.c())?;
    }
    Ok(diesel::insert_into(pulses::table)
        .values((
            pulses::kind.eq(kind),
            pulses::received_at.eq(at),
            pulses::source.eq(source),
            pulses::idempotency_key.eq(key),
            pulses::complete.eq(complete),
        ))
        .on_conflict_do_nothing()
        .returning(pulses::id)
        .get_result(tx.c())
        .optional()?)
}

/// Takes the per-task advisory locks of `task_ids` for the rest of the
/// transaction, in ascending order (so lockers never deadlock). Dispatchers
/// try the same locks before starting a run of an exclusive task.
pub fn lock_tasks(tx: &mut Tx<'_>, task_ids: &[i64]) -> StoreResult<()> {
    let mut ids = task_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if !ids.is_empty() {
        diesel::sql_query(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) WITH ORDINALITY AS u (k, n) ORDER BY n",
        )
        .bind::<Array<Int8>, _>(&ids)
        .execute(tx.c())?;
    }
    Ok(())
}

/// One candidate slot and the run to record for it if this pulse wins it.
#[derive(Debug, Clone)]
pub struct SlotCandidate {
    /// The task.
    pub task_id: i64,
    /// The occurrence.
    pub scheduled_for: DateTime<Utc>,
    /// Plugin version the run executes.
    pub plugin_version_id: i64,
    /// The stored definition the run executes.
    pub definition_id: i64,
    /// `queued`, `skipped` or `missed`.
    pub status: String,
    /// Queue priority.
    pub priority: i32,
    /// Why it is skipped or missed.
    pub skip_reason: Option<String>,
    /// When a queued run that has not started is recorded as missed instead.
    pub start_deadline: Option<DateTime<Utc>>,
    /// Not to start before this (jitter); None: at once.
    pub not_before: Option<DateTime<Utc>>,
}

/// A slot this pulse won and the run recorded for it.
#[derive(Debug, Clone, QueryableByName)]
pub struct RecordedRun {
    /// The run.
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub run_id: i64,
    /// The slot (passed to steps as `PULSEHOST_SLOT_ID`).
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub slot_id: i64,
    /// The task.
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub task_id: i64,
    /// The occurrence.
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub scheduled_for: DateTime<Utc>,
    /// `queued`, `skipped` or `missed`.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    /// Why it is skipped or missed.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub skip_reason: Option<String>,
}

/// Claims slots and records their runs in one statement: the slots go in with
/// `INSERT … ON CONFLICT DO NOTHING`, and only the ones this statement inserted
/// get a run, so any number of concurrent pulses record each slot once. The
/// rows travel as arrays, not as thousands of parameters. With `live_only`, a
/// candidate whose task is no longer active on the same definition (retired or
/// rolled back since it was read) is not claimed.
pub fn claim_and_record(
    tx: &mut Tx<'_>,
    pulse_id: i64,
    trigger: &str,
    now: DateTime<Utc>,
    candidates: &[SlotCandidate],
    live_only: bool,
) -> StoreResult<Vec<RecordedRun>> {
    use diesel::sql_types::Int4;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&SlotCandidate) -> i64| candidates.iter().map(f).collect::<Vec<_>>();
    Ok(diesel::sql_query(
        "WITH input AS ( \
             SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::int8[], $4::int8[], $5::text[], \
                 $6::int4[], $7::text[], $8::timestamptz[], $13::timestamptz[]) \
                 AS i (task_id, scheduled_for, plugin_version_id, definition_id, status, priority, \
                       skip_reason, start_deadline, not_before) \
         ), claimed AS ( \
             INSERT INTO slots (task_id, scheduled_for, pulse_id, trigger) \
             SELECT i.task_id, i.scheduled_for, $9, $10 FROM input i \
             WHERE NOT $12 OR EXISTS (SELECT 1 FROM tasks t \
                 WHERE t.id = i.task_id AND t.active AND t.definition_id = i.definition_id) \
             ON CONFLICT DO NOTHING RETURNING id, task_id, scheduled_for \
         ) \
         INSERT INTO runs (slot_id, task_id, plugin_version_id, definition_id, status, priority, \
                           scheduled_for, not_before, skip_reason, finished_at, start_deadline) \
         SELECT c.id, i.task_id, i.plugin_version_id, i.definition_id, i.status, i.priority, \
                i.scheduled_for, GREATEST($11, i.not_before), i.skip_reason, CASE WHEN i.status = 'queued' THEN NULL ELSE $11 END, \
                i.start_deadline \
         FROM claimed c JOIN input i ON i.task_id = c.task_id AND i.scheduled_for = c.scheduled_for \
         RETURNING id AS run_id, slot_id, task_id, scheduled_for, status, skip_reason",
    )
    .bind::<Array<Int8>, _>(column(|c| c.task_id))
    .bind::<Array<Timestamptz>, _>(candidates.iter().map(|c| c.scheduled_for).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(column(|c| c.plugin_version_id))
    .bind::<Array<Int8>, _>(column(|c| c.definition_id))
    .bind::<Array<Text>, _>(candidates.iter().map(|c| c.status.as_str()).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(candidates.iter().map(|c| c.priority).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(
        candidates
            .iter()
            .map(|c| c.skip_reason.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Timestamptz>>, _>(candidates.iter().map(|c| c.start_deadline).collect::<Vec<_>>())
    .bind::<Int8, _>(pulse_id)
    .bind::<Text, _>(trigger)
    .bind::<Timestamptz, _>(now)
    .bind::<diesel::sql_types::Bool, _>(live_only)
    .bind::<Array<Nullable<Timestamptz>>, _>(candidates.iter().map(|c| c.not_before).collect::<Vec<_>>())
    .load(tx.c())?)
}

/// Queued or running runs of `task_ids`: (run id, task id).
pub fn active_runs(tx: &mut Tx<'_>, task_ids: &[i64]) -> StoreResult<Vec<(i64, i64)>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(runs::table
        .filter(runs::task_id.eq_any(task_ids))
        .filter(runs::status.eq_any(["queued", "running"]))
        .select((runs::id, runs::task_id))
        .order(runs::id)
        .load(tx.c())?)
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
    pub missed: i64,
    /// Server-side time to evaluate and claim.
    pub duration_ms: f64,
    /// Lateness of the latest-due slot claimed.
    pub max_lateness_ms: Option<i64>,
    /// Problems met.
    pub errors: serde_json::Value,
    /// The answer, replayed for retried deliveries.
    pub response: Option<serde_json::Value>,
}

/// Stores what a pulse did (a later call, for the dynamic half, overwrites)
/// and whether it is complete.
pub fn finish_pulse(tx: &mut Tx<'_>, pulse_id: i64, s: &PulseSummary, complete: bool) -> StoreResult<()> {
    diesel::update(pulses::table.find(pulse_id))
        .set((
            pulses::complete.eq(complete),
            pulses::due.eq(s.due),
            pulses::claimed.eq(s.claimed),
            pulses::skipped.eq(s.skipped),
            pulses::missed.eq(i32::try_from(s.missed).unwrap_or(i32::MAX)),
            pulses::duration_ms.eq(s.duration_ms),
            pulses::max_lateness_ms.eq(s.max_lateness_ms),
            pulses::errors.eq(&s.errors),
            pulses::response.eq(&s.response),
        ))
        .execute(tx.c())?;
    Ok(())
}

/// Recent pulses, newest first.
pub fn list_pulses(tx: &mut Tx<'_>, limit: i64, before: Option<i64>) -> StoreResult<Vec<PulseRow>> {
    let mut query = pulses::table
        .order(pulses::id.desc())
        .limit(limit)
        .select(PulseRow::as_select())
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(pulses::id.lt(before));
    }
    Ok(query.load(tx.c())?)
}

/// Current status of each of `ids`.
pub fn run_statuses(tx: &mut Tx<'_>, ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
    Ok(runs::table
        .filter(runs::id.eq_any(ids))
        .select((runs::id, runs::status))
        .load(tx.c())?)
}
