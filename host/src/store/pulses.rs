//! Pulses and slot claiming: the queries behind "work out what is due, claim
//! each slot once". The policies (which slots, overlap) live in `pulse/`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::models::{PulseRow, RunRow};
use super::schema::{plugin_versions, pulses, runs, tasks};
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

/// Changes whenever a task changes (a trigger bumps it); lets a pulse reuse
/// the tasks it read last time.
pub type TaskFingerprint = i64;

/// The current [`TaskFingerprint`].
pub fn task_fingerprint(conn: &mut PgConnection) -> StoreResult<TaskFingerprint> {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        version: i64,
    }
    let rows: Vec<Version> = diesel::sql_query("SELECT version FROM tasks_version").load(conn)?;
    Ok(rows.first().map_or(0, |r| r.version))
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

/// One candidate slot and the run to record for it if this pulse wins it.
#[derive(Debug, Clone)]
pub struct SlotCandidate {
    /// The task.
    pub task_id: i64,
    /// The occurrence.
    pub scheduled_for: DateTime<Utc>,
    /// Definition the run executes.
    pub plugin_version_id: i64,
    /// `queued`, `skipped` or `missed`.
    pub status: String,
    /// Queue priority.
    pub priority: i32,
    /// Why it is skipped or missed.
    pub skip_reason: Option<String>,
}

/// A slot this pulse won and the run recorded for it.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedRun {
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
/// rows travel as arrays, not as thousands of parameters.
pub fn claim_and_record(
    conn: &mut PgConnection,
    pulse_id: i64,
    trigger: &str,
    now: DateTime<Utc>,
    candidates: &[SlotCandidate],
) -> StoreResult<Vec<ClaimedRun>> {
    use diesel::sql_types::{Array, Int4, Int8, Nullable, Text, Timestamptz};
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&SlotCandidate) -> i64| candidates.iter().map(f).collect::<Vec<_>>();
    Ok(diesel::sql_query(
        "WITH input AS ( \
             SELECT * FROM unnest($1::int8[], $2::timestamptz[], $3::int8[], $4::text[], $5::int4[], $6::text[]) \
                 AS i (task_id, scheduled_for, plugin_version_id, status, priority, skip_reason) \
         ), claimed AS ( \
             INSERT INTO slots (task_id, scheduled_for, pulse_id, trigger) \
             SELECT task_id, scheduled_for, $7, $8 FROM input \
             ON CONFLICT DO NOTHING RETURNING id, task_id, scheduled_for \
         ) \
         INSERT INTO runs (slot_id, task_id, plugin_version_id, status, priority, scheduled_for, \
                           not_before, skip_reason, finished_at) \
         SELECT c.id, i.task_id, i.plugin_version_id, i.status, i.priority, i.scheduled_for, $9, \
                i.skip_reason, CASE WHEN i.status = 'queued' THEN NULL ELSE $9 END \
         FROM claimed c JOIN input i ON i.task_id = c.task_id AND i.scheduled_for = c.scheduled_for \
         RETURNING id AS run_id, slot_id, task_id, scheduled_for, status, skip_reason",
    )
    .bind::<Array<Int8>, _>(column(|c| c.task_id))
    .bind::<Array<Timestamptz>, _>(candidates.iter().map(|c| c.scheduled_for).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(column(|c| c.plugin_version_id))
    .bind::<Array<Text>, _>(candidates.iter().map(|c| c.status.clone()).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(candidates.iter().map(|c| c.priority).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(candidates.iter().map(|c| c.skip_reason.clone()).collect::<Vec<_>>())
    .bind::<Int8, _>(pulse_id)
    .bind::<Text, _>(trigger)
    .bind::<Timestamptz, _>(now)
    .load(conn)?)
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
