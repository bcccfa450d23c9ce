//! Services: the lease that lets exactly one host run each, its
//! incarnations (one run each) and the state operators see. Every time is
//! the database's, so hosts with skewed clocks agree on who holds a lease.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Int4, Int8, Nullable, Text, Timestamptz};
use serde::Serialize;

use super::queue::{self, ClaimedRun};
use super::{StoreResult, Tx};

/// Exits within [`FLAP_WINDOW_SECS`] that make a service flapping.
pub const FLAP_EXITS: i32 = 5;
/// The window [`FLAP_EXITS`] are counted in.
pub const FLAP_WINDOW_SECS: i64 = 600;

/// Tasks that should be running as services: active, enabled, not paused.
const WANTED: &str = "SELECT t.plugin_id, t.name, t.id FROM tasks t \
     WHERE t.active AND t.enabled AND t.paused_reason IS NULL AND t.schedule_kind = 'service'";

/// A service whose lease this host holds.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Held {
    /// The service.
    #[diesel(sql_type = Int8)]
    pub id: i64,
    /// The task it should run now.
    #[diesel(sql_type = Int8)]
    pub task_id: i64,
    /// That task's definition (a new plugin version changes it).
    #[diesel(sql_type = Int8)]
    pub definition_id: i64,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Int8)]
    id: i64,
}

/// Takes or renews, for `lease_ms`, the lease of every wanted service that
/// is free, expired or already this host's; returns the services this host
/// now holds, and those it holds that are no longer wanted (to stop).
pub fn hold(tx: &mut Tx<'_>, host: &str, lease_ms: i64) -> StoreResult<(Vec<Held>, Vec<i64>)> {
    let held: Vec<Held> = diesel::sql_query(format!(
        "INSERT INTO services AS s (plugin_id, name, task_id, host_id, lease_until, acquired_at, state, state_since) \
         SELECT w.plugin_id, w.name, w.id, $1, now() + $2 * interval '1 millisecond', now(), 'starting', now() \
         FROM ({WANTED}) w ORDER BY w.plugin_id, w.name \
         ON CONFLICT (plugin_id, name) DO UPDATE SET \
             task_id = EXCLUDED.task_id, host_id = EXCLUDED.host_id, lease_until = EXCLUDED.lease_until, \
             acquired_at = CASE WHEN s.host_id = EXCLUDED.host_id THEN s.acquired_at ELSE now() END, \
             state = CASE WHEN s.host_id = EXCLUDED.host_id THEN s.state ELSE 'starting' END, \
             state_since = CASE WHEN s.host_id = EXCLUDED.host_id THEN s.state_since ELSE now() END \
         WHERE s.host_id = EXCLUDED.host_id OR s.host_id IS NULL OR s.lease_until IS NULL OR s.lease_until < now() \
         RETURNING s.id, s.task_id, (SELECT t.definition_id FROM tasks t WHERE t.id = s.task_id) AS definition_id"
    ))
    .bind::<Text, _>(host)
    .bind::<Int8, _>(lease_ms)
    .load(tx.c())?;
    let unwanted: Vec<Id> = diesel::sql_query(format!(
        "SELECT s.id FROM services s WHERE s.host_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM ({WANTED}) w WHERE w.plugin_id = s.plugin_id AND w.name = s.name)"
    ))
    .bind::<Text, _>(host)
    .load(tx.c())?;
    Ok((held, unwanted.into_iter().map(|r| r.id).collect()))
}

/// Gives up the lease of service `id` held by `host` (another host may
/// take it at once), or with `None` every lease `host` holds; each service
/// is then `stopped`.
pub fn release(tx: &mut Tx<'_>, host: &str, id: Option<i64>) -> StoreResult<()> {
    diesel::sql_query(
        "UPDATE services SET host_id = NULL, lease_until = NULL, state = 'stopped', state_since = now(), \
             backoff_until = NULL WHERE host_id = $1 AND ($2::int8 IS NULL OR id = $2)",
    )
    .bind::<Text, _>(host)
    .bind::<Nullable<Int8>, _>(id)
    .execute(tx.c())?;
    Ok(())
}

