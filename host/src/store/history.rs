//! Reading run history: listings newest first by (created_at, id), filtered
//! and keyset-paginated, and one run with every process and event.
//!
//! Each filter has an index that yields the listing's order (see the
//! operators migration), so a page costs the same at any depth. Several
//! statuses are listed as one lane per status, merged here: PostgreSQL would
//! otherwise sort every run of those statuses to find the newest.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Int8, Timestamptz};
use serde::Serialize;

use super::models::{RunEventRow, RunRow, StepExecutionRow};
use super::runs::LiveOutputRow;
use super::schema::{plugins, run_events, runs, step_executions, tasks};
use super::{StoreError, StoreResult, Tx};

/// Every status a run can have.
pub const STATUSES: [&str; 8] = [
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "skipped",
    "missed",
];

/// Statuses a run can end with: [`STATUSES`] after queued and running.
pub const FINAL_STATUSES: &[&str] = STATUSES.split_at(2).1;

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs listed after this one (keyset pagination, newest first).
    pub before: Option<i64>,
    /// Page size.
    pub limit: i64,
    /// Only this task.
    pub task_id: Option<i64>,
    /// Only these statuses (all when empty).
    pub statuses: Vec<String>,
    /// Only tasks carrying this tag.
    pub tag: Option<String>,
    /// Only runs created at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only runs created before this instant.
    pub until: Option<DateTime<Utc>>,
}

/// A run with the names it belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct RunListing {
    /// Plugin name.
    pub plugin: String,
    /// Task name.
    pub task: String,
    /// Milliseconds from start to finish (None until both are known).
    pub duration_ms: Option<f64>,
    /// The run.
    #[serde(flatten)]
    pub run: RunRow,
}

impl RunListing {
    fn new(plugin: String, task: String, run: RunRow) -> RunListing {
        let duration_ms = match (run.started_at, run.finished_at) {
            (Some(start), Some(end)) => Some((end - start).num_microseconds().unwrap_or(0) as f64 / 1000.0),
            _ => None,
        };
        RunListing {
            plugin,
            task,
            duration_ms,
            run,
        }
    }
}

/// Runs, newest first.
pub fn list_runs(tx: &mut Tx<'_>, filter: &RunFilter) -> StoreResult<Vec<RunListing>> {
    let cursor = match filter.before {
        Some(id) => Some(cursor_of(tx, id)?),
        None => None,
    };
    let lanes: Vec<Option<&str>> = if filter.statuses.is_empty() {
        vec![None]
    } else {
        filter.statuses.iter().map(|s| Some(s.as_str())).collect()
    };
    let mut found = Vec::new();
    for status in lanes {
        found.extend(lane(tx, filter, cursor, status)?);
    }
    found.sort_by_key(|r| std::cmp::Reverse((r.run.created_at, r.run.id)));
    found.truncate(usize::try_from(filter.limit).unwrap_or(0));
    Ok(found)
}

/// Where the page after run `id` starts; a run no longer stored (deleted by
/// retention) still pages by its id.
fn cursor_of(tx: &mut Tx<'_>, id: i64) -> StoreResult<(DateTime<Utc>, i64)> {
    let at: Option<DateTime<Utc>> = runs::table
        .find(id)
        .select(runs::created_at)
        .first(tx.c())
        .optional()?;
    Ok(match at {
        Some(at) => (at, id),
        None => runs::table
            .filter(runs::id.lt(id))
            .order(runs::id.desc())
            .select((runs::created_at, runs::id))
            .first(tx.c())
            .optional()?
            .map_or((DateTime::<Utc>::MIN_UTC, 0), |(at, id): (DateTime<Utc>, i64)| {
                (at, id + 1)
            }),
    })
}

