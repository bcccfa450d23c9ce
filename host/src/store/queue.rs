//! The durable queue: hosts take queued runs in batches with `FOR UPDATE SKIP
//! LOCKED`, so replicas never take the same run. A run of a task whose overlap
//! policy is not `allow` ("exclusive") starts only while no other run of its
//! task is running; the check runs under a per-task advisory lock that pulses
//! and manual triggers take too, so two hosts never start two instances at once.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int4, Int8, Jsonb, Nullable, Text};

use super::models::RunRow;
use super::runs::add_events;
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
/// the database's clock; returns their ids.
pub fn expire_deadlines(tx: &mut Tx<'_>) -> StoreResult<Vec<i64>> {
    let ids: Vec<i64> = diesel::update(
        runs::table
            .filter(runs::status.eq("queued"))
            .filter(runs::start_deadline.lt(diesel::dsl::now)),
    )
    .set((
        runs::status.eq("missed"),
        runs::skip_reason.eq(DEADLINE_EXCEEDED),
        runs::finished_at.eq(diesel::dsl::now),
    ))
    .returning(runs::id)
    .get_results(tx.c())?;
    let detail = serde_json::json!({ "reason": DEADLINE_EXCEEDED, "while": "queued" });
    add_events(tx, &ids, "missed", &detail)?;
    Ok(ids)
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = Int8)]
    id: i64,
    #[diesel(sql_type = Int8)]
    task_id: i64,
    #[diesel(sql_type = Bool)]
    exclusive: bool,
}

/// Takes up to `limit` queued runs that may start now (their `not_before` has
/// come, every run they depend on succeeded, and no other run of an exclusive
/// task is running), marks them running on `host_id`, and returns them.
pub fn claim(tx: &mut Tx<'_>, host_id: &str, limit: usize) -> StoreResult<Vec<ClaimedRun>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // The ORs keep PostgreSQL from turning the NOT EXISTS into anti-joins over
    // every run: they are subplans, asked only where they matter.
    let candidates: Vec<Candidate> = diesel::sql_query(
        "SELECT r.id, r.task_id, t.overlap <> 'allow' AS exclusive \
         FROM runs r JOIN tasks t ON t.id = r.task_id \
         WHERE r.status = 'queued' AND r.not_before <= now() \
           AND (r.depends_on_runs = '{}' OR NOT EXISTS (SELECT 1 FROM runs d \
                WHERE d.id = ANY(r.depends_on_runs) AND d.status <> 'succeeded')) \
           AND (t.overlap = 'allow' OR NOT EXISTS (SELECT 1 FROM runs o \
                WHERE o.task_id = r.task_id AND o.status = 'running')) \
         ORDER BY r.priority DESC, r.not_before, r.scheduled_for, r.id \
         LIMIT $1 FOR UPDATE OF r SKIP LOCKED",
    )
    .bind::<Int8, _>((limit * 2) as i64)
    .load(tx.c())?;
    let chosen = choose(tx, candidates, limit)?;
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let started: Vec<RunRow> = diesel::update(runs::table.filter(runs::id.eq_any(&chosen)))
        .set((
            runs::status.eq("running"),
            runs::started_at.eq(diesel::dsl::now),
            runs::lateness_ms.eq(sql::<Nullable<Int8>>(
                "GREATEST(0, (extract(epoch FROM now() - scheduled_for) * 1000)::int8)",
            )),
            runs::host_id.eq(host_id),
        ))
        .returning(RunRow::as_returning())
        .get_results(tx.c())?;
    for run in &started {
        let detail =
            serde_json::json!({ "host": host_id, "lateness_ms": run.lateness_ms, "attempt": run.attempt });
        add_events(tx, &[run.id], "started", &detail)?;
    }
    attach_definitions(tx, started)
}

/// At most one run per exclusive task, and only for tasks whose advisory lock
/// this transaction could take and that still have no running run; in queue order.
fn choose(tx: &mut Tx<'_>, candidates: Vec<Candidate>, limit: usize) -> StoreResult<Vec<i64>> {
    let mut exclusive: Vec<i64> = candidates
        .iter()
        .filter(|c| c.exclusive)
        .map(|c| c.task_id)
        .collect();
    exclusive.sort_unstable();
    exclusive.dedup();
    let free = if exclusive.is_empty() {
        Vec::new()
    } else {
        lock_free_tasks(tx, &exclusive)?
    };
    let mut taken_tasks = std::collections::HashSet::new();
    Ok(candidates
        .into_iter()
        .filter(|c| !c.exclusive || (free.contains(&c.task_id) && taken_tasks.insert(c.task_id)))
        .take(limit)
        .map(|c| c.id)
        .collect())
}

/// The tasks among `task_ids` (sorted) whose advisory lock this transaction
/// takes without waiting and that have no running run once it holds the lock.
/// Not waiting means a pulse or another host deciding about the same task is
/// never blocked on a dispatcher, and no two lockers can deadlock.
fn lock_free_tasks(tx: &mut Tx<'_>, task_ids: &[i64]) -> StoreResult<Vec<i64>> {
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