/// Records a service's state while this host holds it.
pub fn set_state(
    tx: &mut Tx<'_>,
    id: i64,
    host: &str,
    state: &str,
    backoff_until: Option<DateTime<Utc>>,
) -> StoreResult<()> {
    diesel::sql_query(
        "UPDATE services SET state = $3, state_since = now(), backoff_until = $4 \
         WHERE id = $1 AND host_id = $2",
    )
    .bind::<Int8, _>(id)
    .bind::<Text, _>(host)
    .bind::<Text, _>(state)
    .bind::<Nullable<Timestamptz>, _>(backoff_until)
    .execute(tx.c())?;
    Ok(())
}

/// The previous incarnation of a service, when it is still recorded as
/// running on another host (a holder that lost its lease without stopping).
/// Only the holder of a live lease gets an answer (the row stays locked), so
/// a host that just lost the lease cannot end the new holder's incarnation.
pub fn stale_incarnation(tx: &mut Tx<'_>, id: i64, host: &str) -> StoreResult<Option<i64>> {
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT r.id FROM services s JOIN runs r ON r.id = s.run_id \
         WHERE s.id = $1 AND s.host_id = $2 AND s.lease_until > now() \
           AND r.status = 'running' AND r.host_id IS DISTINCT FROM $2 FOR UPDATE OF s",
    )
    .bind::<Int8, _>(id)
    .bind::<Text, _>(host)
    .load(tx.c())?;
    Ok(rows.first().map(|r| r.id))
}

/// Starts an incarnation of service `id` on `host`: a slot (trigger
/// `service`) and its run, already running here. None when this host no
/// longer holds a live lease.
pub fn start_incarnation(tx: &mut Tx<'_>, id: i64, host: &str) -> StoreResult<Option<ClaimedRun>> {
    let run: Vec<Id> = diesel::sql_query(
        "WITH s AS (SELECT task_id FROM services WHERE id = $1 AND host_id = $2 AND lease_until > now() FOR UPDATE), \
         slot AS (INSERT INTO slots (task_id, scheduled_for, pulse_id, trigger) \
             SELECT task_id, now(), NULL, 'service' FROM s RETURNING id, task_id) \
         INSERT INTO runs (slot_id, task_id, plugin_version_id, definition_id, status, priority, scheduled_for, not_before) \
         SELECT slot.id, t.id, t.plugin_version_id, t.definition_id, 'queued', t.priority, now(), now() \
         FROM slot JOIN tasks t ON t.id = slot.task_id RETURNING id",
    )
    .bind::<Int8, _>(id)
    .bind::<Text, _>(host)
    .load(tx.c())?;
    let Some(run) = run.first() else {
        return Ok(None);
    };
    let started = queue::start(tx, host, &[run.id])?.pop();
    diesel::sql_query(
        "UPDATE services SET run_id = $2, state = 'running', state_since = now(), backoff_until = NULL WHERE id = $1",
    )
    .bind::<Int8, _>(id)
    .bind::<Int8, _>(run.id)
    .execute(tx.c())?;
    Ok(started)
}