fn lane(
    tx: &mut Tx<'_>,
    filter: &RunFilter,
    cursor: Option<(DateTime<Utc>, i64)>,
    status: Option<&str>,
) -> StoreResult<Vec<RunListing>> {
    let mut query = runs::table
        .inner_join(tasks::table.inner_join(plugins::table))
        .select((plugins::name, tasks::name, RunRow::as_select()))
        .order((runs::created_at.desc(), runs::id.desc()))
        .limit(filter.limit)
        .into_boxed();
    if let Some((at, id)) = cursor {
        query = query.filter(
            sql::<Bool>("(runs.created_at, runs.id) < (")
                .bind::<Timestamptz, _>(at)
                .sql(", ")
                .bind::<Int8, _>(id)
                .sql(")"),
        );
    }
    if let Some(task_id) = filter.task_id {
        query = query.filter(runs::task_id.eq(task_id));
    }
    if let Some(status) = status {
        query = query.filter(runs::status.eq(status.to_owned()));
    }
    if let Some(tag) = &filter.tag {
        query = query.filter(tasks::tags.contains(vec![tag.clone()]));
    }
    if let Some(since) = filter.since {
        query = query.filter(runs::created_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(runs::created_at.lt(until));
    }
    let rows: Vec<(String, String, RunRow)> = query.load(tx.c())?;
    Ok(rows
        .into_iter()
        .map(|(plugin, task, run)| RunListing::new(plugin, task, run))
        .collect())
}

/// One attempt of a run's slot.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The run of this attempt.
    pub run_id: i64,
    /// Its number, from 1.
    pub attempt: i32,
    /// Its status.
    pub status: String,
}

/// One run with everything known of it.
#[derive(Debug, Clone)]
pub struct RunDetail {
    /// The run and the names it belongs to.
    pub listing: RunListing,
    /// Every process it executed, in order.
    pub steps: Vec<StepExecutionRow>,
    /// Output so far of its processes still running.
    pub live: Vec<LiveOutputRow>,
    /// Every attempt of its slot, oldest first.
    pub attempts: Vec<Attempt>,
    /// Its lifecycle log.
    pub events: Vec<RunEventRow>,
}

/// One run with every process it executed, live output, attempts and events.
pub fn get_run(tx: &mut Tx<'_>, id: i64) -> StoreResult<RunDetail> {
    let (plugin, task, run): (String, String, RunRow) = runs::table
        .inner_join(tasks::table.inner_join(plugins::table))
        .filter(runs::id.eq(id))
        .select((plugins::name, tasks::name, RunRow::as_select()))
        .first(tx.c())
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
    let steps = step_executions::table
        .filter(step_executions::run_id.eq(id))
        .order(step_executions::id)
        .select(StepExecutionRow::as_select())
        .load(tx.c())?;
    let events = run_events::table
        .filter(run_events::run_id.eq(id))
        .order(run_events::id)
        .select(RunEventRow::as_select())
        .load(tx.c())?;
    let attempts = runs::table
        .filter(runs::slot_id.eq(run.slot_id))
        .order(runs::attempt)
        .select((runs::id, runs::attempt, runs::status))
        .load::<(i64, i32, String)>(tx.c())?
        .into_iter()
        .map(|(run_id, attempt, status)| Attempt {
            run_id,
            attempt,
            status,
        })
        .collect();
    Ok(RunDetail {
        listing: RunListing::new(plugin, task, run),
        steps,
        live: super::runs::live_of(tx, id)?,
        attempts,
        events,
    })
}

/// The statuses of the newest `n` runs of each of `task_ids`, newest first:
/// (task, run, status). One index range per task.
pub fn recent_statuses(tx: &mut Tx<'_>, task_ids: &[i64], n: i64) -> StoreResult<Vec<(i64, i64, String)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Int8)]
        task_id: i64,
        #[diesel(sql_type = Int8)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT t.id AS task_id, r.id, r.status FROM unnest($1::int8[]) AS t (id) \
         CROSS JOIN LATERAL (SELECT id, status FROM runs WHERE task_id = t.id \
             ORDER BY created_at DESC, id DESC LIMIT $2) r",
    )
    .bind::<diesel::sql_types::Array<Int8>, _>(task_ids)
    .bind::<Int8, _>(n)
    .load(tx.c())?;
    Ok(rows.into_iter().map(|r| (r.task_id, r.id, r.status)).collect())
}

/// (when, max lateness in ms) of every complete pulse since `since`, oldest first.
pub fn pulse_lateness(
    tx: &mut Tx<'_>,
    since: DateTime<Utc>,
) -> StoreResult<Vec<(DateTime<Utc>, Option<i64>)>> {
    use super::schema::pulses;
    Ok(pulses::table
        .filter(pulses::kind.eq("pulse"))
        .filter(pulses::complete.eq(true))
        .filter(pulses::received_at.ge(since))
        .order(pulses::received_at)
        .select((pulses::received_at, pulses::max_lateness_ms))
        .load(tx.c())?)
}
