//! The durable queue: hosts take queued runs in batches with `FOR UPDATE SKIP
//! LOCKED`, so replicas never take the same run. A run of a task whose overlap
//! policy is not `allow` ("exclusive") may start only while no other run of
//! its task is running; [`idle_tasks`] checks that under a per-task advisory
//! lock that pulses and manual triggers take too, so two hosts never start two
//! instances at once. Which candidates start is `runner::policy::choose`.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int4, Int8, Jsonb, Nullable, Text};

use super::models::RunRow;
use super::runs::{add_each_event, add_events};
use super::schema::runs;
use super::{StoreResult, Tx};

/// Skip reason of a queued run whose starting deadline passed before it could start.
pub const DEADLINE_EXCEEDED: &str = "starting_deadline_exceeded";

/// A run this host took from the queue, with what it needs to execute it.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    /// The run, now `running`.
    pub run: RunRow,
    /// Plugin name.
    pub plugin: String,
    /// Task name.
    pub task_name: String,
    /// The stored definition's format.
    pub format: i32,
    /// The stored definition, still to be decoded (a definition that cannot be
    /// decoded fails its run, never the queue).
    pub definition: serde_json::Value,
}

/// Records as `missed` every queued run whose starting deadline passed, by
/// the database's clock; returns their ids. Runs another transaction holds
/// (a host taking them right now) are left to it.
pub fn expire_deadlines(tx: &mut Tx<'_>) -> StoreResult<Vec<i64>> {
    let ids: Vec<i64> = diesel::sql_query(
        "UPDATE runs SET status = 'missed', skip_reason = $1, finished_at = now() \
         WHERE id IN (SELECT id FROM runs WHERE status = 'queued' AND start_deadline < now() \
                      FOR UPDATE SKIP LOCKED) \
         RETURNING id",
    )
    .bind::<Text, _>(DEADLINE_EXCEEDED)
    .load::<Id>(tx.c())?
    .into_iter()
    .map(|r| r.id)
    .collect();
    let detail = serde_json::json!({ "reason": DEADLINE_EXCEEDED, "while": "queued" });
    add_events(tx, &ids, "missed", &detail)?;
    Ok(ids)
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Int8)]
    id: i64,
}

/// A queued run that may start now, locked by this transaction.
#[derive(Debug, Clone, QueryableByName)]
pub struct Candidate {
    /// The run.
    #[diesel(sql_type = Int8)]
    pub id: i64,
    /// Its task.
    #[diesel(sql_type = Int8)]
    pub task_id: i64,
    /// Its task's overlap is not `allow`: one run of the task at a time.
    #[diesel(sql_type = Bool)]
    pub exclusive: bool,
    /// Its task's concurrency key, shared across tasks and replicas.
    #[diesel(sql_type = Nullable<Text>)]
    pub concurrency_key: Option<String>,
    /// Memory its task reserves, bytes.
    #[diesel(sql_type = Nullable<Int8>)]
    pub reserve_memory_bytes: Option<i64>,
    /// CPU its task reserves, thousandths of a core.
    #[diesel(sql_type = Nullable<Int4>)]
    pub reserve_cpu_millicores: Option<i32>,
}

/// Locks and returns up to `limit` queued runs that may start now, in queue
/// order: their `not_before` has come, every run they depend on succeeded, and
/// for an exclusive task no run of it is running. Runs another host is taking
/// are skipped.
pub fn candidates(tx: &mut Tx<'_>, limit: usize) -> StoreResult<Vec<Candidate>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // The ORs keep PostgreSQL from turning the NOT EXISTS into anti-joins over
    // every run: they are subplans, asked only where they matter.
    Ok(diesel::sql_query(
        "SELECT r.id, r.task_id, t.overlap <> 'allow' AS exclusive, t.concurrency_key, \
                t.reserve_memory_bytes, t.reserve_cpu_millicores \
         FROM runs r JOIN tasks t ON t.id = r.task_id \
         WHERE r.status = 'queued' AND r.not_before <= now() \
           AND (t.paused_reason IS NULL OR EXISTS (SELECT 1 FROM slots s \
                WHERE s.id = r.slot_id AND s.trigger = 'manual')) \
           AND (t.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM concurrency_holds h \
                WHERE h.key = t.concurrency_key AND h.until > now())) \
           AND (r.depends_on_runs = '{}' OR NOT EXISTS (SELECT 1 FROM runs d \
                WHERE d.id = ANY(r.depends_on_runs) AND d.status <> 'succeeded')) \
           AND (t.overlap = 'allow' OR NOT EXISTS (SELECT 1 FROM runs o \
                WHERE o.task_id = r.task_id AND o.status = 'running')) \
         ORDER BY r.priority DESC, r.not_before, r.scheduled_for, r.id \
         LIMIT $1 FOR UPDATE OF r SKIP LOCKED",
    )
    .bind::<Int8, _>(limit as i64)
    .load(tx.c())?)
}

/// Marks `ids` running on `host_id` (with their lateness, by the database's
/// clock) and returns them with what executing them needs.
pub fn start(tx: &mut Tx<'_>, host_id: &str, ids: &[i64]) -> StoreResult<Vec<ClaimedRun>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let started: Vec<RunRow> = diesel::update(runs::table.filter(runs::id.eq_any(ids)))
        .set((
            runs::status.eq("running"),
            runs::started_at.eq(diesel::dsl::now),
            runs::lateness_ms.eq(sql::<Nullable<Int8>>(
                // A backfilled slot is late by design, and a service's incarnation
                // starts when it is made: neither has a lateness.
                "CASE WHEN EXISTS (SELECT 1 FROM slots s WHERE s.id = slot_id AND s.trigger IN ('backfill', 'service')) \
                 THEN NULL ELSE GREATEST(0, (extract(epoch FROM now() - scheduled_for) * 1000)::int8) END",
            )),
            runs::host_id.eq(host_id),
        ))
        .returning(RunRow::as_returning())
        .get_results(tx.c())?;
    let events: Vec<(i64, &str, serde_json::Value)> = started
        .iter()
        .map(|run| {
            let detail = serde_json::json!({ "host": host_id, "lateness_ms": run.lateness_ms, "attempt": run.attempt });
            (run.id, "started", detail)
        })
        .collect();
    add_each_event(tx, &events)?;
    attach_definitions(tx, started)
}