/// Records how an incarnation ended (its run is written by then) and counts
/// a restart unless the service is being stopped. An exit after the
/// incarnation `stayed_up` past its stable-after starts the count of quick
/// exits afresh; [`FLAP_EXITS`] quick exits within [`FLAP_WINDOW_SECS`]
/// mark the service flapping.
pub fn exited(
    tx: &mut Tx<'_>,
    id: i64,
    host: &str,
    run_id: i64,
    restart: bool,
    stayed_up: bool,
) -> StoreResult<()> {
    diesel::sql_query(format!(
        "UPDATE services s SET last_exit_at = r.finished_at, last_exit_status = r.status, \
             last_error = r.error, \
             last_exit_code = (SELECT e.exit_code FROM step_executions e \
                 WHERE e.run_id = r.id AND e.phase = 'step' ORDER BY e.id DESC LIMIT 1), \
             restarts = s.restarts + CASE WHEN $4 THEN 1 ELSE 0 END, \
             recent_exits = CASE WHEN $5 THEN '{{}}'::timestamptz[] \
                 ELSE (s.recent_exits || now())[greatest(1, cardinality(s.recent_exits) + 2 - {FLAP_EXITS}):] END, \
             flapping_since = CASE WHEN $5 THEN NULL \
                 WHEN s.flapping_since IS NULL AND $4 \
                 AND cardinality(s.recent_exits) + 1 >= {FLAP_EXITS} \
                 AND s.recent_exits[cardinality(s.recent_exits) + 2 - {FLAP_EXITS}] > now() - interval '{FLAP_WINDOW_SECS} seconds' \
                 THEN now() ELSE s.flapping_since END \
         FROM runs r WHERE s.id = $1 AND s.host_id = $2 AND r.id = $3"
    ))
    .bind::<Int8, _>(id)
    .bind::<Text, _>(host)
    .bind::<Int8, _>(run_id)
    .bind::<Bool, _>(restart)
    .bind::<Bool, _>(stayed_up)
    .execute(tx.c())?;
    Ok(())
}

/// A service that stayed up long enough is no longer flapping.
pub fn stable(tx: &mut Tx<'_>, id: i64, host: &str) -> StoreResult<()> {
    diesel::sql_query("UPDATE services SET flapping_since = NULL WHERE id = $1 AND host_id = $2")
        .bind::<Int8, _>(id)
        .bind::<Text, _>(host)
        .execute(tx.c())?;
    Ok(())
}

/// A service as operators see it.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct ServiceRow {
    /// Service id.
    #[diesel(sql_type = Int8)]
    pub id: i64,
    /// Plugin name.
    #[diesel(sql_type = Text)]
    pub plugin: String,
    /// Task name.
    #[diesel(sql_type = Text)]
    pub name: String,
    /// The task (definition) it runs.
    #[diesel(sql_type = Int8)]
    pub task_id: i64,
    /// `waiting` (no host has it yet), `starting`, `running`, `backoff` or
    /// `stopped`.
    #[diesel(sql_type = Text)]
    pub state: String,
    /// Since when it is in that state.
    #[diesel(sql_type = Timestamptz)]
    pub state_since: DateTime<Utc>,
    /// The host holding its lease (None: no host).
    #[diesel(sql_type = Nullable<Text>)]
    pub host_id: Option<String>,
    /// That host's machine.
    #[diesel(sql_type = Nullable<Text>)]
    pub machine: Option<String>,
    /// Since when that host holds it.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub acquired_at: Option<DateTime<Utc>>,
    /// The lease runs out then unless renewed.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub lease_until: Option<DateTime<Utc>>,
    /// The current incarnation's run, or the last one's.
    #[diesel(sql_type = Nullable<Int8>)]
    pub run_id: Option<i64>,
    /// Since when the current incarnation runs.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub running_since: Option<DateTime<Utc>>,
    /// Restarts after exits, ever.
    #[diesel(sql_type = Int4)]
    pub restarts: i32,
    /// In `backoff`: the next start.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub backoff_until: Option<DateTime<Utc>>,
    /// When it last exited.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_exit_at: Option<DateTime<Utc>>,
    /// How that run ended (`failed`, `succeeded`, `cancelled`).
    #[diesel(sql_type = Nullable<Text>)]
    pub last_exit_status: Option<String>,
    /// Its exit code.
    #[diesel(sql_type = Nullable<Int4>)]
    pub last_exit_code: Option<i32>,
    /// Its error.
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    /// Flapping since then (None: not flapping).
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub flapping_since: Option<DateTime<Utc>>,
}

/// Every service, by plugin and name; one that no host took yet (none runs
/// services, or it was just uploaded) is listed as `waiting`.
pub fn list(tx: &mut Tx<'_>) -> StoreResult<Vec<ServiceRow>> {
    diesel::sql_query(format!(
        "INSERT INTO services (plugin_id, name, task_id) SELECT w.plugin_id, w.name, w.id FROM ({WANTED}) w \
         ORDER BY w.plugin_id, w.name ON CONFLICT (plugin_id, name) DO NOTHING"
    ))
    .execute(tx.c())?;
    Ok(diesel::sql_query(
        "SELECT s.id, p.name AS plugin, s.name, s.task_id, s.state, s.state_since, s.host_id, h.machine, \
             s.acquired_at, s.lease_until, s.run_id, CASE WHEN r.status = 'running' THEN r.started_at END AS running_since, \
             s.restarts, s.backoff_until, s.last_exit_at, s.last_exit_status, s.last_exit_code, \
             s.last_error, s.flapping_since \
         FROM services s JOIN plugins p ON p.id = s.plugin_id \
         LEFT JOIN hosts h ON h.id = s.host_id LEFT JOIN runs r ON r.id = s.run_id \
         ORDER BY p.name, s.name",
    )
    .load(tx.c())?)
}

/// Ids of the incarnations (runs) of service `id`, newest first.
pub fn incarnations(tx: &mut Tx<'_>, id: i64, limit: i64) -> StoreResult<Vec<i64>> {
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT r.id FROM services s JOIN tasks t ON t.plugin_id = s.plugin_id AND t.name = s.name \
         JOIN runs r ON r.task_id = t.id WHERE s.id = $1 ORDER BY r.id DESC LIMIT $2",
    )
    .bind::<Int8, _>(id)
    .bind::<Int8, _>(limit)
    .load(tx.c())?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// The rolling log of a service: the last bytes of each stream of its
/// current incarnation (live, flushed every second) or of its last one.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub struct ServiceLog {
    /// The incarnation's run.
    #[diesel(sql_type = Int8)]
    pub run_id: i64,
    /// Whether it is still running.
    #[diesel(sql_type = Bool)]
    pub running: bool,
    /// The last bytes of stdout.
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    pub stdout: Vec<u8>,
    /// The last bytes of stderr.
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    pub stderr: Vec<u8>,
    /// Every byte written to stdout.
    #[diesel(sql_type = Int8)]
    pub stdout_bytes: i64,
    /// Every byte written to stderr.
    #[diesel(sql_type = Int8)]
    pub stderr_bytes: i64,
}

/// The rolling log of service `id`; None before its first incarnation.
pub fn log(tx: &mut Tx<'_>, id: i64) -> StoreResult<Option<ServiceLog>> {
    let rows: Vec<ServiceLog> = diesel::sql_query(
        "SELECT r.id AS run_id, r.status = 'running' AS running, \
             COALESCE(l.stdout, e.stdout, ''::bytea) AS stdout, COALESCE(l.stderr, e.stderr, ''::bytea) AS stderr, \
             COALESCE(l.stdout_bytes, e.stdout_bytes, 0) AS stdout_bytes, \
             COALESCE(l.stderr_bytes, e.stderr_bytes, 0) AS stderr_bytes \
         FROM services s JOIN runs r ON r.id = s.run_id \
         LEFT JOIN step_output_live l ON l.run_id = r.id AND l.phase = 'step' AND l.step_index = 0 \
         LEFT JOIN LATERAL (SELECT x.stdout, x.stderr, x.stdout_bytes, x.stderr_bytes FROM step_executions x \
             WHERE x.run_id = r.id AND x.phase = 'step' ORDER BY x.id DESC LIMIT 1) e ON true \
         WHERE s.id = $1",
    )
    .bind::<Int8, _>(id)
    .load(tx.c())?;
    Ok(rows.into_iter().next())
}