/// The tasks among `task_ids` (sorted) whose advisory lock this transaction
/// takes without waiting and that have no running run once it holds the lock.
/// Not waiting means a pulse or another host deciding about the same task is
/// never blocked on a dispatcher, and no two lockers can deadlock.
pub fn idle_tasks(tx: &mut Tx<'_>, task_ids: &[i64]) -> StoreResult<Vec<i64>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Task {
        #[diesel(sql_type = Int8)]
        task_id: i64,
    }
    let locked: Vec<Task> = diesel::sql_query(
        "SELECT k AS task_id FROM unnest($1::int8[]) AS k WHERE pg_try_advisory_xact_lock(k)",
    )
    .bind::<Array<Int8>, _>(task_ids)
    .load(tx.c())?;
    let locked: Vec<i64> = locked.into_iter().map(|t| t.task_id).collect();
    // The lock is held now: a run another host started and committed is visible.
    let busy: Vec<i64> = runs::table
        .filter(runs::task_id.eq_any(&locked))
        .filter(runs::status.eq("running"))
        .select(runs::task_id)
        .load(tx.c())?;
    Ok(locked.into_iter().filter(|t| !busy.contains(t)).collect())
}

/// Class of the advisory locks on concurrency keys (two-int keys never meet
/// the one-int task locks).
const KEY_LOCK_CLASS: i32 = 7411;

/// For each of `keys` whose advisory lock this transaction takes without
/// waiting: how many more runs naming it may start now (its smallest limit
/// among active tasks, less the runs of tasks naming it that are running
/// anywhere). Keys another host is deciding about right now are left out.
pub fn key_budgets(tx: &mut Tx<'_>, keys: &[String]) -> StoreResult<Vec<(String, i64)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(QueryableByName)]
    struct Budget {
        #[diesel(sql_type = Text)]
        key: String,
        #[diesel(sql_type = Int8)]
        room: i64,
    }
    let budgets: Vec<Budget> = diesel::sql_query(
        "WITH locked AS (SELECT k FROM unnest($1::text[]) AS k \
                         WHERE pg_try_advisory_xact_lock($2, hashtext(k))) \
         SELECT l.k AS key, \
                (SELECT COALESCE(min(t.concurrency_limit), 0) FROM tasks t \
                  WHERE t.active AND t.concurrency_key = l.k)::int8 \
              - (SELECT count(*) FROM runs r JOIN tasks t ON t.id = r.task_id \
                  WHERE r.status = 'running' AND t.concurrency_key = l.k) AS room \
         FROM locked l",
    )
    .bind::<Array<Text>, _>(keys)
    .bind::<Int4, _>(KEY_LOCK_CLASS)
    .load(tx.c())?;
    Ok(budgets.into_iter().map(|b| (b.key, b.room)).collect())
}

/// Holds `key` until `delay_ms` from the database's now (or later, if already
/// held longer): no run of a task naming it starts before.
pub fn hold_key(tx: &mut Tx<'_>, key: &str, delay_ms: i64) -> StoreResult<()> {
    diesel::sql_query(
        "INSERT INTO concurrency_holds (key, until) VALUES ($1, now() + $2 * interval '1 millisecond') \
         ON CONFLICT (key) DO UPDATE SET until = GREATEST(concurrency_holds.until, EXCLUDED.until)",
    )
    .bind::<Text, _>(key)
    .bind::<Int8, _>(delay_ms)
    .execute(tx.c())?;
    Ok(())
}

/// Joins each run with its plugin's name, its task's name and its stored definition.
fn attach_definitions(tx: &mut Tx<'_>, started: Vec<RunRow>) -> StoreResult<Vec<ClaimedRun>> {
    #[derive(QueryableByName)]
    struct Definition {
        #[diesel(sql_type = Int8)]
        id: i64,
        #[diesel(sql_type = Text)]
        plugin: String,
        #[diesel(sql_type = Text)]
        task: String,
        #[diesel(sql_type = Int4)]
        format: i32,
        #[diesel(sql_type = Jsonb)]
        definition: serde_json::Value,
    }
    let ids: Vec<i64> = started.iter().map(|r| r.definition_id).collect();
    let definitions: Vec<Definition> = diesel::sql_query(
        "SELECT d.id, p.name AS plugin, d.name AS task, d.format, d.definition \
         FROM task_definitions d JOIN plugin_versions v ON v.id = d.plugin_version_id \
         JOIN plugins p ON p.id = v.plugin_id WHERE d.id = ANY($1)",
    )
    .bind::<Array<Int8>, _>(&ids)
    .load(tx.c())?;
    Ok(started
        .into_iter()
        .map(
            |run| match definitions.iter().find(|d| d.id == run.definition_id) {
                Some(d) => ClaimedRun {
                    plugin: d.plugin.clone(),
                    task_name: d.task.clone(),
                    format: d.format,
                    definition: d.definition.clone(),
                    run,
                },
                None => ClaimedRun {
                    plugin: String::new(),
                    task_name: format!("task {}", run.task_id),
                    format: 0,
                    definition: serde_json::Value::Null,
                    run,
                },
            },
        )
        .collect())
}
